"""Slack delivery core: alert events in, at most one Slack message per lifecycle out.

`accept` records an event as the lifecycle's desired state (in the ledger: the caller flushes it
before committing its input offset). Per channel, `step` makes at most one Slack call that brings
Slack closer to that state: post the message, post an owed thread reply, or edit the message.
Because each call renders the *latest* state, updates that pile up during an outage, a 429 or
the edit delay collapse into one edit.

Exactly-once as dispatch sees it:
- a lifecycle is posted only while the ledger has no ts for it; before a post the ledger records
  an intent (flushed), after it the ts (flushed);
- if a post may have reached Slack (timeout, dropped connection, crash) the next attempt first
  looks for it by its metadata key (conversations.history / .replies) and adopts its ts;
- events with a seq at or below the lifecycle's newest accepted seq are dropped.

Failures: 429 waits Retry-After for that channel; 5xx and dropped connections back off
exponentially per channel; permanent errors (invalid_auth, channel_not_found, ...) are logged
with the alert and counted, and the channel retries every `permanent_retry_s` — its alerts stay
pending in the ledger (across restarts) and other channels keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from alerting.notify.clock import Clock, ManualClock, SystemClock
from alerting.notify.gateway import SlackCallError, SlackGateway
from alerting.notify.ledger import DIGEST_PREFIX, AlertRecord, DigestRecord, Ledger, LedgerError
from alerting.notify.metrics import NotifyMetrics, NullMetrics
from alerting.notify.render import (
    SlackMessage,
    render_alert,
    render_escalation,
    render_resolution,
    subteam_mention,
)
from alerting.notify.routing import Routing
from alerting.notify.storm import StormDetector, render_digest
from schemas.alerts import AlertEvent

log = logging.getLogger("holdwatch.notify")

Outcome = Literal["sent", "local"]


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
    resolution_reply_outcomes: frozenset[str] = frozenset({"released", "cleared", "cancelled"})


@dataclass
class ChannelState:
    name: str
    dirty: dict[str, float] = field(default_factory=dict)  # key -> when its next call is due
    next_send_at: float = 0.0
    blocked_until: float = 0.0
    failures: int = 0
    error: str | None = None
    channel_id: str | None = None
    open_digest: str | None = None
    kick: asyncio.Event = field(default_factory=asyncio.Event)


def _reply_seq(key: str) -> int:
    try:
        return int(key.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _is_escalation(alert: AlertEvent, previous: AlertEvent) -> bool:
    if alert.action != "updated" or alert.severity != "critical":
        return False
    return alert.previous_severity == "warning" or (
        alert.previous_severity is None and previous.severity == "warning"
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an alert event came from: its record's and its trigger's Kafka timestamps (ms) and
    whether it was live or replayed traffic (headers set by the worker)."""

    alert_ms: int | None = None
    trigger_ms: int | None = None
    traffic: str = "live"


