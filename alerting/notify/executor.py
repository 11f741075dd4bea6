"""Executor: makes one Slack call over the `SlackGateway`, records it in the ledger, measures it.

Exactly-once as this side sees it: before a post the ledger records an intent (flushed), after
it the ts; a post (or reply) whose intent is still recorded may have landed, so the next attempt
first looks for it by its metadata key and adopts it. Every call is counted per method/outcome
and the latency of each event shown is measured (from its Kafka timestamps when known).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from alerting.notify.actions import page_due
from alerting.notify.clock import Clock
from alerting.notify.gateway import Posted, SlackCallError, SlackGateway
from alerting.notify.ledger import DIGEST_PREFIX, AlertRecord, DigestRecord, Ledger
from alerting.notify.metrics import NotifyMetrics
from alerting.notify.planner import (
    EDIT,
    NOTE,
    ONCALL_POST,
    PAGE,
    POST,
    RESOLUTION,
    NextCall,
    Timers,
    is_seq_reply,
    reply_key,
    reply_seq,
)
from alerting.notify.policy import DeliveryPolicy
from alerting.notify.render import (
    DEFAULT_REFERENCE,
    Reference,
    SlackMessage,
    alert_zone,
    render_alert,
    render_escalation,
    render_note,
    render_note_prefix,
    render_page,
    render_resolution,
    with_dispatch,
)
from alerting.notify.scheduler import ChannelState
from alerting.notify.storm import render_digest
from schemas.alerts import AlertEvent

log = logging.getLogger("holdwatch.notify")

# sent: a call reached Slack (pace the channel); local: nothing to send; adopted: an earlier post found
Outcome = Literal["sent", "local", "adopted"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an alert event came from: its record's and its trigger's Kafka timestamps (ms) and
    whether it was live or replayed traffic (headers set by the worker)."""

    alert_ms: int | None = None
    trigger_ms: int | None = None
    traffic: str = "live"


@dataclass
class Records:
    """What this process holds: lifecycles, digests and their in-memory due times."""

    alerts: dict[str, AlertRecord] = field(default_factory=dict)
    digests: dict[str, DigestRecord] = field(default_factory=dict)
    timers: dict[str, Timers] = field(default_factory=dict)

    def get(self, key: str) -> AlertRecord | DigestRecord | None:
        return self.digests.get(key) if key.startswith(DIGEST_PREFIX) else self.alerts.get(key)

    def timers_of(self, key: str) -> Timers:
        return self.timers.get(key) or Timers()

    def digest_rows(self, digest: DigestRecord) -> list[AlertRecord]:
        """The members a digest lists: open ones, and resolved ones it already showed while open
        (a member over before the digest ever showed it leaves no line)."""
        members = [self.alerts[m] for m in digest.members if m in self.alerts]
        return [r for r in members if r.latest.action != "resolved" or r.alert_id in digest.listed]

    def digest_members(self, digest: DigestRecord) -> list[AlertEvent]:
        return [rec.latest for rec in self.digest_rows(digest)]


class Latencies:
    """Accepted events not yet shown, and how long each took to reach Slack once it is."""

    def __init__(self, clock: Clock, metrics: NotifyMetrics) -> None:
        self.clock = clock
        self.metrics = metrics
        self._accepted: dict[str, list[tuple[int, float, Origin | None]]] = {}

    def accepted(self, alert: AlertEvent, origin: Origin | None) -> None:
        self._accepted.setdefault(alert.alert_id, []).append((alert.seq, self.clock.now(), origin))

    def forget(self, alert_id: str) -> None:
        """The lifecycle will never be shown: nothing of it is to be measured."""
        self._accepted.pop(alert_id, None)

    def shown(self, alert_id: str, shown_seq: int) -> None:
        """Slack now shows `shown_seq`: measure every accepted event at or below it."""
        pending = self._accepted.get(alert_id)
        if not pending:
            return
        rest = [entry for entry in pending if entry[0] > shown_seq]
        for _, at, origin in (entry for entry in pending if entry[0] <= shown_seq):
            self._measure(at, origin)
        if rest:
            self._accepted[alert_id] = rest
        else:
            del self._accepted[alert_id]

    def _measure(self, accepted_at: float, origin: Origin | None) -> None:
        traffic = origin.traffic if origin is not None else "live"
        if origin is not None and origin.alert_ms is not None:
            self.metrics.delivery_latency(max(0.0, self.clock.wall() - origin.alert_ms / 1000), traffic)
        else:
            self.metrics.delivery_latency(self.clock.now() - accepted_at, traffic)
        if origin is not None and origin.trigger_ms is not None:
            self.metrics.end_to_end(max(0.0, self.clock.wall() - origin.trigger_ms / 1000), traffic)


