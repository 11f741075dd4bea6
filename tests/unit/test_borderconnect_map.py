"""The BorderConnect mapping table row by row, and the connector's shell where no broker is needed:
access denied stops with exit 2 after one handshake, reconnects back off with jitter, metrics exist
at 0, the API key never reaches a log."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from schemas.deadletter import DeadLetter
from schemas.decode import DeadLetterReason, Decoded, TopicKind, decode
from schemas.emanifest import CargoAccepted, CargoRejected, Notice
from schemas.rns import RnsStatus
from streams.feeds import borderconnect as shell
from streams.feeds.borderconnect import (
    MESSAGE_OUTCOMES,
    AccessDenied,
    Backoff,
    Clocks,
    ConnectorMetrics,
    KafkaRecord,
    backoff_delay,
    run_borderconnect,
    settings_problems,
)
from streams.feeds.borderconnect_map import (
    ANY,
    MESSAGE_TYPES,
    TABLE,
    ApiStatus,
    Context,
    Ignored,
    Mapped,
    Publish,
    ToNotice,
    Unusable,
    map_message,
    message_type_label,
    parse_time,
)
from streams.settings import Settings
from tests.fixtures.borderconnect import (
    Action,
    BorderConnectStandIn,
    Close,
    Drop,
    Send,
    StandInThread,
    aci_notice,
    aci_response,
    api_response,
    rns_shipment,
    system_alert,
)

TORONTO = ZoneInfo("America/Toronto")
CTX = Context(TORONTO)
CCN = "ABCD1234567"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"


def published(mapped: Mapped) -> Publish:
    assert isinstance(mapped, Publish), mapped
    return mapped


def unusable(mapped: Mapped) -> Unusable:
    assert isinstance(mapped, Unusable), mapped
    return mapped


def only_event(mapped: Mapped) -> Any:
    (record,) = published(mapped).records
    assert record.key == record.event.ccn
    return record.event


# --- rows ---------------------------------------------------------------------------------------------


def test_aci_response_accept_becomes_cargo_accepted_on_the_emanifest_topic() -> None:
    result = published(map_message(aci_response("ACCEPT", "abcd1234567", "2026-11-03 14:05:00"), CTX))
    (record,) = result.records
    assert record.topic is TopicKind.EMANIFEST and record.key == CCN
    assert isinstance(record.event, CargoAccepted)
    assert record.event.occurred_at == datetime(2026, 11, 3, 19, 5, tzinfo=UTC)


def test_aci_response_reject_carries_every_error_text() -> None:
    text = aci_response(
        "REJECT",
        CCN,
        "2026-11-03 14:05:00",
        errors=[("156", "consignee", "Consignee address missing"), ("201", "", "Shipment Not On File")],
    )
    event = only_event(map_message(text, CTX))
    assert isinstance(event, CargoRejected)
    assert event.reason == "156 consignee: Consignee address missing; 201: Shipment Not On File"


def test_a_reject_without_error_texts_still_says_it_was_rejected() -> None:
    event = only_event(map_message(aci_response("REJECT", CCN, "2026-11-03 14:05:00"), CTX))
    assert isinstance(event, CargoRejected) and "rejected" in event.reason


def test_trip_level_responses_accept_is_ignored_reject_is_dead_lettered() -> None:
    accepted = map_message(aci_response("ACCEPT", None, "2026-11-03 14:05:00"), CTX)
    assert isinstance(accepted, Ignored) and "trip level" in accepted.why
    rejected = unusable(map_message(aci_response("REJECT", None, "2026-11-03 14:05:00"), CTX))
    assert rejected.reason is DeadLetterReason.MISSING_KEY
    assert "ABCD20261103" in rejected.detail  # the trip, so someone can find it


NOTICE_KINDS = {
    spec_type: row.becomes.notice
    for spec_type, row in TABLE["ACI_NOTICE"].rows.items()
    if isinstance(row.becomes, ToNotice)
}


@pytest.mark.parametrize(("notice_type", "kind"), sorted(NOTICE_KINDS.items()))
def test_every_notice_row_becomes_its_notice(notice_type: str, kind: str) -> None:
    event = only_event(map_message(aci_notice(notice_type, CCN, "2026-11-03 14:05:00"), CTX))
    assert isinstance(event, Notice) and event.notice == kind


def test_the_rows_of_the_notes_are_there_with_their_confidence() -> None:
    """../shared/notes/borderconnect.md: these notice types are [3p]; the others are guesses."""
    rows = TABLE["ACI_NOTICE"].rows
    assert {name: rows[name].confidence for name in ("MATCHED", "NOT_MATCHED", "ARRIVAL_REPORTED")} == {
        "MATCHED": "3p",
        "NOT_MATCHED": "3p",
        "ARRIVAL_REPORTED": "3p",
    }
    assert NOTICE_KINDS["MATCHED"] == "matched" and NOTICE_KINDS["NOT_MATCHED"] == "not_matched"
    assert NOTICE_KINDS["ARRIVAL_REPORTED"] in ("reported", "arrived")  # ARRIVAL_NOTICES in rules.py
    assert rows["DOCUMENT_NOT_ON_FILE"].confidence == "guess"
    assert TABLE["ACI_RESPONSE"].rows["ACCEPT"].confidence == "ex"
    assert isinstance(
        map_message(aci_notice("INSUFFICIENT_REVIEW_TIME_WARNING", CCN, "2026-11-03 14:05:00"), CTX), Ignored
    )


def test_an_arrival_notice_is_one_event_per_referenced_ccn() -> None:
    text = aci_notice(
        "ARRIVAL_REPORTED",
        None,
        "2026-11-03 14:05:00",
        references=["abcd0000001", "ABCD0000002", "ABCD0000001"],
    )
    result = published(map_message(text, CTX))
    assert [record.key for record in result.records] == ["ABCD0000001", "ABCD0000002"]
    assert len({record.event.event_id for record in result.records}) == 2


def test_rns_shipment_becomes_rns_status_with_indicator_transaction_and_office() -> None:
    text = rns_shipment(
        "abcd1234567", "4", "2026-11-03 15:30:00", transaction="1234 5678 901234", office="453"
    )
    result = published(map_message(text, CTX))
    (record,) = result.records
    assert record.topic is TopicKind.RNS and record.key == CCN
    event = record.event
    assert isinstance(event, RnsStatus)
    assert (event.processing_indicator, event.transaction_number, event.office, event.description) == (
        4,
        "12345678901234",
        "0453",
        "Released",
    )
    assert event.occurred_at == datetime(2026, 11, 3, 20, 30, tzinfo=UTC)


def test_any_release_code_is_passed_on_the_rules_decide_what_it_means() -> None:
    event = only_event(
        map_message(rns_shipment(CCN, 77, "2026-11-03 15:30:00", transaction=None, office=None), CTX)
    )
    assert isinstance(event, RnsStatus) and event.processing_indicator == 77
    assert event.transaction_number is None and event.office is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (rns_shipment(CCN, "four", "2026-11-03 15:30:00"), "releaseCode.number"),
        (rns_shipment(CCN, "4", "2026-11-03 15:30:00", transaction="1234"), "transactionNumber"),
        (rns_shipment(CCN, "4", "2026-11-03 15:30:00", office="04531"), "releaseOffice.number"),
    ],
)
def test_rns_fields_that_are_not_what_the_row_expects_are_dead_lettered(text: str, field: str) -> None:
    result = unusable(map_message(text, CTX))
    assert result.reason is DeadLetterReason.INVALID_VALUE and field in result.detail


def test_service_messages_and_the_us_side_are_ignored() -> None:
    assert isinstance(map_message(system_alert("maintenance at 02:00"), CTX), Ignored)
    assert isinstance(map_message(json.dumps({"data": "ACE_RESPONSE", "type": "ACCEPT"}), CTX), Ignored)


def test_api_response_statuses() -> None:
    assert map_message(api_response("OK"), CTX) == ApiStatus("OK", "accepted", "")
    denied = map_message(api_response("ACCESS_DENIED_ERROR", "bad key"), CTX)
    assert denied == ApiStatus("ACCESS_DENIED_ERROR", "denied", "bad key")
    assert isinstance(map_message(api_response("ERROR", "x"), CTX), ApiStatus)


# --- times and ids ------------------------------------------------------------------------------------


def test_times_without_a_zone_are_read_in_the_configured_zone() -> None:
    assert parse_time("2026-11-03 14:05:00", TORONTO) == datetime(2026, 11, 3, 19, 5, tzinfo=UTC)  # EST
    assert parse_time("2026-07-03 14:05:00", TORONTO) == datetime(2026, 7, 3, 18, 5, tzinfo=UTC)  # EDT
    assert parse_time("2026-07-03 14:05:00", ZoneInfo("America/Vancouver")) == datetime(
        2026, 7, 3, 21, 5, tzinfo=UTC
    )
    assert parse_time("2026-07-03T14:05:00Z", TORONTO) == datetime(2026, 7, 3, 14, 5, tzinfo=UTC)
    event = only_event(
        map_message(aci_notice("MATCHED", CCN, "2026-07-03 14:05:00"), Context(ZoneInfo("UTC")))
    )
    assert event.occurred_at == datetime(2026, 7, 3, 14, 5, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("cbsa_time", "reason"),
    [("03/11/2026 14:05", DeadLetterReason.INVALID_VALUE), ("", DeadLetterReason.INVALID_VALUE)],
)
def test_unreadable_times_are_dead_lettered(cbsa_time: str, reason: DeadLetterReason) -> None:
    assert unusable(map_message(aci_notice("MATCHED", CCN, cbsa_time), CTX)).reason is reason


def test_a_message_without_a_time_is_dead_lettered() -> None:
    text = json.dumps({"data": "ACI_NOTICE", "type": "MATCHED", "cargoControlNumber": CCN})
    assert unusable(map_message(text, CTX)).reason is DeadLetterReason.MISSING_FIELD


def test_event_ids_come_from_the_content_so_a_resent_message_is_a_duplicate() -> None:
    first = only_event(map_message(aci_response("ACCEPT", CCN, "2026-11-03 14:05:00", send_id="001"), CTX))
    again = only_event(map_message(aci_response("ACCEPT", CCN, "2026-11-03 14:05:00", send_id="002"), CTX))
    assert first.event_id == again.event_id and first.event_id.startswith("bc-")
    later = only_event(map_message(aci_response("ACCEPT", CCN, "2026-11-03 14:06:00"), CTX))
    other = only_event(map_message(aci_response("ACCEPT", "ABCD7654321", "2026-11-03 14:05:00"), CTX))
    assert len({first.event_id, later.event_id, other.event_id}) == 3
    released = only_event(map_message(rns_shipment(CCN, "4", "2026-11-03 15:30:00"), CTX))
    held = only_event(map_message(rns_shipment(CCN, "5", "2026-11-03 15:30:00"), CTX))
    assert released.event_id != held.event_id
    # the same instant in another configured zone is the same message: the id is from the text as sent
    assert (
        only_event(
            map_message(aci_response("ACCEPT", CCN, "2026-11-03 14:05:00"), Context(ZoneInfo("UTC")))
        ).event_id
        == first.event_id
    )


SAMPLES = [
    aci_response("ACCEPT", CCN, "2026-11-03 14:05:00"),
    aci_response("REJECT", CCN, "2026-11-03 14:05:00", errors=[("1", "f", "t")]),
    aci_notice("NOT_MATCHED", CCN, "2026-11-03 14:05:00"),
    aci_notice("ARRIVAL_REPORTED", None, "2026-11-03 14:05:00", references=[CCN, "ABCD0000002"]),
    rns_shipment(CCN, "5", "2026-11-03 15:30:00"),
]


@pytest.mark.parametrize("text", SAMPLES)
def test_every_event_is_one_the_worker_decodes_with_its_key(text: str) -> None:
    for record in published(map_message(text, CTX)).records:
        decoded = decode(record.topic, record.key.encode(), record.event.model_dump_json().encode())
        assert isinstance(decoded, Decoded), decoded
        assert decoded.event == record.event


# --- what the mapping does not understand -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json at all", DeadLetterReason.NOT_JSON),
        ('{"data": "ACI_NOTICE", ', DeadLetterReason.NOT_JSON),
        ("[1, 2]", DeadLetterReason.NOT_OBJECT),
        ('{"type": "MATCHED"}', DeadLetterReason.MISSING_FIELD),
        ('{"data": 7}', DeadLetterReason.WRONG_TYPE),
        ('{"data": "ACI_MANIFEST_STATUS"}', DeadLetterReason.UNKNOWN_EVENT_TYPE),
        (aci_notice("PARKED_IN_YARD", CCN, "2026-11-03 14:05:00"), DeadLetterReason.UNKNOWN_EVENT_TYPE),
        (aci_response("MAYBE", CCN, "2026-11-03 14:05:00"), DeadLetterReason.UNKNOWN_EVENT_TYPE),
        (json.dumps({"data": "ACI_NOTICE", "cargoControlNumber": CCN}), DeadLetterReason.MISSING_FIELD),
        (aci_notice("MATCHED", None, "2026-11-03 14:05:00"), DeadLetterReason.MISSING_KEY),
        (aci_notice("MATCHED", "AB!", "2026-11-03 14:05:00"), DeadLetterReason.INVALID_VALUE),
        (
            json.dumps(
                {
                    "data": "ACI_NOTICE",
                    "type": "MATCHED",
                    "cargoControlNumber": 12345,
                    "cbsaDateTime": "2026-11-03 14:05:00",
                }
            ),
            DeadLetterReason.WRONG_TYPE,
        ),
        ("x" * 1_048_577, DeadLetterReason.TOO_LARGE),
    ],
)
def test_what_the_mapping_does_not_understand_gets_a_reason(text: str, reason: DeadLetterReason) -> None:
    result = unusable(map_message(text, CTX))
    assert result.reason is reason
    assert 0 < len(result.detail) <= 300


def test_an_unknown_type_names_itself_and_counts_as_other() -> None:
    result = unusable(map_message('{"data": "ACI_MANIFEST_STATUS"}', CTX))
    assert "ACI_MANIFEST_STATUS" in result.detail and result.data == "ACI_MANIFEST_STATUS"
    assert message_type_label(result.data) == "other"


def test_service_provider_mode_takes_only_the_configured_company_keys() -> None:
    context = Context(TORONTO, {"c-9000-2bcd8ae5954e0c48": "ABCD"})
    ours = published(
        map_message(
            aci_notice("MATCHED", CCN, "2026-11-03 14:05:00", company_key="c-9000-2bcd8ae5954e0c48"), context
        )
    )
    assert ours.company == "ABCD"
    stranger = unusable(
        map_message(aci_notice("MATCHED", CCN, "2026-11-03 14:05:00", company_key="c-1-x"), context)
    )
    assert stranger.reason is DeadLetterReason.INVALID_VALUE and "c-1-x" in stranger.detail
    missing = unusable(map_message(aci_notice("MATCHED", CCN, "2026-11-03 14:05:00"), context))
    assert missing.reason is DeadLetterReason.MISSING_FIELD
    # a direct connection (no map) takes messages with or without a company key
    assert (
        published(
            map_message(aci_notice("MATCHED", CCN, "2026-11-03 14:05:00", company_key="c-1-x"), CTX)
        ).company
        is None
    )
    assert isinstance(map_message(system_alert("hello"), context), Ignored)  # no cargo: no company needed


# --- the docs list every row with its confidence ----------------------------------------------------


def table_rows() -> list[tuple[str, str, str]]:
    return [
        (data, selector, row.confidence)
        for data, spec in TABLE.items()
        for selector, row in spec.rows.items()
    ]


def test_docs_list_every_row_with_its_confidence() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## BorderConnect") :]
    for data, selector, confidence in table_rows():
        value = "any" if selector == ANY else f"`{selector}`"
        pattern = rf"^\| `{data}` \| {re.escape(value)} \|.*\| \[{re.escape(confidence)}\] \|"
        assert re.search(pattern, section, flags=re.MULTILINE), f"docs/connectors.md lacks {data} {selector}"


# --- the shell without a broker ----------------------------------------------------------------------


class MemorySink:
    def __init__(self) -> None:
        self.records: list[KafkaRecord] = []
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        self.records.extend(records)

    async def stop(self) -> None:
        self.started = False


def bc_settings(server: BorderConnectStandIn, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "borderconnect_url": server.url,
        "borderconnect_api_key": server.api_key,
        "kafka_bootstrap": "127.0.0.1:1",
        "metrics_port": 0,
    }
    return Settings(**{**values, **overrides})


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def sample(metrics: ConnectorMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def test_access_denied_raises_after_one_handshake_without_reconnecting() -> None:
    async with BorderConnectStandIn(api_key="the-right-key") as server:
        metrics = ConnectorMetrics(CollectorRegistry())
        with pytest.raises(AccessDenied, match="invalid API key"):
            await asyncio.wait_for(
                run_borderconnect(
                    bc_settings(server, borderconnect_api_key="a-wrong-key"),
                    stop=asyncio.Event(),
                    sink=MemorySink(),
                    metrics=metrics,
                    backoff=Backoff(base_s=0.001),
                ),
                timeout=10,
            )
        assert server.connections == 1 and server.handshakes == [{"apiKey": "a-wrong-key"}]
        assert sample(metrics, "holdwatch_borderconnect_connection_attempts_total", outcome="denied") == 1
        assert sample(metrics, "holdwatch_borderconnect_connected") == 0


def test_the_command_exits_2_on_access_denied_says_why_and_never_shows_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from streams.cli.connect import run

    monkeypatch.setattr(shell, "KafkaSink", lambda settings: MemorySink())
    caplog.set_level(logging.DEBUG)

    with StandInThread(api_key="the-right-key") as server:
        settings = bc_settings(server, borderconnect_api_key="s3cr3t-wrong-key")
        assert run(argparse.Namespace(loglevel="debug"), settings) == 2
        assert server.connections == 1
    err = capsys.readouterr().err
    assert "denied access" in err and "HOLDWATCH_BORDERCONNECT_API_KEY" in err and "Not retrying" in err
    assert "s3cr3t-wrong-key" not in err + caplog.text


def test_the_command_exits_2_when_a_setting_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.connect import run

    assert run(argparse.Namespace(loglevel="info"), Settings(borderconnect_url="")) == 2
    err = capsys.readouterr().err
    assert "HOLDWATCH_BORDERCONNECT_URL" in err and "HOLDWATCH_BORDERCONNECT_API_KEY" in err


def test_settings_problems() -> None:
    good = Settings(borderconnect_url="wss://bc.example/api/sockets/acme", borderconnect_api_key="k")
    assert settings_problems(good) == []
    assert settings_problems(good.model_copy(update={"feed_local_tz": "Mars/Olympus"}))
    assert settings_problems(good.model_copy(update={"borderconnect_url": "https://bc.example"}))
    assert settings_problems(good.model_copy(update={"borderconnect_company_keys": {"c-1": "TOOLONG"}}))


def test_backoff_grows_exponentially_is_capped_and_jittered_into_its_upper_half() -> None:
    assert [backoff_delay(n, base_s=1, cap_s=60, draw=1.0 - 1e-12) for n in range(8)] == pytest.approx(
        [1, 2, 4, 8, 16, 32, 60, 60]
    )
    assert [backoff_delay(n, base_s=1, cap_s=60, draw=0.0) for n in range(3)] == [0.5, 1.0, 2.0]
    assert backoff_delay(10_000, base_s=1, cap_s=60, draw=0.5) == 45.0
    draws = iter([0.0, 0.5, 1.0 - 1e-12])
    backoff = Backoff(base_s=2, cap_s=100, draw=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([1.0, 3.0, 8.0])
    backoff.reset()
    assert backoff.attempt == 0


class RecordingSleep:
    """An injected sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> Awaitable[None]:
        self.delays.append(seconds)
        return asyncio.sleep(0)


