"""Alert events → what a dispatcher reads: Slack Block Kit, a plain-text fallback, console text.

Two steps so Slack and the console show the same content: `alert_card` turns an event into a
neutral card of raw strings; `card_to_slack` escapes and lays it out within Block Kit limits,
`card_to_console` prints it. Every piece of data is escaped (`&`, `<`, `>`) so nothing from a
manifest can ping `@channel`, mention a user or hide a link.

Reference data (the CBSA office table, the broker directory) comes in as a `Reference` the shell
loads from files (streams/feeds); without one, the built-in port table and no directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerting.notify.actions import ACK_BUTTON, RELEASE_BUTTON, SNOOZE_CHOICES, SNOOZE_MENU
from alerting.notify.ledger import Ownership
from schemas.alerts import AlertEvent, ReasonDetail
from schemas.brokers import BrokerDirectory
from schemas.ports import PORTS, Port

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_FALLBACK_TEXT = 3000
MAX_CONTEXT_TEXT = 2000

SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:"}
RESOLVED_EMOJI = ":white_check_mark:"
EXPIRED_EMOJI = ":hourglass:"
OUTCOME_WORDS = {
    "released": "released by CBSA",
    "cleared": "cleared: no longer at risk",
    "cancelled": "cancelled",
}
EXPIRED = "expired"
"""The engine closed an open load that had no news long after its ETA: no release was ever seen,
so it is not good news; it is worded apart and delivered quietly (policy: no broadcast reply)."""
EXPIRED_NOTE = (
    "holdwatch stopped watching this load: nothing was heard of it for a long time after its ETA "
    "(or its latest news), and no release or cancellation was received. If the truck is still at "
    "the border, call the broker."
)

_BROADCAST_WORD = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_SUBTEAM_ID = re.compile(r"^[A-Z0-9]{2,32}$")


# --- escaping ------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Make untrusted text inert in Slack mrkdwn: no mentions, links, or broadcast words."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Slack only pings for `<!channel>` (now impossible) or with link_names; a word joiner
    # keeps a literal "@channel" from ever becoming one if a workspace turns parsing on.
    return _BROADCAST_WORD.sub(lambda m: "@\u2060" + m.group(1), escaped)


def fit(escaped: str, limit: int) -> str:
    """Truncate already-escaped text to `limit` characters without cutting an entity in half."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def subteam_mention(group_id: str | None) -> str | None:
    """`<!subteam^ID>` for a configured user group, or None if unset or malformed."""
    if group_id is None or not _SUBTEAM_ID.match(group_id):
        return None
    return f"<!subteam^{group_id}>"


# --- reference data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """What the messages look codes up in: CBSA offices by code, brokers by code."""

    ports: Mapping[str, Port] = field(default_factory=lambda: PORTS)
    brokers: BrokerDirectory = field(default_factory=BrokerDirectory)


DEFAULT_REFERENCE = Reference()


# --- ports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortInfo:
    code: str
    name: str | None
    tz: tzinfo


