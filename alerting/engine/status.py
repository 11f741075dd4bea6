"""Answers on demand, from the same rules: a load's status, the pre-pickup readiness check.

Pure: (state, CARM record, now, thresholds) → a response model of `schemas.api`. The worker's
web views (streams/worker/web.py) look the state up and call these; the CLI and the board only
read what they return. The readiness check judges a hypothetical new load of the importer with
the given broker by the very rules a real load is judged by (`rules.readiness_reasons`), so
"can I send a truck?" and "why did this load alert?" never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alerting.engine import rules
from alerting.engine.config import Thresholds
from alerting.engine.explain import explain
from alerting.engine.state import ShipmentState
from schemas.alerts import Severity
from schemas.api import AlertLifecycleView, LoadPage, LoadPhase, LoadStatus, ReadinessCheck
from schemas.brokers import BrokerDirectory
from schemas.carm import CarmSnapshot
from schemas.ports import PORTS, Port

_MINUTE = timedelta(minutes=1)


def phase_of(s: ShipmentState) -> LoadPhase:
    if not s.known:
        return "reported_events_only"
    return s.closed or "open"


def load_status(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    *,
    ports: Mapping[str, Port] = PORTS,
    brokers: BrokerDirectory | None = None,
) -> LoadStatus:
    """The load as the engine sees it at `now`: its facts, and its open alert explained.

    `ports` and `brokers` are reference data (files the shell loaded): the port's name and zone,
    and the broker's numbers with whether its office is open at `now`."""
    phase = phase_of(s)
    active: dict[str, rules.Severity] = {}
    if phase == "open":
        active = rules.active_reasons(s, carm, now, th)
    port = ports.get(s.port_of_entry) if s.port_of_entry else None
    contact = brokers.get(s.broker_code) if brokers is not None else None
    alert = None
    if s.reasons and s.severity is not None and s.first_raised_at is not None:
        alert = AlertLifecycleView(
            alert_id=s.alert_id, seq=s.seq, severity=s.severity, first_raised_at=s.first_raised_at
        )
    return LoadStatus(
        ccn=s.ccn,
        phase=phase,
        as_of=now,
        load_ref=s.load_ref,
        carrier_code=s.carrier_code,
        trip_number=s.trip_number,
        port_of_entry=s.port_of_entry,
        port_name=port.name if port else None,
        port_tz=port.tz if port else None,
        eta=s.eta,
        minutes_to_eta=round((s.eta - now) / _MINUTE, 1) if s.eta is not None else None,
        importer_bn=s.importer_bn,
        importer_name=s.importer_name,
        shipper_name=s.shipper_name,
        broker_code=s.broker_code,
        broker_name=s.broker_name,
        broker_contact=contact.view(now) if contact is not None else None,
        release_mode=s.release_mode if s.known else None,
        dispatch_team=s.dispatch_team,
        truck_number=s.truck_number,
        trailer_number=s.trailer_number,
        driver_name=s.driver_name,
        driver_phone=s.driver_phone,
        cargo_answer=s.cargo_answer,
        link_state=s.link,
        latest_rns_indicator=s.latest_rns if s.latest_rns is not None else s.last_rns_raw,
        held_for_examination=s.held,
        arrived_at=s.arrived_at,
        released_at=s.released_at,
        closed_at=s.closed_at,
        severity=rules.aggregate_severity(active),
        reasons=explain(s, carm, now, th, active) if active else [],
        alert=alert,
    )


def readiness_check(
    importer_bn: str,
    carm: CarmSnapshot | None,
    broker_code: str | None,
    release_mode: Literal["rpp", "prepaid"],
    now: datetime,
    th: Thresholds,
) -> ReadinessCheck:
    """What a new load of this importer with this broker would be told now (no record: unknown)."""
    probe = ShipmentState(
        ccn="PRE-PICKUP",
        known=True,
        importer_bn=importer_bn,
        importer_name=carm.legal_name if carm is not None else None,
        broker_code=broker_code,
        release_mode=release_mode,
    )
    active: dict[str, rules.Severity] = {}
    rules.readiness_reasons(probe, carm, now, th, active)
    taken = carm.occurred_at if carm is not None else None
    return ReadinessCheck(
        as_of=now,
        importer_bn=importer_bn,
        broker_code=broker_code,
        release_mode=release_mode,
        ready=not active,
        severity=rules.aggregate_severity(active),
        reasons=explain(probe, carm, now, th, active) if active else [],
        importer_name=probe.importer_name,
        carm_record_at=taken,
        carm_record_age_hours=round((now - taken) / timedelta(hours=1), 1) if taken is not None else None,
    )


@dataclass(frozen=True, slots=True)
class LoadFilter:
    """The query of `GET /v1/loads`: every field optional, all must hold."""

    open_only: bool = True
    port: str | None = None
    team: str | None = None
    eta_within: timedelta | None = None
    severity: Severity | None = None
    at_risk_only: bool = False

    def matches(self, status: LoadStatus) -> bool:
        if self.open_only and status.phase != "open":
            return False
        if self.port is not None and status.port_of_entry != self.port:
            return False
        if self.team is not None and status.dispatch_team != self.team:
            return False
        if self.severity is not None and status.severity != self.severity:
            return False
        if self.at_risk_only and status.severity is None:
            return False
        if self.eta_within is not None:
            minutes = status.minutes_to_eta
            if minutes is None or minutes > self.eta_within / _MINUTE:
                return False
        return True


def by_time_to_eta(status: LoadStatus) -> tuple[bool, float, str]:
    """Soonest ETA first; loads without an ETA last; the CCN breaks ties (stable pages)."""
    minutes = status.minutes_to_eta
    return (minutes is None, minutes if minutes is not None else 0.0, status.ccn)


def page_of(matching: list[LoadStatus], as_of: datetime, offset: int, limit: int) -> LoadPage:
    """Sort everything that matched (from every partition), then cut one page."""
    ordered = sorted(matching, key=by_time_to_eta)
    items = ordered[offset : offset + limit]
    after = offset + len(items)
    return LoadPage(
        as_of=as_of,
        total=len(ordered),
        offset=offset,
        limit=limit,
        next_offset=after if after < len(ordered) else None,
        items=items,
    )
