"""Shift handover: at each team's shift change, one message per channel listing its open loads.

The incoming shift reads, soonest ETA first, every load still at risk in its channel: who owns it
(by name: a handover pings nobody) or that nobody does, the time to ETA, the top reason, load ref,
CCN and port. `shift_instants` and friends are pure and DST-correct (zoneinfo); `render_handover`
builds the message (also answered on demand by `/holdwatch handover`). `Handovers` sleeps on the
injected clock until a shift changes, posts through the gateway and records the instant in the
ledger (`handover:<channel>`), so a restart never posts a shift twice nor yesterday's handover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from alerting.notify.clock import Clock
from alerting.notify.gateway import SlackCallError, SlackGateway
from alerting.notify.ledger import HANDOVER_PREFIX as HANDOVER_PREFIX  # re-exported: the handover's keys
from alerting.notify.ledger import AlertRecord, Ledger, Ownership
from alerting.notify.render import (
    DEFAULT_REFERENCE,
    MAX_BLOCKS,
    MAX_CONTEXT_TEXT,
    MAX_FALLBACK_TEXT,
    MAX_SECTION_TEXT,
    SEVERITY_EMOJI,
    Reference,
    SlackMessage,
    escape,
    fit,
    minutes_left,
    port_info,
    port_label,
)
from alerting.notify.routing import Shift
from schemas.alerts import AlertEvent

log = logging.getLogger("holdwatch.notify")

# Ledger keys of handover entries (HANDOVER_PREFIX, from the ledger: the delivery core skips them):
# `handover:<channel>` -> {"kind": "handover", "channel", "last": epoch posted, "intent": epoch or None}
DEFAULT_GRACE_S = 900.0
MAX_ATTEMPTS = 4
BACKOFF_S = 2.0  # first retry after a Slack failure; x4 each time, at most BACKOFF_MAX_S
BACKOFF_MAX_S = 120.0
MAX_SLEEP_S = 300.0  # re-read the wall clock at least this often: it can jump (NTP, suspend)
LOOKBACK_S = 60.0  # how far before an instant a post of it may carry its ts (clock skew)
_SEVERITY_RANK = {"critical": 0, "warning": 1}
_SEARCH_SPAN = timedelta(days=2)  # every shift has a time each day: two days always hold one


# --- shift instants (pure) -------------------------------------------------------------------


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return at.astimezone(UTC)


def _exists(local: datetime) -> bool:
    """False for a wall time the zone skips (spring forward): it does not survive a round trip."""
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`day` at `at` in `zone`: a skipped time moves to the next minute that exists, a repeated
    one (fall back) is its first occurrence (fold 0)."""
    wanted = datetime.combine(day, at, tzinfo=zone)
    for minutes in range(24 * 60):
        candidate = wanted + timedelta(minutes=minutes)  # wall-time arithmetic, same zone
        if _exists(candidate):
            return candidate.astimezone(UTC).astimezone(zone)
    raise ValueError(f"{zone} has no valid time after {wanted}")  # no real zone skips a day


def shift_instants(shift: Shift, start: datetime, end: datetime) -> list[datetime]:
    """The shift changes in (start, end], oldest first, in the shift's time zone."""
    lo, hi = _aware(start, "start"), _aware(end, "end")
    zone = ZoneInfo(shift.tz)
    day = lo.astimezone(zone).date() - timedelta(days=1)
    last = hi.astimezone(zone).date() + timedelta(days=1)
    found: dict[float, datetime] = {}
    while day <= last:
        for at in shift.times:
            instant = local_instant(day, at, zone)
            if lo < instant.astimezone(UTC) <= hi:  # compared in UTC: same-zone compares ignore fold
                found.setdefault(instant.timestamp(), instant)
        day += timedelta(days=1)
    return [found[k] for k in sorted(found)]


def latest_instant(shift: Shift, now: datetime) -> datetime:
    """The newest shift change at or before `now`."""
    return shift_instants(shift, _aware(now, "now") - _SEARCH_SPAN, now)[-1]


def next_instant(shift: Shift, now: datetime) -> datetime:
    """The first shift change after `now`."""
    return shift_instants(shift, now, _aware(now, "now") + _SEARCH_SPAN)[0]


def shift_label(instant: datetime, shift: Shift) -> str:
    """The shift change as the team knows it: `14:00 America/Toronto`."""
    return f"{instant.astimezone(ZoneInfo(shift.tz)):%H:%M} {shift.tz}"


def handover_key(channel: str, instant: datetime) -> str:
    """The message metadata key of one channel's handover of one instant (found again after a crash)."""
    return f"{HANDOVER_PREFIX}{channel}:{instant.astimezone(UTC).isoformat()}"


