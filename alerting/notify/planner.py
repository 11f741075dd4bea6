"""Planner: what a lifecycle's ledger state and an incoming alert event ask Slack to do next.

Pure: no I/O, no asyncio, no clock reading; the time (monotonic seconds) is passed in. The
delivery shell applies a `Plan` to the record and asks `next_call` which Slack call is owed.

A lifecycle's calls, in order of priority: post the message (a held-back warning waits until its
`post_due`), post an owed escalation reply, edit the message (batched until `edit_due`), post
the other owed replies (resolution). A lifecycle grouped into a storm digest or first seen
already resolved makes no call of its own.

First start on history (a new Slack token, a lost ledger): the notifier reads every alert in order
and posts later, rendering the newest state. So a lifecycle is posted only while still open: one
that resolves before anything reached Slack goes silent, and no top-level message ever first
shows a resolved state. Alerts of replayed traffic are skipped unless the policy opts in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from alerting.engine.rules import is_escalation
from alerting.notify.ledger import AlertRecord
from alerting.notify.policy import DeliveryPolicy
from schemas.alerts import AlertEvent

POST = "post"
EDIT = "edit"
ESCALATION = "escalation"
RESOLUTION = "resolution"
PAGE = "page"  # on-call escalation of an unowned critical: "page:1", "page:2" (due by time, not owed)
NOTE = "note"  # a thread reply saying what dispatch did or what ended a snooze: text in `rec.notes`
ONCALL_POST = "oncall-post"  # the page's post in the escalation channel, owed after the thread page
SEQ_REPLIES = (ESCALATION, RESOLUTION)
"""Replies owed for one event's seq: a new post showing a later seq makes them moot."""


@dataclass(frozen=True, slots=True)
class Timers:
    """A lifecycle's due times kept in memory only (not in the ledger)."""

    post_due: float | None = None  # a held-back warning is posted then
    edit_due: float | None = None  # pending edits are batched into one chat.update then
    page_due: float | None = None  # the next on-call page ("page:N", N = page_level) is due then
    page_level: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What one accepted event changes in its lifecycle."""

    timers: Timers
    silent: bool = False  # never to be shown
    join_digest: bool = False  # a new lifecycle inside a storm: grouped into the channel's digest
    refresh_digest: bool = False  # the lifecycle lives in a digest: the digest is to be re-rendered
    owe: str | None = None  # a thread reply now owed, e.g. "escalation:3"


@dataclass(frozen=True, slots=True)
class NextCall:
    """The Slack call a lifecycle is owed and from when (-inf: at once)."""

    action: str  # POST, EDIT or an owed reply key such as "resolution:4"
    due: float


def reply_key(kind: str, seq: int) -> str:
    return f"{kind}:{seq}"


def reply_seq(key: str) -> int:
    """The seq of the event that made a reply owed (0 if the key carries none)."""
    try:
        return int(key.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def skip_reason(traffic: str, policy: DeliveryPolicy) -> str | None:
    """Why an alert event is not to be delivered at all (None: deliver it); e.g. "replayed"."""
    if traffic == "replay" and not policy.include_replayed:
        return "replayed"  # history re-run through the pipeline: never shown as if it were current
    return None


def is_duplicate(rec: AlertRecord | None, alert: AlertEvent) -> bool:
    """Events at or below the newest accepted seq of their lifecycle are dropped."""
    return rec is not None and alert.seq <= rec.latest.seq


def plan_first(alert: AlertEvent, *, in_storm: bool, now: float, policy: DeliveryPolicy) -> Plan:
    """The first event of a lifecycle: post it (a warning perhaps held back), group it, or stay silent."""
    if alert.action == "resolved":
        return Plan(Timers(), silent=True)  # never shown, already over
    if in_storm:
        return Plan(Timers(), join_digest=True)
    hold = policy.warning_hold_s if alert.severity == "warning" else 0.0
    return Plan(Timers(post_due=now + hold if hold > 0 else None))


def plan_next(
    rec: AlertRecord, alert: AlertEvent, timers: Timers, *, now: float, policy: DeliveryPolicy
) -> Plan:
    """A later event of a lifecycle whose record still holds the previous event as `latest`."""
    if rec.digest is not None:
        return Plan(timers, refresh_digest=True)
    if rec.silent:
        return Plan(timers)
    on_slack = rec.ts is not None or rec.intent == POST
    if not on_slack and alert.action == "resolved":
        # Over before anything reached Slack (held back, or not posted yet): never shown.
        return Plan(Timers(), silent=True)
    held = not on_slack and (timers.post_due or -math.inf) > now
    if held:
        if alert.severity == "critical":
            return Plan(replace(timers, post_due=now))
        return Plan(timers)
    if alert.action == "resolved":
        wanted = (alert.outcome or "") in policy.resolution_reply_outcomes
        owe = reply_key(RESOLUTION, alert.seq) if on_slack and wanted else None
        return Plan(replace(timers, edit_due=now), owe=owe)
    if is_escalation(alert, rec.latest):
        owe = reply_key(ESCALATION, alert.seq) if on_slack else None
        return Plan(replace(timers, edit_due=now), owe=owe)
    edit_due = timers.edit_due if timers.edit_due is not None else now + policy.edit_delay_s
    return Plan(replace(timers, edit_due=edit_due))


def next_call(rec: AlertRecord, timers: Timers) -> NextCall | None:
    """The one Slack call this lifecycle needs next (None: Slack shows what it should)."""
    if rec.digest is not None or rec.silent:
        return None
    if rec.ts is None:
        if rec.latest.action == "resolved" and rec.intent != POST:
            return None  # never post a message whose first state shown is resolved
        return NextCall(POST, _or_now(timers.post_due))
    for key in rec.owed:
        if key.startswith(f"{ESCALATION}:"):
            return NextCall(key, -math.inf)
    call: NextCall | None = None
    if rec.shown_seq < rec.latest.seq or rec.restyle:
        call = NextCall(EDIT, _or_now(timers.edit_due))
    elif rec.owed:
        call = NextCall(rec.owed[0], -math.inf)
    if timers.page_due is not None and (call is None or timers.page_due < call.due):
        return NextCall(reply_key(PAGE, timers.page_level), timers.page_due)
    return call


def is_seq_reply(key: str) -> bool:
    return key.split(":", 1)[0] in SEQ_REPLIES


def _or_now(due: float | None) -> float:
    return -math.inf if due is None else due
