"""The pipeline's per-partition logic, free of Faust so it can be tested without a broker.

Each shipment partition p (the same partition number of emanifest, rns and the
internal control topic) gets one `EventTimeRunner` — the back-test's engine driver —
over a store-backed view of p's states, plus a `SeqAligner` that restores the log's
order across the two CCN-keyed topics. CARM snapshots reach every partition through
the control topic, so each partition judges its loads against its own copy.

The Faust shell (streams/worker/app.py) feeds records in, sends what comes out, and acks
a record only once it has been applied (records held by the aligner wait).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from alerting.engine.config import Thresholds
from alerting.engine.ingest import ingest
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from schemas.decode import DeadLetterReason, Decoded, Rejected, TopicKind, decode
from schemas.envelope import Envelope, Source, Tick
from streams.worker.aligner import SeqAligner

__all__ = ["ClockMode", "Output", "PartitionProcessor", "RawRecord", "Source"]

ClockMode = Literal["wall", "event"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One consumed record: its bytes, its parsed envelope and the shell's handle (to ack it)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    envelope: Envelope
    handle: Any = None

    @property
    def source(self) -> Source:
        return self.envelope.source

    @property
    def timestamp_ms(self) -> int | None:
        return self.envelope.timestamp_ms

    @property
    def event_ms(self) -> int | None:
        """Its timestamp in event time: the log's when replayed (`hw-log-ts`), else the Kafka one."""
        return self.envelope.event_ms

    def ack(self) -> None:
        self.handle.ack()


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
        envelope = record.envelope
        if envelope.source == "control":
            self._apply(record, out)
            out.done.append(record)
            return
        if envelope.is_tick:
            tick = _tick_of(record, out)
            if tick is None:
                out.done.append(record)
                return
            self.aligner.push(envelope.source, tick.seq, record, is_tick=True)
        elif envelope.seq is not None:
            self.aligner.push(envelope.source, envelope.seq, record)
        else:
            self._apply(record, out)  # live traffic: applied as it comes
            out.done.append(record)
            return
        for ready in self.aligner.pop_ready():
            self._apply(ready, out)
            out.done.append(ready)

    def _apply(self, record: RawRecord, out: Output) -> None:
        envelope = record.envelope
        if envelope.source == "control":
            if envelope.control == "tick":
                tick = _tick_of(record, out)
                if tick is not None:
                    out.add_alerts(self.runner.advance(tick.time, inclusive=True), record)
            elif envelope.control == "carm":
                self._apply_carm(record, out)
            return
        if envelope.tick is not None:  # a replay tick (unreadable ones never reach the aligner)
            if self.clock == "event":
                tick = envelope.tick
                out.add_alerts(self.runner.advance(tick.time, inclusive=tick.final), record)
            return
        kind_of = TopicKind.EMANIFEST if envelope.source == "emanifest" else TopicKind.RNS
        result = decode(kind_of, record.key, record.value)
        if isinstance(result, Rejected):
            out.rejected.append((result, record))
            return
        self._ingest(result, record, out)

    def _apply_carm(self, record: RawRecord, out: Output) -> None:
        # Validated by the CARM agent before the broadcast; decoded again here from the same bytes.
        result = decode(TopicKind.CARM, record.key, record.value)
        if isinstance(result, Decoded):
            self._ingest(result, record, out)

    def _ingest(self, decoded: Decoded, record: RawRecord, out: Output) -> None:
        # Event time, not the Kafka timestamp: a replayed record is stamped with the replay's wall time.
        done = ingest(self.runner, decoded, record.event_ms)
        out.applied.append((record, done.event_type))
        out.add_alerts(done.alerts, record)

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


def _tick_of(record: RawRecord, out: Output) -> Tick | None:
    """The record's tick; an unreadable one is dead-lettered."""
    envelope = record.envelope
    if envelope.tick is None:
        detail = f"bad clock tick: {envelope.tick_error}"
        out.rejected.append((Rejected(DeadLetterReason.INVALID_VALUE, detail), record))
    return envelope.tick
