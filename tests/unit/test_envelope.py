"""The envelope parser: what a record's headers say, read once at the edge."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.envelope import (
    CONTROL_HEADER,
    LOG_TS_HEADER,
    SEQ_HEADER,
    TICK_HEADER,
    TRAFFIC_HEADER,
    TRIGGER_TS_HEADER,
    AlertOrigin,
    Envelope,
    Tick,
    alert_headers,
    control_headers,
    log_ts_headers,
    parse_alert_origin,
    parse_envelope,
)

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_live_record_without_headers() -> None:
    no_headers: tuple[object, ...] = (None, [], {})
    for headers in no_headers:
        envelope = parse_envelope("emanifest", headers, b"{}", 1_700)
        assert envelope == Envelope("emanifest", 1_700)
        assert envelope.traffic == "live"
        assert not envelope.replayed and not envelope.is_tick
        assert envelope.seq is None and envelope.tick is None and envelope.control is None
        assert envelope.trigger_ms == 1_700


def test_unrelated_headers_leave_a_record_live() -> None:
    envelope = parse_envelope("rns", [("traceparent", b"00-abc"), ("other", None)], b"{}", 5)
    assert envelope == Envelope("rns", 5)


def test_a_replayed_record_carries_its_seq() -> None:
    envelope = parse_envelope("rns", [("x", b"y"), (SEQ_HEADER, b"1234567")], b"{}", 9)
    assert envelope.seq == 1234567
    assert envelope.traffic == "replay" and envelope.replayed
    assert not envelope.is_tick


def test_headers_as_a_mapping_and_the_first_occurrence_counts() -> None:
    assert parse_envelope("rns", {SEQ_HEADER: b"42"}, b"{}", None).seq == 42
    assert parse_envelope("rns", [(SEQ_HEADER, b"1"), (SEQ_HEADER, b"2")], b"{}", None).seq == 1


def test_an_unreadable_seq_is_applied_live_but_counted_as_replay() -> None:
    envelope = parse_envelope("emanifest", [(SEQ_HEADER, b"12a")], b"{}", None)
    assert envelope.seq is None
    assert envelope.traffic == "replay"


def test_a_replay_tick_is_parsed_from_the_value() -> None:
    tick = Tick(77, WHEN, final=True)
    envelope = parse_envelope("emanifest", [(TICK_HEADER, b"1")], tick.to_bytes(), 3)
    assert envelope.tick == tick
    assert envelope.tick_error is None
    assert envelope.is_tick and envelope.replayed


def test_a_bad_tick_keeps_its_error() -> None:
    for value in (b"not json", b'{"seq": 1}', b'{"seq": 1, "time": "2026-03-01T12:00:00"}', None):
        envelope = parse_envelope("rns", [(TICK_HEADER, b"1")], value, 3)
        assert envelope.tick is None
        assert envelope.tick_error, value
        assert envelope.is_tick and envelope.replayed


def test_control_carm_with_and_without_seq() -> None:
    live = parse_envelope("control", control_headers("carm"), b"{}", 11)
    assert live.control == "carm" and live.traffic == "live" and not live.is_tick
    assert live.trigger_ms is None  # control records are not input
    replayed = parse_envelope("control", control_headers("carm", 99), b"{}", 11)
    assert replayed.control == "carm" and replayed.seq == 99 and replayed.traffic == "replay"


def test_control_tick() -> None:
    tick = Tick(0, WHEN)
    envelope = parse_envelope("control", control_headers("tick"), tick.to_bytes(), None)
    assert envelope.control == "tick"
    assert envelope.tick == tick
    assert envelope.traffic == "live"
    bad = parse_envelope("control", [(CONTROL_HEADER, b"tick")], b"{}", None)
    assert bad.control == "tick" and bad.tick is None and bad.tick_error


def test_control_header_counts_on_the_control_topic_only_and_tick_header_elsewhere() -> None:
    unknown = parse_envelope("control", [(CONTROL_HEADER, b"other")], b"{}", None)
    assert unknown.control is None and not unknown.is_tick
    not_control = parse_envelope("rns", [(CONTROL_HEADER, b"tick")], b"{}", None)
    assert not_control.control is None and not not_control.is_tick
    tick_on_control = parse_envelope("control", [(TICK_HEADER, b"1")], Tick(1, WHEN).to_bytes(), None)
    assert tick_on_control.tick is None and tick_on_control.traffic == "replay"


def test_alert_headers_round_trip() -> None:
    live = parse_envelope("rns", None, b"{}", 1_234)
    assert alert_headers(live) == [(TRAFFIC_HEADER, b"live"), (TRIGGER_TS_HEADER, b"1234")]
    assert parse_alert_origin(alert_headers(live)) == AlertOrigin("live", 1_234)
    replayed = parse_envelope("emanifest", [(SEQ_HEADER, b"5")], b"{}", 99)
    assert parse_alert_origin(alert_headers(replayed)) == AlertOrigin("replay", 99)
    control = parse_envelope("control", control_headers("tick"), Tick(0, WHEN).to_bytes(), 1_234)
    assert alert_headers(control) == [(TRAFFIC_HEADER, b"live")]
    assert parse_alert_origin(alert_headers(control)) == AlertOrigin("live", None)


def test_alert_origin_of_missing_or_unreadable_headers() -> None:
    assert parse_alert_origin(None) == AlertOrigin("live", None)
    odd = [(TRAFFIC_HEADER, b"sideways"), (TRIGGER_TS_HEADER, b"-5")]
    assert parse_alert_origin(odd) == AlertOrigin("live", None)
    assert parse_alert_origin(((TRIGGER_TS_HEADER, b"77"),)) == AlertOrigin("live", 77)


def test_a_replayed_record_takes_its_event_time_from_the_log_timestamp_header() -> None:
    """Replay leaves the Kafka timestamp to the producer (now) and puts the log's in `hw-log-ts`."""
    headers = [(SEQ_HEADER, b"3"), *log_ts_headers(1_000)]
    assert headers[1] == (LOG_TS_HEADER, b"1000")
    envelope = parse_envelope("emanifest", headers, b"{}", 9_999)
    assert (envelope.timestamp_ms, envelope.log_ts_ms, envelope.event_ms) == (9_999, 1_000, 1_000)
    assert envelope.trigger_ms == 9_999  # latency is measured from the Kafka timestamp
    assert log_ts_headers(None) == []


