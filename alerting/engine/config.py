"""Rule thresholds: every duration and amount of rules.md, with its defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class Thresholds:
    pars_warning_before_eta: timedelta = timedelta(minutes=120)
    emanifest_deadline_before_eta: timedelta = timedelta(minutes=60)
    pars_critical_before_eta: timedelta = timedelta(minutes=30)
    release_grace_after_arrival: timedelta = timedelta(minutes=30)
    login_dormant_after: timedelta = timedelta(days=180)
    minimum_security_cad: float = 5000.0
    surety_ratio: float = 0.5
    max_pending_events_per_unknown_ccn: int = 64
    # Retention, in event time: what keeps the state bounded.
    retention_closed: timedelta = timedelta(hours=72)
    """A closed load is forgotten this long after it closed (late events for it are ignored until then)."""
    retention_unknown: timedelta = timedelta(hours=72)
    """Events of a CCN that never got a `cargo_reported` are dropped this long after the latest."""
    expire_after_eta: timedelta = timedelta(hours=24)
    """An open load with no event for this long after its ETA closes as `expired`."""