async def test_dropped_connections_are_retried_with_the_jittered_backoff() -> None:
    notice = Send(aci_notice("MATCHED", CCN, "2026-11-03 14:05:00"))
    scripts: list[list[Action]] = [[Drop()], [Close()], [notice]]
    async with BorderConnectStandIn(scripts) as server:
        sleep = RecordingSleep()
        sink = MemorySink()
        stop = asyncio.Event()
        draws = iter([0.0, 1.0 - 1e-12] + [0.5] * 100)
        task = asyncio.create_task(
            run_borderconnect(
                bc_settings(server),
                stop=stop,
                sink=sink,
                backoff=Backoff(base_s=1.0, cap_s=30.0, draw=lambda: next(draws)),
                clocks=Clocks(sleep=sleep),
            )
        )
        await wait_for(lambda: len(sink.records) == 1)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert server.connections == 3
    assert sleep.delays == pytest.approx([0.5, 2.0])  # attempt 0 drawn low, attempt 1 drawn high


async def test_a_connection_that_stayed_up_resets_the_backoff() -> None:
    clock = [0.0]
    async with BorderConnectStandIn([[Close()], [Close()], []]) as server:
        sleep = RecordingSleep()

        def monotonic() -> float:
            clock[0] += 50.0  # every connection seems to last 50 s
            return clock[0]

        stop = asyncio.Event()
        task = asyncio.create_task(
            run_borderconnect(
                bc_settings(server),
                stop=stop,
                sink=MemorySink(),
                backoff=Backoff(base_s=1.0, draw=lambda: 0.0),
                clocks=Clocks(sleep=sleep, monotonic=monotonic),
                stable_after_s=40.0,
            )
        )
        await wait_for(lambda: server.connections == 3)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sleep.delays == [0.5, 0.5]  # reset after each connection that lasted 50 s >= 40 s


