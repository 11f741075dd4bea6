"""decode(): every input becomes an event or a dead-letter reason; it never raises."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator, core_schema

import schemas.decode as decode_module
from schemas.common import RFC3339_PATTERN, Timestamp, _to_utc
from schemas.deadletter import DeadLetter, encode_dead_letter, make_dead_letter
from schemas.decode import (
    MAX_DETAIL_CHARS,
    MAX_VALUE_BYTES,
    DeadLetterReason,
    Decoded,
    Rejected,
    TopicKind,
    decode,
    decode_parsed,
    topic_kinds,
    unknown_topic,
)
from tests.unit.test_schemas_models import BN, CCN, EVENT_TYPES, KIND_OF, body, encode, key_of

REASONS = set(DeadLetterReason)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reason(result: Decoded | Rejected) -> DeadLetterReason:
    assert isinstance(result, Rejected), result
    assert result.detail, "a rejection must say what is wrong"
    assert len(result.detail) <= MAX_DETAIL_CHARS
    return result.reason


def decode_body(value: dict[str, Any], kind: TopicKind | None = None) -> Decoded | Rejected:
    kind = kind or KIND_OF.get(str(value.get("event_type")), TopicKind.EMANIFEST)
    return decode(kind, key_of(value), encode(value))


def without(value: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != field}


# --- one case per reason -------------------------------------------------------------------


REASON_CASES: list[tuple[TopicKind, bytes | None, bytes | None, str]] = [
    (TopicKind.EMANIFEST, CCN.encode(), b'{"event_id": "\xff\xfe"}', "not_utf8"),
    (TopicKind.EMANIFEST, CCN.encode(), b"\x80abc", "not_utf8"),
    (TopicKind.EMANIFEST, CCN.encode(), b"", "not_json"),
    (TopicKind.EMANIFEST, CCN.encode(), b'{"event_type": "notice",', "not_json"),
    (TopicKind.EMANIFEST, CCN.encode(), b"ccn=ABC", "not_json"),
    (TopicKind.EMANIFEST, CCN.encode(), b"[" * 100_000, "not_json"),
    (TopicKind.EMANIFEST, CCN.encode(), b'[{"event_type": "notice"}]', "not_object"),
    (TopicKind.RNS, CCN.encode(), b'"rns_status"', "not_object"),
    (TopicKind.CARM, BN.encode(), b"42", "not_object"),
    (TopicKind.EMANIFEST, CCN.encode(), b"null ", "not_object"),  # JSON null as text is not a tombstone
    (TopicKind.EMANIFEST, CCN.encode(), encode(without(body("notice"), "event_type")), "missing_field"),
    (TopicKind.EMANIFEST, CCN.encode(), encode(without(body("notice"), "ccn")), "missing_field"),
    (TopicKind.CARM, BN.encode(), encode(without(body("carm_snapshot"), "security")), "missing_field"),
    (TopicKind.EMANIFEST, CCN.encode(), encode(body("notice", event_type=3)), "wrong_type"),
    (TopicKind.RNS, CCN.encode(), encode(body("rns_status", processing_indicator=4.0)), "wrong_type"),
    (TopicKind.EMANIFEST, CCN.encode(), encode(body("notice", notice="parked")), "invalid_value"),
    (TopicKind.EMANIFEST, CCN.encode(), encode(body("notice", ccn="NO SPACES")), "invalid_value"),
    (
        TopicKind.EMANIFEST,
        CCN.encode(),
        encode(body("notice", occurred_at="2026-11-23T10:00:00")),
        "naive_timestamp",
    ),
    (
        TopicKind.EMANIFEST,
        CCN.encode(),
        encode(body("eta_updated", eta="2026-11-23 10:00:00.5")),
        "naive_timestamp",
    ),
    (TopicKind.EMANIFEST, CCN.encode(), encode(body("notice", event_type="parked")), "unknown_event_type"),
    (TopicKind.EMANIFEST, CCN.encode(), encode(body("rns_status")), "unknown_event_type"),
    (TopicKind.RNS, CCN.encode(), encode(body("notice")), "unknown_event_type"),
    (TopicKind.CARM, CCN.encode(), encode(body("notice")), "unknown_event_type"),
    (
        TopicKind.EMANIFEST,
        CCN.encode(),
        encode(body("notice", schema_version=2)),
        "unsupported_schema_version",
    ),
    (TopicKind.RNS, CCN.encode(), encode(body("rns_status", schema_version=0)), "unsupported_schema_version"),
    (TopicKind.EMANIFEST, None, encode(body("notice")), "missing_key"),
    (TopicKind.EMANIFEST, b"", encode(body("notice")), "missing_key"),
    (TopicKind.CARM, None, None, "missing_key"),
    (TopicKind.EMANIFEST, b"\xff\xfe", encode(body("notice")), "invalid_key"),
    (TopicKind.CARM, b"not-a-bn", None, "invalid_key"),
    (TopicKind.EMANIFEST, b"8ABC0000000000", encode(body("notice")), "key_mismatch"),
    (TopicKind.CARM, b"987654321RM0001", encode(body("carm_snapshot")), "key_mismatch"),
    (TopicKind.EMANIFEST, CCN.encode(), None, "unexpected_tombstone"),
    (TopicKind.RNS, CCN.encode(), None, "unexpected_tombstone"),
    (TopicKind.EMANIFEST, CCN.encode(), b" " * (MAX_VALUE_BYTES + 1), "too_large"),
]


@pytest.mark.parametrize(("kind", "key", "value", "expected"), REASON_CASES)
def test_each_reason(kind: TopicKind, key: bytes | None, value: bytes | None, expected: str) -> None:
    assert reason(decode(kind, key, value)) == expected


def test_every_reason_is_covered_by_a_case_or_a_test() -> None:
    covered = {case[3] for case in REASON_CASES} | {"unknown_topic", "internal_error"}
    assert covered == {str(r) for r in DeadLetterReason}


def test_unknown_topic_is_a_reason_for_the_callers_that_route_by_topic() -> None:
    kinds = topic_kinds("em", "rns", "carm")
    assert kinds == {"em": TopicKind.EMANIFEST, "rns": TopicKind.RNS, "carm": TopicKind.CARM}
    assert "holdwatch.alerts" not in kinds
    rejected = unknown_topic("holdwatch.alerts")
    assert rejected.reason == "unknown_topic"
    assert "holdwatch.alerts" in rejected.detail


def test_topic_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        topic_kinds("events", "events", "carm")


def test_a_bug_inside_the_decoder_becomes_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_value: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setitem(decode_module._VALIDATE_JSON, TopicKind.RNS, explode)
    monkeypatch.setitem(decode_module._VALIDATE_PYTHON, TopicKind.RNS, explode)
    assert reason(decode(TopicKind.RNS, CCN.encode(), b"{}")) == "internal_error"
    assert reason(decode_parsed(TopicKind.RNS, CCN, {})) == "internal_error"


# --- keys ------------------------------------------------------------------------------------


def test_the_ccn_key_is_compared_upper_cased_and_the_result_carries_the_normalised_key() -> None:
    value = body("notice", ccn="8abc1234567890")
    for key in (b"8abc1234567890", b"8ABC1234567890", b"8AbC1234567890"):
        result = decode(TopicKind.EMANIFEST, key, encode(value))
        assert isinstance(result, Decoded)
        assert result.key == CCN
        assert result.kind is TopicKind.EMANIFEST


def test_unicode_case_folding_cannot_fake_a_matching_key() -> None:
    value = body("notice", ccn="ABCDSS12")
    assert reason(decode(TopicKind.EMANIFEST, "abcdß12".encode(), encode(value))) == "key_mismatch"


def test_the_carm_key_is_the_importer_bn() -> None:
    value = body("carm_snapshot", importer_bn="123456789rm0001")
    result = decode(TopicKind.CARM, b"123456789rm0001", encode(value))
    assert isinstance(result, Decoded)
    assert result.key == BN


def test_a_carm_tombstone_deletes_the_importer_named_by_the_key() -> None:
    for key in (BN.encode(), b"123456789rm0001"):
        assert decode(TopicKind.CARM, key, None) == Decoded(TopicKind.CARM, BN, None)
    assert decode_parsed(TopicKind.CARM, BN, None) == Decoded(TopicKind.CARM, BN, None)


def test_a_key_mismatch_names_both_sides() -> None:
    result = decode(TopicKind.EMANIFEST, b"OTHER12345", encode(body("notice")))
    assert reason(result) == "key_mismatch"
    assert isinstance(result, Rejected)
    assert "OTHER12345" in result.detail and CCN in result.detail


# --- details ---------------------------------------------------------------------------------


def test_details_name_the_field_and_stay_short_for_huge_values() -> None:
    huge = "x" * 900_000
    result = decode(TopicKind.CARM, BN.encode(), encode(body("carm_snapshot", legal_name=huge)))
    assert reason(result) == "invalid_value"
    assert isinstance(result, Rejected)
    assert "legal_name" in result.detail
    assert len(result.detail) <= MAX_DETAIL_CHARS


def test_details_count_further_errors() -> None:
    value = without(without(body("cargo_reported"), "eta"), "load_ref")
    result = decode(TopicKind.EMANIFEST, CCN.encode(), encode(value))
    assert reason(result) == "missing_field"
    assert isinstance(result, Rejected)
    assert "+1 more" in result.detail


# --- fuzzing ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
kinds = st.sampled_from(list(TopicKind))
keys = st.none() | st.binary(max_size=30) | st.sampled_from([CCN.encode(), BN.encode(), CCN.lower().encode()])
FIELDS = sorted({field for event_type in EVENT_TYPES for field in body(event_type)})


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[TopicKind, dict[str, Any]]:
    """A valid event with a few fields replaced, removed or added: near-misses of the contract."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    value = body(event_type)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "delete", "add", "naive", "case"]))
        field = draw(st.sampled_from(sorted(value)))
        if action == "replace":
            value[field] = draw(json_values)
        elif action == "delete":
            del value[field]
        elif action == "add":
            value[draw(st.sampled_from(FIELDS) | st.text(max_size=8))] = draw(json_values)
        elif action == "naive":
            value[draw(st.sampled_from(["occurred_at", "eta", "last_portal_login_at"]))] = draw(
                st.datetimes().map(lambda d: d.isoformat())
            )
        elif isinstance(value[field], str):
            value[field] = value[field].lower()
    kind = draw(st.sampled_from([KIND_OF[event_type], *list(TopicKind)]))
    return kind, value


