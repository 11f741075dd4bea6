"""An in-memory, event-time driver of the engine: the back-test's core.

It owns every shipment's state, the CARM records and a heap of deadlines, and
moves one clock: the stream's event time (the latest `occurred_at` seen). Before
a record later than a deadline is applied, that deadline fires; `finish()` fires
every deadline up to and including the end time.

Retention runs on the same clock: a state whose `rules.removal_instant` has passed is
deleted from `shipments` (a store-backed mapping writes a tombstone), after `on_forget`
has seen it, so a history of any length keeps the state bounded and a replay equals
its back-test, retention included.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from alerting.engine import engine
from alerting.engine.config import Thresholds
from alerting.engine.rules import ReadinessCache, removal_instant
from alerting.engine.state import ShipmentEvent, ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from schemas.emanifest import CargoReported

_RECENT_CARM_IDS = 16


@dataclass(slots=True)
class EventTimeRunner:
    thresholds: Thresholds = field(default_factory=Thresholds)
    shipments: MutableMapping[str, ShipmentState] = field(default_factory=dict)
    carm: MutableMapping[str, CarmSnapshot] = field(default_factory=dict)
    clock: datetime | None = None
    duplicates: int = 0
    forgotten: int = 0
    """States removed by retention."""
    on_forget: Callable[[ShipmentState], None] | None = None
    """Sees each state just before retention removes it (the back-test's statistics)."""
    readiness: ReadinessCache = field(default_factory=ReadinessCache)
    _carm_ids: dict[str, deque[str]] = field(default_factory=dict)
    _open_by_importer: dict[str, set[str]] = field(default_factory=dict)
    _heap: list[tuple[datetime, str]] = field(default_factory=list)
    _scheduled: dict[str, datetime] = field(default_factory=dict)
    _removal_heap: list[tuple[datetime, str]] = field(default_factory=list)
    _removals: dict[str, datetime] = field(default_factory=dict)

    # --- clock -----------------------------------------------------------------
    def advance(self, to: datetime, *, inclusive: bool = False) -> list[AlertEvent]:
        """Move the stream clock to `to`, firing the deadlines due strictly before it (or at it)."""
        out: list[AlertEvent] = []
        heap = self._heap
        while heap and (heap[0][0] < to or (inclusive and heap[0][0] == to)):
            due, ccn = heapq.heappop(heap)
            if self._scheduled.get(ccn) != due:
                continue  # stale entry: the ETA moved or the deadline already fired
            del self._scheduled[ccn]
            s = self.shipments[ccn]
            out += engine.fire_deadlines(
                s, self._carm_for(s), due, self.thresholds, inclusive=True, cache=self.readiness
            )
            self._after_change(s)
        self._forget_until(to, inclusive)
        if self.clock is None or to > self.clock:
            self.clock = to
        return out

    def _forget_until(self, to: datetime, inclusive: bool) -> None:
        """Remove the states whose retention ended before `to` (or at it)."""
        heap = self._removal_heap
        while heap and (heap[0][0] < to or (inclusive and heap[0][0] == to)):
            due, ccn = heapq.heappop(heap)
            if self._removals.get(ccn) != due:
                continue  # stale: the state changed since (e.g. a held CCN got its cargo_reported)
            del self._removals[ccn]
            if self.on_forget is not None:
                self.on_forget(self.shipments[ccn])
            del self.shipments[ccn]
            self.forgotten += 1

    def finish(self, until: datetime | None = None) -> list[AlertEvent]:
        """End of input: fire every deadline up to and including the last event time (or `until`)."""
        end = self.clock
        if until is not None and (end is None or until > end):
            end = until
        return self.advance(end, inclusive=True) if end is not None else []

    # --- input -------------------------------------------------------------------
    def on_shipment_event(self, event: ShipmentEvent) -> list[AlertEvent]:
        s = self.shipments.get(event.ccn)
        if s is not None and event.event_id in s.seen_ids:
            self.duplicates += 1  # changes nothing, the clock included
            return []
        forgotten = self.forgotten
        out = self.advance(event.occurred_at)
        if s is not None and self.forgotten != forgotten:
            s = self.shipments.get(event.ccn)  # retention may have removed it: then it starts afresh
        bn = event.importer_bn if isinstance(event, CargoReported) else (s.importer_bn if s else None)
        old_bn = s.importer_bn if s is not None else None
        s, alerts = engine.on_event(
            s, event, self.carm.get(bn) if bn else None, self.thresholds, self.readiness
        )
        if old_bn is not None and old_bn != s.importer_bn:
            self._open_by_importer.get(old_bn, set()).discard(s.ccn)
        self._after_change(s)
        return out + alerts

    def on_carm(self, importer_bn: str, snapshot: CarmSnapshot | None, at: datetime) -> list[AlertEvent]:
        """A new snapshot (or a tombstone: None) for an importer, seen at event time `at`."""
        if snapshot is not None:
            recent = self._carm_ids.setdefault(importer_bn, deque(maxlen=_RECENT_CARM_IDS))
            if snapshot.event_id in recent:
                self.duplicates += 1
                return []
            recent.append(snapshot.event_id)
        out = self.advance(at)
        old = self.carm.get(importer_bn)
        if snapshot is None:
            self.carm.pop(importer_bn, None)
        else:
            self.carm[importer_bn] = snapshot
        for ccn in sorted(self._open_by_importer.get(importer_bn, ())):
            s = self.shipments[ccn]
            out += engine.on_carm_change(s, old, snapshot, at, self.thresholds, self.readiness)
            self._after_change(s)
        return out

    # --- helpers -------------------------------------------------------------------
    def _carm_for(self, s: ShipmentState) -> CarmSnapshot | None:
        return self.carm.get(s.importer_bn) if s.importer_bn else None

    def _after_change(self, s: ShipmentState) -> None:
        self.shipments[s.ccn] = s  # a store-backed mapping persists the state here
        self._index(s)

    def _index(self, s: ShipmentState) -> None:
        bn = s.importer_bn
        if bn is not None:
            if s.known and s.closed is None:
                self._open_by_importer.setdefault(bn, set()).add(s.ccn)
            else:
                open_set = self._open_by_importer.get(bn)
                if open_set is not None:
                    open_set.discard(s.ccn)
        removal = removal_instant(s, self.thresholds)
        if removal is None:
            self._removals.pop(s.ccn, None)
        elif self._removals.get(s.ccn) != removal:
            self._removals[s.ccn] = removal
            heapq.heappush(self._removal_heap, (removal, s.ccn))
        due = engine.next_deadline(s, self.thresholds)
        if due is None:
            self._scheduled.pop(s.ccn, None)
        elif self._scheduled.get(s.ccn) != due:
            self._scheduled[s.ccn] = due
            heapq.heappush(self._heap, (due, s.ccn))

    def pending_deadlines(self) -> int:
        return len(self._scheduled)

    def states(self) -> Iterator[ShipmentState]:
        return iter(self.shipments.values())

    def rebuild_index(self) -> None:
        """Rebuild the deadline heap and the importer index from the stored states (after recovery)."""
        self._heap.clear()
        self._scheduled.clear()
        self._removal_heap.clear()
        self._removals.clear()
        self._open_by_importer.clear()
        for s in self.shipments.values():
            self._index(s)
