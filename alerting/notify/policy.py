"""The notifier's tunables, shared by the planner, the scheduler and the executor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class DeliveryPolicy:
    min_interval_s: float = 1.0  # Slack: about one message per second per channel
    edit_delay_s: float = 15.0  # edits of one message within this delay become one chat.update
    digest_edit_delay_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    permanent_retry_s: float = 60.0
    storm_threshold: int = 10
    storm_window_s: float = 120.0
    critical_mention: str | None = None  # user group id (S0123ABC)
    find_margin_s: float = 120.0  # look this far before an uncertain post for its landing
    # A lifecycle raised as a warning is posted only once it has lasted this long (or escalates);
    # one that clears sooner is never shown. 0 = post at once. Held-back time is not persisted.
    warning_hold_s: float = 0.0
    # Outcomes that get the broadcast thread reply (the message itself is always edited).
    # `expired` (the engine closed a load with no news long past its ETA) is quiet: only the edit.
    resolution_reply_outcomes: frozenset[str] = frozenset({"released", "cleared", "cancelled"})
    # Deliver alerts of replayed traffic (header hw-traffic: replay): only for a replay app with its
    # own alert topic and channel. Off: they are skipped (counted), never shown as current.
    include_replayed: bool = False
    # Event time (the newest `at` accepted) a resolved lifecycle, or a finished storm digest, stays in
    # the ledger once Slack owes nothing for it (HOLDWATCH_RETENTION_CLOSED_H); then it is deleted.
    ledger_retention: timedelta = timedelta(hours=72)
    # How far the event-time clock moves between two pruning passes (batches, not one per event).
    prune_interval: timedelta = timedelta(hours=1)
    # Dispatch can act in Slack (a transport is configured): messages carry Acknowledge / Snooze /
    # Release and unacknowledged criticals escalate to on-call. Off: read-only messages, no pages.
    interactive: bool = False
    escalate_after_s: float = 600.0  # a critical alert nobody owns is escalated to on-call after this
    second_page_before_eta_s: float = 1800.0  # ... and once more this long before its ETA
