"""The pipeline's partition logic reproduces the back-test, whatever Kafka's interleaving.

This drives `PartitionProcessor` exactly as the Faust shell does, with records split
over partitions like Kafka's default partitioner and the two CCN topics of each
partition interleaved at random — the part of replay = back-test that needs no broker.
Records are stamped as replay stamps them: the Kafka timestamp is the replay's wall time,
the log's timestamp rides in `hw-log-ts` (and survives the CARM agent's broadcast).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from alerting.engine.config import Thresholds
from schemas.alerts import AlertEvent
from schemas.decode import topic_kinds
from schemas.envelope import SEQ_HEADER, TICK_HEADER, Tick, control_headers, log_ts_headers, parse_envelope
from schemas.eventlog import LogRecord, read_log
from streams.backtest import run_backtest
from streams.settings import Settings
from streams.worker.processor import Output, PartitionProcessor, RawRecord, Source

PARTITIONS = 3
KINDS = topic_kinds("emanifest.events", "rns.events", "carm.readiness")
WALL_MS = 1_893_456_000_000  # 2030-01-01: the Kafka timestamp the producer stamps during the replay


def _partition(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def _log(tmp_path: Path, loads: int, seed: int) -> Path:
    from streams.cli.main import main

    path = tmp_path / "log.jsonl"
    assert (
        main(
            ["simulate", "--loads", str(loads), "--seed", str(seed), "--out", str(path), "--no-midway-fixes"]
        )
        == 0
    )
    return path


def _pipeline(path: Path, seed: int, tick_every: int, th: Thresholds) -> list[AlertEvent]:
    processors = {p: PartitionProcessor(p, th, {}, {}, "event") for p in range(PARTITIONS)}
    queues: dict[tuple[int, str], list[RawRecord]] = {
        (p, s): [] for p in range(PARTITIONS) for s in ("emanifest", "rns")
    }
    out = Output()
    records = [r for r in read_log(path) if isinstance(r, LogRecord)]
    seq = 0
    last_time = None
    for record in records:
        value = None if record.value is None else json.dumps(record.value).encode()
        key = record.key.encode() if record.key is not None else None
        if record.topic == "carm.readiness":
            for p in range(PARTITIONS):  # the CARM agent's broadcast, before any shipment event
                headers = control_headers("carm", log_ts_ms=record.timestamp)
                envelope = parse_envelope("control", headers, value, WALL_MS)
                processors[p].on_record(RawRecord(p, 0, key, value, envelope), out)
            continue
        seq += 1
        source: Source = "emanifest" if record.topic == "emanifest.events" else "rns"
        p = _partition(record.key or "")
        queues[(p, source)].append(
            RawRecord(
                p,
                seq,
                key,
                value,
                parse_envelope(
                    source,
                    [(SEQ_HEADER, str(seq).encode()), *log_ts_headers(record.timestamp)],
                    value,
                    WALL_MS,
                ),
            )
        )
        if record.timestamp is not None:
            last_time = record.timestamp
        if seq % tick_every == 0:
            _ticks(queues, seq + 1, last_time, final=False)
    _ticks(queues, seq + 1, last_time, final=True)
    rng = random.Random(seed)
    cursors = dict.fromkeys(queues, 0)
    while True:
        open_queues = [q for q in queues if cursors[q] < len(queues[q])]
        if not open_queues:
            break
        q = rng.choice(open_queues)
        take = rng.randint(1, 50)  # Kafka fetches in batches per topic-partition
        for queued in queues[q][cursors[q] : cursors[q] + take]:
            processors[q[0]].on_record(queued, out)
        cursors[q] += take
    assert all(p.held() == 0 for p in processors.values())
    return out.alerts


def _ticks(queues: dict[tuple[int, str], list[RawRecord]], seq: int, ms: int | None, *, final: bool) -> None:
    from datetime import UTC, datetime

    assert ms is not None
    tick = Tick(seq, datetime.fromtimestamp(ms / 1000, tz=UTC), final)
    for (p, source), queue in queues.items():
        envelope = parse_envelope(source, [(TICK_HEADER, b"1")], tick.to_bytes(), WALL_MS)  # type: ignore[arg-type]
        queue.append(RawRecord(p, 0, None, tick.to_bytes(), envelope))


def _backtest(path: Path, th: Thresholds) -> list[AlertEvent]:
    buffer = io.StringIO()
    run_backtest([path], buffer, th, KINDS)
    return [AlertEvent.model_validate_json(line) for line in buffer.getvalue().splitlines()]


def _per_load(alerts: list[AlertEvent]) -> dict[str, list[tuple[object, ...]]]:
    """Each load's alert steps in order, with lifecycle id and seq (a partition keeps a load's order)."""
    per_load: dict[str, list[tuple[object, ...]]] = {}
    for a in alerts:
        per_load.setdefault(a.ccn, []).append((a.alert_id, a.seq, *a.comparable()))
    return per_load


SHORT_RETENTION = Settings(retention_closed_h=0.5, retention_unknown_h=0.5, expire_after_eta_h=0.25)


@pytest.mark.parametrize(
    ("seed", "tick_every", "settings"),
    [(1, 500, Settings()), (2, 37, Settings()), (3, 101, SHORT_RETENTION)],
    ids=["defaults", "frequent-ticks", "short-retention"],
)
def test_partitioned_out_of_order_processing_equals_the_backtest(
    tmp_path: Path, seed: int, tick_every: int, settings: Settings
) -> None:
    """Retention included: states forgotten in event time, loads expiring, late events ignored."""
    th = settings.thresholds()
    log = _log(tmp_path, 600, seed)
    expected_alerts = _backtest(log, th)
    expected = _per_load(expected_alerts)
    actual = _per_load(_pipeline(log, seed, tick_every, th))
    assert sum(len(steps) for steps in expected.values()) > 300
    if settings is SHORT_RETENTION:  # the case must exercise what it is named for
        assert any(a.outcome == "expired" for a in expected_alerts)
    assert actual == expected


def test_an_unreadable_tick_is_dead_lettered_once_and_done() -> None:
    processor = PartitionProcessor(0, Settings().thresholds(), {}, {}, "event")
    out = Output()
    replay_tick = RawRecord(0, 1, None, b"{}", parse_envelope("rns", [(TICK_HEADER, b"1")], b"{}", 5))
    control_tick = RawRecord(0, 2, None, b"x", parse_envelope("control", control_headers("tick"), b"x", 5))
    processor.on_record(replay_tick, out)
    processor.on_record(control_tick, out)
    assert [record for _, record in out.rejected] == [replay_tick, control_tick]
    assert all(r.detail.startswith("bad clock tick: ") for r, _ in out.rejected)
    assert out.done == [replay_tick, control_tick]
    assert processor.held() == 0


def test_a_replayed_carm_tombstone_happens_at_its_log_timestamp_not_the_kafka_one() -> None:
    """The tombstone rule's time comes from `hw-log-ts`: the Kafka timestamp is the replay's wall time."""
    from datetime import UTC, datetime

    logged = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    log_ms = int(logged.timestamp() * 1000)
    processor = PartitionProcessor(0, Settings().thresholds(), {}, {}, "event")
    # As the CARM agent forwards it: seq and log timestamp kept, Kafka timestamp = now.
    headers = control_headers("carm", seq=7, log_ts_ms=log_ms)
    envelope = parse_envelope("control", headers, None, WALL_MS)
    assert (envelope.timestamp_ms, envelope.event_ms) == (WALL_MS, log_ms)
    out = Output()
    processor.on_record(RawRecord(0, 0, b"123456789RM0001", None, envelope), out)
    assert [event_type for _, event_type in out.applied] == ["carm_tombstone"]
    assert processor.runner.clock == logged
    live = parse_envelope("control", control_headers("carm"), None, log_ms + 60_000)
    processor.on_record(RawRecord(0, 1, b"123456789RM0001", None, live), out)
    assert processor.runner.clock == datetime.fromtimestamp((log_ms + 60_000) / 1000, tz=UTC)  # live: Kafka's