# --- which loads, and one line per load (pure) -----------------------------------------------


def open_records(records: Iterable[AlertRecord], channel: str) -> list[AlertRecord]:
    """The lifecycles still at risk that live in `channel` (its routing name or its Slack id)."""
    wanted = channel.lstrip("#")
    return [
        r
        for r in records
        if r.latest.action != "resolved" and not r.silent and wanted in {r.channel.lstrip("#"), r.channel_id}
    ]


def top_reason(alert: AlertEvent) -> str | None:
    """The first reason's summary, critical before warning (the engine's order otherwise)."""
    if alert.details:
        return min(alert.details, key=lambda d: _SEVERITY_RANK.get(d.severity, 2)).summary
    return alert.reasons[0] if alert.reasons else None


def by_eta(records: Iterable[AlertRecord]) -> list[AlertRecord]:
    """Soonest ETA first (no ETA last), then critical first, then by load."""

    def key(r: AlertRecord) -> tuple[bool, datetime, int, str]:
        a = r.latest
        rank = _SEVERITY_RANK.get(a.severity or "warning", 2)
        return (a.eta is None, a.eta or a.at, rank, a.load_ref or a.ccn)

    return sorted(records, key=key)


@dataclass(frozen=True)
class LoadLine:
    """One load of a listing, as raw (unescaped) words: handover, `/holdwatch open|mine`."""

    severity: str | None  # None: not at risk
    load: str
    ccn: str
    port: str
    eta: str  # "35 min left", "10 min past ETA", "ETA unknown"
    owner: str | None = None  # "owned by sam since 14:02"; None: nobody owns it
    snoozed: str | None = None  # "snoozed until 15:00"
    reason: str | None = None

    @property
    def unowned(self) -> bool:
        """Nobody acts on a load at risk: the listing flags it."""
        return self.severity is not None and self.owner is None


def clock_time(epoch: float, at: datetime, zone: tzinfo, *, with_zone: bool = False) -> str:
    """`14:02` (the day of `at`) or `Mon 14:02` in `zone`, `14:02 EST` with the zone: short, no date."""
    shown = datetime.fromtimestamp(epoch, UTC).astimezone(zone)
    text = f"{shown:%H:%M}" if shown.date() == at.astimezone(zone).date() else f"{shown:%a %H:%M}"
    return f"{text} {shown:%Z}" if with_zone else text


def ownership_words(
    own: Ownership, at: datetime, zone: tzinfo, *, with_zone: bool
) -> tuple[str | None, str | None]:
    """("owned by sam since 14:02", "snoozed until 15:00") by name and without a mention."""
    owner = None
    if own.owner:
        owner = f"owned by {own.owner_name or own.owner}"
        if own.owned_at is not None:
            owner += f" since {clock_time(own.owned_at, at, zone, with_zone=with_zone)}"
    snoozed = None
    if own.snoozed_until is not None and own.snoozed_until > at.timestamp():
        snoozed = f"snoozed until {clock_time(own.snoozed_until, at, zone, with_zone=with_zone)}"
    return owner, snoozed


def record_line(
    record: AlertRecord, *, at: datetime, reference: Reference = DEFAULT_REFERENCE, zone: tzinfo | None = None
) -> LoadLine:
    """A lifecycle's line as of `at`; clock times in `zone` (None: the port's, zone shown)."""
    alert = record.latest
    port = port_info(alert.port_of_entry, reference.ports)
    shown_zone = zone or (port.tz if port is not None else UTC)
    owner, snoozed = ownership_words(record.ownership, at, shown_zone, with_zone=zone is None)
    return LoadLine(
        severity=alert.severity or "warning",
        load=alert.load_ref or alert.ccn,
        ccn=alert.ccn,
        port=port_label(port),
        eta="ETA unknown" if alert.eta is None else minutes_left(alert.eta, at),
        owner=owner,
        snoozed=snoozed,
        reason=top_reason(alert),
    )


# --- listings (pure) ---------------------------------------------------------------------------


def line_mrkdwn(line: LoadLine) -> str:
    emoji = SEVERITY_EMOJI.get(line.severity, ":warning:") if line.severity else ":large_green_circle:"
    first = (
        f"{emoji} *{escape(line.load)}* · CCN {escape(line.ccn)} · {escape(line.port)} · {escape(line.eta)}"
    )
    who = escape(line.owner) if line.owner else "*unowned*"
    second = ["not at risk" if line.severity is None else who]
    if line.snoozed:
        second.append(escape(line.snoozed))
    if line.reason:
        second.append(escape(line.reason))
    return fit(first + "\n" + " · ".join(second), MAX_SECTION_TEXT)


