"""Replay protocol: how `holdwatch replay` tells the pipeline the log's order and clock.

Kafka orders records only within one topic-partition, but the back-test applies a
log in file order across topics. So replay stamps every record it publishes with
its position in the log (header `hw-seq`), and sends **ticks** to every partition
of the CCN-keyed input topics: a tick with seq S promises that no record with a
smaller seq follows in that topic-partition, and carries the log's event time so
far. The pipeline's router merges emanifest[p] and rns[p] by seq, so each shipment
partition sees the log's order. The final tick (`final: true`) carries the log's
last event time: every deadline up to and including it fires in every partition.

Each replay numbers its records from a base above every earlier replay's numbers
(microseconds since the epoch x 10^9), so a second replay into the same pipeline is
never mistaken for stragglers of the first. Seqs are only compared, never stored.

Records without `hw-seq` (live traffic) are applied as they arrive.

Replay leaves the Kafka timestamp to the producer (the wall time of the replay), so the
topics' time retention counts from when a record was replayed, never from when it was
logged: a log older than the retention is not deleted while the pipeline consumes it.
The log's timestamp travels in the header `hw-log-ts` (ms); the pipeline takes a record's
event time (`Envelope.event_ms`, the CARM tombstone rule's clock) from it, else from the
Kafka timestamp (live traffic). Ticks carry their event time in their value.
Ticks are recognised by the `hw-tick` header; their value is JSON (see `Tick`).

A record's headers are read once, at the edge, by `parse_envelope` into an `Envelope`;
the worker's logic reads only that value. Alert records carry the traffic and the trigger's
timestamp (`alert_headers`, written by the worker; `parse_alert_origin`, read by the notifier).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

SEQ_HEADER = "hw-seq"
TICK_HEADER = "hw-tick"
LOG_TS_HEADER = "hw-log-ts"
"""The replayed record's timestamp in the log (ms since the epoch): its event time, while its Kafka
timestamp is the replay's wall time (so retention never deletes history being replayed)."""
CONTROL_HEADER = "hw-control"
"""On the worker's internal control topic: b"carm" (a CARM snapshot broadcast) or b"tick" (a clock tick)."""

# Headers of alert records (set by the worker, read by the notifier for its latency metrics).
TRIGGER_TS_HEADER = "hw-trigger-ts"
"""Kafka timestamp (ms) of the record whose processing produced the alert event."""
TRAFFIC_HEADER = "hw-traffic"
"""b"live" or b"replay": replayed history is kept apart from live latency."""

Source = Literal["emanifest", "rns", "carm", "control"]
"""Which input a record came from (the worker's topics, by role)."""
ControlKind = Literal["carm", "tick"]
Traffic = Literal["live", "replay"]