def port_info(code: str | None, ports: Mapping[str, Port] = PORTS) -> PortInfo | None:
    """Name and time zone of a CBSA office; the code alone (UTC) when the table lacks it."""
    if code is None:
        return None
    port = ports.get(code)
    if port is None:
        return PortInfo(code=code, name=None, tz=UTC)
    try:
        zone: tzinfo = ZoneInfo(port.tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return PortInfo(code=code, name=port.name, tz=zone)


def port_label(port: PortInfo | None) -> str:
    if port is None:
        return "port unknown"
    return f"{port.name} ({port.code})" if port.name else port.code


def local_time(at: datetime, zone: tzinfo) -> str:
    return at.astimezone(zone).strftime("%a %d %b %H:%M %Z")


def minutes_left(eta: datetime, at: datetime) -> str:
    minutes = round((eta - at).total_seconds() / 60)
    span = abs(minutes)
    words = f"{span} min" if span < 120 else f"{span // 60} h {span % 60:02d} min"
    return f"{words} left" if minutes >= 0 else f"{words} past ETA"


# --- the neutral card ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    severity: str
    summary: str
    action: str
    call: str | None


@dataclass(frozen=True)
class AlertCard:
    """Raw (unescaped) content shared by Slack and the console."""

    emoji: str
    title: str
    facts: tuple[tuple[str, str], ...]
    reasons: tuple[Reason, ...]
    footer: str
    severity: str | None
    resolved: bool
    summary: str = field(default="")
    expired: bool = False  # closed by the engine for lack of news, not released
    note: str = field(default="")  # what the closing state means, when it needs saying (expired)
    call: str = field(default="")  # the broker directory's "Call <name> (<code>), 24 h line …"
    office_note: str = field(default="")  # "Office closed until 07:00 EST: use the 24 h line"


def _reasons(alert: AlertEvent) -> tuple[Reason, ...]:
    by_code: dict[str, ReasonDetail] = {d.code: d for d in alert.details}
    out: list[Reason] = []
    for code in alert.reasons:
        d = by_code.get(code)
        if d is None:
            out.append(Reason(alert.severity or "warning", code, "See holdwatch for details.", None))
        else:
            out.append(Reason(d.severity, d.summary, d.action, d.call))
    return tuple(out)


def _broker_call(alert: AlertEvent, brokers: BrokerDirectory) -> tuple[str, str]:
    """The directory's call line for the alert's broker and, if its office is closed at the time of
    the alert, the note saying so; a configured directory that lacks the broker says that too."""
    if not alert.broker_code:
        return "", ""
    contact = brokers.get(alert.broker_code)
    if contact is None:
        if len(brokers) == 0:
            return "", ""
        return f"No number on file for broker {alert.broker_code}: add it to the broker directory", ""
    note = contact.closed_note(alert.at)
    return contact.call_line(), (note[:1].upper() + note[1:]) if note else ""


def _vehicle(alert: AlertEvent) -> list[tuple[str, str]]:
    """Truck, trailer and driver, when the trip named them."""
    facts: list[tuple[str, str]] = []
    if alert.truck_number:
        trailer = f" · trailer {alert.trailer_number}" if alert.trailer_number else ""
        facts.append(("Truck", alert.truck_number + trailer))
    elif alert.trailer_number:
        facts.append(("Trailer", alert.trailer_number))
    driver = ", ".join(p for p in (alert.driver_name, alert.driver_phone) if p)
    if driver:
        facts.append(("Driver", driver))
    return facts


def alert_card(alert: AlertEvent, reference: Reference = DEFAULT_REFERENCE) -> AlertCard:
    port = port_info(alert.port_of_entry, reference.ports)
    zone = port.tz if port is not None else UTC
    load = alert.load_ref or alert.ccn
    resolved = alert.action == "resolved"
    expired = resolved and alert.outcome == EXPIRED
    if expired:
        emoji = EXPIRED_EMOJI
        since = " long past its ETA" if alert.eta is not None else ""
        title = f"Expired: no news of load {load}{since}, closed without a release"
    elif resolved:
        emoji = RESOLVED_EMOJI
        outcome = OUTCOME_WORDS.get(alert.outcome or "", alert.outcome or "resolved")
        title = f"Resolved: load {load} {outcome}"
    else:
        severity = alert.severity or "warning"
        emoji = SEVERITY_EMOJI.get(severity, ":warning:")
        title = f"{severity.upper()}: load {load} at risk of a border hold"
    facts: list[tuple[str, str]] = [
        ("Load", load),
        ("CCN", alert.ccn),
        ("Port", port_label(port)),
    ]
    if alert.eta is not None:
        facts.append(("ETA", f"{local_time(alert.eta, zone)} ({minutes_left(alert.eta, alert.at)})"))
    importer = alert.importer_name or alert.importer_bn
    if importer:
        contact = alert.importer_contact
        bits = [p for p in (contact.name, contact.phone, contact.email) if p] if contact else []
        facts.append(("Importer", importer + (f" · {', '.join(bits)}" if bits else "")))
    broker = alert.broker_name or alert.broker_code
    if alert.broker_name and alert.broker_code:
        broker = f"{alert.broker_name} ({alert.broker_code})"
    facts.append(("Broker", broker or "none named"))
    facts.extend(_vehicle(alert))
    if alert.dispatch_team:
        facts.append(("Team", alert.dispatch_team))
    footer = f"First raised {local_time(alert.first_raised_at, zone)} · as of {local_time(alert.at, zone)}"
    reasons = () if resolved else _reasons(alert)
    # Whom to call matters while the load is at risk, and when it expired (maybe still at the border).
    call, office_note = _broker_call(alert, reference.brokers) if not resolved or expired else ("", "")
    top = reasons[0].summary if reasons else ""
    summary = f"{title} · CCN {alert.ccn} · {port_label(port)}"
    if alert.eta is not None:
        summary += f" · ETA {local_time(alert.eta, zone)} ({minutes_left(alert.eta, alert.at)})"
    if top:
        summary += f" · {top}"
    if call:
        summary += f" · {call}"
    return AlertCard(
        emoji=emoji,
        title=title,
        facts=tuple(facts),
        reasons=reasons,
        footer=footer,
        severity=None if resolved else (alert.severity or "warning"),
        resolved=resolved,
        summary=summary,
        expired=expired,
        note=EXPIRED_NOTE if expired else "",
        call=call,
        office_note=office_note,
    )


# --- Slack -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlackMessage:
    """A message ready for chat.postMessage / chat.update: fallback text plus blocks."""

    text: str
    blocks: tuple[dict[str, Any], ...] = ()
    plain: str = ""  # the same content for the console sink (not sent to Slack)

    def fingerprint(self) -> str:
        """Stable digest of the content, to skip an edit that would change nothing."""
        raw = json.dumps({"t": self.text, "b": self.blocks}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(text, MAX_CONTEXT_TEXT)}]}


