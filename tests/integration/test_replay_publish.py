"""`holdwatch replay` against a real broker: what lands in each topic-partition, and the barrier."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from schemas.envelope import LOG_TS_HEADER, SEQ_HEADER, TICK_HEADER, Tick, header_value
from schemas.eventlog import LogWriter
from streams.cli.main import build_parser
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import control_topic, internal_topic_specs
from streams.replay import reader
from streams.replay.reader import partition_for
from streams.settings import Settings
from tests.unit.test_replay_plan import BN, T0, carm, ms, rns, shipment

PARTITIONS = 3


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.model_copy(update={"partitions": PARTITIONS})


@dataclass(frozen=True)
class Got:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]]

    @property
    def tick(self) -> Tick | None:
        return Tick.from_bytes(self.value or b"") if header_value(self.headers, TICK_HEADER) == b"1" else None

    @property
    def seq(self) -> int | None:
        raw = header_value(self.headers, SEQ_HEADER)
        return int(raw) if raw is not None else None


def consume_all(settings: Settings, topics: list[str], expected: int) -> list[Got]:
    """Everything in `topics`, in partition order; waits until `expected` records or 30 s."""
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    got: list[Got] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for message in consumer:
                got.append(
                    Got(
                        message.topic,
                        message.partition,
                        message.key,
                        message.value,
                        message.timestamp,
                        list(message.headers or []),
                    )
                )
    finally:
        consumer.close()
    return got


def replay(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["replay", *argv])
    result: int = args.func(args, settings)
    return result


def log_ts(got: Got) -> int | None:
    """The log's timestamp that replay carried in the `hw-log-ts` header."""
    raw = header_value(got.headers, LOG_TS_HEADER)
    return None if raw is None else int(raw)


def write_log(path: Path, settings: Settings) -> list[tuple[str, str | None, Any, int | None]]:
    """A small log: two CARM snapshots first, shipments on several CCNs, a malformed value, a bad
    line and a record of another topic. Returns the records that must be published, in order."""
    em, rn, cm = settings.topic_emanifest, settings.topic_rns, settings.topic_carm
    records: list[tuple[str, str | None, Any, int | None]] = [
        (cm, BN, carm(0, BN), None),
        (cm, "223456789RM0001", carm(0, "223456789RM0001"), ms(0.5)),
    ]
    ccns = [f"ABCD{n:07d}" for n in range(8)]
    for i, ccn in enumerate(ccns):
        records.append((em, ccn, shipment(1 + i, ccn), None))
        records.append((rn, ccn, rns(1.5 + i, ccn), None))
    records.insert(6, (em, ccns[0], {"event_type": "cargo_accepted", "ccn": 7}, None))  # malformed
    records.append((cm, BN, None, ms(30)))  # a tombstone, with its timestamp
    with LogWriter(path) as writer:
        for i, (topic, key, value, ts) in enumerate(records):
            writer.write(topic, key, value, ts)
            if i == 3:
                writer.write_raw_line('{"topic": "broken')
                writer.write("some.other.topic", "k", {"x": 1})
    return records