def _check(result: Decoded | Rejected) -> None:
    if isinstance(result, Decoded):
        assert result.event is not None
        assert result.key in (getattr(result.event, "ccn", None), getattr(result.event, "importer_bn", None))
    else:
        assert isinstance(result, Rejected)
        assert result.reason in REASONS
        assert result.reason != "internal_error", result.detail
        assert 0 < len(result.detail) <= MAX_DETAIL_CHARS


@FUZZ
@given(kinds, keys, st.binary(max_size=300))
def test_random_bytes_never_raise(kind: TopicKind, key: bytes | None, value: bytes) -> None:
    _check(decode(kind, key, value))


@FUZZ
@given(st.sampled_from(EVENT_TYPES), st.data())
def test_truncated_json_is_not_json(event_type: str, data: st.DataObject) -> None:
    raw = encode(body(event_type))
    cut = data.draw(st.integers(0, len(raw) - 1))
    result = decode(KIND_OF[event_type], key_of(body(event_type)), raw[:cut])
    assert reason(result) in {"not_json", "not_utf8"}  # a cut may split a multi-byte character


@FUZZ
@given(mutated_events(), keys)
def test_near_miss_events_never_raise_and_are_classified(
    event: tuple[TopicKind, Any], key: bytes | None
) -> None:
    kind, value = event
    _check(decode(kind, key, encode(value)))