async def test_metrics_exist_at_zero_from_the_start_and_follow_the_connection() -> None:
    now = [1000.0]
    metrics = ConnectorMetrics(CollectorRegistry(), disconnected_alert_s=900, now=lambda: now[0])
    for kind in MESSAGE_TYPES:
        for outcome in MESSAGE_OUTCOMES:
            assert sample(metrics, "holdwatch_borderconnect_messages_total", type=kind, outcome=outcome) == 0
    assert sample(metrics, "holdwatch_borderconnect_connected") == 0
    assert sample(metrics, "holdwatch_borderconnect_disconnected_since_timestamp_seconds") == 1000
    assert sample(metrics, "holdwatch_borderconnect_disconnected_alert_threshold_seconds") == 900
    assert sample(metrics, "holdwatch_borderconnect_last_message_timestamp_seconds") == 0
    now[0] = 1100.0
    metrics.down()  # a failed first attempt: still disconnected since the start
    assert sample(metrics, "holdwatch_borderconnect_disconnected_since_timestamp_seconds") == 1000
    metrics.up()
    assert sample(metrics, "holdwatch_borderconnect_connected") == 1
    now[0] = 1200.0
    metrics.down()
    assert sample(metrics, "holdwatch_borderconnect_disconnected_since_timestamp_seconds") == 1200