@dataclass(frozen=True, slots=True)
class Tick:
    seq: int
    time: datetime
    final: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps({"seq": self.seq, "time": self.time.isoformat(), "final": self.final}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Tick:
        data = json.loads(raw)
        when = datetime.fromisoformat(data["time"])
        if when.tzinfo is None:
            raise ValueError("tick time without offset")
        return cls(int(data["seq"]), when, bool(data.get("final", False)))


def header_value(headers: object, name: str) -> bytes | None:
    """Find a header in Kafka headers (list of (key, value) pairs or a mapping)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:  # type: ignore[attr-defined]
        if key == name:
            return bytes(value) if value is not None else None
    return None


class Envelope(NamedTuple):
    """What a record's headers (and, for a tick, its value) say, parsed once at the edge.

    An immutable, slot-free tuple rather than a frozen dataclass: one is built per record on
    the worker's hot path, and a tuple is three times cheaper to build.
    """

    source: Source
    timestamp_ms: int | None
    """The record's Kafka timestamp."""
    seq: int | None = None
    """Its position in the replayed log (`hw-seq`); None for live traffic (or an unreadable seq)."""
    control: ControlKind | None = None
    """On the control topic: what the record carries."""
    tick: Tick | None = None
    """A replay tick (`hw-tick` on an input topic) or a control tick, parsed from the value."""
    tick_error: str | None = None
    """Why a record marked as a tick has no readable `Tick` (it goes to the dead letters)."""
    traffic: Traffic = "live"
    log_ts_ms: int | None = None
    """The log's timestamp of a replayed record (`hw-log-ts`); None for live traffic."""

    @property
    def event_ms(self) -> int | None:
        """The record's timestamp in event time (the CARM tombstone rule's clock): the log's when
        replayed, else the Kafka timestamp."""
        return self.timestamp_ms if self.log_ts_ms is None else self.log_ts_ms

    @property
    def is_tick(self) -> bool:
        """Marked as a clock tick, readable or not."""
        return self.tick is not None or self.tick_error is not None

    @property
    def replayed(self) -> bool:
        """Stamped by `holdwatch replay` (a seq header or a replay tick)."""
        return self.traffic == "replay"

    @property
    def trigger_ms(self) -> int | None:
        """The Kafka timestamp an alert caused by this record is measured from (None for the
        control topic: its records are not input)."""
        return None if self.source == "control" else self.timestamp_ms


def parse_envelope(
    source: Source, headers: object, value: bytes | None, timestamp_ms: int | None
) -> Envelope:
    """The envelope of one record, from its Kafka headers in one pass (list of pairs or a mapping).

    The first occurrence of a header counts. `hw-control` is read on the control topic only and
    `hw-tick` everywhere else; a tick's value is parsed here, so nothing parses it twice. An
    unreadable `hw-log-ts` is ignored (the Kafka timestamp stands in).
    """
    if not headers:
        return Envelope(source, timestamp_ms)
    seq_raw = tick_flag = control_raw = log_ts_raw = None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, raw in items:  # type: ignore[attr-defined]
        if key == SEQ_HEADER:
            seq_raw = raw if seq_raw is None else seq_raw
        elif key == TICK_HEADER:
            tick_flag = raw if tick_flag is None else tick_flag
        elif key == CONTROL_HEADER:
            control_raw = raw if control_raw is None else control_raw
        elif key == LOG_TS_HEADER:
            log_ts_raw = raw if log_ts_raw is None else log_ts_raw
    seq = _digits(seq_raw)
    log_ts = _digits(log_ts_raw)
    traffic: Traffic = "live" if seq_raw is None and tick_flag is None else "replay"
    control: ControlKind | None = None
    if source == "control":
        control = "carm" if control_raw == b"carm" else "tick" if control_raw == b"tick" else None
        if control != "tick":
            return Envelope(source, timestamp_ms, seq, control, traffic=traffic, log_ts_ms=log_ts)
    elif tick_flag is None:
        return Envelope(source, timestamp_ms, seq, traffic=traffic, log_ts_ms=log_ts)
    try:
        tick = Tick.from_bytes(value or b"")
    except (ValueError, KeyError, TypeError) as exc:
        return Envelope(source, timestamp_ms, seq, control, None, str(exc), traffic, log_ts)
    return Envelope(source, timestamp_ms, seq, control, tick, traffic=traffic, log_ts_ms=log_ts)


def _digits(raw: object) -> int | None:
    """A header's non-negative integer, None if absent or unreadable."""
    return int(raw) if raw is not None and bytes(raw).isdigit() else None  # type: ignore[call-overload]


def log_ts_headers(log_ts_ms: int | None) -> list[tuple[str, bytes]]:
    """The `hw-log-ts` header of a replayed record (none when there is no log timestamp)."""
    return [] if log_ts_ms is None else [(LOG_TS_HEADER, str(log_ts_ms).encode("ascii"))]


def control_headers(
    kind: ControlKind, seq: int | None = None, log_ts_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """The headers of a control-topic record (`seq`: a replayed CARM change stays marked as replay;
    `log_ts_ms`: its log timestamp, which the tombstone rule reads, survives the broadcast)."""
    headers = [(CONTROL_HEADER, b"carm" if kind == "carm" else b"tick")]
    if seq is not None:
        headers.append((SEQ_HEADER, str(seq).encode()))
    return headers + log_ts_headers(log_ts_ms)


def alert_headers(trigger: Envelope) -> list[tuple[str, bytes]]:
    """The headers of an alert record caused by the record `trigger` (read by `parse_alert_origin`)."""
    headers = [(TRAFFIC_HEADER, b"replay" if trigger.traffic == "replay" else b"live")]
    if trigger.trigger_ms is not None:
        headers.append((TRIGGER_TS_HEADER, str(trigger.trigger_ms).encode()))
    return headers


@dataclass(frozen=True, slots=True)
class AlertOrigin:
    """What an alert record's headers say about the record that caused it."""

    traffic: Traffic = "live"
    trigger_ms: int | None = None


def parse_alert_origin(headers: object) -> AlertOrigin:
    """The origin of an alert record from its headers (missing or unreadable: live, no trigger time)."""
    trigger = header_value(headers, TRIGGER_TS_HEADER)
    traffic = header_value(headers, TRAFFIC_HEADER)
    return AlertOrigin(
        traffic="replay" if traffic == b"replay" else "live",
        trigger_ms=int(trigger) if trigger and trigger.isdigit() else None,
    )
