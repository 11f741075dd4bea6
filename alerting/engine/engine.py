"""The engine: (state, event, CARM record, thresholds) -> (state, alert events).

Pure: no I/O, no clock of its own (time is the events' time), no framework. The
state object passed in belongs to the caller and is updated and returned (copying
it per event would dominate the cost); nothing else is touched.

Time (rules.md): an event is evaluated at `now = max(occurred_at, last evaluation)`.
Before that, every deadline of the shipment earlier than `now` fires, each evaluated
on the state as of its own instant and stamped with it.

What an indicator, a notice or a deadline means is read from rules.py; this module
only applies it. `cache` is the driver's `rules.ReadinessCache` (optional: a speed-up).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from alerting.engine import rules
from alerting.engine.config import Thresholds
from alerting.engine.explain import explain
from alerting.engine.state import ShipmentEvent, ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from schemas.emanifest import (
    Cancelled,
    CargoAccepted,
    CargoRejected,
    CargoReported,
    EtaUpdated,
    Notice,
)
from schemas.rns import RnsStatus

Trigger = Literal["event", "deadline", "carm"]


def next_deadline(s: ShipmentState, th: Thresholds) -> datetime | None:
    """The earliest deadline after the last evaluation, or None if nothing is due."""
    if not s.known or s.closed is not None:
        return None
    last = s.last_eval
    best: datetime | None = None
    for instant in rules.deadline_instants(s, th):
        if (last is None or instant > last) and (best is None or instant < best):
            best = instant
    return best


def _alert(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    action: Literal["raised", "updated", "resolved"],
    active: dict[str, rules.Severity],
    previous: rules.Severity | None,
    trigger: Trigger,
    outcome: Literal["released", "cancelled", "cleared", "expired"] | None = None,
) -> AlertEvent:
    assert s.first_raised_at is not None
    alert_id = s.alert_id
    contact = carm.contact if carm is not None else None
    return AlertEvent(
        event_id=f"{alert_id}/{s.seq}",
        alert_id=alert_id,
        seq=s.seq,
        ccn=s.ccn,
        action=action,
        severity=s.severity if action != "resolved" else None,
        previous_severity=previous,
        reasons=list(s.reasons),
        details=explain(s, carm, now, th, active) if active else [],
        at=now,
        first_raised_at=s.first_raised_at,
        outcome=outcome,
        trigger=trigger,
        load_ref=s.load_ref,
        carrier_code=s.carrier_code,
        port_of_entry=s.port_of_entry,
        eta=s.eta,
        importer_bn=s.importer_bn,
        importer_name=s.importer_name,
        importer_contact=contact,
        shipper_name=s.shipper_name,
        broker_code=s.broker_code,
        broker_name=s.broker_name,
        dispatch_team=s.dispatch_team,
        truck_number=s.truck_number,
        trailer_number=s.trailer_number,
        driver_name=s.driver_name,
        driver_phone=s.driver_phone,
        link_state=s.link,
        latest_rns_indicator=s.latest_rns if s.latest_rns is not None else s.last_rns_raw,
        arrived_at=s.arrived_at,
    )


def evaluate(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    trigger: Trigger,
    cache: rules.ReadinessCache | None = None,
) -> list[AlertEvent]:
    """Evaluate the rules at `now` and emit the lifecycle step, if any."""
    s.last_eval = now
    if s.closed is None and rules.is_expired(s, now, th):
        s.closed, s.closed_at = "expired", now
    if s.closed is not None:
        return _close(s, carm, now, th, s.closed, trigger)
    active = rules.active_reasons(s, carm, now, th, cache)
    new_reasons = tuple(sorted(active))
    new_severity = rules.aggregate_severity(active)
    old_reasons, old_severity = s.reasons, s.severity
    if new_reasons == old_reasons and new_severity == old_severity:
        return []
    s.reasons, s.severity = new_reasons, new_severity
    if not old_reasons:
        s.lifecycles += 1
        s.seq = 1
        s.first_raised_at = now
        if s.ever_alerted_at is None:
            s.ever_alerted_at = now
        return [_alert(s, carm, now, th, "raised", active, None, trigger)]
    s.seq += 1
    if not new_reasons:
        return [_alert(s, carm, now, th, "resolved", active, old_severity, trigger, "cleared")]
    return [_alert(s, carm, now, th, "updated", active, old_severity, trigger)]


def _close(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    outcome: Literal["released", "cancelled", "expired"],
    trigger: Trigger,
) -> list[AlertEvent]:
    s.pending = []
    s.seen_ids = set()  # a closed shipment ignores everything: no need to remember ids
    if not s.reasons:
        return []
    old_severity = s.severity
    s.reasons, s.severity = (), None
    s.seq += 1
    return [_alert(s, carm, now, th, "resolved", {}, old_severity, trigger, outcome)]


def fire_deadlines(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    until: datetime,
    th: Thresholds,
    *,
    inclusive: bool,
    cache: rules.ReadinessCache | None = None,
) -> list[AlertEvent]:
    """Fire every deadline before `until` (or at it, if inclusive), each at its own instant."""
    out: list[AlertEvent] = []
    while True:
        due = next_deadline(s, th)
        if due is None or due > until or (due == until and not inclusive):
            return out
        out += evaluate(s, carm, due, th, "deadline", cache)


def _apply_facts(s: ShipmentState, event: ShipmentEvent, when: datetime) -> None:
    """Fold one event into the state (no evaluation)."""
    if isinstance(event, RnsStatus):
        indicator = event.processing_indicator
        s.last_rns_raw = indicator
        if indicator in rules.KNOWN_INDICATORS:
            s.latest_rns = indicator
        if indicator in rules.LINKING_INDICATORS:
            s.link = "linked"
        if indicator == rules.EXAMINATION_INDICATOR:
            s.held = True
            s.held_at = s.held_at or when
        if indicator in rules.RELEASING_INDICATORS:
            s.closed, s.closed_at = "released", when
            s.released_at = when
    elif isinstance(event, Notice):
        kind = event.notice
        link = rules.LINK_BY_NOTICE.get(kind)
        if link is not None:
            s.link = link
        elif kind in rules.ARRIVAL_NOTICES:
            if s.arrived_at is None:
                s.arrived_at = event.occurred_at
        elif kind in rules.RELEASING_NOTICES:
            s.closed, s.closed_at = "released", when
            s.released_at = when
        elif kind == rules.EXAMINATION_NOTICE:
            s.held = True
            s.held_at = s.held_at or when
    elif isinstance(event, CargoReported):
        s.known = True
        s.carrier_code = event.carrier_code
        s.trip_number = event.trip_number
        s.load_ref = event.load_ref
        s.port_of_entry = event.port_of_entry
        s.eta = event.eta
        s.importer_bn = event.importer_bn
        s.importer_name = event.importer_name
        s.shipper_name = event.shipper_name
        s.broker_code = event.broker_code
        s.broker_name = event.broker_name
        s.release_mode = event.release_mode
        s.dispatch_team = event.dispatch_team
        s.truck_number = event.truck_number
        s.trailer_number = event.trailer_number
        s.driver_name = event.driver_name
        s.driver_phone = event.driver_phone
        s.accepted_since_report = False
    elif isinstance(event, CargoAccepted):
        s.cargo_answer = "accepted"
        s.reject_reason = None
        s.accepted_since_report = True
    elif isinstance(event, CargoRejected):
        s.cargo_answer = "rejected"
        s.reject_reason = event.reason
    elif isinstance(event, EtaUpdated):
        s.eta = event.eta
        if event.port_of_entry is not None:
            s.port_of_entry = event.port_of_entry
    elif isinstance(event, Cancelled) and s.closed is None:
        s.closed, s.closed_at = "cancelled", when


def _in_event_time(report: CargoReported, held: Sequence[ShipmentEvent]) -> list[ShipmentEvent]:
    """The first `cargo_reported` and the events held before it, in the order they occurred.

    So an older `eta_updated` never overrides the report's ETA or port, and a later one still
    does. Ties keep arrival order, the report first: its facts are the base, and what occurred
    at or after it applies on top. A CBSA answer (`cargo_accepted`/`cargo_rejected`) cannot
    precede the report it answers: one that seems to is placed at the report's time, after it.
    """

    def occurred(event: ShipmentEvent) -> datetime:
        if isinstance(event, CargoAccepted | CargoRejected):
            return max(event.occurred_at, report.occurred_at)
        return event.occurred_at

    return sorted([report, *held], key=occurred)


def on_event(
    s: ShipmentState | None,
    event: ShipmentEvent,
    carm: CarmSnapshot | None,
    th: Thresholds,
    cache: rules.ReadinessCache | None = None,
) -> tuple[ShipmentState, list[AlertEvent]]:
    """Apply one eManifest/RNS event.

    `carm` is the readiness record of the importer the shipment is judged against
    (for a `cargo_reported`, the importer it names).
    """
    if s is None:
        s = ShipmentState(ccn=event.ccn)
    if s.closed is not None and s.known:
        return s, []
    if event.event_id in s.seen_ids:
        return s, []
    if not s.known and not isinstance(event, CargoReported):
        # Kept until the shipment appears (bounded: the oldest are dropped first).
        s.seen_ids.add(event.event_id)
        s.pending.append(event)
        if len(s.pending) > th.max_pending_events_per_unknown_ccn:
            del s.pending[0]
        return s, []
    s.seen_ids.add(event.event_id)
    now = event.occurred_at if s.last_eval is None or event.occurred_at > s.last_eval else s.last_eval
    out = fire_deadlines(s, carm, now, th, inclusive=False, cache=cache) if s.known else []
    if s.closed is not None:
        return s, out  # it expired before this event occurred: late news for a closed load
    if not s.known:
        # First cargo_reported: apply it and what arrived before it in event time, evaluate once.
        assert isinstance(event, CargoReported)
        for item in _in_event_time(event, s.pending):
            if item.occurred_at > now:
                now = item.occurred_at
            _apply_facts(s, item, now)
        s.pending = []
    else:
        _apply_facts(s, event, now)
    s.last_event_at = now
    out += evaluate(s, carm, now, th, "event", cache)
    return s, out


def on_carm_change(
    s: ShipmentState,
    old: CarmSnapshot | None,
    new: CarmSnapshot | None,
    at: datetime,
    th: Thresholds,
    cache: rules.ReadinessCache | None = None,
) -> list[AlertEvent]:
    """Re-evaluate an open shipment when its importer's CARM record changes at `at`.

    Deadlines before the change are evaluated with the old record.
    """
    if not s.known or s.closed is not None:
        return []
    now = at if s.last_eval is None or at > s.last_eval else s.last_eval
    out = fire_deadlines(s, old, now, th, inclusive=False, cache=cache)
    out += evaluate(s, new, now, th, "carm", cache)
    return out


__all__: Sequence[str] = (
    "evaluate",
    "fire_deadlines",
    "next_deadline",
    "on_carm_change",
    "on_event",
)
