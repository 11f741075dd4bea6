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
Ticks are recognised by the `hw-tick` header; their value is JSON (see `Tick`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

SEQ_HEADER = "hw-seq"
TICK_HEADER = "hw-tick"


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

# Headers of alert records (set by the worker, read by the notifier for its latency metrics).
TRIGGER_TS_HEADER = "hw-trigger-ts"
"""Kafka timestamp (ms) of the record whose processing produced the alert event."""
TRAFFIC_HEADER = "hw-traffic"
"""b"live" or b"replay": replayed history is kept apart from live latency."""