def line_plain(line: LoadLine) -> str:
    marker = (line.severity or "ok").upper()
    who = "not at risk" if line.severity is None else (line.owner or "UNOWNED")
    bits = [f"[{marker}] {line.load}", f"CCN {line.ccn}", line.port, line.eta, who]
    bits += [b for b in (line.snoozed, line.reason) if b]
    return " · ".join(bits)


def count_loads(n: int, noun: str = "open load") -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _more(hidden: Sequence[LoadLine], extra: int, noun: str) -> str:
    """What did not fit, and how many of it nobody owns: `…and 12 more open loads (3 unowned)`.

    `extra` loads are not even known here (a paged answer): their owners are not counted."""
    text = "…and " + count_loads(len(hidden) + extra, "more " + noun)
    unowned = sum(1 for line in hidden if line.unowned)
    return text + (f" ({unowned} unowned)" if unowned and not extra else "")


def _fallback(head: str, lines: Sequence[LoadLine], extra: int, noun: str) -> str:
    """The notification text: the head, the loads while they fit, then how many were left out."""
    budget = MAX_FALLBACK_TEXT - 100  # room for the "…and K more" line
    out = [escape(head)]
    size = len(out[0])
    for line in lines:
        row = escape(line_plain(line))
        if size + 1 + len(row) > budget:
            break
        out.append(row)
        size += 1 + len(row)
    hidden = lines[len(out) - 1 :]
    if hidden or extra:
        out.append(escape(_more(hidden, extra, noun)))
    return fit("\n".join(out), MAX_FALLBACK_TEXT)


def listing(
    head: str, lines: Sequence[LoadLine], *, extra: int = 0, noun: str = "open load", note: str = ""
) -> SlackMessage:
    """A bold head, a section per load within Block Kit limits, and "…and K more" for the rest.

    `head` and `note` are raw text; `extra` counts loads not even in `lines` (a paged answer)."""
    blocks: list[dict[str, Any]] = [_section(f"*{escape(head)}*")]
    tail = [_context(escape(note))] if note else []
    room = MAX_BLOCKS - len(blocks) - len(tail) - 1  # the divider
    shown = lines if len(lines) <= room and not extra else lines[: room - 1]  # keep one for the note
    if lines:
        blocks.append({"type": "divider"})
    blocks.extend(_section(line_mrkdwn(line)) for line in shown)
    hidden = lines[len(shown) :]
    if hidden or extra:
        blocks.append(_section(escape(_more(hidden, extra, noun))))
    blocks.extend(tail)
    rows = [head, *("  " + line_plain(line) for line in lines)]
    if extra:
        rows.append("  " + _more([], extra, noun))
    if note:
        rows.append(note)
    return SlackMessage(text=_fallback(head, lines, extra, noun), blocks=tuple(blocks), plain="\n".join(rows))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(text, MAX_CONTEXT_TEXT)}]}


def handover_head(label: str, lines: Sequence[LoadLine]) -> str:
    """`Shift handover 14:00 America/Toronto — 3 open loads (1 unowned)`: the count a shift takes over."""
    if not lines:
        return f"Shift handover {label} — no open loads"
    unowned = sum(1 for line in lines if line.unowned)
    return f"Shift handover {label} — {count_loads(len(lines))} ({unowned} unowned)"


def render_handover(
    records: Sequence[AlertRecord],
    *,
    at: datetime,
    shift_label: str,
    reference: Reference = DEFAULT_REFERENCE,
) -> SlackMessage:
    """The handover of `records` (the channel's open lifecycles: the caller filters) as of `at`;
    clock times ("owned by sam since 14:02") read in `at`'s time zone."""
    zone = at.tzinfo or UTC
    lines = [record_line(r, at=at, reference=reference, zone=zone) for r in by_eta(records)]
    return listing(handover_head(shift_label, lines), lines)


# --- the scheduler -------------------------------------------------------------------------------