def test_replay_publishes_keys_values_timestamps_seq_and_ticks_in_every_partition(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "READ_AHEAD_MIN_BYTES", 0)  # a small log, read in the reader process
    log = tmp_path / "log.jsonl"
    expected = write_log(log, settings)
    started_ms = int(time.time() * 1000)
    assert replay(settings, str(log), "--no-carm-barrier", "--tick-every", "5") == 0
    ended_ms = int(time.time() * 1000)
    err = capsys.readouterr().err
    assert f"{log}:5: skipped (not_json)" in err and f"{log}:6: skipped (unknown_topic)" in err

    n = len(expected)
    regular_ticks = n // 5
    em, rn, cm = settings.topic_emanifest, settings.topic_rns, settings.topic_carm
    total = n + (regular_ticks + 1) * 2 * PARTITIONS
    got = consume_all(settings, [em, rn, cm], total)
    assert len(got) == total

    records = sorted((g for g in got if g.tick is None), key=lambda g: g.seq or 0)
    base = (records[0].seq or 0) - 1  # each replay numbers from its own base (streams/protocol.py)
    assert base > 0 and base % 1_000_000_000 == 0
    assert [g.seq for g in records] == [base + i for i in range(1, n + 1)]
    # The Kafka timestamp is the replay's wall time (retention counts from the replay); the log's
    # time travels in hw-log-ts, which the pipeline reads as event time.
    assert all(started_ms <= g.timestamp <= ended_ms for g in got)
    for g, (topic, key, value, ts) in zip(records, expected, strict=True):
        assert (g.topic, g.key) == (topic, key.encode() if key else None)
        if g.key is not None:  # where kafka-python's partitioner puts it: the pipeline's co-partitioning
            assert g.partition == partition_for(g.key, list(range(PARTITIONS)))
        assert g.value == (None if value is None else json.dumps(value, separators=(",", ":")).encode())
        if ts is not None:
            assert log_ts(g) == ts
        elif isinstance(value.get("occurred_at"), str):
            assert log_ts(g) == int(datetime.fromisoformat(value["occurred_at"]).timestamp() * 1000)
    malformed = next(g for g in records if g.value == b'{"event_type":"cargo_accepted","ccn":7}')
    assert log_ts(malformed) == ms(2.5)  # no time of its own: the replay clock so far

    assert not any(g.tick for g in got if g.topic == cm)
    last_time = T0 + timedelta(minutes=30)  # the tombstone's timestamp is the log's latest event time
    for topic in (em, rn):
        for partition in range(PARTITIONS):
            here = [g for g in got if (g.topic, g.partition) == (topic, partition)]
            ticks = [g.tick for g in here if g.tick is not None]
            expected_seqs = [base + 5 * k + 1 for k in range(1, regular_ticks + 1)] + [base + n + 1]
            assert [t.seq for t in ticks] == expected_seqs
            assert ticks[-1] == Tick(base + n + 1, last_time, final=True)
            assert here[-1].tick == ticks[-1]  # nothing follows the final tick
            # The protocol's promise: after a tick at S, no record with a smaller seq follows.
            for i, g in enumerate(here):
                if g.tick is not None:
                    assert all(
                        (later.seq or 0) >= g.tick.seq for later in here[i + 1 :] if later.tick is None
                    )
            assert all(log_ts(g) is None for g in here if g.tick is not None)  # a tick's time is its value


def test_the_barrier_times_out_with_a_warning_when_no_pipeline_consumes(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    expected = write_log(log, settings)
    started = time.monotonic()
    assert replay(settings, str(log), "--barrier-timeout", "1") == 0
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "WARNING" in err and "may not be running" in err and settings.app_id in err
    assert "CARM barrier: TIMED OUT" in err
    topics = [settings.topic_emanifest, settings.topic_rns, settings.topic_carm]
    got = consume_all(settings, topics, len(expected))
    assert sum(1 for g in got if g.tick is None) == len(expected)  # it carried on and published all


@contextlib.contextmanager
def committing_group(settings: Settings, topics: list[str]) -> Iterator[None]:
    """A stand-in pipeline: the app's consumer group reading `topics` and committing."""
    stop = threading.Event()

    def run() -> None:
        consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.app_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            while not stop.is_set():
                if consumer.poll(timeout_ms=200):
                    consumer.commit()
        finally:
            consumer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def with_control_topic(settings: Settings) -> str:
    """Create the topics, including the pipeline's control topic holding one record."""
    ensure_topics(settings, internal_topic_specs(settings))  # before any consumer subscribes
    control = control_topic(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    producer.send(control, key=BN.encode(), value=b"{}", partition=0)
    producer.flush()
    producer.close()
    return control


def test_the_barrier_passes_once_the_group_has_applied_the_carm_records(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    write_log(log, settings)
    control = with_control_topic(settings)
    with committing_group(settings, [settings.topic_carm, control]):
        assert replay(settings, str(log), "--barrier-timeout", "60") == 0
    err = capsys.readouterr().err
    assert "CARM barrier: passed" in err
    assert "WARNING" not in err


def test_the_barrier_waits_for_the_pipelines_control_topic_too(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    write_log(log, settings)
    control = with_control_topic(settings)
    with committing_group(settings, [settings.topic_carm]):  # CARM consumed, broadcasts not applied
        assert replay(settings, str(log), "--barrier-timeout", "8") == 0
    err = capsys.readouterr().err
    assert "CARM barrier: TIMED OUT" in err
    assert f"committed no offsets on {control}" in err


def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "log.jsonl"
    log.write_text("", encoding="utf-8")
    assert replay(Settings(kafka_bootstrap=f"127.0.0.1:{port}"), str(log)) == 1
    assert "is the broker running and reachable?" in capsys.readouterr().err
