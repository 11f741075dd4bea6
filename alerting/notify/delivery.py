"""Slack delivery: alert events in, at most one Slack message per lifecycle out.

The composition of the notify stages, Alertmanager-style:

- `accept` records an event as its lifecycle's desired state (in the ledger: the caller flushes it
  before committing its input offset) and lets the **planner** decide what it changes;
- the **scheduler** says, per channel, which key is due (pacing, Retry-After, backoff, storms);
- `step` has the **executor** make at most one Slack call for that key: post the message, post
  an owed thread reply, or edit the message. Because each call renders the *latest* state,
  updates that pile up during an outage, a 429 or the edit delay collapse into one edit.

Events with a seq at or below the lifecycle's newest accepted seq are dropped; events of replayed
traffic are skipped unless the policy opts in. A lifecycle that resolves before anything of it
reached Slack is never shown (first start on history posts only what is still open). Permanent errors
(invalid_auth, channel_not_found, ...) are logged with the alert and counted; the alerts stay
pending in the ledger (across restarts) and other channels keep flowing.

Retention, in event time (`retention.Retention`): once the newest accepted `at` is more than
`policy.ledger_retention` past a lifecycle's resolution and Slack owes it nothing, it is deleted
from the ledger (a tombstone) and from memory; a storm digest goes with its members once all of
them are. An event for a forgotten lifecycle is a first event again: posted only if still open.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from alerting.notify.actions import ActionOutcome, decide, page_due, watch
from alerting.notify.clock import Clock, ManualClock, SystemClock
from alerting.notify.executor import Executor, Latencies, Origin, Records
from alerting.notify.gateway import SlackCallError, SlackGateway
from alerting.notify.ledger import (
    DIGEST_PREFIX,
    HANDOVER_PREFIX,
    AlertRecord,
    DigestRecord,
    Ledger,
    LedgerError,
)
from alerting.notify.metrics import NotifyMetrics, NullMetrics
from alerting.notify.planner import (
    NOTE,
    Plan,
    Timers,
    is_duplicate,
    next_call,
    plan_first,
    plan_next,
    reply_key,
    skip_reason,
)
from alerting.notify.policy import DeliveryPolicy
from alerting.notify.render import DEFAULT_REFERENCE, Reference, alert_zone, short_time, subteam_mention
from alerting.notify.retention import Retention
from alerting.notify.routing import Routing
from alerting.notify.scheduler import ChannelState, Scheduler
from schemas.actions import DispatchAction
from schemas.alerts import AlertEvent

__all__ = ["Delivery", "DeliveryPolicy", "Origin", "run_simulated"]

log = logging.getLogger("holdwatch.notify")


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
        reference: Reference = DEFAULT_REFERENCE,
    ) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.routing = routing
        self.policy = policy or DeliveryPolicy()
        self.clock: Clock = clock or SystemClock()
        self.metrics: NotifyMetrics = metrics or NullMetrics()
        self.records = Records()
        self.scheduler = Scheduler(self.policy, self.clock, rng)
        self.retention = Retention(self.policy.ledger_retention, self.policy.prune_interval)
        self.executor = Executor(
            gateway,
            ledger,
            self.records,
            policy=self.policy,
            clock=self.clock,
            metrics=self.metrics,
            latencies=Latencies(self.clock, self.metrics),
            mention=subteam_mention(self.policy.critical_mention),
            reference=reference,
            broadcasts_resolutions=routing.broadcasts_resolutions,
            oncall=routing.oncall.group_for,
            escalation_channel=routing.escalation_channel,
        )

    @property
    def alerts(self) -> dict[str, AlertRecord]:
        return self.records.alerts

    @property
    def digests(self) -> dict[str, DigestRecord]:
        return self.records.digests

    @property
    def channels(self) -> dict[str, ChannelState]:
        return self.scheduler.channels

    # --- state ---------------------------------------------------------------------------------

    def restore(
        self, entries: Mapping[str, Mapping[str, Any]], *, partitions: Iterable[int] | None = None
    ) -> int:
        """Load ledger entries (read at startup) and queue whatever Slack still owes; returns that count.

        With `partitions`, only lifecycles from those input partitions are taken (digests always).
        """
        wanted = None if partitions is None else set(partitions)
        restored: list[AlertRecord] = []
        for key, entry in entries.items():
            if key in self.alerts or key in self.digests or key.startswith(HANDOVER_PREFIX):
                continue  # what this process holds is at least as new as what it wrote
            try:
                if entry.get("kind") == "digest":
                    self.digests[key] = DigestRecord.from_entry(entry)
                else:
                    rec = AlertRecord.from_entry(entry)
                    if wanted is not None and rec.partition is not None and rec.partition not in wanted:
                        continue
                    self.alerts[key] = rec
                    restored.append(rec)
            except LedgerError as exc:
                log.error("skipping ledger entry %s: %s", key, exc)
        for rec in self.alerts.values():
            ch = self.scheduler.channel(rec.channel)
            ch.channel_id = ch.channel_id or rec.channel_id
            self._reschedule_alert(rec)
        for rec in restored:
            self.retention.observe(rec.latest.at)  # those events were accepted: the clock resumes
            if rec.latest.action == "resolved":
                self.retention.closed(rec.alert_id, rec.latest.at)
        for digest in self.digests.values():
            self.scheduler.channel(digest.channel)
            self._reschedule_digest(digest)
        pending = self.pending_count()
        self.metrics.pending(pending)
        return pending

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Stop handling lifecycles of partitions this instance no longer owns."""
        gone = set(partitions)
        for key in [k for k, r in self.alerts.items() if r.partition in gone]:
            rec = self.alerts.pop(key)
            self.scheduler.settle(rec.channel, key)
            self.records.timers.pop(key, None)

    def pending_count(self) -> int:
        return self.scheduler.pending_count()

    def pending_keys(self) -> list[str]:
        return self.scheduler.pending_keys()

    # --- input ---------------------------------------------------------------------------------

    async def accept(
        self, alert: AlertEvent, *, partition: int | None = None, origin: Origin | None = None
    ) -> bool:
        """Record an alert event as its lifecycle's desired state; False if it is a duplicate or skipped.

        `origin` (from the alert record's headers) lets the end-to-end latency be measured and
        tells replayed traffic apart (skipped, counted, unless `policy.include_replayed`).

        The ledger entry is queued, not flushed: the caller flushes before committing the offset.
        """
        skipped = skip_reason(origin.traffic if origin is not None else "live", self.policy)
        if skipped is not None:
            self.metrics.skipped(skipped)
            return False
        now = self.clock.now()
        rec = self.alerts.get(alert.alert_id)
        if is_duplicate(rec, alert):
            self.metrics.duplicate_dropped()
            return False
        if rec is None:
            rec = AlertRecord(alert.alert_id, self.routing.channel_for(alert), alert, partition=partition)
            rec.replayed = origin is not None and origin.traffic == "replay"
            self._watch(rec, None)
            self.alerts[alert.alert_id] = rec
            self.scheduler.channel(rec.channel)
            in_storm = alert.action != "resolved" and self.scheduler.in_storm(rec.channel)
            await self._apply_first(rec, plan_first(alert, in_storm=in_storm, now=now, policy=self.policy))
        else:
            plan = plan_next(rec, alert, self.records.timers_of(rec.alert_id), now=now, policy=self.policy)
            previous, rec.latest = rec.latest, alert
            rec.partition = partition if partition is not None else rec.partition
            self._watch(rec, previous)
            self._apply_next(rec, plan)
        if rec.silent:
            self.executor.latencies.forget(rec.alert_id)  # never shown: nothing to measure
        else:
            self.executor.latencies.accepted(alert, origin)
        await self.executor.save(rec.alert_id, durable=False)
        self.retention.observe(alert.at)
        if alert.action == "resolved":
            self.retention.closed(alert.alert_id, alert.at)
        if self.retention.pass_due():
            await self.prune()
        self.metrics.pending(self.pending_count())
        return True

    def _watch(self, rec: AlertRecord, previous: AlertEvent | None) -> None:
        """Escalation starts counting when a lifecycle turns critical; a new critical reason (or
        the turn to critical) ends a snooze, and the thread is told."""
        if not self.policy.interactive:
            return
        ownership, ended = watch(rec.ownership, previous, rec.latest, now=self.clock.wall())
        if ended and rec.ts is not None:
            key = reply_key(NOTE, rec.latest.seq)
            rec.notes[key] = "Snooze ended: this load has a new critical reason."
            rec.owed.append(key)
        rec.ownership = ownership

    async def accept_action(self, action: DispatchAction) -> ActionOutcome:
        """Apply what dispatch did in Slack (from topic holdwatch.actions) to its lifecycle, once per
        action id: the message shows the owner, the thread says what happened, escalation stops
        or restarts. The ledger entry is queued; the caller flushes before committing the offset."""
        rec = self.alerts.get(action.alert_id)
        if rec is None:
            outcome: ActionOutcome = "unknown_alert"
        else:
            zone = alert_zone(rec.latest, self.executor.reference)
            decision = decide(rec.ownership, rec.latest, action, fmt=lambda at: short_time(at, zone))
            outcome = decision.outcome
            if outcome in ("applied", "unchanged"):
                rec.ownership = decision.ownership
            if decision.note is not None:
                key = reply_key(NOTE, len(rec.ownership.applied)) + f".{int(action.at.timestamp())}"
                rec.notes[key] = decision.note
                rec.owed.append(key)
            if outcome == "applied":
                rec.restyle = True
                self._set_edit_now(rec)
                self._reschedule_alert(rec)
                if action.kind == "acknowledge":
                    seconds = (action.at - rec.latest.first_raised_at).total_seconds()
                    self.metrics.acknowledged_after(max(0.0, seconds))
            if outcome != "duplicate":
                await self.executor.save(rec.alert_id, durable=False)
        self.metrics.action(action.kind, outcome)
        log.info(
            "action %s by %s (%s) on alert %s (CCN %s): %s",
            action.kind, action.user_name or "-", action.user_id, action.alert_id, action.ccn, outcome,
        )  # fmt: skip
        return outcome

    def _set_edit_now(self, rec: AlertRecord) -> None:
        timers = self.records.timers_of(rec.alert_id)
        self.records.timers[rec.alert_id] = replace(timers, edit_due=self.clock.now())

    async def _apply_first(self, rec: AlertRecord, plan: Plan) -> None:
        self.records.timers[rec.alert_id] = plan.timers
        if plan.silent:
            rec.silent = True  # nothing for dispatch to see
        elif plan.join_digest:
            await self._join_digest(rec)
        else:
            due = plan.timers.post_due if plan.timers.post_due is not None else self.clock.now()
            self.scheduler.mark(rec.channel, rec.alert_id, due)

    def _apply_next(self, rec: AlertRecord, plan: Plan) -> None:
        self.records.timers[rec.alert_id] = plan.timers
        if plan.refresh_digest:
            digest = self.digests.get(rec.digest) if rec.digest is not None else None
            if digest is not None:
                due = self.clock.now() + self.policy.digest_edit_delay_s
                self.scheduler.mark(rec.channel, digest.digest_id, due)
            return
        if plan.silent:
            rec.silent = True
        if plan.owe is not None:
            rec.owed.append(plan.owe)
        self._reschedule_alert(rec)

    async def _join_digest(self, rec: AlertRecord) -> None:
        """Group a lifecycle raised during a storm into its channel's open digest (opened if need be)."""
        ch = self.scheduler.channel(rec.channel)
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
        due = now if digest.ts is None else now + self.policy.digest_edit_delay_s
        self.scheduler.mark(ch.name, digest.digest_id, due)
        await self.executor.save(digest.digest_id, durable=False)

    # --- retention -----------------------------------------------------------------------------

    async def prune(self) -> int:
        """Forget what is over: lifecycles resolved more than the retention before the event clock
        whose Slack work is finished, and storm digests once every member is; returns how many keys
        left (each with a tombstone queued in the ledger). `accept` calls it once per `prune_interval`."""
        due = self.retention.take_due()
        horizon = self.retention.horizon
        if horizon is None or not due:
            return 0
        gone: list[str] = []
        kept: set[str] = set()
        digests: set[str] = set()
        for key in due:
            rec = self.alerts.get(key)
            if rec is None or rec.latest.action != "resolved":
                continue  # forgotten already (pruned, partition revoked)
            if rec.latest.at >= horizon:
                self.retention.closed(key, rec.latest.at)  # resolved again later: due later
            elif rec.digest is not None and rec.digest in self.digests:
                digests.add(rec.digest)
            elif self._finished(rec):
                gone.append(key)
            else:
                kept.add(key)
        for digest_id in sorted(digests):
            digest = self.digests[digest_id]
            members = [self.alerts[m] for m in digest.members if m in self.alerts]
            if self._digest_finished(digest, members, horizon):
                gone += [digest_id, *(m.alert_id for m in members)]  # the digest first: see below
            else:
                kept.update(m.alert_id for m in members if m.alert_id in due)
        self.retention.wait(kept)
        # A crash between these tombstones leaves members pointing at a deleted digest: they are
        # pruned on their own at the next pass (the other order would strand a memberless digest).
        for key in gone:
            await self._forget(key)
        if gone:
            log.debug("ledger: forgot %d entries resolved before %s", len(gone), horizon.isoformat())
        return len(gone)

    def _finished(self, rec: AlertRecord) -> bool:
        """Slack owes this lifecycle nothing: no call due or possible, no post that may have landed."""
        return (
            rec.intent is None
            and next_call(rec, self.records.timers_of(rec.alert_id)) is None
            and not self.scheduler.is_pending(rec.channel, rec.alert_id)
        )

    def _digest_finished(self, digest: DigestRecord, members: list[AlertRecord], horizon: datetime) -> bool:
        """The storm is over, every member resolved before the horizon, and the digest shows that."""
        ch = self.scheduler.channels.get(digest.channel)
        if digest.intent is not None or self.scheduler.is_pending(digest.channel, digest.digest_id):
            return False
        if ch is not None and ch.open_digest == digest.digest_id:
            return False
        if any(m.latest.action != "resolved" or m.latest.at >= horizon or m.intent for m in members):
            return False
        if digest.ts is None:
            return not self.records.digest_rows(digest)  # never shown, never will be
        return self.executor.digest_message(digest).fingerprint() == digest.shown_fp

    async def _forget(self, key: str) -> None:
        record = self.records.get(key)
        if key.startswith(DIGEST_PREFIX):
            self.digests.pop(key, None)
        else:
            self.alerts.pop(key, None)
            self.executor.latencies.forget(key)
        self.records.timers.pop(key, None)
        if record is not None:
            self.scheduler.settle(record.channel, key)
        await self.ledger.put(key, None)

    # --- scheduling ----------------------------------------------------------------------------

    def _page_timers(self, rec: AlertRecord) -> Timers:
        """The lifecycle's timers with its next on-call page (monotonic) from its wall-clock due."""
        timers = self.records.timers_of(rec.alert_id)
        due = None
        if self.policy.interactive:
            due = page_due(
                rec,
                escalate_after_s=self.policy.escalate_after_s,
                second_before_eta_s=self.policy.second_page_before_eta_s,
            )
        if due is None:
            return replace(timers, page_due=None, page_level=0)
        level, wall = due
        return replace(timers, page_due=self.clock.now() + (wall - self.clock.wall()), page_level=level)

    def _reschedule_alert(self, rec: AlertRecord) -> None:
        current = self.alerts.get(rec.alert_id) is rec
        timers = self._page_timers(rec) if current else self.records.timers_of(rec.alert_id)
        if current:
            self.records.timers[rec.alert_id] = timers
        call = next_call(rec, timers) if current else None
        if call is not None:
            self.scheduler.set_due(rec.channel, rec.alert_id, call.due)
            return
        self.scheduler.settle(rec.channel, rec.alert_id)
        if current:
            self.records.timers[rec.alert_id] = Timers(post_due=timers.post_due)
        else:
            self.records.timers.pop(rec.alert_id, None)

    def _reschedule_digest(self, digest: DigestRecord, *, due: float | None = None) -> None:
        if digest.ts is None and not self.records.digest_rows(digest):
            self.scheduler.settle(digest.channel, digest.digest_id)  # every member over before shown
        elif digest.ts is None:
            self.scheduler.mark(digest.channel, digest.digest_id, float("-inf"))
        elif self.executor.digest_message(digest).fingerprint() != digest.shown_fp:
            self.scheduler.mark(digest.channel, digest.digest_id, due if due is not None else float("-inf"))
        else:
            self.scheduler.settle(digest.channel, digest.digest_id)

    def wake_time(self, channel: str) -> float | None:
        """When `step(channel)` next has something to do (None: nothing pending)."""
        return self.scheduler.wake_time(channel)

    def next_due(self) -> tuple[float, str] | None:
        return self.scheduler.next_due()

    # --- doing ---------------------------------------------------------------------------------

    async def step(self, channel: str) -> bool:
        """Make at most one Slack call for `channel`; True if something happened."""
        key = self.scheduler.due_key(channel)
        if key is None:
            return False
        ch = self.channels[channel]
        try:
            sent = await self._step_key(ch, key)
        except SlackCallError as exc:
            await self._failed(ch, key, exc)
            return True
        if sent is None:
            return True
        recovered = self.scheduler.succeeded(channel, sent=sent)
        if recovered is not None:
            log.info("Slack channel %s works again (was: %s)", channel, recovered)
        self.metrics.pending(self.pending_count())
        return True

    async def _step_key(self, ch: ChannelState, key: str) -> bool | None:
        """Step `key` and reschedule it; whether a call reached Slack (None: the key was forgotten)."""
        if key.startswith(DIGEST_PREFIX):
            digest = self.digests.get(key)
            if digest is None:
                self.scheduler.settle(ch.name, key)
                return None
            outcome = await self.executor.digest_step(ch, digest)
            later = None if outcome == "adopted" else self.clock.now() + self.policy.digest_edit_delay_s
            self._reschedule_digest(digest, due=later)
            return outcome == "sent"
        rec = self.alerts.get(key)
        if rec is None:
            self.scheduler.settle(ch.name, key)  # forgotten (partition revoked)
            return None
        call = next_call(rec, self.records.timers_of(key))
        outcome = "local" if call is None else await self.executor.alert_step(ch, rec, call)
        self._reschedule_alert(rec)
        return outcome == "sent"

    async def _failed(self, ch: ChannelState, key: str, exc: SlackCallError) -> None:
        rec = self.alerts.get(key)
        if exc.kind != "transient":
            await self.executor.refused(key)
        if exc.kind == "rate_limited":
            self.metrics.rate_limited()
            wait = self.scheduler.rate_limited(ch.name, exc.retry_after)
            log.warning("Slack rate-limited channel %s: waiting %.1fs", ch.name, wait)
        elif exc.kind == "transient":
            self.metrics.retried()
            delay = self.scheduler.transient(ch.name)
            log.warning("Slack call for %s in %s failed (%s): retry in %.1fs", key, ch.name, exc.error, delay)
        elif exc.kind == "gone" and rec is not None:
            log.warning("Slack message of alert %s is gone (%s): posting it again", key, exc.error)
            await self.executor.message_gone(rec)
            self._reschedule_alert(rec)
        elif exc.kind == "content" and rec is not None and not rec.text_only:
            log.warning("Slack rejected the blocks of alert %s (%s): sending text only", key, exc.error)
            await self.executor.text_only(rec)
        else:
            self.metrics.permanent_error(exc.error)
            self.scheduler.permanent(ch.name, exc.error)
            log.error(
                "Slack refused %s for channel %s: %s. It stays pending (%d pending in this channel) and is "
                "retried every %.0fs until the configuration is fixed.",
                self._about(key),
                ch.name,
                exc.error,
                len(ch.dirty),
                self.policy.permanent_retry_s,
            )
        self.metrics.pending(self.pending_count())

    def _about(self, key: str) -> str:
        """How a log line names the lifecycle or digest of `key`."""
        if key in self.digests:
            return f"digest {key}"
        rec = self.alerts.get(key)
        if rec is None:
            return f"alert {key}"
        last = rec.latest
        return f"alert {key} (CCN {last.ccn}, load {last.load_ref or '-'}, {last.action} seq {last.seq})"

    # --- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: one worker per channel, so a slow channel never blocks others."""
        workers: dict[str, asyncio.Task[None]] = {}
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self.scheduler.changed.clear()
                for name in list(self.channels):
                    if name not in workers:
                        workers[name] = asyncio.create_task(
                            self._channel_loop(name, stop), name=f"slack:{name}"
                        )
                changed = asyncio.ensure_future(self.scheduler.changed.wait())
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
                self.scheduler.crashed(name)


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
