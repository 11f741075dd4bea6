"""Dispatch acting on an alert: pure decisions from a lifecycle's state, an action and the time.

- `parse_click`: a Slack `block_actions` payload → the click holdwatch understands (or why not);
- `snooze_until`: what "30 min", "1 h" or "until ETA − 30 min" means for this alert;
- `decide`: a lifecycle's `Ownership` + a `DispatchAction` → the new ownership, the outcome and the
  thread note that says what happened (applied once per action id: Slack may deliver a click twice);
- `watch`: how a new alert event changes ownership (became critical: escalation starts counting; a
  new critical reason ends a snooze);
- `page_due`: when the next on-call escalation of an unowned critical lifecycle is due.

No I/O, no clock reading: times (wall-clock epoch seconds) are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from alerting.notify.ledger import MAX_APPLIED, AlertRecord, Ownership
from schemas.actions import ActionKind, DispatchAction, SnoozeChoice
from schemas.alerts import AlertEvent

ACK_BUTTON, SNOOZE_MENU, RELEASE_BUTTON = "hw_ack", "hw_snooze", "hw_release"
ACTION_IDS: dict[str, ActionKind] = {
    ACK_BUTTON: "acknowledge",
    SNOOZE_MENU: "snooze",
    RELEASE_BUTTON: "release",
}
SNOOZE_CHOICES: dict[SnoozeChoice, str] = {"30m": "30 min", "1h": "1 hour", "eta-30m": "until ETA − 30 min"}

ActionOutcome = Literal[
    "applied", "unchanged", "duplicate", "resolved", "unknown_alert", "refused", "invalid"
]
ACTION_OUTCOMES: tuple[ActionOutcome, ...] = (
    "applied",
    "unchanged",
    "duplicate",
    "resolved",
    "unknown_alert",
    "refused",
    "invalid",
)
"""How an action ended: applied; nothing to change (already the owner); the same click again; the
lifecycle is over; not a lifecycle we know; the user may not act; a click we cannot read."""


@dataclass(frozen=True, slots=True)
class Click:
    """One holdwatch button or menu choice, as Slack delivered it."""

    action_id: str  # identifies the click: channel/message ts/action/action ts
    kind: ActionKind
    alert_id: str
    ccn: str | None  # from the button's value: any notifier can route the click to the alert's owner
    user_id: str
    user_name: str | None
    channel_id: str | None
    at: datetime
    snooze: SnoozeChoice | None
    response_url: str | None


def parse_click(payload: dict[str, Any]) -> Click | str:
    """The first holdwatch action of a `block_actions` payload, or why there is none."""
    if payload.get("type") != "block_actions":
        return f"not a button click ({payload.get('type')!r})"
    user = payload.get("user") or {}
    actions = [a for a in payload.get("actions") or [] if a.get("action_id") in ACTION_IDS]
    if not actions or not isinstance(user.get("id"), str):
        return "no holdwatch action in the click"
    action = actions[0]
    kind = ACTION_IDS[action["action_id"]]
    value = action.get("value")
    snooze: SnoozeChoice | None = None
    if kind == "snooze":
        option = action.get("selected_option") or {}
        choice, _, value = str(option.get("value") or "").partition("|")
        if choice not in SNOOZE_CHOICES:
            return f"unknown snooze choice {choice!r}"
        snooze = choice
    if not isinstance(value, str) or not value:
        return "the click carries no alert id"
    alert_id, _, ccn = value.partition("|")
    message = payload.get("message") or {}
    channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get("channel_id")
    try:
        at = datetime.fromtimestamp(float(action.get("action_ts") or 0), UTC)
    except (TypeError, ValueError, OverflowError):
        return "unreadable action_ts"
    click_id = "/".join(
        str(x) for x in (channel, message.get("ts"), action["action_id"], action.get("action_ts"))
    )
    return Click(
        action_id=click_id,
        kind=kind,
        alert_id=alert_id,
        ccn=ccn or None,
        user_id=user["id"],
        user_name=user.get("username") or user.get("name"),
        channel_id=channel if isinstance(channel, str) else None,
        at=at,
        snooze=snooze,
        response_url=payload.get("response_url"),
    )


def snooze_until(choice: SnoozeChoice, alert: AlertEvent, at: datetime) -> datetime:
    """When a snooze chosen at `at` ends; "until ETA − 30 min" without an ETA (or past it) is 30 min."""
    if choice == "1h":
        return at + timedelta(hours=1)
    if choice == "eta-30m" and alert.eta is not None and alert.eta - timedelta(minutes=30) > at:
        return alert.eta - timedelta(minutes=30)
    return at + timedelta(minutes=30)


def to_action(
    click: Click, alert: AlertEvent | None, *, source: Literal["socket_mode", "http"]
) -> DispatchAction:
    """The event for topic holdwatch.actions. Without the alert (another notifier holds it) the
    CCN comes from the button and the snooze's end is worked out where the action is applied."""
    until = None
    if click.snooze is not None and alert is not None:
        until = snooze_until(click.snooze, alert, click.at)
    ccn = alert.ccn if alert is not None else click.ccn
    assert ccn is not None, "a click without its alert and without a CCN cannot be routed"
    return DispatchAction(
        action_id=click.action_id,
        kind=click.kind,
        alert_id=click.alert_id,
        ccn=ccn,
        user_id=click.user_id,
        user_name=click.user_name,
        channel_id=click.channel_id,
        at=click.at,
        snooze=click.snooze,
        snooze_until=until,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: ActionOutcome
    ownership: Ownership
    note: str | None = None  # what the thread is told (raw text; the renderer escapes it)


def who(name: str | None, user_id: str) -> str:
    return name or user_id


def decide(
    ownership: Ownership, latest: AlertEvent, action: DispatchAction, *, fmt: Callable[[datetime], str]
) -> Decision:
    """Apply `action` to a lifecycle whose newest event is `latest`; `fmt` writes a time as the
    thread should say it (the port's local time)."""
    if action.action_id in ownership.applied:
        return Decision("duplicate", ownership)
    if latest.action == "resolved":
        return Decision("resolved", ownership)
    applied = (*ownership.applied, action.action_id)[-MAX_APPLIED:]
    actor = who(action.user_name, action.user_id)
    at, clock_text = action.at.timestamp(), fmt(action.at)
    if action.kind == "acknowledge":
        if ownership.owner == action.user_id:
            return Decision("unchanged", replace(ownership, applied=applied))
        took = f" (took over from {who(ownership.owner_name, ownership.owner)})" if ownership.owner else ""
        new = replace(
            ownership, owner=action.user_id, owner_name=action.user_name, owned_at=at, applied=applied
        )
        return Decision("applied", new, f"{actor} acknowledged at {clock_text} and owns this load{took}.")
    if action.kind == "release":
        if ownership.owner is None:
            return Decision("unchanged", replace(ownership, applied=applied))
        was = (
            ""
            if ownership.owner == action.user_id
            else f" (was {who(ownership.owner_name, ownership.owner)})"
        )
        critical = latest.severity == "critical"
        new = replace(
            ownership,
            owner=None,
            owner_name=None,
            owned_at=None,
            watch_from=at if critical else None,  # unowned again: escalation counts from now
            pages=0,
            paged_at=None,
            applied=applied,
        )
        return Decision(
            "applied", new, f"{actor} released ownership at {clock_text}{was}: nobody owns it now."
        )
    until = action.snooze_until or snooze_until(action.snooze or "30m", latest, action.at)
    new = replace(ownership, snoozed_until=until.timestamp(), snoozed_by=action.user_id, applied=applied)
    note = f"{actor} snoozed this alert at {clock_text} until {fmt(until)}: no on-call page before then."
    return Decision("applied", new, note)


def critical_codes(alert: AlertEvent) -> set[str]:
    return {d.code for d in alert.details if d.severity == "critical"}


def watch(
    ownership: Ownership, previous: AlertEvent | None, alert: AlertEvent, *, now: float
) -> tuple[Ownership, bool]:
    """Ownership after a new alert event; True if the event ended a snooze (escalated to critical,
    or a critical reason that was not there before)."""
    if alert.action == "resolved" or alert.severity != "critical":
        return replace(ownership, watch_from=None, pages=0, paged_at=None), False
    if ownership.watch_from is None:
        ownership = replace(ownership, watch_from=now, pages=0, paged_at=None)
    snoozed = ownership.snoozed_until is not None and ownership.snoozed_until > now
    if not snoozed or previous is None:
        return ownership, False
    newly_critical = previous.severity != "critical" or bool(critical_codes(alert) - critical_codes(previous))
    if newly_critical:
        return replace(ownership, snoozed_until=None, snoozed_by=None), True
    return ownership, False


def page_due(
    rec: AlertRecord, *, escalate_after_s: float, second_before_eta_s: float
) -> tuple[int, float] | None:
    """(level, wall-clock due) of the next on-call escalation of an unowned critical lifecycle with
    its own message, or None. Level 1 after `escalate_after_s`; level 2 at ETA − `second_before_eta_s`
    if that is later than level 1 was posted. Both wait for a snooze to end."""
    o, latest = rec.ownership, rec.latest
    if rec.replayed or rec.digest is not None or rec.silent or rec.ts is None:
        return None
    if latest.action == "resolved" or latest.severity != "critical" or o.owner or o.watch_from is None:
        return None
    if o.pages == 0:
        level, due = 1, o.watch_from + escalate_after_s
    elif o.pages == 1 and latest.eta is not None:
        level, due = 2, latest.eta.timestamp() - second_before_eta_s
        if o.paged_at is None or due <= o.paged_at:
            return None  # the first page came too close to the ETA to make a second one useful
    else:
        return None
    if o.snoozed_until is not None:
        due = max(due, o.snoozed_until)
    return level, due