@FUZZ
@given(
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(["occurred_at", "eta", "last_portal_login_at"]),
    st.datetimes(),
)
def test_naive_timestamps_are_rejected_as_naive(event_type: str, field: str, naive: Any) -> None:
    value = body(event_type)
    assume(field in value)  # a discarded example, not a silent pass
    assert reason(decode_body(value | {field: naive.isoformat()})) == "naive_timestamp"


@FUZZ
@given(
    st.sampled_from(EVENT_TYPES), st.text(alphabet=string.ascii_letters + string.digits + "-", max_size=30)
)
def test_keys_other_than_the_body_key_are_mismatches(event_type: str, key: str) -> None:
    value = body(event_type)
    result = decode(KIND_OF[event_type], key.encode(), encode(value))
    if not key:
        assert reason(result) == "missing_key"
    elif key.upper() == key_of(value).decode():
        assert isinstance(result, Decoded)
    else:
        assert reason(result) == "key_mismatch"


@FUZZ
@given(st.sampled_from(EVENT_TYPES), st.sampled_from(FIELDS), st.integers(300, 50_000))
def test_huge_strings_are_rejected_or_ignored_never_echoed(event_type: str, field: str, size: int) -> None:
    key = key_of(body(event_type))
    result = decode(KIND_OF[event_type], key, encode(body(event_type) | {field: "Z" * size}))
    _check(result)
    if isinstance(result, Rejected):
        assert "Z" * 100 not in result.detail


