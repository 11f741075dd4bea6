"""AckBatcher: records are acked only after their partition's states are written, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.envelope import SEQ_HEADER, TICK_HEADER, Envelope, Tick, control_headers, parse_envelope
from streams.worker.batcher import AckBatcher

LIVE = Envelope("emanifest", 1_000)
REPLAYED = parse_envelope("rns", [(SEQ_HEADER, b"7")], b"{}", 1_000)
TICK = parse_envelope("rns", [(TICK_HEADER, b"1")], Tick(8, datetime(2026, 1, 1, tzinfo=UTC)).to_bytes(), 1)
BAD_TICK = parse_envelope("rns", [(TICK_HEADER, b"1")], b"not json", 1)
CONTROL_CARM = parse_envelope("control", control_headers("carm"), b"{}", 1)


@dataclass
class Journal:
    """What happened, in order: ("flush", partition) and ("ack", name) entries."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def flush(self, partition: int) -> None:
        self.events.append(("flush", partition))

    def acks(self) -> list[object]:
        return [name for kind, name in self.events if kind == "ack"]


@dataclass
class FakeRecord:
    name: str
    journal: Journal
    acked: int = 0

    def ack(self) -> None:
        self.acked += 1
        self.journal.events.append(("ack", self.name))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _batcher(journal: Journal, clock: FakeClock, flush_every: int = 3) -> AckBatcher[FakeRecord]:
    return AckBatcher(journal.flush, flush_every=flush_every, flush_after_s=0.5, clock=clock)


def test_acks_only_after_the_flush_once_enough_records_wait() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock)
    records = [FakeRecord(f"r{i}", journal) for i in range(3)]
    batcher.settle(0, LIVE, records[:1])
    batcher.settle(0, LIVE, records[1:2])
    assert journal.events == []
    assert batcher.waiting(0) == 2
    batcher.settle(0, LIVE, records[2:])
    assert journal.events == [("flush", 0), ("ack", "r0"), ("ack", "r1"), ("ack", "r2")]
    assert [r.acked for r in records] == [1, 1, 1]
    assert batcher.waiting(0) == 0


def test_a_control_record_or_a_tick_flushes_at_once() -> None:
    for trigger in (CONTROL_CARM, TICK, BAD_TICK):
        journal, clock = Journal(), FakeClock()
        batcher = _batcher(journal, clock, flush_every=100)
        batcher.settle(2, LIVE, [FakeRecord("a", journal)])
        batcher.settle(2, trigger, [FakeRecord("b", journal)])
        assert journal.events == [("flush", 2), ("ack", "a"), ("ack", "b")], trigger


def test_a_replayed_record_waits_like_a_live_one() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    batcher.settle(0, REPLAYED, [FakeRecord("a", journal)])
    assert journal.events == []


def test_flushes_once_flush_after_s_passed_since_the_first_waiting_record() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    batcher.settle(0, LIVE, [FakeRecord("a", journal)])
    clock.now += 0.3
    batcher.settle(0, LIVE, [FakeRecord("b", journal)])
    assert journal.events == []
    clock.now += 0.2  # 0.5 s after "a", 0.2 s after "b": the first waiting record counts
    batcher.settle(0, LIVE, [FakeRecord("c", journal)])
    assert journal.acks() == ["a", "b", "c"]
    clock.now += 0.4  # the timer restarts with the next batch
    batcher.settle(0, LIVE, [FakeRecord("d", journal)])
    assert journal.acks() == ["a", "b", "c"]


def test_records_held_elsewhere_are_not_acked_but_a_tick_still_flushes() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock)
    batcher.settle(0, REPLAYED, [])  # held by the aligner: nothing done yet
    assert journal.events == []
    batcher.settle(0, TICK, [])
    assert journal.events == [("flush", 0)]


def test_partitions_are_batched_and_flushed_separately() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=2)
    batcher.settle(0, LIVE, [FakeRecord("p0-a", journal)])
    batcher.settle(1, LIVE, [FakeRecord("p1-a", journal)])
    assert journal.events == []
    batcher.settle(1, LIVE, [FakeRecord("p1-b", journal)])
    assert journal.events == [("flush", 1), ("ack", "p1-a"), ("ack", "p1-b")]
    assert batcher.waiting(0) == 1


def test_a_revoked_partition_drops_its_waiting_records_unacked() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    dropped = [FakeRecord("a", journal), FakeRecord("b", journal)]
    batcher.settle(0, LIVE, dropped)
    batcher.settle(1, LIVE, [FakeRecord("other", journal)])
    batcher.revoke(0)
    assert batcher.waiting(0) == 0
    batcher.settle(0, CONTROL_CARM, [FakeRecord("later", journal)])  # the partition came back
    batcher.settle(1, CONTROL_CARM, [])
    assert journal.acks() == ["later", "other"]
    assert [r.acked for r in dropped] == [0, 0]


def test_acks_keep_the_order_records_were_done_in() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=4)
    names = [f"r{i}" for i in range(10)]
    for start in range(0, 10, 2):
        batcher.settle(0, LIVE, [FakeRecord(n, journal) for n in names[start : start + 2]])
    assert journal.acks() == names[:8]
    batcher.settle(0, CONTROL_CARM, [FakeRecord("control", journal)])
    assert journal.acks() == [*names, "control"]
    assert [e for e in journal.events if e[0] == "flush"] == [("flush", 0)] * 3