@dataclass
class _Channel:
    """One channel's handovers: the shifts posting there and how far they got."""

    channel: str
    shifts: list[Shift] = field(default_factory=list)
    last: float | None = None  # epoch of the newest instant posted (or given up on)
    intent: float | None = None  # an instant whose post may have reached Slack
    channel_id: str | None = None
    attempts: int = 0
    retry_at: float | None = None  # wall epoch of the next attempt after a failure
    uncertain: bool = False  # an attempt may have landed: look for it before posting again
    text_only: bool = False  # Slack refused the blocks: send the fallback text

    def entry(self) -> dict[str, Any]:
        return {"kind": "handover", "channel": self.channel, "last": self.last, "intent": self.intent}

    def reset(self) -> None:
        self.attempts, self.retry_at, self.uncertain, self.text_only = 0, None, False, False

    def latest(self, now: datetime) -> tuple[datetime, Shift]:
        return max(((latest_instant(s, now), s) for s in self.shifts), key=lambda p: p[0].timestamp())

    def wake(self, now: datetime) -> float:
        """Wall epoch of the next thing to do: a retry, else the next shift change."""
        upcoming = min(next_instant(s, now).timestamp() for s in self.shifts)
        return min(upcoming, self.retry_at) if self.retry_at is not None else upcoming


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