def call_text(card: AlertCard) -> str | None:
    """The broker directory's call line (and the closed-office flag) as escaped mrkdwn."""
    if not card.call:
        return None
    text = f":telephone_receiver: *{escape(card.call)}*"
    if card.office_note:
        text += f"\n:crescent_moon: {escape(card.office_note)}"
    return text


def reason_text(reason: Reason) -> str:
    """One reason as escaped mrkdwn: what is wrong, what to do, whom to call."""
    emoji = SEVERITY_EMOJI.get(reason.severity, ":warning:")
    lines = [f"{emoji} *{escape(reason.summary)}*", f"*Do:* {escape(reason.action)}"]
    if reason.call:
        lines.append(f"*Call:* {escape(reason.call)}")
    return "\n".join(lines)


def card_to_slack(card: AlertCard, *, mention: str | None = None) -> SlackMessage:
    """Block Kit within limits (≤ 50 blocks, ≤ 3000 chars a section) plus the fallback text."""
    head = f"{card.emoji} *{escape(card.title)}*"
    if mention and card.severity == "critical":
        head += f" {mention}"
    blocks: list[dict[str, Any]] = [_section(head)]
    fields = [
        {"type": "mrkdwn", "text": fit(f"*{label}*\n{escape(value)}", MAX_FIELD_TEXT)}
        for label, value in card.facts[:MAX_FIELDS]
    ]
    blocks.append({"type": "section", "fields": fields})
    call = call_text(card)
    if call:
        blocks.append(_section(call))
    blocks.append({"type": "divider"})
    room = MAX_BLOCKS - len(blocks) - 2  # keep room for the overflow note and the footer
    shown = card.reasons if len(card.reasons) <= room else card.reasons[: room - 1]
    blocks.extend(_section(reason_text(r)) for r in shown)
    hidden = len(card.reasons) - len(shown)
    if hidden:
        blocks.append(_section(f"…and {hidden} more reason{'s' if hidden > 1 else ''} (see holdwatch)"))
    if card.note:
        blocks.append(_section(escape(card.note)))
    elif card.resolved:
        blocks.append(_section("No active reasons."))
    blocks.append(_context(escape(card.footer)))
    text = fit(escape(card.summary), MAX_FALLBACK_TEXT)
    if mention and card.severity == "critical":
        text = f"{mention} {text}"
    return SlackMessage(text=text, blocks=tuple(blocks), plain=card_to_console(card))


def render_alert(
    alert: AlertEvent, *, mention: str | None = None, reference: Reference = DEFAULT_REFERENCE
) -> SlackMessage:
    """The one living message of a lifecycle, as it should look for this event."""
    return card_to_slack(alert_card(alert, reference), mention=mention)


