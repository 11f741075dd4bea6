"""AckBatcher: records are acked only after their partition's states are written and the sends
they caused are confirmed, in order; a failed confirmation acks nothing and raises."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from schemas.envelope import SEQ_HEADER, TICK_HEADER, Envelope, Tick, control_headers, parse_envelope
from streams.worker.batcher import AckBatcher, Deliveries, DeliveryFailed

LIVE = Envelope("emanifest", 1_000)
REPLAYED = parse_envelope("rns", [(SEQ_HEADER, b"7")], b"{}", 1_000)
TICK = parse_envelope("rns", [(TICK_HEADER, b"1")], Tick(8, datetime(2026, 1, 1, tzinfo=UTC)).to_bytes(), 1)
BAD_TICK = parse_envelope("rns", [(TICK_HEADER, b"1")], b"not json", 1)
CONTROL_CARM = parse_envelope("control", control_headers("carm"), b"{}", 1)


@dataclass
class Journal:
    """What happened, in order: ("confirm", partition), ("flush", partition), ("ack", name)."""

    events: list[tuple[str, object]] = field(default_factory=list)
    failing: set[int] = field(default_factory=set)
    """Partitions whose confirmation fails."""

    def flush(self, partition: int) -> None:
        self.events.append(("flush", partition))

    async def confirm(self, partition: int) -> None:
        self.events.append(("confirm", partition))
        if partition in self.failing:
            raise DeliveryFailed(partition, 1, 1, ConnectionError("broker gone"))

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


def written(partition: int, *acked: str) -> list[tuple[str, object]]:
    """A due batch: its sends confirmed, its states written and confirmed, then its records acked."""
    return [
        ("confirm", partition),
        ("flush", partition),
        ("confirm", partition),
        *(("ack", a) for a in acked),
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _batcher(journal: Journal, clock: FakeClock, flush_every: int = 3) -> AckBatcher[FakeRecord]:
    return AckBatcher(
        journal.flush, flush_every=flush_every, flush_after_s=0.5, confirm=journal.confirm, clock=clock
    )


async def test_acks_only_after_the_flush_once_enough_records_wait() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock)
    records = [FakeRecord(f"r{i}", journal) for i in range(3)]
    await batcher.settle(0, LIVE, records[:1])
    await batcher.settle(0, LIVE, records[1:2])
    assert journal.events == []
    assert batcher.waiting(0) == 2
    await batcher.settle(0, LIVE, records[2:])
    assert journal.events == written(0, "r0", "r1", "r2")
    assert [r.acked for r in records] == [1, 1, 1]
    assert batcher.waiting(0) == 0


async def test_a_control_record_or_a_tick_flushes_at_once() -> None:
    for trigger in (CONTROL_CARM, TICK, BAD_TICK):
        journal, clock = Journal(), FakeClock()
        batcher = _batcher(journal, clock, flush_every=100)
        await batcher.settle(2, LIVE, [FakeRecord("a", journal)])
        await batcher.settle(2, trigger, [FakeRecord("b", journal)])
        assert journal.events == written(2, "a", "b"), trigger


async def test_a_replayed_record_waits_like_a_live_one() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    await batcher.settle(0, REPLAYED, [FakeRecord("a", journal)])
    assert journal.events == []


async def test_flushes_once_flush_after_s_passed_since_the_first_waiting_record() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    await batcher.settle(0, LIVE, [FakeRecord("a", journal)])
    clock.now += 0.3
    await batcher.settle(0, LIVE, [FakeRecord("b", journal)])
    assert journal.events == []
    clock.now += 0.2  # 0.5 s after "a", 0.2 s after "b": the first waiting record counts
    await batcher.settle(0, LIVE, [FakeRecord("c", journal)])
    assert journal.acks() == ["a", "b", "c"]
    clock.now += 0.4  # the timer restarts with the next batch
    await batcher.settle(0, LIVE, [FakeRecord("d", journal)])
    assert journal.acks() == ["a", "b", "c"]


async def test_records_held_elsewhere_are_not_acked_but_a_tick_still_flushes() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock)
    await batcher.settle(0, REPLAYED, [])  # held by the aligner: nothing done yet
    assert journal.events == []
    await batcher.settle(0, TICK, [])
    assert journal.events == written(0)


async def test_partitions_are_batched_and_flushed_separately() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=2)
    await batcher.settle(0, LIVE, [FakeRecord("p0-a", journal)])
    await batcher.settle(1, LIVE, [FakeRecord("p1-a", journal)])
    assert journal.events == []
    await batcher.settle(1, LIVE, [FakeRecord("p1-b", journal)])
    assert journal.events == written(1, "p1-a", "p1-b")
    assert batcher.waiting(0) == 1


async def test_a_revoked_partition_drops_its_waiting_records_unacked() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    dropped = [FakeRecord("a", journal), FakeRecord("b", journal)]
    await batcher.settle(0, LIVE, dropped)
    await batcher.settle(1, LIVE, [FakeRecord("other", journal)])
    batcher.revoke(0)
    assert batcher.waiting(0) == 0
    await batcher.settle(0, CONTROL_CARM, [FakeRecord("later", journal)])  # the partition came back
    await batcher.settle(1, CONTROL_CARM, [])
    assert journal.acks() == ["later", "other"]
    assert [r.acked for r in dropped] == [0, 0]


async def test_acks_keep_the_order_records_were_done_in() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=4)
    names = [f"r{i}" for i in range(10)]
    for start in range(0, 10, 2):
        await batcher.settle(0, LIVE, [FakeRecord(n, journal) for n in names[start : start + 2]])
    assert journal.acks() == names[:8]
    await batcher.settle(0, CONTROL_CARM, [FakeRecord("control", journal)])
    assert journal.acks() == [*names, "control"]
    assert [e for e in journal.events if e[0] == "flush"] == [("flush", 0)] * 3


# --- confirmation before ack ----------------------------------------------------------------------


async def test_a_failed_confirmation_acks_nothing_and_raises() -> None:
    journal, clock = Journal(failing={0}), FakeClock()
    batcher = _batcher(journal, clock)
    records = [FakeRecord(f"r{i}", journal) for i in range(3)]
    await batcher.settle(0, LIVE, records[:2])
    with pytest.raises(DeliveryFailed, match="partition 0: 1 of 1 sends not confirmed"):
        await batcher.settle(0, LIVE, records[2:])
    # Not even the states are written: re-delivered records must be applied (and alert) again.
    assert journal.events == [("confirm", 0)]
    assert [r.acked for r in records] == [0, 0, 0]
    assert batcher.waiting(0) == 3  # still unacked: a restart consumes them again


async def test_a_failed_partition_does_not_hold_back_the_others() -> None:
    journal, clock = Journal(failing={1}), FakeClock()
    batcher = _batcher(journal, clock, flush_every=1)
    with pytest.raises(DeliveryFailed):
        await batcher.settle(1, LIVE, [FakeRecord("p1", journal)])
    await batcher.settle(0, LIVE, [FakeRecord("p0", journal)])
    assert journal.acks() == ["p0"]


async def test_the_confirmation_is_not_awaited_before_the_batch_is_due() -> None:
    journal, clock = Journal(), FakeClock()
    batcher = _batcher(journal, clock, flush_every=100)
    for i in range(10):
        await batcher.settle(0, LIVE, [FakeRecord(f"r{i}", journal)])
    assert journal.events == []  # one wait per batch, not one per record


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition` holds (a bounded number of turns)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def _delivery() -> asyncio.Future[object]:
    return asyncio.get_running_loop().create_future()


async def test_states_are_written_after_their_alerts_are_confirmed_and_acked_after_the_write() -> None:
    journal, clock, deliveries = Journal(), FakeClock(), Deliveries()
    changelog = _delivery()

    def flush(partition: int) -> None:  # as the table does: the write is a send to confirm
        journal.flush(partition)
        deliveries.add(partition, changelog)

    batcher: AckBatcher[FakeRecord] = AckBatcher(
        flush, flush_every=2, flush_after_s=0.5, confirm=deliveries.confirm, clock=clock
    )
    alert = _delivery()
    await batcher.settle(0, LIVE, [FakeRecord("a", journal)])
    deliveries.add(0, alert)
    settling = asyncio.ensure_future(batcher.settle(0, LIVE, [FakeRecord("b", journal)]))
    await asyncio.sleep(0)
    assert journal.events == [] and not settling.done()  # the alert first
    alert.set_result("metadata")
    await until(lambda: journal.events == [("flush", 0)])
    assert not settling.done()  # then the state, and its changelog record is not confirmed yet
    changelog.set_result("metadata")
    await asyncio.wait_for(settling, timeout=5)
    assert journal.acks() == ["a", "b"]
    assert deliveries.pending(0) == 0


async def test_a_failed_send_fails_every_later_confirmation_of_its_partition() -> None:
    journal, clock, deliveries = Journal(), FakeClock(), Deliveries()
    batcher: AckBatcher[FakeRecord] = AckBatcher(
        journal.flush, flush_every=1, flush_after_s=0.5, confirm=deliveries.confirm, clock=clock
    )
    lost, fine = _delivery(), _delivery()
    lost.set_exception(ConnectionError("request timed out after the producer's retries"))
    fine.set_result("metadata")
    deliveries.add(0, lost)
    deliveries.add(0, fine)
    deliveries.add(1, fine)
    with pytest.raises(DeliveryFailed, match="1 of 2 sends") as failed:
        await batcher.settle(0, LIVE, [FakeRecord("a", journal)])
    assert isinstance(failed.value.first, ConnectionError)
    with pytest.raises(DeliveryFailed):  # never "confirmed" later: its records must never be acked
        await batcher.settle(0, CONTROL_CARM, [FakeRecord("b", journal)])
    await batcher.settle(1, LIVE, [FakeRecord("other", journal)])
    assert journal.acks() == ["other"]


async def test_a_revoked_partition_forgets_its_pending_sends() -> None:
    deliveries = Deliveries()
    deliveries.add(3, _delivery())  # would never resolve
    deliveries.drop(3)
    assert deliveries.pending(3) == 0
    await asyncio.wait_for(deliveries.confirm(3), timeout=5)


async def test_a_cancelled_confirmation_keeps_its_sends_for_the_next_one() -> None:
    deliveries = Deliveries()
    lost = _delivery()
    deliveries.add(0, lost)
    waiting = asyncio.ensure_future(deliveries.confirm(0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert deliveries.pending(0) == 1 and not lost.cancelled()  # the send itself goes on
    lost.set_exception(TimeoutError("expired"))
    with pytest.raises(DeliveryFailed):
        await deliveries.confirm(0)


async def test_a_cancelled_send_is_not_confirmed() -> None:
    deliveries = Deliveries()
    cancelled = _delivery()
    cancelled.cancel()
    deliveries.add(0, cancelled)
    with pytest.raises(DeliveryFailed, match="cancelled"):
        await deliveries.confirm(0)


@pytest.mark.parametrize("during", [0, 1], ids=["confirming-sends", "confirming-states"])
async def test_a_partition_revoked_while_its_batch_is_confirmed_is_not_acked(during: int) -> None:
    """A rebalance can run while the agent awaits a confirmation: the batch's records must not be
    acked (their states may be gone with the dropped processor); the new owner consumes them."""
    journal, clock = Journal(), FakeClock()
    confirms = 0
    batcher: AckBatcher[FakeRecord]

    async def confirm(partition: int) -> None:
        nonlocal confirms
        journal.events.append(("confirm", partition))
        if confirms == during:
            batcher.revoke(partition)  # what the rebalance listener does, mid-await
        confirms += 1

    batcher = AckBatcher(journal.flush, flush_every=2, flush_after_s=0.5, confirm=confirm, clock=clock)
    records = [FakeRecord("a", journal), FakeRecord("b", journal)]
    await batcher.settle(0, LIVE, records)
    assert journal.acks() == []
    assert ("flush", 0) not in journal.events or during == 1
    await batcher.settle(0, CONTROL_CARM, [FakeRecord("later", journal)])  # back again: a new batch
    assert journal.acks() == ["later"]