@FUZZ
@given(kinds, st.integers(1, 5_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_never_raises(kind: TopicKind, depth: int, opener: str) -> None:
    nested = (opener * depth).encode()
    _check(decode(kind, CCN.encode(), nested))
    inside = b'{"extra":' + nested + b"1" + (b"]" if opener == "[" else b"}") * depth + b"}"
    _check(decode(kind, CCN.encode(), inside))


# --- timestamps: the fast parser agrees with pydantic-core's --------------------------------

# The timestamp validation before the stdlib fast path (issue 15): the oracle it must match.
PYDANTIC_TIMESTAMP = SchemaValidator(
    core_schema.chain_schema(
        [
            core_schema.str_schema(strict=True, pattern=RFC3339_PATTERN),
            core_schema.datetime_schema(strict=False, tz_constraint="aware"),
            core_schema.no_info_plain_validator_function(_to_utc),
        ]
    )
)
TIMESTAMP = TypeAdapter(Timestamp)


def _two(draw: st.DrawFn, top: int) -> str:
    return f"{draw(st.integers(0, top)):02d}"


@st.composite
def rfc3339_like(draw: st.DrawFn) -> str:
    """Text of the timestamp pattern's shape with digits in and out of range (day 31 in
    February, hour 24, second 60, offset +24:00 or +05:60, year 0000 ...)."""
    years = st.sampled_from([0, 1, 1969, 1970, 2000, 2024, 2026, 2100, 9999]) | st.integers(0, 9999)
    year = f"{draw(years):04d}"
    date = f"{year}-{_two(draw, 13)}-{_two(draw, 32)}"
    time = f"{_two(draw, 25)}:{_two(draw, 61)}:{_two(draw, 61)}"
    fraction = draw(st.none() | st.text("0123456789", min_size=1, max_size=9))
    offset = draw(
        st.sampled_from(["", "Z", "z", "+00:00", "-00:00"])
        | st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61))
    )
    separator = draw(st.sampled_from("Tt "))
    return f"{date}{separator}{time}{'' if fraction is None else '.' + fraction}{offset}"


def _outcome(validate: Any, value: Any) -> tuple[str, Any]:
    try:
        result = validate(value)
    except ValidationError as exc:
        return "error", exc.errors(include_url=False)
    assert result.tzinfo is UTC  # always the stdlib UTC object: the engine relies on it
    return "ok", result


@settings(FUZZ, max_examples=2000)
@given(rfc3339_like())
def test_timestamps_are_parsed_and_rejected_exactly_as_pydantic_core_does(text: str) -> None:
    expected = _outcome(PYDANTIC_TIMESTAMP.validate_python, text)
    assert _outcome(TIMESTAMP.validate_python, text) == expected
    assert _outcome(TIMESTAMP.validate_json, json.dumps(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00.123456789Z",
        "2026-11-23 05:00:00.5-05:00",
        "2024-02-29T23:59:59+23:59",
        "0001-01-01T00:00:00+00:01",  # before year 1 in UTC: out of range
        "9999-12-31T23:59:59-00:01",
        "2026-02-29T10:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:00:60Z",
        "2026-11-23T10:00:00+05:60",
        "2026-11-23T10:00:00+24:00",
        "2026-11-23T10:00:00z",
        "2026-11-23T10:00:00",
    ],
)
def test_timestamp_edge_cases_match_pydantic_core(text: str) -> None:
    expected = _outcome(PYDANTIC_TIMESTAMP.validate_python, text)
    assert _outcome(TIMESTAMP.validate_python, text) == expected
    assert _outcome(TIMESTAMP.validate_json, json.dumps(text)) == expected


