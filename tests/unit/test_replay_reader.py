"""The replay's reader process (streams/replay/reader.py): the same actions as planning in-process,
the producer's own partitions, errors raised in the parent, and a compiled CRC-32C for kafka-python."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import DefaultPartitioner
from kafka.record import default_records
from kafka.record._crc32c import crc as python_crc32c

from alerting.engine.ingest import EPOCH as ENGINE_EPOCH
from schemas.eventlog import LogWriter
from streams.replay import plan as plan_module
from streams.replay import reader as reader_module
from streams.replay.plan import Barrier, ReplayPlan, log_items, plan_replay
from streams.replay.publish import BarrierOutcome, ReplayOptions, run_replay, use_compiled_crc32c
from streams.replay.reader import Partitioner, ReadAhead, ReaderDied, batches, partition_for
from tests.unit.test_replay_plan import BN, TOPICS, FakeSender, carm, rns, shipment

PARTITIONS = 3


def write(path: Path, loads: int = 40) -> Path:
    """CARM snapshots first, then shipments and RNS statuses on many CCNs, a bad line, a tombstone."""
    with LogWriter(path) as writer:
        writer.write("carm", BN, carm(0))
        writer.write("carm", "223456789RM0001", carm(0, "223456789RM0001"))
        for n in range(loads):
            ccn = f"ABCD{n:07d}"
            writer.write("em", ccn, shipment(1 + n, ccn))
            writer.write("rns", ccn, rns(1.5 + n, ccn))
            if n == 7:
                writer.write_raw_line('{"topic": "em", "key"')
        writer.write("em", None, {"event_type": "cargo_accepted"})  # no key: the producer picks
        writer.write("carm", BN, None, 1_800_000_000_000)
    return path


def sent(plan: ReplayPlan) -> list[dict[str, Any]]:
    sender = FakeSender(partitions=PARTITIONS)
    waited: list[int] = []

    def wait(barrier: Barrier) -> BarrierOutcome:
        waited.append(len(sender.sent))
        return BarrierOutcome(True, 0.0, "ok")

    run_replay(plan, TOPICS, ReplayOptions(tick_every=7), sender, wait_barrier=wait, say=lambda _: None)
    assert waited == [2]  # the two CARM snapshots, flushed before the barrier wait
    return sender.sent


class Cluster:
    """What DefaultPartitioner asks of kafka-python's ClusterMetadata."""

    def __init__(self, count: int) -> None:
        self.count = count

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


def test_a_plan_over_log_files_is_read_in_a_child_and_sent_as_planned_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "log.jsonl")
    plan = plan_replay(log_items([path]), TOPICS, tick_every=7, seq_base=10**15)
    with batches(plan, {}, min_bytes=0) as stream:
        assert isinstance(stream, ReadAhead)
    with batches(plan, {}) as stream:
        assert not isinstance(stream, ReadAhead)  # a small log: planned in the producer's process
    monkeypatch.setattr(reader_module, "READ_AHEAD_MIN_BYTES", 0)
    child = sent(plan)
    here = sent(plan_replay(list(log_items([path])), TOPICS, tick_every=7, seq_base=10**15))
    assert [{**m, "partition": None} if m["key"] is not None else m for m in child] == here
    records = [m for m in child if m["headers"][0][0] == "hw-seq"]
    assert len(records) == 2 + 40 * 2 + 2
    for m in records:  # the partition kafka-python's partitioner would have picked, or its own choice
        expected = None if m["key"] is None else partition_for(m["key"], list(range(PARTITIONS)))
        assert m["partition"] == expected


def test_partitions_are_kafka_pythons_default_partitioners() -> None:
    rng = random.Random(15)
    partitioner = DefaultPartitioner()
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 30))
        count = rng.randrange(1, 13)
        expected = partitioner.partition("t", None, key, None, None, Cluster(count))
        assert partition_for(key, list(range(count))) == expected
    assert partition_for(None, [0, 1]) is None and partition_for(b"k", []) is None


def test_the_partitioner_remembers_keys_within_a_bound() -> None:
    partition = Partitioner({"em": [0, 1, 2]}, max_keys=3)
    keys = [f"ABCD{n:07d}".encode() for n in range(10)]
    assert [partition("em", k) for k in keys + keys] == [partition_for(k, [0, 1, 2]) for k in keys + keys]
    assert len(partition._known) <= 3
    assert partition("em", None) is None and partition("other", b"k") is None


def test_a_log_the_child_cannot_open_fails_in_the_parent_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "READ_AHEAD_MIN_BYTES", 0)
    plan = plan_replay(log_items([tmp_path]), TOPICS)  # a directory
    with pytest.raises(IsADirectoryError) as caught:
        run_replay(plan, TOPICS, ReplayOptions(), FakeSender(), say=lambda _: None)
    assert any("in the log reader process" in note for note in caught.value.__notes__)


def test_a_child_that_dies_is_an_error_not_a_short_replay(tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", loads=4000)
    reader = ReadAhead(plan_replay(log_items([path]), TOPICS), {})
    try:
        stream = iter(reader)
        next(stream)
        os.kill(reader.pid, 9)
        with pytest.raises(ReaderDied, match="stopped"):
            for _ in stream:
                pass
    finally:
        reader.close()


def test_closing_early_stops_the_child(tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", loads=4000)
    reader = ReadAhead(plan_replay(log_items([path]), TOPICS), {})
    next(iter(reader))
    reader.close()
    assert reader.returncode is not None


def test_kafka_python_gets_a_compiled_crc32c_that_gives_the_same_checksums() -> None:
    assert use_compiled_crc32c()
    assert default_records.calc_crc32c is not python_crc32c
    rng = random.Random(3)
    for size in (0, 1, 7, 64, 1000, 65_537):
        data = memoryview(rng.randbytes(size))
        assert default_records.calc_crc32c(data) == python_crc32c(data)


def test_log_size_counts_gzipped_logs_by_their_usual_ratio(tmp_path: Path) -> None:
    plain, gz = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    plain.write_bytes(b"x" * 100)
    gz.write_bytes(b"y" * 10)
    expected = 100 + 10 * reader_module.GZIP_RATIO
    assert reader_module.log_bytes([plain, gz, tmp_path / "missing.jsonl"]) == expected


def test_the_plans_epoch_is_the_engines() -> None:
    assert plan_module.EPOCH == ENGINE_EPOCH