async def test_frames_are_counted_by_type_and_outcome_and_the_key_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    notice = aci_notice("MATCHED", CCN, "2026-11-03 14:05:00")
    scripts = [
        [Send(notice), Send(notice), Send("{oops"), Send(system_alert("hi")), Send('{"data": "NEW_THING"}')]
    ]
    async with BorderConnectStandIn(scripts) as server:
        metrics = ConnectorMetrics(CollectorRegistry())
        sink = MemorySink()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_borderconnect(bc_settings(server), stop=stop, sink=sink, metrics=metrics)
        )
        count = metrics.registry.get_sample_value
        await wait_for(
            lambda: (
                (
                    count(
                        "holdwatch_borderconnect_messages_total",
                        {"type": "other", "outcome": "dead_lettered"},
                    )
                    or 0
                )
                == 2
            )
        )
        assert sample(metrics, "holdwatch_borderconnect_connected") == 1
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (
        sample(metrics, "holdwatch_borderconnect_messages_total", type="ACI_NOTICE", outcome="published") == 1
    )
    assert (
        sample(metrics, "holdwatch_borderconnect_messages_total", type="ACI_NOTICE", outcome="duplicate") == 1
    )
    assert (
        sample(metrics, "holdwatch_borderconnect_messages_total", type="SYSTEM_ALERT", outcome="ignored") == 1
    )
    assert (
        sample(metrics, "holdwatch_borderconnect_messages_total", type="API_RESPONSE", outcome="ignored") == 1
    )
    assert sample(metrics, "holdwatch_borderconnect_last_message_timestamp_seconds") > 0
    assert [topic for topic, _, _ in sink.records] == [
        "emanifest.events",
        "holdwatch.deadletter",
        "holdwatch.deadletter",
    ]
    assert server.api_key not in caplog.text