def test_without_a_readable_log_timestamp_the_event_time_is_the_kafka_timestamp() -> None:
    assert parse_envelope("rns", [], b"{}", 5).event_ms == 5
    assert parse_envelope("rns", [(SEQ_HEADER, b"1")], b"{}", 5).event_ms == 5
    unreadable = parse_envelope("rns", [(LOG_TS_HEADER, b"-3")], b"{}", 5)
    assert (unreadable.log_ts_ms, unreadable.event_ms) == (None, 5)
    first = parse_envelope("rns", [(LOG_TS_HEADER, b"1"), (LOG_TS_HEADER, b"2")], b"{}", 5)
    assert first.event_ms == 1


def test_the_log_timestamp_survives_the_carm_broadcast_and_ticks() -> None:
    """The CARM agent reads the input's envelope and forwards seq and log timestamp to the control topic."""
    on_input = parse_envelope("carm", [(SEQ_HEADER, b"8"), *log_ts_headers(1_234)], None, None)
    forwarded = control_headers("carm", on_input.seq, on_input.log_ts_ms)
    assert forwarded == [(CONTROL_HEADER, b"carm"), (SEQ_HEADER, b"8"), (LOG_TS_HEADER, b"1234")]
    on_control = parse_envelope("control", forwarded, None, 50_000)
    assert (on_control.control, on_control.seq, on_control.event_ms) == ("carm", 8, 1_234)
    tick = Tick(2, WHEN)
    replay_tick = parse_envelope("rns", [(TICK_HEADER, b"1")], tick.to_bytes(), 50_000)
    assert replay_tick.tick == tick and replay_tick.log_ts_ms is None  # a tick's event time is its value