class Delivery:
    def __init__(
        self,
        gateway: SlackGateway,
        ledger: Ledger,
        routing: Routing,
        *,
        policy: DeliveryPolicy | None = None,
        clock: Clock | None = None,
        metrics: NotifyMetrics | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.routing = routing
        self.policy = policy or DeliveryPolicy()
        self.clock: Clock = clock or SystemClock()
        self.metrics: NotifyMetrics = metrics or NullMetrics()
        self.rng = rng or random.Random()
        self.wall = wall  # epoch seconds, for latencies against Kafka timestamps
        self.mention = subteam_mention(self.policy.critical_mention)
        self.storms = StormDetector(self.policy.storm_threshold, self.policy.storm_window_s)
        self.alerts: dict[str, AlertRecord] = {}
        self.digests: dict[str, DigestRecord] = {}
        self.channels: dict[str, ChannelState] = {}
        self._edit_due: dict[str, float] = {}
        self._post_due: dict[str, float] = {}  # warnings held back until then
        self._accepted_at: dict[str, list[tuple[int, float, Origin | None]]] = {}
        self._channels_changed = asyncio.Event()

    # --- state ---------------------------------------------------------------------------------

    def _channel(self, name: str) -> ChannelState:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = ChannelState(name)
            self._channels_changed.set()
        return ch

    def restore(
        self, entries: Mapping[str, Mapping[str, Any]], *, partitions: Iterable[int] | None = None
    ) -> int:
        """Load ledger entries (read at startup) and queue whatever Slack still owes; returns that count.

        With `partitions`, only lifecycles from those input partitions are taken (digests always).
        """
        wanted = None if partitions is None else set(partitions)
        for key, entry in entries.items():
            if key in self.alerts or key in self.digests:
                continue  # what this process holds is at least as new as what it wrote
            try:
                if entry.get("kind") == "digest":
                    self.digests[key] = DigestRecord.from_entry(entry)
                else:
                    rec = AlertRecord.from_entry(entry)
                    if wanted is not None and rec.partition is not None and rec.partition not in wanted:
                        continue
                    self.alerts[key] = rec
            except LedgerError as exc:
                log.error("skipping ledger entry %s: %s", key, exc)
        for rec in self.alerts.values():
            ch = self._channel(rec.channel)
            ch.channel_id = ch.channel_id or rec.channel_id
            self._reschedule_alert(rec)
        for digest in self.digests.values():
            self._channel(digest.channel)
            self._reschedule_digest(digest)
        pending = self.pending_count()
        self.metrics.pending(pending)
        return pending

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Stop handling lifecycles of partitions this instance no longer owns."""
        gone = set(partitions)
        for key in [k for k, r in self.alerts.items() if r.partition in gone]:
            rec = self.alerts.pop(key)
            if rec.channel in self.channels:
                self.channels[rec.channel].dirty.pop(key, None)
            self._edit_due.pop(key, None)

    def pending_count(self) -> int:
        return sum(len(ch.dirty) for ch in self.channels.values())

    def pending_keys(self) -> list[str]:
        return [k for ch in self.channels.values() for k in ch.dirty]

    def _mark(self, ch: ChannelState, key: str, due: float) -> None:
        ch.dirty[key] = min(ch.dirty.get(key, math.inf), due)
        ch.kick.set()

    async def _save(self, key: str, *, durable: bool) -> None:
        record = self.digests.get(key) if key.startswith(DIGEST_PREFIX) else self.alerts.get(key)
        if record is None:
            return  # forgotten meanwhile (partition revoked): its new owner has the ledger
        if durable:
            await self.ledger.put_durable(key, record.to_entry())
        else:
            await self.ledger.put(key, record.to_entry())

    # --- input ---------------------------------------------------------------------------------

    async def accept(
        self, alert: AlertEvent, *, partition: int | None = None, origin: Origin | None = None
    ) -> bool:
        """Record an alert event as its lifecycle's desired state; False if it is a duplicate.

        `origin` (from the alert record's headers) lets the end-to-end latency be measured.

        The ledger entry is queued, not flushed: the caller flushes before committing the offset.
        """
        now = self.clock.now()
        rec = self.alerts.get(alert.alert_id)
        if rec is not None and alert.seq <= rec.latest.seq:
            self.metrics.duplicate_dropped()
            return False
        if rec is None:
            rec = AlertRecord(alert.alert_id, self.routing.channel_for(alert), alert, partition=partition)
            self.alerts[alert.alert_id] = rec
            ch = self._channel(rec.channel)
            if alert.action == "resolved":
                rec.silent = True  # never shown, already over: nothing for dispatch to see
            elif self.storms.observe_raised(rec.channel, now):
                await self._join_digest(ch, rec)
            else:
                hold = self.policy.warning_hold_s if alert.severity == "warning" else 0.0
                if hold > 0:
                    self._post_due[rec.alert_id] = now + hold
                self._mark(ch, rec.alert_id, now + hold)
        else:
            previous, rec.latest = rec.latest, alert
            rec.partition = partition if partition is not None else rec.partition
            ch = self._channel(rec.channel)
            if rec.digest is not None:
                digest = self.digests.get(rec.digest)
                if digest is not None:
                    self._mark(ch, digest.digest_id, now + self.policy.digest_edit_delay_s)
            elif rec.ts is None and rec.intent is None and self._post_due.get(rec.alert_id, -math.inf) > now:
                if alert.action == "resolved":
                    rec.silent = True  # cleared while held back: dispatch never needed to see it
                    self._post_due.pop(rec.alert_id, None)
                elif alert.severity == "critical":
                    self._post_due[rec.alert_id] = now
                self._reschedule_alert(rec)
            elif not rec.silent:
                on_slack = rec.ts is not None or rec.intent == "post"
                if alert.action == "resolved":
                    if on_slack and (alert.outcome or "") in self.policy.resolution_reply_outcomes:
                        rec.owed.append(f"resolution:{alert.seq}")
                    self._edit_due[rec.alert_id] = now
                elif _is_escalation(alert, previous):
                    if on_slack:
                        rec.owed.append(f"escalation:{alert.seq}")
                    self._edit_due[rec.alert_id] = now
                else:
                    self._edit_due.setdefault(rec.alert_id, now + self.policy.edit_delay_s)
                self._reschedule_alert(rec)
        self._accepted_at.setdefault(alert.alert_id, []).append((alert.seq, now, origin))
        await self._save(rec.alert_id, durable=False)
        self.metrics.pending(self.pending_count())
        return True

    async def _join_digest(self, ch: ChannelState, rec: AlertRecord) -> None:
        digest = self.digests.get(ch.open_digest) if ch.open_digest else None
        if digest is None:
            started = self.clock.wall()
            digest_id = f"{DIGEST_PREFIX}{ch.name}:{int(started * 1000)}"
            digest = DigestRecord(digest_id=digest_id, channel=ch.name, started_wall=started)
            self.digests[digest_id] = digest
            ch.open_digest = digest_id
        digest.members.append(rec.alert_id)
        rec.digest = digest.digest_id
        self.metrics.storm_grouped()
        now = self.clock.now()
        self._mark(ch, digest.digest_id, now if digest.ts is None else now + self.policy.digest_edit_delay_s)
        await self._save(digest.digest_id, durable=False)

    # --- planning ------------------------------------------------------------------------------

    def _alert_next(self, rec: AlertRecord) -> tuple[str, float] | None:
        if rec.digest is not None or rec.silent:
            return None
        if rec.ts is None:
            return ("post", self._post_due.get(rec.alert_id, -math.inf))
        for key in rec.owed:
            if key.startswith("escalation:"):
                return (key, -math.inf)
        if rec.shown_seq < rec.latest.seq:
            return ("edit", self._edit_due.get(rec.alert_id, -math.inf))
        if rec.owed:
            return (rec.owed[0], -math.inf)
        return None

    def _reschedule_alert(self, rec: AlertRecord) -> None:
        ch = self._channel(rec.channel)
        nxt = self._alert_next(rec) if self.alerts.get(rec.alert_id) is rec else None
        if nxt is None:
            ch.dirty.pop(rec.alert_id, None)
            self._edit_due.pop(rec.alert_id, None)
        else:
            ch.dirty[rec.alert_id] = nxt[1]
            ch.kick.set()

    def _digest_message(self, digest: DigestRecord) -> SlackMessage:
        members = [self.alerts[m].latest for m in digest.members if m in self.alerts]
        return render_digest(members, mention=self.mention)

    def _reschedule_digest(self, digest: DigestRecord, *, due: float | None = None) -> None:
        ch = self._channel(digest.channel)
        if digest.ts is None:
            self._mark(ch, digest.digest_id, -math.inf)
        elif self._digest_message(digest).fingerprint() != digest.shown_fp:
            self._mark(ch, digest.digest_id, due if due is not None else -math.inf)
        else:
            ch.dirty.pop(digest.digest_id, None)

    def wake_time(self, channel: str) -> float | None:
        """When `step(channel)` next has something to do (None: nothing pending)."""
        ch = self.channels.get(channel)
        if ch is None or not ch.dirty:
            return None
        return max(min(ch.dirty.values()), ch.next_send_at, ch.blocked_until)

    def next_due(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        for name in self.channels:
            wake = self.wake_time(name)
            if wake is not None and (best is None or wake < best[0]):
                best = (wake, name)
        return best

    # --- doing ---------------------------------------------------------------------------------

    async def step(self, channel: str) -> bool:
        """Make at most one Slack call for `channel`; True if something happened."""
        ch = self.channels.get(channel)
        now = self.clock.now()
        if ch is None or not ch.dirty or now < max(ch.next_send_at, ch.blocked_until):
            return False
        key, due = min(ch.dirty.items(), key=lambda kv: kv[1])
        if due > now:
            return False
        if key not in self.alerts and key not in self.digests:
            del ch.dirty[key]  # forgotten (partition revoked)
            return True
        try:
            if key.startswith(DIGEST_PREFIX):
                outcome = await self._step_digest(ch, key)
            else:
                outcome = await self._step_alert(ch, key)
        except SlackCallError as exc:
            await self._failed(ch, key, exc)
            return True
        ch.failures = 0
        if ch.error is not None:
            log.info("Slack channel %s works again (was: %s)", channel, ch.error)
            ch.error = None
        if outcome == "sent":
            ch.next_send_at = self.clock.now() + self.policy.min_interval_s
        self.metrics.pending(self.pending_count())
        return True

    def _observe_latency(self, alert_id: str, shown_seq: int) -> None:
        pending = self._accepted_at.get(alert_id)
        if not pending:
            return
        now = self.clock.now()
        rest = []
        for seq, at, origin in pending:
            if seq <= shown_seq:
                traffic = origin.traffic if origin is not None else "live"
                if origin is not None and origin.alert_ms is not None:
                    self.metrics.delivery_latency(max(0.0, self.wall() - origin.alert_ms / 1000), traffic)
                else:
                    self.metrics.delivery_latency(now - at, traffic)
                if origin is not None and origin.trigger_ms is not None:
                    self.metrics.end_to_end(max(0.0, self.wall() - origin.trigger_ms / 1000), traffic)
            else:
                rest.append((seq, at, origin))
        if rest:
            self._accepted_at[alert_id] = rest
        else:
            del self._accepted_at[alert_id]

    def _render(self, rec: AlertRecord) -> SlackMessage:
        message = render_alert(rec.latest, mention=self.mention)
        return SlackMessage(text=message.text, plain=message.plain) if rec.text_only else message

    async def _find(
        self, ch: ChannelState, channel_id: str | None, key: str, since: float | None, thread_ts: str | None
    ) -> str | None:
        """Look for a post that may have landed; give up (post again) if we may not read history."""
        if channel_id is None:
            channel_id = ch.channel_id = await self._resolve_channel(ch)
        if channel_id is None:
            return None
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
            return None
        self.metrics.slack_call(method, "ok")
        return found

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

    async def _step_alert(self, ch: ChannelState, key: str) -> Outcome:
        rec = self.alerts[key]
        nxt = self._alert_next(rec)
        if nxt is None:
            self._reschedule_alert(rec)
            return "local"
        action = nxt[0]
        if action == "post":
            if rec.intent == "post":
                found = await self._find(
                    ch, rec.channel_id or ch.channel_id, rec.alert_id, rec.intent_at, None
                )
                if found is not None:
                    log.info("adopting earlier post %s for alert %s", found, rec.alert_id)
                    rec.ts, rec.channel_id = found, rec.channel_id or ch.channel_id
                    rec.intent, rec.shown_seq, rec.shown_fp = None, 0, None
                    self._edit_due[key] = -math.inf
                    await self._save(key, durable=True)
                    self._reschedule_alert(rec)
                    return "local"
            sent = rec.latest
            message = self._render(rec)
            rec.intent, rec.intent_at = "post", self.clock.wall()
            await self._save(key, durable=True)
            posted = await self._call(
                "chat.postMessage", self.gateway.post(rec.channel, message, key=rec.alert_id)
            )
            rec.ts, rec.channel_id, ch.channel_id = posted.ts, posted.channel_id, posted.channel_id
            rec.shown_seq, rec.shown_fp, rec.intent = sent.seq, message.fingerprint(), None
            rec.owed = [k for k in rec.owed if _reply_seq(k) > sent.seq]
            self._post_due.pop(key, None)
            await self._save(key, durable=False)  # the durable intent covers a crash before this lands
            self._observe_latency(key, sent.seq)
        elif action == "edit":
            sent = rec.latest
            message = self._render(rec)
            if message.fingerprint() != rec.shown_fp:
                assert rec.ts is not None and rec.channel_id is not None
                await self._call("chat.update", self.gateway.update(rec.channel_id, rec.ts, message))
                outcome: Outcome = "sent"
            else:
                outcome = "local"
            rec.shown_seq, rec.shown_fp = sent.seq, message.fingerprint()
            self._edit_due.pop(key, None)
            await self._save(key, durable=False)
            self._observe_latency(key, sent.seq)
            self._reschedule_alert(rec)
            return outcome
        else:
            reply_key = f"{rec.alert_id}:{action}"
            assert rec.ts is not None
            if rec.intent == action:
                found = await self._find(ch, rec.channel_id, reply_key, rec.intent_at, rec.ts)
                if found is not None:
                    rec.owed.remove(action)
                    rec.intent = None
                    await self._save(key, durable=True)
                    self._reschedule_alert(rec)
                    return "local"
            broadcast = action.startswith("resolution:")
            message = (
                render_resolution(rec.latest)
                if broadcast
                else render_escalation(rec.latest, mention=self.mention)
            )
            rec.intent, rec.intent_at = action, self.clock.wall()
            await self._save(key, durable=True)
            await self._call(
                "chat.postMessage",
                self.gateway.post(
                    rec.channel_id or rec.channel,
                    message,
                    key=reply_key,
                    thread_ts=rec.ts,
                    broadcast=broadcast,
                ),
            )
            rec.owed.remove(action)
            rec.intent = None
            await self._save(key, durable=False)
        self._reschedule_alert(rec)
        return "sent"

    async def _step_digest(self, ch: ChannelState, key: str) -> Outcome:
        digest = self.digests[key]
        message = self._digest_message(digest)
        members = list(digest.members)
        if digest.ts is None:
            if digest.intent == "post":
                found = await self._find(ch, digest.channel_id or ch.channel_id, key, digest.intent_at, None)
                if found is not None:
                    digest.ts, digest.channel_id, digest.intent, digest.shown_fp = (
                        found,
                        ch.channel_id,
                        None,
                        None,
                    )
                    await self._save(key, durable=True)
                    self._reschedule_digest(digest)
                    return "local"
            digest.intent, digest.intent_at = "post", self.clock.wall()
            await self._save(key, durable=True)
            posted = await self._call("chat.postMessage", self.gateway.post(digest.channel, message, key=key))
            digest.ts, digest.channel_id, ch.channel_id = posted.ts, posted.channel_id, posted.channel_id
            digest.intent = None
            outcome: Outcome = "sent"
            durable = False
        elif message.fingerprint() != digest.shown_fp:
            assert digest.channel_id is not None
            await self._call("chat.update", self.gateway.update(digest.channel_id, digest.ts, message))
            outcome, durable = "sent", False
        else:
            outcome, durable = "local", False
        digest.shown_fp = message.fingerprint()
        await self._save(key, durable=durable)
        for member in members:
            rec = self.alerts.get(member)
            if rec is not None:
                self._observe_latency(member, rec.latest.seq)
        self._reschedule_digest(digest, due=self.clock.now() + self.policy.digest_edit_delay_s)
        return outcome

    async def _call(self, method: str, call: Any) -> Any:
        try:
            result = await call
        except SlackCallError as exc:
            self.metrics.slack_call(method, exc.kind)
            raise
        self.metrics.slack_call(method, "ok")
        return result

    async def _failed(self, ch: ChannelState, key: str, exc: SlackCallError) -> None:
        now = self.clock.now()
        rec = self.alerts.get(key)
        digest = self.digests.get(key)
        if exc.kind != "transient":
            # Slack answered: the call did not take effect, no need to look for it later.
            if rec is not None and rec.intent is not None:
                rec.intent = None
                await self._save(key, durable=False)
            if digest is not None and digest.intent is not None:
                digest.intent = None
                await self._save(key, durable=False)
        if exc.kind == "rate_limited":
            self.metrics.rate_limited()
            wait = exc.retry_after if exc.retry_after is not None else max(1.0, self.policy.min_interval_s)
            ch.blocked_until = now + wait
            log.warning("Slack rate-limited channel %s: waiting %.1fs", ch.name, wait)
        elif exc.kind == "transient":
            self.metrics.retried()
            ch.failures += 1
            delay = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** (ch.failures - 1))
            delay *= 0.75 + 0.25 * self.rng.random()
            ch.blocked_until = now + delay
            log.warning("Slack call for %s in %s failed (%s): retry in %.1fs", key, ch.name, exc.error, delay)
        elif exc.kind == "gone" and rec is not None:
            log.warning("Slack message of alert %s is gone (%s): posting it again", key, exc.error)
            rec.ts, rec.shown_seq, rec.shown_fp, rec.owed = None, 0, None, []
            await self._save(key, durable=False)
            self._reschedule_alert(rec)
        elif exc.kind == "content" and rec is not None and not rec.text_only:
            log.warning("Slack rejected the blocks of alert %s (%s): sending text only", key, exc.error)
            rec.text_only = True
            await self._save(key, durable=False)
        else:
            self.metrics.permanent_error(exc.error)
            ch.error = exc.error
            ch.blocked_until = now + self.policy.permanent_retry_s
            about = f"digest {key}" if digest is not None else f"alert {key}"
            if rec is not None:
                last = rec.latest
                about += f" (CCN {last.ccn}, load {last.load_ref or '-'}, {last.action} seq {last.seq})"
            log.error(
                "Slack refused %s for channel %s: %s. It stays pending (%d pending in this channel) and is "
                "retried every %.0fs until the configuration is fixed.",
                about,
                ch.name,
                exc.error,
                len(ch.dirty),
                self.policy.permanent_retry_s,
            )
        self.metrics.pending(self.pending_count())

    # --- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: one worker per channel, so a slow channel never blocks others."""
        workers: dict[str, asyncio.Task[None]] = {}
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._channels_changed.clear()
                for name in list(self.channels):
                    if name not in workers:
                        workers[name] = asyncio.create_task(
                            self._channel_loop(name, stop), name=f"slack:{name}"
                        )
                changed = asyncio.ensure_future(self._channels_changed.wait())
                await asyncio.wait({stop_wait, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        finally:
            stop_wait.cancel()
            for ch in self.channels.values():
                ch.kick.set()
            if workers:
                _, late = await asyncio.wait(workers.values(), timeout=5.0)
                for task in late:
                    task.cancel()
                await asyncio.gather(*workers.values(), return_exceptions=True)

    async def _channel_loop(self, name: str, stop: asyncio.Event) -> None:
        ch = self.channels[name]
        while not stop.is_set():
            ch.kick.clear()
            wake = self.wake_time(name)
            now = self.clock.now()
            if wake is None or wake > now:
                await self.clock.wait(ch.kick, None if wake is None else wake - now)
                continue
            try:
                await self.step(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected error delivering to %s", name)
                ch.blocked_until = self.clock.now() + self.policy.backoff_max_s


async def run_simulated(delivery: Delivery, clock: ManualClock, until: float) -> int:
    """Advance a manual clock through every call due before `until`; returns the steps taken."""
    steps = 0
    while True:
        nxt = delivery.next_due()
        if nxt is None or nxt[0] > until:
            break
        clock.advance_to(nxt[0])
        if not await delivery.step(nxt[1]):
            raise RuntimeError(f"no progress on {nxt[1]} at {clock.now()}")  # a scheduling bug
        steps += 1
    clock.advance_to(until)
    return steps


async def stop_after(delivery: Delivery, stop: asyncio.Event, seconds: float) -> None:
    """Helper for tests: run `delivery` for a while then stop it."""
    task = asyncio.create_task(delivery.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
