"""Write-behind with ack-after-confirm: the worker's commit never covers an unconfirmed output.

A partition's changed states are written to its table (the changelog) in batches, and the
records that changed them are acked only after that write **and every send they caused**
(changelog records, alert events, dead letters) is confirmed by the broker: Kafka commits acked
offsets, so a crash, or a send that fails, loses nothing a commit claims. A batch is written when
`flush_every` records wait, when a control record or a tick arrives (they move the clock: their
alerts must be backed by the states), or `flush_after_s` after its first record. A partition
given up to another worker drops its waiting records unacked: the new owner gets them again.

Sends are not awaited one by one (that would cost a broker round trip per alert); `Deliveries`
holds each partition's pending confirmations and the batcher awaits them when the batch is due:
first the alerts and dead letters, then it writes the states, then it awaits their changelog
records, then it acks. The order matters: a shipment remembers the event ids it applied, so a
record re-delivered after its state was written is skipped and would never re-send an alert
that was lost; a state is therefore written only once the alerts it implies are confirmed.
A failed confirmation acks nothing and raises `DeliveryFailed`: the caller must stop the worker,
so that the records are consumed again after a restart (their outputs are the same events,
idempotent by event id).

Faust-free: the flush, the confirmation and the clock are injected, records need only `ack()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, Protocol, TypeVar

from schemas.envelope import Envelope


class Ackable(Protocol):
    def ack(self) -> None: ...


R = TypeVar("R", bound=Ackable)


class DeliveryFailed(RuntimeError):
    """A send the broker did not confirm (after the client's own retries): nothing may be acked."""

    def __init__(self, partition: int, failed: int, pending: int, first: BaseException) -> None:
        super().__init__(
            f"partition {partition}: {failed} of {pending} sends not confirmed by the broker "
            f"(first: {type(first).__name__}: {first})"
        )
        self.partition = partition
        self.failed = failed
        self.first = first


class Deliveries:
    """Per partition, the sends (their delivery futures) that its waiting records' acks wait for."""

    def __init__(self) -> None:
        self._pending: dict[int, list[Awaitable[object]]] = {}

    def add(self, partition: int, delivery: Awaitable[object]) -> None:
        self._pending.setdefault(partition, []).append(delivery)

    def pending(self, partition: int) -> int:
        return len(self._pending.get(partition, ()))

    async def confirm(self, partition: int) -> None:
        """Wait for every send of the partition so far; raise `DeliveryFailed` if any failed.

        A confirmed send is forgotten only once all before it are confirmed too, and a failed one
        never is: after a failure every later `confirm` of the partition fails as well."""
        pending = self._pending.get(partition)
        if not pending:
            return
        count = len(pending)
        failures: list[BaseException] = []
        for delivery in pending[:count]:
            try:
                # Shielded: cancelling this wait (a rebalance) must not cancel the send itself.
                # Done futures return at once: one wait for the batch, not one per send.
                await asyncio.shield(delivery)
            except asyncio.CancelledError:
                if not (asyncio.isfuture(delivery) and delivery.cancelled()):
                    raise  # this wait was cancelled, the send goes on: confirm it next time
                failures.append(RuntimeError("the send was cancelled"))
            except Exception as exc:  # noqa: BLE001 - every delivery error means "not confirmed"
                failures.append(exc)
        if failures:
            raise DeliveryFailed(partition, len(failures), count, failures[0]) from failures[0]
        del pending[:count]

    def drop(self, partition: int) -> None:
        """The partition went to another worker: its records are not acked, so nothing waits."""
        self._pending.pop(partition, None)


async def _confirmed(_: int) -> None:
    return None


def flushes_at_once(trigger: Envelope) -> bool:
    """Control records and ticks move the clock, so their batch is written without waiting."""
    return trigger.source == "control" or trigger.is_tick


class AckBatcher(Generic[R]):
    """Per partition, the applied records waiting for their states to be written and confirmed."""

    def __init__(
        self,
        flush: Callable[[int], None],
        *,
        flush_every: int,
        flush_after_s: float,
        confirm: Callable[[int], Awaitable[None]] = _confirmed,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush = flush
        self._confirm = confirm
        self._flush_every = flush_every
        self._flush_after_s = flush_after_s
        self._clock = clock
        self._waiting: dict[int, list[R]] = {}
        self._since: dict[int, float] = {}
        self._revocations: dict[int, int] = {}  # per partition: bumped by `revoke`

    async def settle(self, partition: int, trigger: Envelope, done: Iterable[R]) -> None:
        """Queue the records `done` by processing `trigger`; if the batch is due, confirm its sends,
        write its states, confirm those and ack it. A failed confirmation raises, nothing acked."""
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
            count = len(waiting)
            generation = self._revocations.get(partition, 0)
            await self._confirm(partition)  # the alerts and dead letters: before their states
            if self._revocations.get(partition, 0) != generation:
                return  # revoked while we waited: its processor (and unwritten states) are gone
            self._flush(partition)
            await self._confirm(partition)  # the states (changelog writes)
            if self._revocations.get(partition, 0) != generation:
                return  # never ack across a rebalance: the partition's owner consumes them again
            for record in waiting[:count]:
                record.ack()
            del waiting[:count]

    def revoke(self, partition: int) -> None:
        """The partition went to another worker: never ack what this worker did not write."""
        self._waiting.pop(partition, None)
        self._since.pop(partition, None)
        self._revocations[partition] = self._revocations.get(partition, 0) + 1

    def waiting(self, partition: int) -> int:
        return len(self._waiting.get(partition, ()))
