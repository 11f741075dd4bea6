"""The wire models against events.md: round trips, normalisation, strict types, extras ignored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from schemas.alerts import AlertEvent, ReasonDetail
from schemas.carm import CarmSnapshot, Contact
from schemas.decode import Decoded, TopicKind, decode, decode_parsed
from schemas.emanifest import CargoReported, Notice
from schemas.rns import RnsStatus

CCN = "8ABC1234567890"
BN = "123456789RM0001"


def body(event_type: str, /, **overrides: Any) -> dict[str, Any]:
    """A valid wire body of `event_type`, as a producer would send it."""
    common: dict[str, Any] = {
        "event_id": f"{event_type}-0001",
        "event_type": event_type,
        "occurred_at": "2026-11-23T10:00:00Z",
        "schema_version": 1,
    }
    fields: dict[str, dict[str, Any]] = {
        "cargo_reported": {
            "ccn": CCN,
            "carrier_code": "8ABC",
            "trip_number": "8ABC7654321",
            "load_ref": "LD-100200",
            "port_of_entry": "0427",
            "eta": "2026-11-23T14:30:00-05:00",
            "importer_bn": BN,
            "importer_name": "Érable Hardware Distribution Inc.",
            "shipper_name": "Great Lakes Fasteners LLC",
            "broker_code": "B123",
            "broker_name": "Northern Customs Brokers Ltd.",
            "release_mode": "prepaid",
            "dispatch_team": "east",
        },
        "cargo_accepted": {"ccn": CCN},
        "cargo_rejected": {"ccn": CCN, "reason": "Invalid shipper address"},
        "eta_updated": {"ccn": CCN, "eta": "2026-11-23T15:00:00.250+00:00", "port_of_entry": "0453"},
        "notice": {"ccn": CCN, "notice": "not_matched", "text": "No matching declaration"},
        "cancelled": {"ccn": CCN},
        "rns_status": {
            "ccn": CCN,
            "processing_indicator": 4,
            "transaction_number": "12345678901234",
            "broker_code": "B123",
            "office": "0427",
            "description": "Goods released",
        },
        "carm_snapshot": {
            "importer_bn": BN,
            "legal_name": "Érable Hardware Distribution Inc.",
            "ccp_registered": True,
            "rm_account_linked": True,
            "delegations": [
                {"broker_code": "B123", "access": "business_management", "transaction_visibility": True}
            ],
            "rpp_enrolled": True,
            "security": {"kind": "surety", "amount_cad": 25000.5},
            "highest_monthly_duties_taxes_cad": 40000,
            "last_portal_login_at": "2026-10-01T09:15:00+02:00",
            "contact": {"name": "Jane Tremblay", "phone": "+1-416-555-0142", "email": "customs@example.ca"},
        },
    }
    return common | fields[event_type] | overrides


KIND_OF = {
    "cargo_reported": TopicKind.EMANIFEST,
    "cargo_accepted": TopicKind.EMANIFEST,
    "cargo_rejected": TopicKind.EMANIFEST,
    "eta_updated": TopicKind.EMANIFEST,
    "notice": TopicKind.EMANIFEST,
    "cancelled": TopicKind.EMANIFEST,
    "rns_status": TopicKind.RNS,
    "carm_snapshot": TopicKind.CARM,
}
EVENT_TYPES = sorted(KIND_OF)


def key_of(value: dict[str, Any]) -> bytes:
    return str(value["importer_bn"] if value["event_type"] == "carm_snapshot" else value["ccn"]).encode()


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def decoded(event_type: str, /, **overrides: Any) -> Any:
    value = body(event_type, **overrides)
    result = decode(KIND_OF[event_type], key_of(value), encode(value))
    assert isinstance(result, Decoded), result
    return result.event


def rejected_reason(event_type: str, /, **overrides: Any) -> str:
    value = body(event_type, **overrides)
    result = decode(KIND_OF[event_type], key_of(value), encode(value))
    assert not isinstance(result, Decoded), result
    return str(result.reason)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_round_trips_through_json(event_type: str) -> None:
    event = decoded(event_type)
    assert event.event_type == event_type
    again = decode(KIND_OF[event_type], key_of(body(event_type)), event.model_dump_json().encode())
    assert isinstance(again, Decoded)
    assert again.event == event


def test_alert_events_round_trip_through_json() -> None:
    at = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    raised = AlertEvent(
        event_id="a1/1",
        alert_id="a1",
        seq=1,
        ccn=CCN,
        action="raised",
        severity="critical",
        reasons=["carm_no_delegation", "pars_not_matched"],
        details=[ReasonDetail(code="pars_not_matched", severity="critical", summary="s", action="a")],
        at=at,
        first_raised_at=at,
        eta=at + timedelta(hours=2),
        importer_contact=Contact(name="Jane"),
    )
    resolved = raised.model_copy(
        update={"event_id": "a1/2", "seq": 2, "action": "resolved", "severity": None, "outcome": "released"}
    )
    for alert in (raised, resolved):
        assert AlertEvent.model_validate_json(alert.model_dump_json()) == alert
    assert resolved.comparable() == (
        CCN,
        "resolved",
        None,
        ("carm_no_delegation", "pars_not_matched"),
        at,
        "released",
    )


def test_timestamps_are_normalised_to_utc() -> None:
    reported = decoded("cargo_reported", occurred_at="2026-11-23T05:00:00-05:00")
    assert reported.occurred_at == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert reported.occurred_at.utcoffset() == timedelta(0)
    assert reported.eta.utcoffset() == timedelta(0)
    assert reported.eta == datetime(2026, 11, 23, 19, 30, tzinfo=UTC)
    snapshot = decoded("carm_snapshot")
    assert snapshot.last_portal_login_at == datetime(2026, 10, 1, 7, 15, tzinfo=UTC)
    assert snapshot.last_portal_login_at.utcoffset() == timedelta(0)


def test_timestamps_share_the_stdlib_utc_object_on_both_decode_paths() -> None:
    # The engine relies on it: datetimes with one tzinfo object compare without utcoffset() calls.
    value = body("cargo_reported", occurred_at="2026-11-23T10:00:00Z")
    raw = decode(TopicKind.EMANIFEST, CCN.encode(), encode(value))
    parsed = decode_parsed(TopicKind.EMANIFEST, CCN, value)
    assert isinstance(raw, Decoded) and isinstance(parsed, Decoded)
    for event in (raw.event, parsed.event):
        assert isinstance(event, CargoReported)
        assert event.occurred_at.tzinfo is UTC  # from "Z"
        assert event.eta.tzinfo is UTC  # from "-05:00"


def test_models_built_in_python_accept_aware_datetimes_and_normalise_them() -> None:
    toronto = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Toronto"))
    notice = Notice(
        event_id="n1", event_type="notice", occurred_at=toronto, schema_version=1, ccn="abcde", notice="held"
    )
    assert notice.occurred_at == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert notice.occurred_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match="timezone"):
        Notice(
            event_id="n1",
            event_type="notice",
            occurred_at=datetime(2026, 11, 23, 9, 0),  # noqa: DTZ001 - the naive case under test
            schema_version=1,
            ccn="abcde",
            notice="held",
        )


def test_sub_second_precision_survives() -> None:
    assert decoded("eta_updated").eta == datetime(2026, 11, 23, 15, 0, 0, 250000, tzinfo=UTC)
    nanos = decoded("notice", occurred_at="2026-11-23T10:00:00.123456789+01:00").occurred_at
    assert nanos == datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)


def test_identifiers_are_upper_cased() -> None:
    reported = decoded(
        "cargo_reported", ccn="8abc-12345x", carrier_code="8abc", importer_bn="123456789rm0001"
    )
    assert (reported.ccn, reported.carrier_code, reported.importer_bn) == ("8ABC-12345X", "8ABC", BN)
    assert decoded("rns_status", broker_code=" b123 ").broker_code == "B123"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ccn", "ABC1"),  # too short
        ("ccn", "A" * 26),
        ("ccn", "ABCD_1234"),
        ("carrier_code", "ABCDE"),
        ("importer_bn", "12345678RM0001"),
        ("importer_bn", "123456789RC0001"),
        ("port_of_entry", "427"),
        ("port_of_entry", "04270"),
        ("event_id", ""),
        ("event_id", "x" * 129),
        ("release_mode", "cash"),
        ("occurred_at", "2026-11-23T10:00Z"),  # RFC 3339 requires seconds
        ("occurred_at", "2026-11-23"),
        ("occurred_at", "1763900000"),  # an epoch in a string is not a timestamp
        ("occurred_at", "2026-02-30T10:00:00Z"),
        ("occurred_at", "9999-12-31T23:59:59-23:59"),  # not representable in UTC
    ],
)
def test_invalid_values_are_rejected(field: str, value: str) -> None:
    assert rejected_reason("cargo_reported", **{field: value}) == "invalid_value"


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("rns_status", "processing_indicator", 4.0),  # an integer as a float
        ("rns_status", "processing_indicator", "4"),  # a number in quotes
        ("rns_status", "processing_indicator", True),
        ("carm_snapshot", "ccp_registered", "true"),  # a boolean as a string
        ("carm_snapshot", "ccp_registered", 1),
        ("carm_snapshot", "highest_monthly_duties_taxes_cad", "40000"),
        ("carm_snapshot", "security", {"kind": "cash", "amount_cad": "5"}),
        ("carm_snapshot", "delegations", {"broker_code": "B1"}),
        ("carm_snapshot", "contact", "Jane"),
        ("notice", "occurred_at", 1763900000),  # an epoch number is not a timestamp
        ("notice", "ccn", 12345678),
        ("notice", "notice", 5),
        ("notice", "schema_version", 1.0),
        ("notice", "schema_version", "1"),
        ("notice", "schema_version", True),
        ("cargo_reported", "broker_code", ["B1"]),
    ],
)
def test_wrong_json_types_are_rejected(event_type: str, field: str, value: Any) -> None:
    assert rejected_reason(event_type, **{field: value}) == "wrong_type"


def test_an_integer_is_a_valid_number() -> None:
    snapshot = decoded("carm_snapshot", security={"kind": "cash", "amount_cad": 5000})
    assert snapshot.security.amount_cad == 5000.0


@pytest.mark.parametrize("amount", [-0.01, -1])
def test_amounts_must_not_be_negative(amount: float) -> None:
    assert rejected_reason("carm_snapshot", highest_monthly_duties_taxes_cad=amount) == "invalid_value"


def test_non_finite_amounts_are_rejected() -> None:
    # Python's json module writes and reads Infinity/NaN; the contract says "number".
    raw = json.dumps(body("carm_snapshot", highest_monthly_duties_taxes_cad=float("inf"))).encode()
    assert b"Infinity" in raw
    result = decode(TopicKind.CARM, BN.encode(), raw)
    assert not isinstance(result, Decoded)
    assert result.reason == "invalid_value"


def test_unknown_extra_fields_are_ignored() -> None:
    event = decoded("notice", producer_trace={"id": [1, 2, {"deep": None}]}, priority=3)
    assert event == decoded("notice")
    assert not hasattr(event, "priority")


def test_nullable_fields_must_be_present_but_may_be_null() -> None:
    reported = decoded("cargo_reported", broker_code=None, broker_name=None)
    assert reported.broker_code is None
    snapshot = decoded("carm_snapshot", highest_monthly_duties_taxes_cad=None, last_portal_login_at=None)
    assert snapshot.last_portal_login_at is None
    value = body("cargo_reported")
    del value["broker_code"]
    result = decode(TopicKind.EMANIFEST, CCN.encode(), encode(value))
    assert not isinstance(result, Decoded)
    assert result.reason == "missing_field"


def test_optional_fields_have_their_documented_defaults() -> None:
    value = body("cargo_reported")
    del value["release_mode"], value["dispatch_team"]
    result = decode(TopicKind.EMANIFEST, CCN.encode(), encode(value))
    assert isinstance(result, Decoded)
    assert isinstance(result.event, CargoReported)
    assert (result.event.release_mode, result.event.dispatch_team) == ("rpp", None)
    minimal = {k: v for k, v in body("rns_status").items() if k not in {"transaction_number", "office"}}
    rns = decode(TopicKind.RNS, CCN.encode(), encode(minimal))
    assert isinstance(rns, Decoded) and isinstance(rns.event, RnsStatus)
    assert rns.event.office is None


def test_unknown_rns_indicators_are_kept() -> None:
    assert decoded("rns_status", processing_indicator=77).processing_indicator == 77


def test_models_are_frozen() -> None:
    event = decoded("carm_snapshot")
    assert isinstance(event, CarmSnapshot)
    with pytest.raises(ValidationError):
        event.legal_name = "other"  # type: ignore[misc]


def test_the_input_offset_may_be_any_valid_one() -> None:
    for offset in (timedelta(hours=14), timedelta(hours=-12), timedelta(hours=5, minutes=30)):
        local = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(offset))
        event = decoded("notice", occurred_at=local.isoformat())
        assert event.occurred_at == local
        assert event.occurred_at.utcoffset() == timedelta(0)