async def test_a_server_that_sends_data_without_answering_the_handshake_is_taken_as_accepting() -> None:
    scripts = [[Send(aci_notice("MATCHED", CCN, "2026-11-03 14:05:00"))]]
    async with BorderConnectStandIn(scripts, answer_handshake=False) as server:
        metrics = ConnectorMetrics(CollectorRegistry())
        sink = MemorySink()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_borderconnect(bc_settings(server), stop=stop, sink=sink, metrics=metrics)
        )
        await wait_for(lambda: len(sink.records) == 1)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sample(metrics, "holdwatch_borderconnect_connection_attempts_total", outcome="accepted") == 1


async def test_a_silent_server_has_not_refused_the_key_the_connector_stays() -> None:
    async with BorderConnectStandIn(answer_handshake=False) as server:
        metrics = ConnectorMetrics(CollectorRegistry())
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_borderconnect(
                bc_settings(server), stop=stop, sink=MemorySink(), metrics=metrics, handshake_timeout_s=0.05
            )
        )
        await wait_for(lambda: metrics.registry.get_sample_value("holdwatch_borderconnect_connected") == 1)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert server.connections == 1


async def test_another_handshake_status_is_a_failed_attempt_retried_later() -> None:
    async with BorderConnectStandIn(handshake_status="SERVER_BUSY") as server:
        metrics = ConnectorMetrics(CollectorRegistry())
        sleep = RecordingSleep()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_borderconnect(
                bc_settings(server),
                stop=stop,
                sink=MemorySink(),
                metrics=metrics,
                backoff=Backoff(draw=lambda: 0.0),
                clocks=Clocks(sleep=sleep),
            )
        )
        await wait_for(lambda: server.connections >= 3)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sample(metrics, "holdwatch_borderconnect_connection_attempts_total", outcome="failed") >= 2
    assert sample(metrics, "holdwatch_borderconnect_connected") == 0
    assert sleep.delays[:2] == [0.5, 1.0]