class Executor:
    def __init__(
        self,
        gateway: SlackGateway,
        ledger: Ledger,
        records: Records,
        *,
        policy: DeliveryPolicy,
        clock: Clock,
        metrics: NotifyMetrics,
        latencies: Latencies,
        mention: str | None,
        reference: Reference = DEFAULT_REFERENCE,
        broadcasts_resolutions: Callable[[str], bool] = lambda channel: False,
        oncall: Callable[[AlertEvent], str | None] = lambda alert: None,
        escalation_channel: str | None = None,
    ) -> None:
        """`reference`: CBSA offices and the broker directory, for the number to call;
        `broadcasts_resolutions(channel)`: whether a resolution reply there goes to the channel too;
        `oncall(alert)`: the user group paged when nobody acknowledges it; `escalation_channel`:
        where those pages are posted too."""
        self.oncall = oncall
        self.escalation_channel = escalation_channel
        self.reference = reference
        self.broadcasts_resolutions = broadcasts_resolutions
        self.gateway = gateway
        self.ledger = ledger
        self.records = records
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.latencies = latencies
        self.mention = mention

    async def save(self, key: str, *, durable: bool) -> None:
        record = self.records.get(key)
        if record is None:
            return  # forgotten meanwhile (partition revoked): its new owner has the ledger
        if durable:
            await self.ledger.put_durable(key, record.to_entry())
        else:
            await self.ledger.put(key, record.to_entry())

    # --- alerts --------------------------------------------------------------------------------

    async def alert_step(self, ch: ChannelState, rec: AlertRecord, call: NextCall) -> Outcome:
        """Make the call `call` names for lifecycle `rec`; raises SlackCallError if Slack refused."""
        if call.action == POST:
            return await self._post_alert(ch, rec)
        if call.action == EDIT:
            return await self._edit_alert(rec)
        if call.action.startswith(f"{PAGE}:"):
            return await self._page(ch, rec, reply_seq(call.action))
        return await self._reply(ch, rec, call.action)

    async def _post_alert(self, ch: ChannelState, rec: AlertRecord) -> Outcome:
        key = rec.alert_id
        if rec.intent == POST:
            found, searched = await self._find(ch, rec.channel_id or ch.channel_id, key, rec.intent_at, None)
            if found is not None:
                log.info("adopting earlier post %s for alert %s", found, key)
                rec.ts, rec.channel_id = found, rec.channel_id or ch.channel_id
                rec.intent, rec.shown_seq, rec.shown_fp = None, 0, None
                self._set_timers(key, edit_due=float("-inf"))
                await self.save(key, durable=True)
                return "adopted"
            if rec.latest.action == "resolved" and searched:
                return await self._silence(rec)  # the earlier post never landed and it is over now
            # Could not look: the earlier post may be on Slack showing "at risk". Post the current
            # (possibly resolved) state: a second message that is right beats a stale one forever.
        sent = rec.latest
        message = self.alert_message(rec)
        rec.intent, rec.intent_at = POST, self.clock.wall()
        await self.save(key, durable=True)
        posted: Posted = await self._call(
            "chat.postMessage", self.gateway.post(rec.channel, message, key=key)
        )
        rec.ts, rec.channel_id, ch.channel_id = posted.ts, posted.channel_id, posted.channel_id
        rec.shown_seq, rec.shown_fp, rec.intent = sent.seq, message.fingerprint(), None
        rec.owed = [k for k in rec.owed if not is_seq_reply(k) or reply_seq(k) > sent.seq]
        self._set_timers(key, post_due=None)
        await self.save(key, durable=False)  # the durable intent covers a crash before this lands
        self.latencies.shown(key, sent.seq)
        return "sent"

    async def _edit_alert(self, rec: AlertRecord) -> Outcome:
        sent = rec.latest
        message = self.alert_message(rec)
        outcome: Outcome = "local"
        if message.fingerprint() != rec.shown_fp:
            assert rec.ts is not None and rec.channel_id is not None
            await self._call("chat.update", self.gateway.update(rec.channel_id, rec.ts, message))
            outcome = "sent"
        rec.shown_seq, rec.shown_fp, rec.restyle = sent.seq, message.fingerprint(), False
        self._set_timers(rec.alert_id, edit_due=None)
        await self.save(rec.alert_id, durable=False)
        self.latencies.shown(rec.alert_id, sent.seq)
        return outcome

    async def _reply(self, ch: ChannelState, rec: AlertRecord, owed: str) -> Outcome:
        """Post the owed reply `owed` under the lifecycle's message (escalation, resolution, a note
        on what dispatch did), or a page's post in the escalation channel."""
        key, thread_key = rec.alert_id, f"{rec.alert_id}:{owed}"
        assert rec.ts is not None
        elsewhere = owed.startswith(f"{ONCALL_POST}:")
        if rec.intent == owed and not elsewhere:  # a post elsewhere is at least once: not looked for
            found, _ = await self._find(ch, rec.channel_id, thread_key, rec.intent_at, rec.ts)
            if found is not None:
                self._settle_reply(rec, owed)
                await self.save(key, durable=True)
                return "adopted"
        # A resolution also edits the message: its reply pings the channel only where asked.
        broadcast = owed.startswith(f"{RESOLUTION}:") and self.broadcasts_resolutions(rec.channel)
        message = self.reply_message(rec, owed)
        rec.intent, rec.intent_at = owed, self.clock.wall()
        await self.save(key, durable=True)
        if elsewhere and self.escalation_channel:
            post = self.gateway.post(self.escalation_channel, message, key=thread_key)
        else:
            channel = rec.channel_id or rec.channel
            post = self.gateway.post(channel, message, key=thread_key, thread_ts=rec.ts, broadcast=broadcast)
        await self._call("chat.postMessage", post)
        self._settle_reply(rec, owed)
        await self.save(key, durable=False)
        return "sent"

    def _settle_reply(self, rec: AlertRecord, owed: str) -> None:
        if owed in rec.owed:
            rec.owed.remove(owed)
        rec.notes.pop(owed, None)
        rec.intent = None

    def reply_message(self, rec: AlertRecord, owed: str) -> SlackMessage:
        """What the owed reply says; the owner, if any, is mentioned (they handle the load)."""
        owner = f"<@{rec.ownership.owner}>" if rec.ownership.owner else None
        kind = owed.split(":", 1)[0]
        if kind == RESOLUTION:
            message = render_resolution(rec.latest, reference=self.reference)
            return render_note_prefix(message, owner)
        if kind == NOTE:
            return render_note(rec.notes.get(owed, "holdwatch noted a change."))
        if kind == ONCALL_POST:
            return self.page_message(rec, reply_seq(owed), channel=rec.channel)
        return render_note_prefix(
            render_escalation(rec.latest, mention=self.mention, reference=self.reference), owner
        )

    def page_message(self, rec: AlertRecord, level: int, *, channel: str | None = None) -> SlackMessage:
        since = rec.ownership.watch_from or self.clock.wall()
        return render_page(
            rec.latest,
            level,
            group=self.oncall(rec.latest),
            minutes_unowned=max(0.0, self.clock.wall() - since) / 60,
            reference=self.reference,
            channel=channel,
        )

    async def _page(self, ch: ChannelState, rec: AlertRecord, level: int) -> Outcome:
        """Escalate an unowned critical lifecycle to on-call in its thread (once per level)."""
        due = page_due(
            rec,
            escalate_after_s=self.policy.escalate_after_s,
            second_before_eta_s=self.policy.second_page_before_eta_s,
        )
        if due is None or due[0] != level or due[1] > self.clock.wall():
            return "local"  # acknowledged, resolved or snoozed meanwhile
        owed = reply_key(PAGE, level)
        if rec.intent == owed:
            found, _ = await self._find(ch, rec.channel_id, f"{rec.alert_id}:{owed}", rec.intent_at, rec.ts)
            if found is not None:
                return await self._paged(rec, level)
        rec.intent, rec.intent_at = owed, self.clock.wall()
        await self.save(rec.alert_id, durable=True)
        assert rec.ts is not None
        message = self.page_message(rec, level)
        channel = rec.channel_id or rec.channel
        await self._call(
            "chat.postMessage",
            self.gateway.post(
                channel, message, key=f"{rec.alert_id}:{owed}", thread_ts=rec.ts, broadcast=True
            ),
        )
        await self._paged(rec, level)
        return "sent"

    async def _paged(self, rec: AlertRecord, level: int) -> Outcome:
        rec.ownership = replace(rec.ownership, pages=level, paged_at=self.clock.wall())
        rec.intent = None
        if self.escalation_channel:
            rec.owed.append(reply_key(ONCALL_POST, level))
        self.metrics.paged(level)
        await self.save(rec.alert_id, durable=True)
        return "adopted"

    def alert_message(self, rec: AlertRecord) -> SlackMessage:
        message = render_alert(rec.latest, mention=self.mention, reference=self.reference)
        if self.policy.interactive:
            zone = alert_zone(rec.latest, self.reference)
            message = with_dispatch(message, rec.latest, rec.ownership, zone=zone, now=self.clock.wall())
        return SlackMessage(text=message.text, plain=message.plain) if rec.text_only else message

    def _set_timers(self, key: str, **changes: Any) -> None:
        self.records.timers[key] = replace(self.records.timers_of(key), **changes)

    # --- digests -------------------------------------------------------------------------------

    def digest_message(self, digest: DigestRecord) -> SlackMessage:
        return render_digest(self.records.digest_members(digest), mention=self.mention)

    async def digest_step(self, ch: ChannelState, digest: DigestRecord) -> Outcome:
        """Post the storm digest, or edit it to list its members' newest states."""
        key = digest.digest_id
        rows = self.records.digest_rows(digest)
        message = render_digest([rec.latest for rec in rows], mention=self.mention)
        outcome: Outcome = "local"
        if digest.ts is None and not rows:
            self._measure_digest(digest, rows)
            return "local"  # every member is over before the digest was shown: nothing to post
        if digest.ts is None:
            if digest.intent == POST:
                found, _ = await self._find(
                    ch, digest.channel_id or ch.channel_id, key, digest.intent_at, None
                )
                if found is not None:
                    digest.ts, digest.channel_id = found, ch.channel_id
                    digest.intent, digest.shown_fp = None, None
                    await self.save(key, durable=True)
                    return "adopted"
            digest.intent, digest.intent_at = POST, self.clock.wall()
            await self.save(key, durable=True)
            posted: Posted = await self._call(
                "chat.postMessage", self.gateway.post(digest.channel, message, key=key)
            )
            digest.ts, digest.channel_id, ch.channel_id = posted.ts, posted.channel_id, posted.channel_id
            digest.intent = None
            outcome = "sent"
        elif message.fingerprint() != digest.shown_fp:
            assert digest.channel_id is not None
            await self._call("chat.update", self.gateway.update(digest.channel_id, digest.ts, message))
            outcome = "sent"
        digest.shown_fp = message.fingerprint()
        digest.listed += [rec.alert_id for rec in rows if rec.alert_id not in digest.listed]
        await self.save(key, durable=False)
        self._measure_digest(digest, rows)
        return outcome

    def _measure_digest(self, digest: DigestRecord, rows: list[AlertRecord]) -> None:
        """The listed members are shown as they are now; the others never will be."""
        listed = {rec.alert_id: rec.latest.seq for rec in rows}
        for member in digest.members:
            if member in listed:
                self.latencies.shown(member, listed[member])
            else:
                self.latencies.forget(member)

    # --- after a refusal -----------------------------------------------------------------------

    async def refused(self, key: str) -> None:
        """Slack answered with an error: the call did not take effect, no need to look for it later."""
        record = self.records.get(key)
        if record is not None and record.intent is not None:
            record.intent = None
            await self.save(key, durable=False)

    async def message_gone(self, rec: AlertRecord) -> None:
        """Someone deleted the lifecycle's message: post it again (with no replies owed), unless it
        is over (a new message would first show it resolved)."""
        rec.ts, rec.shown_seq, rec.shown_fp, rec.owed = None, 0, None, []
        if rec.latest.action == "resolved":
            await self._silence(rec)
            return
        await self.save(rec.alert_id, durable=False)

    async def _silence(self, rec: AlertRecord) -> Outcome:
        """Nothing of this lifecycle is on Slack and it is over: it will never be shown."""
        rec.silent, rec.intent, rec.owed = True, None, []
        self.latencies.forget(rec.alert_id)
        await self.save(rec.alert_id, durable=False)
        return "local"

    async def text_only(self, rec: AlertRecord) -> None:
        """Slack rejected our blocks: send the fallback text from now on."""
        rec.text_only = True
        await self.save(rec.alert_id, durable=False)

    # --- calls ---------------------------------------------------------------------------------

    async def _call(self, method: str, call: Any) -> Any:
        try:
            result = await call
        except SlackCallError as exc:
            self.metrics.slack_call(method, exc.kind)
            raise
        self.metrics.slack_call(method, "ok")
        return result

    async def _find(
        self, ch: ChannelState, channel_id: str | None, key: str, since: float | None, thread_ts: str | None
    ) -> tuple[str | None, bool]:
        """Look for a post that may have landed: (its ts or None, whether we could look at all).
        Without the right to read history we give up and post again."""
        if channel_id is None:
            channel_id = ch.channel_id = await self._resolve_channel(ch)
        if channel_id is None:
            return None, True  # no such channel for us: nothing of ours can be there (as before)
        oldest = (since or self.clock.wall()) - self.policy.find_margin_s
        method = "conversations.replies" if thread_ts else "conversations.history"
        try:
            found = await self.gateway.find(channel_id, key, oldest=oldest, thread_ts=thread_ts)
        except SlackCallError as exc:
            self.metrics.slack_call(method, exc.kind)
            if exc.kind in ("rate_limited", "transient"):
                raise
            log.warning(
                "cannot search %s for an earlier post of %s (%s): posting again", channel_id, key, exc.error
            )
            return None, False
        self.metrics.slack_call(method, "ok")
        return found, True

    async def _resolve_channel(self, ch: ChannelState) -> str | None:
        try:
            found = await self.gateway.channel_id(ch.name)
        except SlackCallError as exc:
            self.metrics.slack_call("conversations.list", exc.kind)
            if exc.kind in ("rate_limited", "transient"):
                raise
            log.warning("cannot look up the id of %s (%s): posting again", ch.name, exc.error)
            return None
        self.metrics.slack_call("conversations.list", "ok")
        return found
