"""Every hold-risk rule of rules.md, in one place.

What the reason codes are and how severe, what each RNS processing indicator and
eManifest notice means, which reasons are active for a shipment at an instant, how
their severities aggregate, the instants at which a time rule can change (the
deadlines), and which lifecycle step is an escalation. The engine (engine.py) only
applies these meanings; explain.py words them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from alerting.engine.config import Thresholds
from alerting.engine.state import LinkState, ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot

Severity = Literal["warning", "critical"]
WARNING: Final = "warning"
CRITICAL: Final = "critical"

# --- reason codes ------------------------------------------------------------------
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

# --- what the RNS processing indicators mean ---------------------------------------
KNOWN_INDICATORS: Final[Mapping[int, str]] = {
    1: "message content accepted",
    2: "message content rejected",
    4: "goods released",
    5: "goods required for examination",
    8: "goods may move, detain at destination (CFIA)",
    9: "declaration accepted, awaiting arrival of goods",
    14: "error message",
    23: "authorised to deliver (CSA shipment)",
    34: "transaction awaiting processing",
}
"""RNS processing indicators the rules know; any other integer is kept and shown only."""
LINKING_INDICATORS: Final = frozenset({9, 34, 4, 8, 23})
"""The release request (PARS) is matched to the CCN."""
RELEASING_INDICATORS: Final = frozenset({4, 8, 23})
"""The goods may move: the shipment closes as released."""
EXAMINATION_INDICATOR: Final = 5
REJECTED_INDICATORS: Final = frozenset({2, 14})

# --- what the eManifest notices mean -----------------------------------------------
RELEASING_NOTICES: Final = frozenset({"released", "authorized_to_deliver"})
ARRIVAL_NOTICES: Final = frozenset({"reported", "arrived"})
"""The first of these is the arrival instant (the release grace starts there)."""
EXAMINATION_NOTICE: Final = "held"
LINK_BY_NOTICE: Final[Mapping[str, LinkState]] = {
    "matched": "linked",
    "not_matched": "not_matched",
    "document_not_on_file": "not_on_file",
}


# --- CARM readiness (rules.md, first table) ----------------------------------------
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
    """The readiness reasons that do not depend on time: a function of the record, broker and mode."""
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


_StaticReasons = tuple[tuple[str, Severity], ...]


@dataclass(slots=True)
class ReadinessCache:
    """Memo of `_static_readiness`, owned by whoever drives the engine (the runner).

    Records and thresholds are immutable, so an entry is keyed by their identity and
    checked on read (an id can be reused once its object is gone). Bounded: cleared when full.
    It saves ~10 % of the back-test: every evaluation of a load re-checks its importer.
    """

    max_entries: int = 65536
    _entries: dict[tuple[int, str | None, str], tuple[CarmSnapshot, Thresholds, _StaticReasons]] = field(
        default_factory=dict
    )

    def static_reasons(
        self, carm: CarmSnapshot, broker: str | None, release_mode: str, th: Thresholds
    ) -> _StaticReasons:
        key = (id(carm), broker, release_mode)
        cached = self._entries.get(key)
        if cached is not None and cached[0] is carm and cached[1] is th:
            return cached[2]
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        reasons = _static_readiness(carm, broker, release_mode, th)
        self._entries[key] = (carm, th, reasons)
        return reasons


def readiness_reasons(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    out: dict[str, Severity],
    cache: ReadinessCache | None = None,
) -> None:
    """CARM readiness of the importer for this load."""
    broker = s.broker_code
    if broker is None:
        out[BROKER_MISSING] = CRITICAL
    if carm is None:
        out[CARM_IMPORTER_UNKNOWN] = WARNING
        return
    if cache is None:
        static = _static_readiness(carm, broker, s.release_mode, th)
    else:
        static = cache.static_reasons(carm, broker, s.release_mode, th)
    for code, severity in static:
        out[code] = severity
    last_login = carm.last_portal_login_at
    if last_login is not None and now - last_login > th.login_dormant_after:
        out[CARM_LOGIN_DORMANT] = WARNING


# --- the border (rules.md, second table) -------------------------------------------
def border_reasons(s: ShipmentState, now: datetime, th: Thresholds, out: dict[str, Severity]) -> None:
    """eManifest, PARS/RNS and arrival rules against the current ETA."""
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
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    cache: ReadinessCache | None = None,
) -> dict[str, Severity]:
    """Every reason active for the shipment at `now`, with its severity."""
    out: dict[str, Severity] = {}
    readiness_reasons(s, carm, now, th, out, cache)
    border_reasons(s, now, th, out)
    return out


def aggregate_severity(active: Mapping[str, Severity]) -> Severity | None:
    """An alert is as severe as its most severe reason; no reason, no alert."""
    if not active:
        return None
    return CRITICAL if CRITICAL in active.values() else WARNING


# --- time ----------------------------------------------------------------------------
def deadline_instants(s: ShipmentState, th: Thresholds) -> tuple[datetime, ...]:
    """The instants at which a time rule can change for this shipment (they move with the ETA),
    its expiry included.

    Not sorted: with the default thresholds ETA-120 < ETA-60 < ETA-30, but they are settings.
    A tuple, not a generator: this runs for every event and deadline (the hot path).
    """
    eta, arrived = s.eta, s.arrived_at
    expiry = expiry_instant(s, th)
    later: tuple[datetime, ...] = () if expiry is None else (expiry,)
    if arrived is not None:
        later = (*later, arrived + th.release_grace_after_arrival)
    if eta is None:
        return later
    return (
        eta - th.pars_warning_before_eta,
        eta - th.emanifest_deadline_before_eta,
        eta - th.pars_critical_before_eta,
        *later,
    )


# --- retention (docs/operations.md, "Retention") --------------------------------------
def expiry_instant(s: ShipmentState, th: Thresholds) -> datetime | None:
    """When an open load with no news closes as `expired`: `expire_after_eta` past the later of
    its ETA and its latest event. A truck that crossed without a release event (or a feed that
    stopped) would otherwise stay "at risk", and in the tables, forever."""
    eta, last = s.eta, s.last_event_at
    if eta is None or (last is not None and last > eta):
        eta = last
    return None if eta is None else eta + th.expire_after_eta


def is_expired(s: ShipmentState, now: datetime, th: Thresholds) -> bool:
    expiry = expiry_instant(s, th) if s.known and s.closed is None else None
    return expiry is not None and now >= expiry


def removal_instant(s: ShipmentState, th: Thresholds) -> datetime | None:
    """When the state of a CCN is forgotten (event time), or None while its load is open.

    A closed load: `retention_closed` after it closed (late events are ignored until then).
    A CCN that never got a `cargo_reported`: `retention_unknown` after its latest held event.
    """
    if s.known:
        if s.closed is None:
            return None
        closed_at = s.closed_at or s.released_at or s.last_eval  # states stored before closed_at
        return None if closed_at is None else closed_at + th.retention_closed
    latest = max((event.occurred_at for event in s.pending), default=None)
    return None if latest is None else latest + th.retention_unknown


# --- escalation ----------------------------------------------------------------------
def is_escalation(alert: AlertEvent, previous: AlertEvent) -> bool:
    """A warning that turned critical (`previous` is the last step of the lifecycle seen before)."""
    if alert.action != "updated" or alert.severity != "critical":
        return False
    return alert.previous_severity == "warning" or (
        alert.previous_severity is None and previous.severity == "warning"
    )
