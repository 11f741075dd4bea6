"""The one decode → runner dispatch: a decoded record applied to an `EventTimeRunner`.

Used by the back-test and the live pipeline alike, so both apply a record the same
way, and the CARM tombstone's time rule is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from alerting.engine.runner import EventTimeRunner
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from schemas.decode import Decoded

EPOCH = datetime.fromtimestamp(0, tz=UTC)


@dataclass(frozen=True, slots=True)
class Ingested:
    """What applying one record did."""

    alerts: list[AlertEvent]
    duplicate: bool
    """The runner had seen this event already: nothing changed, its clock included."""
    event_type: str
    """The applied event's type, for metrics: "cargo_reported", ..., "rns_status",
    "carm_snapshot" or "carm_tombstone"."""


def tombstone_time(runner: EventTimeRunner, timestamp_ms: int | None) -> datetime:
    """When a CARM tombstone (no body, so no `occurred_at`) happened.

    The record's timestamp; without one, the runner's clock (nothing moves); without
    that either, the epoch (earlier than any event, so it fires no deadline). The live
    pipeline used to skip a tombstone with neither; it now applies it like the back-test.
    """
    if timestamp_ms is not None:
        return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return runner.clock or EPOCH


def ingest(runner: EventTimeRunner, decoded: Decoded, timestamp_ms: int | None) -> Ingested:
    """Apply one decoded record (`timestamp_ms`: its Kafka/log timestamp, used for tombstones)."""
    event = decoded.event
    before = runner.duplicates
    if event is None:
        alerts = runner.on_carm(decoded.key, None, tombstone_time(runner, timestamp_ms))
        event_type = "carm_tombstone"
    elif isinstance(event, CarmSnapshot):
        alerts = runner.on_carm(event.importer_bn, event, event.occurred_at)
        event_type = "carm_snapshot"
    else:
        alerts = runner.on_shipment_event(event)
        event_type = event.event_type
    return Ingested(alerts=alerts, duplicate=runner.duplicates != before, event_type=event_type)