class FlakySink(MemorySink):
    """Refuses the first `failures` sends the way aiokafka does when the broker is away."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        from aiokafka.errors import KafkaConnectionError

        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        await super().send(records)


async def test_a_frame_is_held_and_retried_until_kafka_takes_it() -> None:
    notice = aci_notice("MATCHED", CCN, "2026-11-03 14:05:00")
    released = rns_shipment(CCN, "4", "2026-11-03 15:00:00")
    async with BorderConnectStandIn([[Send(notice), Send(released)]]) as server:
        metrics = ConnectorMetrics(CollectorRegistry())
        sink = FlakySink(failures=2)
        sleep = RecordingSleep()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_borderconnect(
                bc_settings(server),
                stop=stop,
                sink=sink,
                metrics=metrics,
                backoff=Backoff(draw=lambda: 0.0),
                clocks=Clocks(sleep=sleep),
            )
        )
        await wait_for(lambda: len(sink.records) == 2)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [topic for topic, _, _ in sink.records] == [
        "emanifest.events",
        "rns.events",
    ]  # in order, once each
    assert sample(metrics, "holdwatch_borderconnect_publish_retries_total") == 2
    assert sleep.delays == [0.5, 1.0]
    assert server.connections == 1  # the connection was kept while Kafka was away


async def test_a_frame_too_large_for_kafka_is_dead_lettered_cut_and_the_connection_kept() -> None:
    huge = json.dumps({"data": "ACI_NOTICE", "padding": "x" * 1_100_000})
    after = aci_notice("MATCHED", CCN, "2026-11-03 14:05:00")
    async with BorderConnectStandIn([[Send(huge), Send(after)]]) as server:
        sink = MemorySink()
        stop = asyncio.Event()
        task = asyncio.create_task(run_borderconnect(bc_settings(server), stop=stop, sink=sink))
        await wait_for(lambda: len(sink.records) == 2)
        stop.set()
        await asyncio.wait_for(task, 10)
    (topic, _, value), (next_topic, _, _) = sink.records
    assert (topic, next_topic) == ("holdwatch.deadletter", "emanifest.events")
    letter = DeadLetter.model_validate_json(value)
    assert letter.reason is DeadLetterReason.TOO_LARGE and "cut" in letter.detail
    assert len(value) < 1_000_000
    assert server.connections == 1