def render_escalation(
    alert: AlertEvent, *, mention: str | None = None, reference: Reference = DEFAULT_REFERENCE
) -> SlackMessage:
    """Thread reply when a lifecycle escalates (warning → critical)."""
    card = alert_card(alert, reference)
    head = f"{SEVERITY_EMOJI['critical']} *Escalated to CRITICAL*"
    if mention:
        head += f" {mention}"
    blocks: list[dict[str, Any]] = [_section(head)]
    call = call_text(card)
    if call:
        blocks.append(_section(call))
    room = MAX_BLOCKS - len(blocks) - 1
    blocks.extend(_section(reason_text(r)) for r in card.reasons[:room])
    blocks.append(_context(escape(card.footer)))
    text = fit(f"Escalated to CRITICAL: {escape(card.summary)}", MAX_FALLBACK_TEXT)
    if mention:
        text = f"{mention} {text}"
    return SlackMessage(
        text=text, blocks=tuple(blocks), plain="ESCALATED to CRITICAL\n" + card_to_console(card)
    )


def render_resolution(alert: AlertEvent, *, reference: Reference = DEFAULT_REFERENCE) -> SlackMessage:
    """Final thread reply when a lifecycle ends (sent to the channel too only where the routing
    file asks: `broadcast_resolutions`)."""
    card = alert_card(alert, reference)
    text = fit(f"{card.emoji} {escape(card.title)}", MAX_FALLBACK_TEXT)
    blocks = (_section(text), _context(escape(card.footer)))
    return SlackMessage(text=text, blocks=blocks, plain=f"{card.title}\n  {card.footer}")


def render_test_message(channel: str) -> SlackMessage:
    text = f":wave: holdwatch can post to {escape(channel)}. This is a configuration test."
    return SlackMessage(
        text=text, blocks=(_section(text),), plain=f"holdwatch configuration test for {channel}"
    )


# --- console ---------------------------------------------------------------------------------


def console_marker(card: AlertCard) -> str:
    if card.expired:
        return "EXPIRED"
    return "RESOLVED" if card.resolved else (card.severity or "warning").upper()


def card_to_console(card: AlertCard) -> str:
    """The same card as readable plain text (no markup, nothing escaped)."""
    marker = console_marker(card)
    lines = [f"[{marker}] {card.title}"]
    lines.extend(f"  {label + ':':<10} {value}" for label, value in card.facts)
    if card.call:
        lines.append(f"  {card.call}")
    if card.office_note:
        lines.append(f"  {card.office_note}")
    if card.note:
        lines.append(f"  {card.note}")
    for r in card.reasons:
        lines.append(f"  - ({r.severity}) {r.summary}")
        lines.append(f"      do:   {r.action}")
        if r.call:
            lines.append(f"      call: {r.call}")
    lines.append(f"  {card.footer}")
    return "\n".join(lines)


# --- dispatch acting in Slack (buttons, ownership, notes, on-call pages) ----------------------------


def short_time(at: datetime, zone: tzinfo) -> str:
    return at.astimezone(zone).strftime("%H:%M %Z")


def alert_zone(alert: AlertEvent, reference: Reference = DEFAULT_REFERENCE) -> tzinfo:
    port = port_info(alert.port_of_entry, reference.ports)
    return port.tz if port is not None else UTC


def ownership_text(ownership: Ownership, zone: tzinfo, *, now: float | None = None) -> str:
    """One line (escaped mrkdwn): who owns the load since when, and a snooze still running."""
    parts = []
    if ownership.owner:
        since = datetime.fromtimestamp(ownership.owned_at or 0, UTC)
        parts.append(f":bust_in_silhouette: Owned by *{escape(ownership.owner_name or ownership.owner)}*"
                     f" since {short_time(since, zone)}")  # fmt: skip
    else:
        parts.append(":grey_question: *Unowned*: Acknowledge to take it")
    until = ownership.snoozed_until
    if until is not None and (now is None or until > now):
        parts.append(f":zzz: snoozed until {short_time(datetime.fromtimestamp(until, UTC), zone)}")
    return " · ".join(parts)


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": label}, "value": value}


