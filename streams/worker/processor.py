"""The pipeline's per-partition logic, free of Faust so it can be tested without a broker.

Each shipment partition p (the same partition number of emanifest, rns and the
internal control topic) gets one `EventTimeRunner` — the back-test's engine driver —
over a store-backed view of p's states, plus a `SeqAligner` that restores the log's
order across the two CCN-keyed topics. CARM snapshots reach every partition through
the control topic, so each partition judges its loads against its own copy.

The Faust shell (streams/app.py) feeds records in, sends what comes out, and acks
a record only once it has been applied (records held by the aligner wait).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from schemas.decode import DeadLetterReason, Decoded, Rejected, TopicKind, decode
from schemas.envelope import SEQ_HEADER, TICK_HEADER, Tick, header_value
from streams.worker.aligner import SeqAligner

CONTROL_HEADER = "hw-control"
"""On the internal control topic: b"carm" (a CARM snapshot broadcast) or b"tick" (a clock tick)."""

Source = Literal["emanifest", "rns", "control"]
ClockMode = Literal["wall", "event"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    source: Source
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    timestamp_ms: int | None
    handle: Any = None


@dataclass(slots=True)
class Output:
    alerts: list[AlertEvent] = field(default_factory=list)
    rejected: list[tuple[Rejected, RawRecord]] = field(default_factory=list)
    done: list[RawRecord] = field(default_factory=list)
    triggers: list[RawRecord] = field(default_factory=list)
    """The record whose processing produced each alert (same length as `alerts`)."""
    applied: list[tuple[RawRecord, str]] = field(default_factory=list)
    """Records applied, with their event type (for metrics)."""

    def add_alerts(self, alerts: list[AlertEvent], trigger: RawRecord) -> None:
        if alerts:
            self.alerts += alerts
            self.triggers += [trigger] * len(alerts)


def is_tick(record: RawRecord) -> bool:
    return header_value(record.headers, TICK_HEADER) is not None


def is_replayed(record: RawRecord) -> bool:
    """Stamped by `holdwatch replay` (a seq header or a replay tick)."""
    return (
        header_value(record.headers, SEQ_HEADER) is not None
        or header_value(record.headers, TICK_HEADER) is not None
    )


StoreFactory = Callable[[int], tuple[MutableMapping[str, ShipmentState], MutableMapping[str, CarmSnapshot]]]


class PartitionProcessor:
    """Applies one shipment partition's records in log order to its runner."""

    def __init__(
        self,
        partition: int,
        thresholds: Thresholds,
        shipments: MutableMapping[str, ShipmentState],
        carm: MutableMapping[str, CarmSnapshot],
        clock: ClockMode,
    ) -> None:
        self.partition = partition
        self.clock = clock
        self.runner = EventTimeRunner(thresholds, shipments=shipments, carm=carm)
        self.aligner: SeqAligner[RawRecord] = SeqAligner(("emanifest", "rns"))
        self.runner.rebuild_index()

    def on_record(self, record: RawRecord, out: Output) -> None:
        tick_flag = header_value(record.headers, TICK_HEADER)
        if record.source == "control":
            self._apply(record, out)
            out.done.append(record)
            return
        seq_raw = header_value(record.headers, SEQ_HEADER)
        if tick_flag is not None:
            tick = _parse_tick(record, out)
            if tick is None:
                out.done.append(record)
                return
            self.aligner.push(record.source, tick.seq, record, is_tick=True)
        elif seq_raw is not None and seq_raw.isdigit():
            self.aligner.push(record.source, int(seq_raw), record)
        else:
            self._apply(record, out)  # live traffic: applied as it comes
            out.done.append(record)
            return
        for ready in self.aligner.pop_ready():
            self._apply(ready, out)
            out.done.append(ready)

    def _apply(self, record: RawRecord, out: Output) -> None:
        runner = self.runner
        if record.source == "control":
            kind = header_value(record.headers, CONTROL_HEADER)
            if kind == b"tick":
                tick = _parse_tick(record, out)
                if tick is not None:
                    out.add_alerts(runner.advance(tick.time, inclusive=True), record)
            elif kind == b"carm":
                self._apply_carm(record, out)
            return
        if header_value(record.headers, TICK_HEADER) is not None:
            tick = _parse_tick(record, out)
            if tick is not None and self.clock == "event":
                out.add_alerts(runner.advance(tick.time, inclusive=tick.final), record)
            return
        kind_of = TopicKind.EMANIFEST if record.source == "emanifest" else TopicKind.RNS
        result = decode(kind_of, record.key, record.value)
        if isinstance(result, Rejected):
            out.rejected.append((result, record))
            return
        event = result.event
        assert event is not None and not isinstance(event, CarmSnapshot)
        out.applied.append((record, event.event_type))
        out.add_alerts(runner.on_shipment_event(event), record)

    def _apply_carm(self, record: RawRecord, out: Output) -> None:
        # Validated by the CARM agent before the broadcast; decoded again here from the same bytes.
        result = decode(TopicKind.CARM, record.key, record.value)
        if not isinstance(result, Decoded):
            return
        snapshot = result.event
        out.applied.append((record, "carm_snapshot" if snapshot is not None else "carm_tombstone"))
        if isinstance(snapshot, CarmSnapshot):
            out.add_alerts(self.runner.on_carm(result.key, snapshot, snapshot.occurred_at), record)
        elif snapshot is None:
            ms = record.timestamp_ms
            at = datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else self.runner.clock
            if at is not None:
                out.add_alerts(self.runner.on_carm(result.key, None, at), record)

    def held(self) -> int:
        return len(self.aligner)

    def flush(self) -> None:
        """Write the states changed since the last flush (store-backed mappings only)."""
        for mapping in (self.runner.shipments, self.runner.carm):
            flush = getattr(mapping, "flush", None)
            if flush is not None:
                flush()

    def open_alerts(self) -> dict[tuple[str | None, str], int]:
        """Open lifecycles by (port, severity), from the states (the gauge is recomputed, never drifts)."""
        counts: dict[tuple[str | None, str], int] = {}
        for s in self.runner.states():
            if s.severity is not None:
                key = (s.port_of_entry, s.severity)
                counts[key] = counts.get(key, 0) + 1
        return counts


def _parse_tick(record: RawRecord, out: Output) -> Tick | None:
    try:
        return Tick.from_bytes(record.value or b"")
    except (ValueError, KeyError, TypeError) as exc:
        out.rejected.append((Rejected(DeadLetterReason.INVALID_VALUE, f"bad clock tick: {exc}"), record))
        return None