class Handovers:
    """Posts each channel's handover at its shifts' changes, once per instant, across restarts."""

    def __init__(
        self,
        shifts: Iterable[Shift],
        records_source: Callable[[], Iterable[AlertRecord]],
        gateway: SlackGateway,
        ledger: Ledger,
        clock: Clock,
        reference: Reference = DEFAULT_REFERENCE,
        *,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.records_source = records_source
        self.gateway = gateway
        self.ledger = ledger
        self.clock = clock
        self.reference = reference
        self.grace_s = grace_s
        self.channels: dict[str, _Channel] = {}
        for shift in shifts:  # two teams may share a channel: one message for both
            self.channels.setdefault(shift.channel, _Channel(shift.channel)).shifts.append(shift)

    def restore(self, entries: Mapping[str, Mapping[str, Any]]) -> int:
        """Take the ledger's `handover:` entries (read at start); returns how many were taken."""
        taken = 0
        for key, entry in entries.items():
            if not key.startswith(HANDOVER_PREFIX):
                continue
            ch = self.channels.get(str(entry.get("channel", key.removeprefix(HANDOVER_PREFIX))))
            if ch is None:
                continue  # a channel whose shifts are no longer configured
            try:
                last, intent = _float_or_none(entry.get("last")), _float_or_none(entry.get("intent"))
            except (TypeError, ValueError):
                log.error("skipping unreadable handover ledger entry %s: %r", key, entry)
                continue
            if last is not None and (ch.last is None or last > ch.last):
                ch.last = last
            ch.intent = intent if intent is not None and (ch.last is None or intent > ch.last) else None
            ch.uncertain = ch.intent is not None
            taken += 1
        return taken

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: sleep on the clock until a shift changes, then post what is due."""
        if not self.channels:
            return
        while not stop.is_set():
            await self.step()
            if stop.is_set():
                break
            await self.clock.wait(stop, self.timeout())

    def timeout(self) -> float:
        """Clock seconds until the next shift change or retry (at most MAX_SLEEP_S)."""
        now = self.now()
        wake = min(ch.wake(now) for ch in self.channels.values())
        return max(0.0, min(wake - now.timestamp(), MAX_SLEEP_S))

    async def step(self) -> int:
        """Post every handover due at the clock's wall time; returns how many were posted."""
        now = self.now()
        posted = 0
        for ch in self.channels.values():
            instant, shift = ch.latest(now)
            if not self._due(ch, instant, now):
                continue
            if ch.retry_at is not None and now.timestamp() < ch.retry_at:
                continue
            posted += await self._deliver(ch, instant, shift, now)
        return posted

    def _due(self, ch: _Channel, instant: datetime, now: datetime) -> bool:
        """Not posted yet, and not older than the grace (nobody wants yesterday's handover)."""
        epoch = instant.timestamp()
        if ch.last is not None and epoch <= ch.last:
            return False
        late = now.timestamp() - epoch
        if late <= self.grace_s:
            return True
        if ch.attempts:
            log.error(
                "handover %s of %s not posted: Slack failed until its grace ran out", instant, ch.channel
            )
        else:
            log.info(
                "no handover for %s of %s: %.0f s past it (grace %.0f s)",
                instant,
                ch.channel,
                late,
                self.grace_s,
            )
        ch.last = epoch  # in memory only: nothing reached Slack
        ch.reset()
        return False

    async def _deliver(self, ch: _Channel, instant: datetime, shift: Shift, now: datetime) -> int:
        epoch, key = instant.timestamp(), handover_key(ch.channel, instant)
        if ch.uncertain and ch.intent == epoch and await self._landed(ch, key, epoch):
            log.info("handover %s of %s was posted before: not posting it again", instant, ch.channel)
            await self._done(ch, epoch)
            return 0
        if ch.intent != epoch:
            ch.intent = epoch  # durable before the post: a crash after it makes the restart look first
            await self.ledger.put_durable(HANDOVER_PREFIX + ch.channel, ch.entry())
        message = self._message(ch, instant, shift, now)
        try:
            posted = await self.gateway.post(ch.channel, message, key=key)
        except SlackCallError as exc:
            self._failed(ch, instant, exc, now)
            return 0
        ch.channel_id = posted.channel_id
        await self._done(ch, epoch)
        return 1

    def _message(self, ch: _Channel, instant: datetime, shift: Shift, now: datetime) -> SlackMessage:
        at = now.astimezone(ZoneInfo(shift.tz))
        records = open_records(self.records_source(), ch.channel)
        message = render_handover(
            records, at=at, shift_label=shift_label(instant, shift), reference=self.reference
        )
        return SlackMessage(text=message.text, plain=message.plain) if ch.text_only else message

    async def _landed(self, ch: _Channel, key: str, epoch: float) -> bool:
        """Whether a post of this handover is already in the channel (its answer was lost)."""
        try:
            ch.channel_id = ch.channel_id or await self.gateway.channel_id(ch.channel)
            if ch.channel_id is None:
                return False
            return await self.gateway.find(ch.channel_id, key, oldest=epoch - LOOKBACK_S) is not None
        except SlackCallError as exc:
            log.warning("cannot look for an earlier handover post in %s (%s): posting it", ch.channel, exc)
            return False

    async def _done(self, ch: _Channel, epoch: float) -> None:
        ch.last, ch.intent = epoch, None
        ch.reset()
        await self.ledger.put_durable(HANDOVER_PREFIX + ch.channel, ch.entry())

    def _failed(self, ch: _Channel, instant: datetime, exc: SlackCallError, now: datetime) -> None:
        ch.attempts += 1
        ch.uncertain = ch.uncertain or exc.kind == "transient"  # a lost answer: the post may be there
        ch.text_only = ch.text_only or exc.kind == "content"
        if ch.attempts >= MAX_ATTEMPTS:
            log.error(
                "handover %s of %s not posted after %d attempts, skipped: %s",
                instant,
                ch.channel,
                ch.attempts,
                exc,
            )
            ch.last = instant.timestamp()
            ch.reset()
            return
        delay = BACKOFF_S * 4 ** (ch.attempts - 1)
        if exc.kind == "rate_limited" and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        delay = min(delay, BACKOFF_MAX_S)
        ch.retry_at = now.timestamp() + delay
        log.warning("handover %s of %s failed (%s): retrying in %.0f s", instant, ch.channel, exc, delay)

    async def shift_for(self, channel: str) -> Shift | None:
        """The (first) shift posting in `channel`, given by routing name or Slack id."""
        ch = self._channel_for(channel)
        if ch is None:
            for rec in self.records_source():  # the alerts' messages tell a name's id
                if rec.channel_id == channel and rec.channel in self.channels:
                    ch = self.channels[rec.channel]
                    ch.channel_id = channel
                    break
        if ch is None:
            ch = await self._look_up(channel)
        return ch.shifts[0] if ch is not None else None

    def _channel_for(self, channel: str) -> _Channel | None:
        wanted = channel.lstrip("#")
        for ch in self.channels.values():
            if wanted in {ch.channel.lstrip("#"), ch.channel_id}:
                return ch
        return None

    async def _look_up(self, channel_id: str) -> _Channel | None:
        """Ask Slack for the ids of the shift channels known only by name."""
        for ch in self.channels.values():
            if ch.channel_id is not None:
                continue
            try:
                ch.channel_id = await self.gateway.channel_id(ch.channel)
            except SlackCallError as exc:
                log.warning("cannot look up the id of %s: %s", ch.channel, exc)
            if ch.channel_id == channel_id:
                return ch
        return None

    async def post_now(self, channel: str, *, at: datetime | None = None) -> SlackMessage:
        """The channel's handover as it reads now, for `/holdwatch handover`: returned (the command
        answers it to the one who asked), not posted to the channel."""
        shift = await self.shift_for(channel)
        zone: tzinfo = ZoneInfo(shift.tz) if shift is not None else UTC
        when = (at or self.now()).astimezone(zone)
        records = list(self.records_source())
        found = {r.alert_id: r for r in open_records(records, channel)}
        if shift is not None:
            found.update((r.alert_id, r) for r in open_records(records, shift.channel))
        label = f"as of {when:%H:%M} {shift.tz if shift is not None else 'UTC'}"
        return render_handover(list(found.values()), at=when, shift_label=label, reference=self.reference)
