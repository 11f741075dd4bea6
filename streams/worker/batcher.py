"""Write-behind with ack-after-write: the worker's commit never covers an unwritten change.

A partition's changed states are written to its table (the changelog) in batches, and the
records that changed them are acked only after that write: Kafka commits acked offsets, so
a crash loses nothing a commit claims. A batch is written when `flush_every` records wait,
when a control record or a tick arrives (they move the clock: their alerts must be backed
by the states), or `flush_after_s` after its first record. A partition given up to another
worker drops its waiting records unacked: the new owner gets them again.

Faust-free: the flush and the clock are injected, records need only `ack()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from schemas.envelope import Envelope


class Ackable(Protocol):
    def ack(self) -> None: ...


R = TypeVar("R", bound=Ackable)


def flushes_at_once(trigger: Envelope) -> bool:
    """Control records and ticks move the clock, so their batch is written without waiting."""
    return trigger.source == "control" or trigger.is_tick


class AckBatcher(Generic[R]):
    """Per partition, the applied records waiting for their states to be written."""

    def __init__(
        self,
        flush: Callable[[int], None],
        *,
        flush_every: int,
        flush_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush = flush
        self._flush_every = flush_every
        self._flush_after_s = flush_after_s
        self._clock = clock
        self._waiting: dict[int, list[R]] = {}
        self._since: dict[int, float] = {}

    def settle(self, partition: int, trigger: Envelope, done: Iterable[R]) -> None:
        """Queue the records `done` by processing `trigger`; write and ack the batch if it is due."""
        now = self._clock()
        waiting = self._waiting.setdefault(partition, [])
        if not waiting:
            self._since[partition] = now
        waiting += done
        if (
            len(waiting) >= self._flush_every
            or flushes_at_once(trigger)
            or now - self._since[partition] >= self._flush_after_s
        ):
            self._flush(partition)
            for record in waiting:
                record.ack()
            waiting.clear()

    def revoke(self, partition: int) -> None:
        """The partition went to another worker: never ack what this worker did not write."""
        self._waiting.pop(partition, None)
        self._since.pop(partition, None)

    def waiting(self, partition: int) -> int:
        return len(self._waiting.get(partition, ()))
