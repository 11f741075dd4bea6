"""`/holdwatch` in Slack: what was typed, and the answers (ephemeral: only the one who asked sees them).

Pure: the shell (streams/notifier/commands.py) asks the status API and the notifier's lifecycles
and hands the results here. The answers say what `holdwatch status|check` says (the reasons in
the alerts' own words: what is wrong, what to do, whom to call), plus what only the notifier
knows: who owns a load and until when it is snoozed. Everything from data is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerting.notify.handover import (
    LoadLine,
    by_eta,
    count_loads,
    listing,
    open_records,
    ownership_words,
    record_line,
    render_handover,
)
from alerting.notify.ledger import AlertRecord, Ownership
from alerting.notify.render import (
    DEFAULT_REFERENCE,
    EXPIRED_EMOJI,
    MAX_BLOCKS,
    MAX_CONTEXT_TEXT,
    MAX_FALLBACK_TEXT,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    MAX_SECTION_TEXT,
    RESOLVED_EMOJI,
    SEVERITY_EMOJI,
    Reason,
    Reference,
    SlackMessage,
    escape,
    fit,
    local_time,
    minutes_left,
    reason_text,
)
from schemas.alerts import ReasonDetail
from schemas.api import LoadPage, LoadStatus, ReadinessCheck

Verb = Literal["status", "check", "open", "mine", "handover", "help"]
COMMAND = "/holdwatch"
OPEN_LIMIT = 40
"""Loads one `open` answer lists (a section each, within Block Kit's 50 blocks); the rest are counted."""

_BN = re.compile(r"^[0-9]{9}RM[0-9]{4}$")
_PORT = re.compile(r"^[0-9]{4}$")
_SLACK_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """What was asked: a verb and its words. `help` carries why, when the input was not understood."""

    verb: Verb
    args: tuple[str, ...] = ()
    reason: str | None = None


def _help(reason: str) -> Command:
    return Command("help", reason=reason)


def _status(args: tuple[str, ...]) -> Command:
    if not args:
        return _help("`status` needs a CCN or a load reference")
    if len(args) > 1:
        return _help("`status` takes one CCN or load reference")
    return Command("status", args)


def _check(args: tuple[str, ...]) -> Command:
    if not args:
        return _help("`check` needs the importer's business number")
    if len(args) > 2:
        return _help("`check` takes the importer's business number and, optionally, the broker's code")
    bn = args[0].upper()
    if not _BN.match(bn):
        return _help(f"`{args[0]}` is not a business number (9 digits, RM, 4 digits: 123456789RM0001)")
    return Command("check", (bn, *(a.upper() for a in args[1:])))


def _open(args: tuple[str, ...]) -> Command:
    if len(args) > 1:
        return _help("`open` takes one port code or team name, or nothing for every open load")
    return Command("open", args)


def _bare(verb: Verb) -> Callable[[tuple[str, ...]], Command]:
    def parse_bare(args: tuple[str, ...]) -> Command:
        return _help(f"`{verb}` takes nothing after it") if args else Command(verb)

    return parse_bare


_PARSERS: Mapping[str, Callable[[tuple[str, ...]], Command]] = {
    "status": _status,
    "check": _check,
    "open": _open,
    "mine": _bare("mine"),
    "handover": _bare("handover"),
    "help": lambda args: Command("help"),
}


def parse(text: str) -> Command:
    """The slash command's text (Slack sends `&`, `<`, `>` as entities) → a command, or help saying why."""
    for entity, char in _SLACK_ENTITIES:
        text = text.replace(entity, char)
    words = text.split()
    if not words:
        return Command("help")
    parser = _PARSERS.get(words[0].lower())
    if parser is None:
        return _help(f"there is no `{words[0]}` command")
    return parser(tuple(words[1:]))


def open_scope(command: Command) -> dict[str, str]:
    """`open 0453` is a port (four digits, a CBSA office), `open east` a team."""
    if not command.args:
        return {}
    arg = command.args[0]
    return {"port": arg} if _PORT.match(arg) else {"team": arg}


# --- help ------------------------------------------------------------------------------------------

HELP: tuple[tuple[str, str, str], ...] = (
    ("status CCN|LOAD_REF", "status LD-48213", "what holdwatch knows about a load now, and who owns it"),
    ("check BN [BROKER]", "check 123456789RM0001 LKCS", "the pre-pickup check: can a truck pick up?"),
    ("open [PORT|TEAM]", "open 0453", "open loads, soonest ETA first, owned or not"),
    ("mine", "mine", "the loads at risk you own"),
    ("handover", "handover", "this channel's shift handover, as it reads now"),
    ("help", "help", "this list"),
)


def render_help(reason: str | None = None, *, command: str = COMMAND) -> SlackMessage:
    """Every command with one example; first, why the input was not understood."""
    cmd = escape(command)
    rows = [
        f"`{cmd} {escape(usage)}` {escape(what)} (e.g. `{cmd} {escape(example)}`)"
        for usage, example, what in HELP
    ]
    head = (
        f":grey_question: {escape(reason)}."
        if reason
        else f"*{cmd}*: holdwatch from Slack (only you see the answers)"
    )
    text = head + "\n" + "\n".join(rows)
    plain_head = f"{reason}." if reason else f"{command}: holdwatch from Slack"
    plain = "\n".join([plain_head, *(f"  {command} {usage}: {what}" for usage, _, what in HELP)])
    return SlackMessage(text=fit(text, MAX_FALLBACK_TEXT), blocks=(_section(text),), plain=plain)


# --- failures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiProblem:
    """A status API call without an answer: `status` is None when the API could not be reached."""

    status: int | None
    detail: str
    error: str | None = None


def render_problem(problem: ApiProblem, *, asked: str, load: bool = True) -> SlackMessage:
    """In words, never a stack trace: unknown load, API down, refused token, bad input.

    `asked`: what was asked (a CCN or load ref when `load`, else the command's words)."""
    if problem.status == 404 and load:
        text = f"holdwatch knows no load with CCN or load reference `{escape(asked)}`: check the number"
    elif problem.status is None or problem.status >= 500:
        text = f"holdwatch status API unavailable: {escape(problem.detail)}"
    elif problem.status in (401, 403):
        text = (
            f"holdwatch status API refused the notifier's token ({problem.status}): {escape(problem.detail)}"
        )
    else:
        text = f"holdwatch status API could not answer `{escape(asked)}`: {escape(problem.detail)}"
    shown = f":warning: {text}"
    plain = shown.removeprefix(":warning: ").replace("`", "")
    return SlackMessage(text=fit(shown, MAX_FALLBACK_TEXT), blocks=(_section(shown),), plain=plain)


# --- status ----------------------------------------------------------------------------------------


def lifecycle_for(load: LoadStatus, records: Iterable[AlertRecord]) -> AlertRecord | None:
    """The notifier's open lifecycle of the load: by the API's alert id, else by CCN."""
    candidates = [r for r in records if r.latest.action != "resolved" and not r.silent]
    if load.alert is not None:
        for r in candidates:
            if r.alert_id == load.alert.alert_id:
                return r
    same = [r for r in candidates if r.latest.ccn == load.ccn]
    return max(same, key=lambda r: r.latest.at) if same else None


def ownership_by_ccn(records: Iterable[AlertRecord]) -> dict[str, Ownership]:
    """Who owns each open lifecycle, by CCN (the newest lifecycle if a CCN has two)."""
    newest: dict[str, AlertRecord] = {}
    for r in records:
        if r.latest.action == "resolved" or r.silent:
            continue
        seen = newest.get(r.latest.ccn)
        if seen is None or r.latest.at > seen.latest.at:
            newest[r.latest.ccn] = r
    return {ccn: r.ownership for ccn, r in newest.items()}


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _port(load: LoadStatus) -> str:
    if load.port_name and load.port_of_entry:
        return f"{load.port_name} ({load.port_of_entry})"
    return load.port_of_entry or "port unknown"


_PHASES = {
    "released": (RESOLVED_EMOJI, "released by CBSA"),
    "cancelled": (RESOLVED_EMOJI, "cancelled"),
    "expired": (EXPIRED_EMOJI, "expired: no news long after its ETA, closed without a release"),
    "reported_events_only": (":grey_question:", "events arrived, but no cargo report (yet)"),
}


def status_verdict(load: LoadStatus) -> tuple[str, str]:
    """(emoji, raw title): at risk and how badly, not at risk, or how it ended."""
    name = load.load_ref or load.ccn
    if load.phase == "open" and load.severity is not None:
        return SEVERITY_EMOJI[load.severity], f"{load.severity.upper()}: load {name} at risk of a border hold"
    if load.phase == "open":
        return ":large_green_circle:", f"Load {name} is not at risk"
    emoji, words = _PHASES[load.phase]
    return emoji, f"Load {name} {words}"


def _status_facts(load: LoadStatus, zone: tzinfo) -> list[tuple[str, str]]:
    facts = [("CCN", load.ccn), ("Load", load.load_ref or "none"), ("Port", _port(load))]
    if load.eta is not None:
        facts.append(("ETA", f"{local_time(load.eta, zone)} ({minutes_left(load.eta, load.as_of)})"))
    importer = load.importer_name or load.importer_bn
    if importer:
        facts.append(("Importer", f"{importer} ({load.importer_bn})" if load.importer_name else importer))
    broker = load.broker_name or load.broker_code or "none named"
    facts.append(
        ("Broker", f"{broker} ({load.broker_code})" if load.broker_name and load.broker_code else broker)
    )
    if load.dispatch_team:
        facts.append(("Team", load.dispatch_team))
    truck = ", ".join(v for v in (load.truck_number, load.trailer_number) if v)
    driver = " ".join(v for v in (load.driver_name, load.driver_phone) if v)
    if truck or driver:
        facts.append(("Truck", " · ".join(v for v in (truck, driver) if v)))
    facts.append(
        ("Released" if load.released_at else "Arrived", _when(load.released_at or load.arrived_at, zone))
    )
    filing = [f"eManifest {load.cargo_answer or 'not answered'}", f"PARS {load.link_state.replace('_', ' ')}"]
    if load.latest_rns_indicator is not None:
        filing.append(f"RNS {load.latest_rns_indicator}")
    facts.append(("Filing", ", ".join(filing)))
    return facts


def _when(at: datetime | None, zone: tzinfo) -> str:
    return local_time(at, zone) if at is not None else "not yet"


def owner_text(own: Ownership, now: datetime, zone: tzinfo) -> str:
    """Escaped mrkdwn: who owns the lifecycle (by name, no ping) and its snooze, or that nobody does."""
    owner, snoozed = ownership_words(own, now, zone, with_zone=True)
    text = (
        f":bust_in_silhouette: {escape(owner)}" if owner else ":raising_hand: *Unowned*: nobody has taken it"
    )
    return text + (f" · :zzz: {escape(snoozed)}" if snoozed else "")


def _reason(detail: ReasonDetail) -> Reason:
    return Reason(detail.severity, detail.summary, detail.action, detail.call)


def _call(load: LoadStatus) -> str | None:
    contact = load.broker_contact
    if contact is None:
        return None
    text = f":telephone_receiver: *{escape(contact.call)}*"
    return text + (f"\n:crescent_moon: {escape(contact.office_note)}" if contact.office_note else "")


def _reason_blocks(reasons: Sequence[ReasonDetail], room: int) -> list[dict[str, Any]]:
    shown = reasons if len(reasons) <= room else reasons[: room - 1]
    blocks = [_section(reason_text(_reason(r))) for r in shown]
    hidden = len(reasons) - len(shown)
    if hidden:
        blocks.append(_section(f"…and {hidden} more reason{'s' if hidden > 1 else ''} (see holdwatch)"))
    return blocks


def render_status(load: LoadStatus, record: AlertRecord | None, *, now: datetime) -> SlackMessage:
    """One load: verdict, facts with the ETA countdown, whom to call, owner or snooze, every reason."""
    zone = _zone(load.port_tz)
    emoji, title = status_verdict(load)
    blocks: list[dict[str, Any]] = [
        _section(f"{emoji} *{escape(title)}*"),
        _fields(_status_facts(load, zone)),
    ]
    call = _call(load)
    if call and load.phase == "open":
        blocks.append(_section(call))
    if record is not None and load.phase == "open":  # what only the notifier knows
        blocks.append(_section(owner_text(record.ownership, now, zone)))
    blocks.append({"type": "divider"})
    blocks.extend(_reason_blocks(load.reasons, MAX_BLOCKS - len(blocks) - 1))
    blocks.append(_context(escape(_status_footer(load, zone))))
    return SlackMessage(
        text=_status_text(load, title), blocks=tuple(blocks), plain=_status_plain(load, title)
    )


def _status_footer(load: LoadStatus, zone: tzinfo) -> str:
    footer = f"as of {local_time(load.as_of, zone)} (worker clock)"
    if load.alert is not None:
        raised = local_time(load.alert.first_raised_at, zone)
        footer += f" · alert {load.alert.alert_id} step {load.alert.seq}, raised {raised}"
    return footer


def _status_text(load: LoadStatus, title: str) -> str:
    bits = [title, f"CCN {load.ccn}", _port(load)]
    if load.eta is not None:
        bits.append(minutes_left(load.eta, load.as_of))
    if load.reasons:
        bits.append(load.reasons[0].summary)
    return fit(escape(" · ".join(bits)), MAX_FALLBACK_TEXT)


def _status_plain(load: LoadStatus, title: str) -> str:
    lines = [title]
    lines += [
        f"  - ({r.severity}) {r.summary}\n      do: {r.action}"
        + (f"\n      call: {r.call}" if r.call else "")
        for r in load.reasons
    ]
    return "\n".join(lines)


# --- check -----------------------------------------------------------------------------------------


def render_check(check: ReadinessCheck) -> SlackMessage:
    """The pre-pickup check: ready, or what is missing with what to do and whom to call."""
    who = f"{check.importer_name or check.importer_bn} with broker {check.broker_code or '(none)'}"
    if check.ready:
        emoji, verdict = RESOLVED_EMOJI, "READY: nothing missing"
    else:
        emoji, verdict = (
            SEVERITY_EMOJI.get(check.severity or "warning", ":warning:"),
            f"NOT READY ({check.severity})",
        )
    title = f"{who} ({check.release_mode.upper()}): {verdict}"
    blocks: list[dict[str, Any]] = [_section(f"{emoji} *{escape(title)}*")]
    blocks.extend(_reason_blocks(check.reasons, MAX_BLOCKS - 3))
    if check.carm_record_at is not None and check.carm_record_age_hours is not None:
        record = f"CARM record of {check.carm_record_at.date()} ({check.carm_record_age_hours:g} h old)"
    else:
        record = "No CARM record for this importer: ask the shipper for their CARM status before pickup"
    blocks.append(
        _context(escape(f"{record} · as of {check.as_of.isoformat(timespec='minutes')} (worker clock)"))
    )
    text = " · ".join([title, *(r.summary for r in check.reasons[:1])])
    return SlackMessage(
        text=fit(escape(text), MAX_FALLBACK_TEXT), blocks=tuple(blocks), plain=f"{title}\n  {record}"
    )


# --- lists -----------------------------------------------------------------------------------------


def status_line(load: LoadStatus, owners: Mapping[str, Ownership], now: datetime) -> LoadLine:
    """A load of the API's list as a listing line; owner and snooze from the notifier's lifecycles."""
    zone = _zone(load.port_tz)
    owner, snoozed = None, None
    if load.severity is not None and load.ccn in owners:
        owner, snoozed = ownership_words(owners[load.ccn], now, zone, with_zone=True)
    return LoadLine(
        severity=load.severity,
        load=load.load_ref or load.ccn,
        ccn=load.ccn,
        port=_port(load),
        eta="ETA unknown" if load.eta is None else minutes_left(load.eta, load.as_of),
        owner=owner,
        snoozed=snoozed,
        reason=load.reasons[0].summary if load.reasons else None,
    )


def render_open(
    page: LoadPage, owners: Mapping[str, Ownership], *, scope: Mapping[str, str], now: datetime
) -> SlackMessage:
    """Open loads, soonest ETA first, owned by whom or unowned; the ones past the page counted."""
    items = sorted(page.items, key=lambda s: (s.minutes_to_eta is None, s.minutes_to_eta or 0.0))
    lines = [status_line(load, owners, now) for load in items]
    where = " ".join(f"{'port' if k == 'port' else 'team'} {v}" for k, v in scope.items())
    at_risk = sum(1 for line in lines if line.severity is not None)
    unowned = sum(1 for line in lines if line.unowned)
    head = f"Open loads{' of ' + where if where else ''}: "
    head += f"{page.total} ({at_risk} at risk, {unowned} unowned)" if page.total else "none"
    extra = max(0, page.total - page.offset - len(lines))
    return listing(
        head, lines, extra=extra, note=f"as of {page.as_of.isoformat(timespec='minutes')} (worker clock)"
    )


def render_mine(
    records: Iterable[AlertRecord], *, user_id: str, now: datetime, reference: Reference = DEFAULT_REFERENCE
) -> SlackMessage:
    """The open lifecycles `user_id` owns, soonest ETA first (clock times in each port's zone)."""
    mine = [r for r in open_records_everywhere(records) if r.ownership.owner == user_id]
    lines = [record_line(r, at=now, reference=reference) for r in by_eta(mine)]
    head = f"You own {count_loads(len(lines), 'open load')}" if lines else "You own no open load"
    return listing(head, lines)


def open_records_everywhere(records: Iterable[AlertRecord]) -> list[AlertRecord]:
    """Every open lifecycle, whatever its channel."""
    return [r for r in records if r.latest.action != "resolved" and not r.silent]


def render_handover_fallback(
    records: Iterable[AlertRecord], channel: str, *, now: datetime, reference: Reference
) -> SlackMessage:
    """`/holdwatch handover` without shifts configured: the channel's open loads, and why no schedule."""
    at = now.astimezone(UTC)
    message = render_handover(
        open_records(records, channel), at=at, shift_label=f"as of {at:%H:%M} UTC", reference=reference
    )
    return with_note(message, "No shift handover is scheduled: it needs [shifts] in the routing file.")


def with_note(message: SlackMessage, note: str) -> SlackMessage:
    """The message with a context line at its end (raw note, escaped here), within the block limit."""
    blocks = [*message.blocks[: MAX_BLOCKS - 1], _context(escape(note))]
    return SlackMessage(text=message.text, blocks=tuple(blocks), plain=f"{message.plain}\n{note}")


# --- blocks ----------------------------------------------------------------------------------------


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(text, MAX_CONTEXT_TEXT)}]}


def _fields(facts: Sequence[tuple[str, str]]) -> dict[str, Any]:
    fields = [
        {"type": "mrkdwn", "text": fit(f"*{escape(label)}*\n{escape(value)}", MAX_FIELD_TEXT)}
        for label, value in facts[:MAX_FIELDS]
    ]
    return {"type": "section", "fields": fields}
