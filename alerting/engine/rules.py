"""The hold-risk rules of rules.md: which reasons are active for a shipment at an instant."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from alerting.engine.config import Thresholds
from alerting.engine.state import ShipmentState
from schemas.carm import CarmSnapshot

Severity = Literal["warning", "critical"]
WARNING: Final = "warning"
CRITICAL: Final = "critical"

BROKER_MISSING: Final = "BROKER_MISSING"
CARM_IMPORTER_UNKNOWN: Final = "CARM_IMPORTER_UNKNOWN"
CARM_NOT_REGISTERED: Final = "CARM_NOT_REGISTERED"
CARM_BROKER_NOT_DELEGATED: Final = "CARM_BROKER_NOT_DELEGATED"
CARM_DELEGATION_INCOMPLETE: Final = "CARM_DELEGATION_INCOMPLETE"
CARM_NO_RPP: Final = "CARM_NO_RPP"
CARM_SECURITY_SHORT: Final = "CARM_SECURITY_SHORT"
CARM_LOGIN_DORMANT: Final = "CARM_LOGIN_DORMANT"
EMANIFEST_REJECTED: Final = "EMANIFEST_REJECTED"
EMANIFEST_NOT_ACCEPTED: Final = "EMANIFEST_NOT_ACCEPTED"
PARS_NOT_MATCHED: Final = "PARS_NOT_MATCHED"
PARS_NOT_ON_FILE: Final = "PARS_NOT_ON_FILE"
RNS_REJECTED: Final = "RNS_REJECTED"
HELD_FOR_EXAMINATION: Final = "HELD_FOR_EXAMINATION"
NOT_RELEASED_AFTER_ARRIVAL: Final = "NOT_RELEASED_AFTER_ARRIVAL"

ALL_RULES: Final = (
    BROKER_MISSING,
    CARM_IMPORTER_UNKNOWN,
    CARM_NOT_REGISTERED,
    CARM_BROKER_NOT_DELEGATED,
    CARM_DELEGATION_INCOMPLETE,
    CARM_NO_RPP,
    CARM_SECURITY_SHORT,
    CARM_LOGIN_DORMANT,
    EMANIFEST_REJECTED,
    EMANIFEST_NOT_ACCEPTED,
    PARS_NOT_MATCHED,
    PARS_NOT_ON_FILE,
    RNS_REJECTED,
    HELD_FOR_EXAMINATION,
    NOT_RELEASED_AFTER_ARRIVAL,
)

REJECTED_INDICATORS: Final = frozenset({2, 14})


def required_security(carm: CarmSnapshot, th: Thresholds) -> float:
    """Security the importer must post for RPP, by the kind it posted (`none` counts as surety)."""
    highest = carm.highest_monthly_duties_taxes_cad
    if highest is None:
        return th.minimum_security_cad
    if highest == 0:
        return 0.0
    if carm.security.kind == "cash":
        return max(th.minimum_security_cad, highest)
    return max(th.minimum_security_cad, th.surety_ratio * highest)


def posted_security(carm: CarmSnapshot) -> float:
    return 0.0 if carm.security.kind == "none" else carm.security.amount_cad


def _static_readiness(
    carm: CarmSnapshot, broker: str | None, release_mode: str, th: Thresholds
) -> tuple[tuple[str, Severity], ...]:
    """The readiness reasons that do not depend on time (cached per record, broker and mode)."""
    out: list[tuple[str, Severity]] = []
    if not (carm.ccp_registered and carm.rm_account_linked):
        out.append((CARM_NOT_REGISTERED, CRITICAL))
    if broker is not None:
        delegated = False
        visible = False
        for delegation in carm.delegations:
            if delegation.broker_code == broker and delegation.access != "none":
                delegated = True
                visible = visible or delegation.transaction_visibility
        if not delegated:
            out.append((CARM_BROKER_NOT_DELEGATED, CRITICAL))
        elif not visible:
            out.append((CARM_DELEGATION_INCOMPLETE, WARNING))
    if release_mode == "rpp":
        if not carm.rpp_enrolled:
            out.append((CARM_NO_RPP, CRITICAL))
        else:
            posted = posted_security(carm)
            if posted < required_security(carm, th):
                out.append((CARM_SECURITY_SHORT, CRITICAL if posted == 0 else WARNING))
    return tuple(out)


# Keyed by the record's identity (records are immutable), checked on read: a cache, not state.
_READINESS_CACHE: dict[
    tuple[int, str | None, str, int], tuple[CarmSnapshot, tuple[tuple[str, Severity], ...]]
] = {}
_READINESS_CACHE_MAX = 65536


def readiness_reasons(
    s: ShipmentState, carm: CarmSnapshot | None, now: datetime, th: Thresholds, out: dict[str, Severity]
) -> None:
    """CARM readiness of the importer for this load (rules.md, first table)."""
    broker = s.broker_code
    if broker is None:
        out[BROKER_MISSING] = CRITICAL
    if carm is None:
        out[CARM_IMPORTER_UNKNOWN] = WARNING
        return
    key = (id(carm), broker, s.release_mode, id(th))
    cached = _READINESS_CACHE.get(key)
    if cached is None or cached[0] is not carm:
        if len(_READINESS_CACHE) >= _READINESS_CACHE_MAX:
            _READINESS_CACHE.clear()
        cached = (carm, _static_readiness(carm, broker, s.release_mode, th))
        _READINESS_CACHE[key] = cached
    for code, severity in cached[1]:
        out[code] = severity
    last_login = carm.last_portal_login_at
    if last_login is not None and now - last_login > th.login_dormant_after:
        out[CARM_LOGIN_DORMANT] = WARNING


def border_reasons(s: ShipmentState, now: datetime, th: Thresholds, out: dict[str, Severity]) -> None:
    """eManifest, PARS/RNS and arrival rules against the current ETA (rules.md, second table)."""
    eta = s.eta
    if s.cargo_answer == "rejected":
        out[EMANIFEST_REJECTED] = CRITICAL
    if eta is not None:
        if not s.accepted_since_report and now >= eta - th.emanifest_deadline_before_eta:
            out[EMANIFEST_NOT_ACCEPTED] = CRITICAL
        if s.link != "linked" and now >= eta - th.pars_warning_before_eta:
            out[PARS_NOT_MATCHED] = CRITICAL if now >= eta - th.pars_critical_before_eta else WARNING
    if s.link == "not_on_file":
        out[PARS_NOT_ON_FILE] = CRITICAL
    if s.latest_rns in REJECTED_INDICATORS:
        out[RNS_REJECTED] = CRITICAL
    if s.held:
        out[HELD_FOR_EXAMINATION] = CRITICAL
    arrived = s.arrived_at
    if arrived is not None and now >= arrived + th.release_grace_after_arrival:
        out[NOT_RELEASED_AFTER_ARRIVAL] = CRITICAL


def active_reasons(
    s: ShipmentState, carm: CarmSnapshot | None, now: datetime, th: Thresholds
) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    readiness_reasons(s, carm, now, th, out)
    border_reasons(s, now, th, out)
    return out


def deadlines(s: ShipmentState, th: Thresholds) -> list[datetime]:
    """Instants at which a time-based rule can change (they move with the ETA)."""
    result: list[datetime] = []
    if s.eta is not None:
        result += [
            s.eta - th.pars_warning_before_eta,
            s.eta - th.emanifest_deadline_before_eta,
            s.eta - th.pars_critical_before_eta,
        ]
    if s.arrived_at is not None:
        result.append(s.arrived_at + th.release_grace_after_arrival)
    return result