def action_elements(alert_id: str, ownership: Ownership, ccn: str = "") -> list[dict[str, Any]]:
    """Acknowledge (or Take over), Snooze (a menu) and, when owned, Release; every value carries
    the lifecycle id and the CCN, `alert_id|ccn` (far below Slack's 2000 chars), so whichever
    notifier Slack hands the click to can route it to the one that holds the alert."""
    target = f"{alert_id}|{ccn}" if ccn else alert_id
    ack_label = "Take over" if ownership.owner else "Acknowledge"
    elements: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": ACK_BUTTON,
            "text": {"type": "plain_text", "text": ack_label},
            "value": target,
            "style": "primary",
        },
        {
            "type": "static_select",
            "action_id": SNOOZE_MENU,
            "placeholder": {"type": "plain_text", "text": "Snooze"},
            "options": [_option(label, f"{choice}|{target}") for choice, label in SNOOZE_CHOICES.items()],
        },
    ]
    if ownership.owner:
        elements.append(
            {
                "type": "button",
                "action_id": RELEASE_BUTTON,
                "text": {"type": "plain_text", "text": "Release"},
                "value": target,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Release this load?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": "Nobody will own it; on-call is paged if it stays critical.",
                    },
                    "confirm": {"type": "plain_text", "text": "Release"},
                    "deny": {"type": "plain_text", "text": "Keep it"},
                },
            }
        )
    return elements


def with_dispatch(
    message: SlackMessage, alert: AlertEvent, ownership: Ownership, *, zone: tzinfo, now: float | None = None
) -> SlackMessage:
    """The living message with who owns it and, while open, the buttons (before the footer)."""
    resolved = alert.action == "resolved"
    if resolved and not ownership.owner:
        return message
    extra: list[dict[str, Any]] = [_context(ownership_text(ownership, zone, now=None if resolved else now))]
    if not resolved:
        extra.append(
            {
                "type": "actions",
                "block_id": "hw_dispatch",
                "elements": action_elements(alert.alert_id, ownership, alert.ccn),
            }
        )
    blocks = list(message.blocks)
    footer = blocks.pop() if blocks else None
    while len(blocks) + len(extra) + (footer is not None) > MAX_BLOCKS and len(blocks) > 3:
        blocks.pop()  # the last reasons give way: the buttons matter more
    blocks.extend(extra)
    if footer is not None:
        blocks.append(footer)
    who = ownership.owner_name or ownership.owner
    plain = message.plain + (f"\n  owned by {who}" if who else "")
    return SlackMessage(text=message.text, blocks=tuple(blocks), plain=plain)


def render_note_prefix(message: SlackMessage, mention: str | None) -> SlackMessage:
    """`message` with `mention` (e.g. the owner's `<@U…>`) in front of its first section."""
    if not mention or not message.blocks:
        return message
    first = dict(message.blocks[0])
    if first.get("type") == "section" and isinstance(first.get("text"), dict):
        first["text"] = {**first["text"], "text": fit(f"{mention} {first['text']['text']}", MAX_SECTION_TEXT)}
    text = fit(f"{mention} {message.text}", MAX_FALLBACK_TEXT)
    return SlackMessage(text=text, blocks=(first, *message.blocks[1:]), plain=message.plain)


def render_note(text: str, *, mention: str | None = None) -> SlackMessage:
    """A thread reply saying what dispatch did (or what ended a snooze); `text` is raw."""
    body = escape(text)
    if mention:
        body = f"{mention} {body}"
    return SlackMessage(text=fit(body, MAX_FALLBACK_TEXT), blocks=(_section(body),), plain=text)


def render_page(
    alert: AlertEvent,
    level: int,
    *,
    group: str | None,
    minutes_unowned: float,
    reference: Reference = DEFAULT_REFERENCE,
    channel: str | None = None,
) -> SlackMessage:
    """The on-call escalation of a critical load nobody acknowledged (in its thread, or with
    `channel` named: a post in the escalation channel)."""
    card = alert_card(alert, reference)
    mention = subteam_mention(group)
    unowned = round(minutes_unowned)
    head = f"{SEVERITY_EMOJI['critical']} *Nobody has acknowledged this critical load for {unowned} min*"
    if level > 1:
        head = f"{SEVERITY_EMOJI['critical']} *Still unowned, 30 min before its ETA*"
    if mention:
        head += f" {mention}"
    lines = [head, escape(card.summary)]
    if channel:
        lines.append(f"Act in {escape(channel)}: Acknowledge on the alert's message.")
    else:
        lines.append("Acknowledge above to own it (or snooze it).")
    body = "\n".join(lines)
    text = fit(
        f"{mention + ' ' if mention else ''}Unacknowledged CRITICAL: {escape(card.summary)}",
        MAX_FALLBACK_TEXT,
    )
    return SlackMessage(text=text, blocks=(_section(body),), plain=f"ON-CALL (level {level}): {card.summary}")