# --- the two paths agree ---------------------------------------------------------------------


def _same(raw: Decoded | Rejected, parsed: Decoded | Rejected) -> None:
    assert type(raw) is type(parsed)
    if isinstance(raw, Decoded):
        assert raw == parsed
    else:
        assert isinstance(parsed, Rejected)
        assert raw.reason == parsed.reason, (raw.detail, parsed.detail)


@FUZZ
@given(
    mutated_events(), st.none() | st.sampled_from([CCN, BN, CCN.lower(), "OTHER12345"]) | st.text(max_size=12)
)
def test_bytes_and_parsed_values_are_classified_alike(event: tuple[TopicKind, Any], key: str | None) -> None:
    kind, value = event
    raw_key = None if key is None else key.encode()
    _same(decode(kind, raw_key, encode(value)), decode_parsed(kind, key, json.loads(encode(value))))


@FUZZ
@given(kinds, json_values)
def test_arbitrary_json_is_classified_alike_on_both_paths(kind: TopicKind, value: Any) -> None:
    # A top-level null differs by design: in an event log it stands for Kafka's null value (a
    # tombstone), while the 4 bytes `null` in a Kafka value are a JSON value that is no object.
    assume(value is not None)
    raw = encode(value)
    _same(decode(kind, CCN.encode(), raw), decode_parsed(kind, CCN, json.loads(raw)))


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_valid_events_decode_identically_on_both_paths(event_type: str) -> None:
    value = body(event_type)
    key = key_of(value)
    raw = decode(KIND_OF[event_type], key, encode(value))
    assert isinstance(raw, Decoded)
    _same(raw, decode_parsed(KIND_OF[event_type], key.decode(), json.loads(encode(value))))


# --- dead letters ----------------------------------------------------------------------------


def test_a_dead_letter_keeps_the_original_bytes_and_where_they_came_from() -> None:
    key, value = b"\xff\x00key", b'{"event_type": "\xfe'
    rejected = decode(TopicKind.EMANIFEST, key, value)
    assert isinstance(rejected, Rejected)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=timezone(timedelta(hours=-5)))
    letter = make_dead_letter(
        rejected,
        topic="emanifest.events",
        partition=3,
        offset=1234,
        key=key,
        value=value,
        timestamp_ms=1763900000000,
        now=now,
    )
    wire = json.loads(encode_dead_letter(letter))
    assert wire["reason"] == "not_utf8"
    assert wire["detail"] == rejected.detail
    assert (wire["source_topic"], wire["source_partition"], wire["source_offset"]) == (
        "emanifest.events",
        3,
        1234,
    )
    assert base64.b64decode(wire["key_b64"]) == key
    assert base64.b64decode(wire["value_b64"]) == value
    assert wire["source_timestamp_ms"] == 1763900000000
    assert wire["dead_lettered_at"] == "2026-11-23T14:00:00Z"
    assert DeadLetter.model_validate_json(encode_dead_letter(letter)) == letter


def test_a_dead_letter_for_a_tombstone_without_key_has_null_bytes() -> None:
    rejected = decode(TopicKind.CARM, None, None)
    assert isinstance(rejected, Rejected)
    letter = make_dead_letter(
        rejected,
        topic="carm.readiness",
        partition=None,
        offset=None,
        key=None,
        value=None,
        timestamp_ms=None,
        now=datetime(2026, 11, 23, tzinfo=UTC),
    )
    wire = json.loads(encode_dead_letter(letter))
    assert (wire["reason"], wire["key_b64"], wire["value_b64"]) == ("missing_key", None, None)


def test_a_dead_letter_needs_an_aware_clock() -> None:
    with pytest.raises(ValidationError):
        make_dead_letter(
            Rejected(DeadLetterReason.NOT_JSON, "x"),
            topic="t",
            partition=0,
            offset=0,
            key=None,
            value=b"x",
            timestamp_ms=None,
            now=datetime(2026, 11, 23),  # noqa: DTZ001 - the naive case under test
        )
