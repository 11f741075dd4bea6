"""Fault scenarios on the real broker (issue 11, item 6), shared by tests/integration/test_faults.py
(small logs, asserted) and bench/bench_faults.py (larger logs, figures), so the two cannot drift.

Each scenario simulates a log, back-tests it (the expected alert events), runs real `holdwatch`
processes against the broker and a local Slack server (`SlackServerThread`), injects its fault,
waits on conditions with deadlines and returns a `FaultResult`:

- the alert topic, distinct by `event_id`, against the back-test (lost, doubled, extra, order);
- Slack: at most one top-level message per lifecycle, whose final content is the lifecycle's
  final state rendered as the notifier renders it, its resolution reply once; a lifecycle that
  is open at the end must have its message (one over before it was ever shown has none, by the
  first-start rule of docs/slack.md);
- the dead-letter topic, distinct by source record, against what the back-test rejects.

Slack settings for every scenario (`slack_env`): replayed traffic opted in (the worker's alerts come
from `holdwatch replay`), no pacing by default (the local server is not Slack; 1 message/s would
make a few hundred lifecycles take minutes) and storm grouping off, so that every lifecycle has
its own message to check (digests are tested in tests/unit/test_notify_*.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from alerting.notify.policy import DeliveryPolicy
from alerting.notify.render import render_alert
from devtools.broker import LocalBroker, free_port
from devtools.simulate import SimulationConfig, write_simulation
from schemas.alerts import AlertEvent
from schemas.decode import topic_kinds
from schemas.envelope import TRAFFIC_HEADER
from schemas.eventlog import BadLine, read_log
from streams.backtest import BacktestReport, run_backtest
from streams.settings import Settings
from tests.fixtures.slack import SlackServerThread, SlackTestServer, StoredMessage
from tests.integration.pipeline_harness import Namespace, comparable, stop

CHANNEL = "#dispatch"
RESOLUTION_REPLY_OUTCOMES = DeliveryPolicy().resolution_reply_outcomes
OUTAGE_ENV = "HOLDWATCH_FAULT_OUTAGE_S"
"""Seconds Slack is down in scenario (d): the bench defaults to 60, the test to 20 (see test_faults)."""


# --- set-up ----------------------------------------------------------------------------------


def slack_env(base_url: str, *, min_interval_s: float = 0.0) -> dict[str, str]:
    """HOLDWATCH_* for a notifier (standalone or in the worker) talking to the local Slack server."""
    return {
        "HOLDWATCH_SLACK_TOKEN": "xoxb-test",
        "HOLDWATCH_SLACK_BASE_URL": base_url,
        "HOLDWATCH_SLACK_CHANNEL": CHANNEL,
        "HOLDWATCH_NOTIFY_REPLAYED": "true",
        "HOLDWATCH_SLACK_MIN_INTERVAL_S": f"{min_interval_s:g}",
        "HOLDWATCH_STORM_THRESHOLD": "1000000",
    }


def namespace(bootstrap: str, tmp: Path, *, partitions: int = 3) -> Namespace:
    tmp.mkdir(parents=True, exist_ok=True)
    ns = Namespace(bootstrap, tmp, partitions=partitions)
    created = ns.run("topics", "create")
    if created.returncode != 0:
        raise AssertionError(created.stdout + created.stderr)
    return ns


@dataclass(frozen=True)
class LogCase:
    """A simulated log and what the back-test makes of it."""

    path: Path
    records: int
    alerts: list[AlertEvent]
    report: BacktestReport
    unreadable: Counter[str]  # lines replay skips (not JSON): counted by the back-test, never on Kafka

    @property
    def finals(self) -> dict[str, AlertEvent]:
        """Each lifecycle's last step."""
        out: dict[str, AlertEvent] = {}
        for alert in self.alerts:
            if alert.alert_id not in out or alert.seq > out[alert.alert_id].seq:
                out[alert.alert_id] = alert
        return out

    @property
    def dead_letters(self) -> Counter[str]:
        """Reasons the pipeline dead-letters, one per rejected record of the log."""
        return Counter(self.report.dead_letters) - self.unreadable


def simulate_case(ns: Namespace, loads: int, seed: int, *, hours: float = 24.0) -> LogCase:
    """Without mid-way CARM fixes: a CARM change in mid-stream is applied when the pipeline sees it
    (docs/replay.md), so only logs whose CARM records all lead are replayed equal to the back-test."""
    path = ns.tmp / f"sim-{loads}-{seed}.jsonl"
    stats = write_simulation(
        SimulationConfig(
            loads=loads,
            seed=seed,
            hours=hours,
            midway_fixes=False,
            topic_emanifest=ns.topics["emanifest"],
            topic_rns=ns.topics["rns"],
            topic_carm=ns.topics["carm"],
        ),
        path,
    )
    buffer = io.StringIO()
    kinds = topic_kinds(ns.topics["emanifest"], ns.topics["rns"], ns.topics["carm"])
    report = run_backtest([path], buffer, Settings().thresholds(), kinds)
    alerts = [AlertEvent.model_validate_json(line) for line in buffer.getvalue().splitlines()]
    unreadable = Counter(item.reason for item in read_log(path) if isinstance(item, BadLine))
    return LogCase(path, stats.records, alerts, report, unreadable)


def publish_alerts(
    bootstrap: str,
    topic: str,
    alerts: list[AlertEvent],
    *,
    over_s: float = 0.0,
    until: Callable[[], bool] | None = None,
) -> int:
    """Alert events as the worker publishes them (key CCN, live traffic), acknowledged; spread
    evenly over `over_s` seconds, so that the notifier posts lifecycles as they come (published
    at once, most would be over before their first post and, by design, never shown). Stops
    early once `until()` holds (checked every 50 ms); returns how many were published."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    count = 0
    started = checked = time.monotonic()
    try:
        for i, alert in enumerate(alerts):
            if over_s > 0:  # a schedule for the publisher, not a wait for an outcome
                time.sleep(max(0.0, started + over_s * i / len(alerts) - time.monotonic()))
            if until is not None and time.monotonic() - checked >= 0.05:
                checked = time.monotonic()
                if until():
                    break
            producer.send(
                topic,
                key=alert.ccn.encode(),
                value=alert.model_dump_json().encode(),
                headers=[(TRAFFIC_HEADER, b"live")],
            )
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return count


class TopicTail:
    """Reads a topic from the start, incrementally (one consumer, no group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = self.consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise AssertionError(f"topic {topic} has no partitions")
        self.tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.values: list[bytes] = []

    def poll(self, timeout_ms: int = 200) -> int:
        """Read what arrived; the number of records read."""
        got = 0
        for batch in self.consumer.poll(timeout_ms=timeout_ms, max_records=5000).values():
            self.values += [r.value for r in batch]
            got += len(batch)
        return got

    def read_to_end(self, timeout_s: float = 60.0) -> None:
        end = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout_s
        while any(self.consumer.position(tp) < end[tp] for tp in self.tps):
            if time.monotonic() > deadline:
                raise AssertionError("could not read the topic to its end")
            self.poll(500)

    def close(self) -> None:
        self.consumer.close()


class AlertTail(TopicTail):
    def alerts(self) -> list[AlertEvent]:
        return [AlertEvent.model_validate_json(v) for v in self.values]

    def distinct(self) -> dict[str, AlertEvent]:
        """By event_id; a re-sent step keeps the place of its first copy."""
        out: dict[str, AlertEvent] = {}
        for alert in self.alerts():
            out.setdefault(alert.event_id, alert)
        return out


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicVerdict:
    expected: int
    records: int  # alert records on the topic, copies included
    lost: int  # back-test events missing from the topic
    extra: int  # events on the topic the back-test does not have
    doubled: int  # copies beyond the first (at-least-once; dropped by event_id downstream)
    changed: int  # a copy whose content differs from its first copy (must never happen)
    same_as_backtest: bool  # per load, the distinct events equal the back-test's, in order

    @property
    def ok(self) -> bool:
        return self.same_as_backtest and not (self.lost or self.extra or self.changed)


def topic_verdict(on_topic: list[AlertEvent], expected: list[AlertEvent]) -> TopicVerdict:
    distinct: dict[str, AlertEvent] = {}
    changed = 0
    for alert in on_topic:
        first = distinct.setdefault(alert.event_id, alert)
        changed += first is not alert and first.model_dump() != alert.model_dump()
    want = {a.event_id for a in expected}
    return TopicVerdict(
        expected=len(expected),
        records=len(on_topic),
        lost=len(want - distinct.keys()),
        extra=len(distinct.keys() - want),
        doubled=len(on_topic) - len(distinct),
        changed=changed,
        same_as_backtest=comparable(list(distinct.values())) == comparable(expected),
    )


@dataclass(frozen=True)
class DeadLetterVerdict:
    expected: Counter[str]
    got: Counter[str]  # distinct by source record
    doubled: int

    @property
    def ok(self) -> bool:
        return self.got == self.expected


def dead_letter_verdict(values: list[bytes], expected: Counter[str]) -> DeadLetterVerdict:
    seen: dict[tuple[object, ...], str] = {}
    for raw in values:
        letter = json.loads(raw)
        source = (letter["source_topic"], letter.get("source_partition"), letter.get("source_offset"))
        seen.setdefault(source, letter["reason"])
    return DeadLetterVerdict(expected, Counter(seen.values()), len(values) - len(seen))


def _key(message: StoredMessage) -> str | None:
    payload = (message.metadata or {}).get("event_payload") or {}
    key = payload.get("key")
    return key if isinstance(key, str) else None


@dataclass(frozen=True)
class SlackVerdict:
    lifecycles: int
    shown: int  # lifecycles with a message
    silent: int  # over before they were ever shown: no message, by design
    missing: list[str]  # open at the end and no message: lost
    stale: list[str]  # the message does not show the lifecycle's final state (yet)
    missing_replies: list[str]  # a shown lifecycle's resolution reply not posted (yet)
    doubled: dict[str, int]  # alert_id -> top-level messages, where more than one
    doubled_replies: dict[str, int]  # reply key -> replies, where more than one
    unexpected: list[str]  # messages of no lifecycle of the log
    calls: int = 0  # Slack requests so far
    timed_out: bool = False

    @property
    def converged(self) -> bool:
        return not (self.missing or self.stale or self.missing_replies)

    @property
    def ok(self) -> bool:
        return self.converged and not (self.doubled or self.doubled_replies or self.unexpected)

    @property
    def messages_doubled(self) -> int:
        return sum(n - 1 for n in self.doubled.values()) + sum(n - 1 for n in self.doubled_replies.values())

    def describe(self) -> str:
        def few(items: Iterable[object]) -> str:
            listed = list(items)
            return f"{len(listed)} {listed[:5]}"

        return (
            f"{self.lifecycles} lifecycles: {self.shown} shown, {self.silent} silent; "
            f"missing {few(self.missing)}, stale {few(self.stale)}, "
            f"missing replies {few(self.missing_replies)}, doubled "
            f"{few(self.doubled.items())}, doubled replies {few(self.doubled_replies.items())}, unexpected "
            f"{few(self.unexpected)}; {self.calls} calls{', timed out' if self.timed_out else ''}"
        )


def expected_content(final: AlertEvent) -> tuple[str, list[Any]]:
    """The lifecycle's message as the notifier renders its final state (text, blocks as JSON)."""
    message = render_alert(final)
    return message.text, json.loads(json.dumps(list(message.blocks)))


def slack_verdict(
    messages: list[StoredMessage], finals: Mapping[str, AlertEvent], *, calls: int = 0
) -> SlackVerdict:
    tops: dict[str, list[StoredMessage]] = {}
    replies: Counter[str] = Counter()
    unexpected: list[str] = []
    for m in messages:
        key = _key(m)
        if m.thread_ts is None:
            if key is None or key not in finals:
                unexpected.append(key or m.text[:40])
            else:
                tops.setdefault(key, []).append(m)
        elif key is not None:
            replies[key] += 1
    missing, stale, missing_replies = [], [], []
    for alert_id, final in finals.items():
        shown = tops.get(alert_id)
        if not shown:
            if final.action != "resolved":
                missing.append(alert_id)
            continue
        text, blocks = expected_content(final)
        if any(m.text != text or (m.blocks or []) != blocks for m in shown):
            stale.append(alert_id)
        owes_reply = final.action == "resolved" and (final.outcome or "") in RESOLUTION_REPLY_OUTCOMES
        if owes_reply and replies[f"{alert_id}:resolution:{final.seq}"] == 0:
            missing_replies.append(alert_id)
    return SlackVerdict(
        lifecycles=len(finals),
        shown=len(tops),
        silent=sum(1 for a in finals if a not in tops),
        missing=missing,
        stale=stale,
        missing_replies=missing_replies,
        doubled={k: len(v) for k, v in tops.items() if len(v) > 1},
        doubled_replies={k: n for k, n in replies.items() if n > 1},
        unexpected=unexpected,
        calls=calls,
    )


def slack_now(slack: SlackServerThread, finals: Mapping[str, AlertEvent]) -> SlackVerdict:
    messages, calls = slack.call(
        lambda s: ([dataclasses.replace(m) for m in s.all_messages()], len(s.requests))
    )
    return slack_verdict(messages, finals, calls=calls)


def wait_settled(
    slack: SlackServerThread,
    finals: Mapping[str, AlertEvent],
    *,
    timeout_s: float,
    quiet_s: float = 3.0,
    ready: Callable[[], bool] = lambda: True,
    alive: Callable[[], str | None] = lambda: None,
) -> tuple[SlackVerdict, float]:
    """Until Slack shows every lifecycle's final state, `ready()` holds and no Slack call came for
    `quiet_s` (so nothing was still owed); returns the verdict and when it first converged
    (monotonic). A doubled message ends the wait at once: it will not go away. At the deadline,
    or when `alive()` names a dead process, the last verdict, marked timed out."""
    deadline = time.monotonic() + timeout_s
    converged_at: float | None = None
    quiet_since, last_calls = time.monotonic(), -1
    while True:
        verdict = slack_now(slack, finals)
        now = time.monotonic()
        if verdict.calls != last_calls:
            quiet_since, last_calls = now, verdict.calls
        if verdict.doubled or verdict.doubled_replies:
            return verdict, now
        if verdict.converged and ready():
            converged_at = converged_at or now
            if now - quiet_since >= quiet_s:
                return verdict, converged_at
        else:
            converged_at = None
        dead = alive()
        if now > deadline or dead:
            return dataclasses.replace(verdict, timed_out=True), now
        time.sleep(0.25)


def calls_with(
    slack: SlackServerThread, *, outcome: str | None = None, method: str | None = None
) -> list[Any]:
    return slack.call(lambda s: list(s.calls(method, outcome=outcome)))


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, context: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{context()}")
        time.sleep(0.1)


LOADED = b"loaded from the ledger"
"""The notifier's log line once its partitions are assigned and their lifecycles loaded."""


def wait_loaded(ns: Namespace, log_name: str, times: int, timeout_s: float = 90.0) -> None:
    """Until the notifier logging to `<log_name>.log` has loaded its partitions `times` times (its
    n-th start): alerts published from then on are new to it, not history it starts on."""
    log = ns.tmp / f"{log_name}.log"
    wait_until(
        lambda: log.exists() and log.read_bytes().count(LOADED) >= times,
        timeout_s,
        "the notifier",
        ns.log_tail,
    )


def group_progress(bootstrap: str, group: str, topics: Iterable[str]) -> dict[str, str]:
    """`committed/end` per partition of `topics` for consumer `group`: after a stall, says whether
    the records were never consumed (committed < end) or committed without their outputs.
    (`committed()` asks the group's coordinator; the consumer never joins the group.)"""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(tps)
        return {f"{tp.topic}[{tp.partition}]": f"{consumer.committed(tp)}/{ends[tp]}" for tp in tps}
    finally:
        consumer.close()


def dead(*processes: tuple[str, subprocess.Popen[bytes]]) -> Callable[[], str | None]:
    """For `wait_settled(alive=...)`: the name of the first process that exited."""

    def check() -> str | None:
        for name, process in processes:
            if process.poll() is not None:
                return f"{name} exited with {process.returncode}"
        return None

    return check


# --- results ---------------------------------------------------------------------------------


@dataclass
class FaultResult:
    fault: str
    test: str
    records: int  # log records (lines) the scenario ran on
    expected_events: int  # the back-test's alert events
    slack: SlackVerdict
    recover_s: float  # from the end of the fault to Slack (and the topic) showing everything
    topic: TopicVerdict | None = None  # None: the scenario published the alert topic itself
    dead_letters: DeadLetterVerdict | None = None
    evidence: dict[str, Any] = field(default_factory=dict)  # that the fault happened as intended
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.slack.ok
            and not self.slack.timed_out
            and (self.topic is None or self.topic.ok)
            and (self.dead_letters is None or self.dead_letters.ok)
        )

    def explain(self) -> str:
        parts = [f"{self.fault}: slack {self.slack.describe()}"]
        if self.topic is not None:
            parts.append(f"topic {self.topic}")
        if self.dead_letters is not None:
            parts.append(f"dead letters {self.dead_letters}")
        parts.append(f"evidence {self.evidence}")
        return "\n".join(parts) + "\n" + self.log_tail


def markdown_table(results: Iterable[FaultResult]) -> str:
    head = (
        "| fault | records | alert events expected | lifecycles (shown / never shown) | lost (alert events / "
        "open lifecycles without a message / stale messages) | doubled (alert events on the topic / Slack "
        "messages) | dead letters as expected | time to recover |\n"
        "|---|---:|---:|---:|---:|---:|---|---:|"
    )
    rows = []
    for r in results:
        topic_lost = "—" if r.topic is None else str(r.topic.lost + r.topic.extra)
        topic_doubled = "—" if r.topic is None else str(r.topic.doubled)
        letters = "—" if r.dead_letters is None else ("yes" if r.dead_letters.ok else "**no**")
        if r.dead_letters is not None and r.dead_letters.doubled:
            letters += f" ({r.dead_letters.doubled} re-sent copies)"
        s = r.slack
        rows.append(
            f"| {r.fault} | {r.records:,} | {r.expected_events:,} | "
            f"{s.lifecycles:,} ({s.shown:,} / {s.silent:,}) | "
            f"{topic_lost} / {len(s.missing)} / {len(s.stale)} | {topic_doubled} / {s.messages_doubled} | "
            f"{letters} | {r.recover_s:.1f} s{' (timed out)' if s.timed_out else ''} |"
        )
    return "\n".join([head, *rows])


# --- (a) the worker, its notifier in-process, SIGKILLed mid-replay -----------------------------


def worker_killed_mid_replay(
    bootstrap: str,
    tmp: Path,
    *,
    loads: int,
    seed: int = 21,
    kill_at: float = 0.3,
    session_timeout_s: float | None = None,
    timeout_s: float = 300.0,
) -> FaultResult:
    """Replay (`--speed max`) into `holdwatch worker` with its notifier; SIGKILL the worker once the
    alert topic holds `kill_at` of the expected events (not all); restart it on the same data dir.

    `session_timeout_s` sets Faust's BROKER_SESSION_TIMEOUT (default 60 s): the restarted worker
    gets its partitions once the broker has dropped the killed member, so that bounds recovery."""
    ns = namespace(bootstrap, tmp)
    case = simulate_case(ns, loads, seed)
    finals = case.finals
    if session_timeout_s is not None:
        ns.env["BROKER_SESSION_TIMEOUT"] = f"{session_timeout_s:g}"
    with SlackServerThread() as slack:
        ns.env.update(slack_env(slack.base_url))
        tail = AlertTail(bootstrap, ns.topics["alerts"])
        worker = ns.start_worker_with_notifier("w")
        replay: subprocess.Popen[bytes] | None = None
        try:
            ns.wait_ready()
            replay = ns.spawn("replay", "replay", str(case.path), "--speed", "max")
            threshold = max(1, int(len(case.alerts) * kill_at))

            def some() -> bool:
                tail.poll(100)
                return len(tail.distinct()) >= threshold

            wait_until(some, timeout_s, f"{threshold} alert events", ns.log_tail)
            stop(worker, kill=True)
            killed_at = time.monotonic()
            tail.poll(100)
            at_kill = {"alert events on the topic": len(tail.distinct()), "of": len(case.alerts)}
            at_kill["Slack messages"] = len(slack.messages())
            worker = ns.start_worker_with_notifier("w")  # same state directory: RocksDB + changelogs

            def topic_complete() -> bool:
                tail.poll(100)
                return len(tail.distinct()) >= len(case.alerts)

            verdict, settled = wait_settled(
                slack,
                finals,
                timeout_s=timeout_s,
                ready=topic_complete,
                alive=dead(("worker", worker)),
            )
            if replay.wait(timeout=60) != 0:
                raise AssertionError("replay failed\n" + ns.log_tail())
            tail.read_to_end()
            letters = TopicTail(bootstrap, ns.topics["deadletter"])
            try:
                letters.read_to_end()
                dead_letters = dead_letter_verdict(letters.values, case.dead_letters)
            finally:
                letters.close()
            inputs = (ns.topics["emanifest"], ns.topics["rns"], ns.topics["carm"])
            progress = group_progress(bootstrap, ns.app_id, inputs)
            return FaultResult(
                fault="(a) worker + in-process notifier SIGKILLed mid-replay, restarted",
                test="test_a_worker_and_its_notifier_killed_mid_replay",
                records=case.records,
                expected_events=len(case.alerts),
                slack=verdict,
                recover_s=settled - killed_at,
                topic=topic_verdict(tail.alerts(), case.alerts),
                dead_letters=dead_letters,
                evidence={"at kill": at_kill, "worker group committed/end": progress},
                log_tail=ns.log_tail(),
            )
        finally:
            stop(worker)
            if replay is not None:
                stop(replay)
            tail.close()


# --- (c) the notifier killed after a post landed, before its ts was recorded -------------------


def _top_level_post(body: dict[str, Any]) -> bool:
    return not body.get("thread_ts")


def notifier_killed_after_post(
    bootstrap: str,
    tmp: Path,
    *,
    loads: int,
    seed: int = 23,
    hang_post: int = 3,
    publish_s: float = 5.0,
    timeout_s: float = 180.0,
) -> FaultResult:
    """`holdwatch notifier` on the back-test's alert events: the `hang_post`-th top-level post lands
    on Slack, its answer is held, the notifier is SIGKILLed meanwhile (its ts never recorded) and
    restarted; the second half of the events follows. Each half is published over `publish_s`."""
    ns = namespace(bootstrap, tmp)
    case = simulate_case(ns, loads, seed)
    half = len(case.alerts) // 2
    with SlackServerThread() as slack:
        ns.env.update(slack_env(slack.base_url))
        slack.call(
            lambda s: s.fail(
                "hang_after", times=1, skip=hang_post - 1, methods={"chat.postMessage"}, when=_top_level_post
            )
        )
        notifier = ns.start_notifier("n")
        try:
            wait_loaded(ns, "notifier-n", 1)

            def hung() -> bool:
                return bool(calls_with(slack, outcome="hang_after"))

            # The answer is held, so the notifier waits (up to its 10 s client timeout): kill it now.
            sent = publish_alerts(
                bootstrap, ns.topics["alerts"], case.alerts[:half], over_s=publish_s, until=hung
            )
            wait_until(hung, 90, "a held post", ns.log_tail)
            stop(notifier, kill=True)
            killed_at = time.monotonic()
            [held] = calls_with(slack, outcome="hang_after")
            key = held.body["metadata"]["event_payload"]["key"]
            landed = sum(1 for m in slack.messages() if m.thread_ts is None and _key(m) == key)
            notifier = ns.start_notifier("n")
            wait_loaded(ns, "notifier-n", 2)  # the ledger says: a post of `key` may have landed
            publish_alerts(bootstrap, ns.topics["alerts"], case.alerts[sent:], over_s=publish_s)
            verdict, settled = wait_settled(
                slack, case.finals, timeout_s=timeout_s, alive=dead(("notifier", notifier))
            )
            lookups = [
                r
                for r in calls_with(slack, method="conversations.history")
                if r.at > held.at and str(r.body.get("include_all_metadata")).lower() == "true"
            ]
            messages = [m for m in slack.messages() if m.thread_ts is None and _key(m) == key]
            return FaultResult(
                fault="(c) notifier SIGKILLed after a post landed, before its ts was recorded",
                test="test_c_notifier_killed_after_a_post_landed_posts_it_once",
                records=case.records,
                expected_events=len(case.alerts),
                slack=verdict,
                recover_s=settled - killed_at,
                evidence={
                    "held post of": key,
                    "held post landed": landed,
                    "answer held for s before the kill": round(killed_at - held.at, 2),
                    "alert events published before the kill": sent,
                    "its messages at the end": len(messages),
                    "history lookups after restart": len(lookups),
                    "its final state": case.finals[key].action if key in case.finals else None,
                },
                log_tail=ns.log_tail(),
            )
        finally:
            stop(notifier)


# --- (d) Slack down, then a burst of 429s, while alerts keep flowing ---------------------------


def outage_seconds(default: float) -> float:
    return float(os.environ.get(OUTAGE_ENV, default))


def slack_down_then_rate_limited(
    bootstrap: str,
    tmp: Path,
    *,
    loads: int,
    seed: int = 25,
    outage_s: float,
    ratelimits: int = 5,
    retry_after_s: float = 1.0,
    publish_s: float = 5.0,
    timeout_s: float = 240.0,
) -> FaultResult:
    """`holdwatch notifier` while the back-test's alert events are published over the outage: a
    quarter first (over `publish_s`); then for `outage_s` every Slack call fails, in turn 500, a
    dropped connection (no answer) and a dropped answer (the call landed); then `ratelimits` 429s
    (Retry-After)."""
    ns = namespace(bootstrap, tmp)
    case = simulate_case(ns, loads, seed)
    first = len(case.alerts) // 4
    with SlackServerThread() as slack:
        ns.env.update(slack_env(slack.base_url))
        notifier = ns.start_notifier("n")
        try:
            wait_loaded(ns, "notifier-n", 1)
            publish_alerts(bootstrap, ns.topics["alerts"], case.alerts[:first], over_s=publish_s)

            def posting() -> bool:
                return sum(1 for m in slack.messages() if m.thread_ts is None) >= 3

            wait_until(posting, 90, "the first posts", ns.log_tail)

            def outage(s: SlackTestServer) -> float:
                for _ in range(max(3, int(outage_s))):  # more turns than backoff leaves calls for
                    for mode in ("server_error", "drop", "drop_after"):
                        s.fail(mode, times=1, seconds=outage_s)
                s.fail("server_error", seconds=outage_s)  # the rest of the outage
                s.fail("ratelimit", times=ratelimits, retry_after=retry_after_s)  # once the outage is over
                return s.clock()

            started = slack.call(outage)
            ended = started + outage_s
            rest = case.alerts[first:]
            slices = 10
            published_during = 0
            for i in range(slices):  # alerts keep flowing through the outage, on a schedule
                time.sleep(max(0.0, started + outage_s * i / slices - time.monotonic()))
                chunk = rest[len(rest) * i // slices : len(rest) * (i + 1) // slices]
                published_during += publish_alerts(bootstrap, ns.topics["alerts"], chunk)
            verdict, settled = wait_settled(
                slack, case.finals, timeout_s=timeout_s, alive=dead(("notifier", notifier))
            )
            requests = slack.requests()
            during = Counter(r.outcome for r in requests if started <= r.at < ended)
            return FaultResult(
                fault=f"(d) Slack down {outage_s:g} s (5xx, dropped connections and answers), then "
                f"{ratelimits} × 429",
                test="test_d_slack_down_then_rate_limited_loses_and_doubles_nothing",
                records=case.records,
                expected_events=len(case.alerts),
                slack=verdict,
                recover_s=max(0.0, settled - ended),
                evidence={
                    "alert events published during the outage": published_during,
                    "calls during the outage": dict(during),
                    "429s answered": sum(1 for r in requests if r.outcome == "ratelimit"),
                },
                log_tail=ns.log_tail(),
            )
        finally:
            stop(notifier)


# --- (b) the broker SIGKILLed mid-replay, restarted on the same port (bench only) ---------------


def broker_killed_mid_replay(
    tmp: Path,
    *,
    loads: int,
    seed: int = 21,
    hours: float = 12.0,
    speed: str = "4000",
    kill_at: float = 0.25,
    max_restarts: int = 3,
    timeout_s: float = 600.0,
) -> FaultResult:
    """The steps of tests/integration/test_worker_broker_restart.py (its own local broker, killed
    once the alert topic holds `kill_at` of the alerts while the replay still runs (a quarter
    there; less for a larger log, which the worker trails further), restarted on the same port; a worker that
    exits 1 is restarted on its state directory; a replay that names a --from-line is resumed
    there), with the notifier in the worker and Slack checked as in the other scenarios."""
    tmp.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker(tmp / "kafka", home=Settings().home, port=free_port())
    broker.start()
    try:
        ns = namespace(broker.bootstrap, tmp / "run")
        case = simulate_case(ns, loads, seed, hours=hours)
        with SlackServerThread() as slack:
            ns.env.update(slack_env(slack.base_url))
            tail = AlertTail(broker.bootstrap, ns.topics["alerts"])
            worker = ns.start_worker_with_notifier("w")
            restarts = 0

            def supervise() -> str | None:
                nonlocal worker, restarts
                code = worker.poll()
                if code is None:
                    return None
                if code != 1 or restarts >= max_restarts:
                    return f"worker exited with {code} after {restarts} restarts"
                restarts += 1
                worker = ns.start_worker_with_notifier("w")
                return None

            replay: subprocess.Popen[bytes] | None = None
            try:
                ns.wait_ready()
                replay = ns.spawn(
                    "replay", "replay", str(case.path), "--speed", speed, "--broker-timeout", "120"
                )
                quarter = max(1, int(len(case.alerts) * kill_at))

                def some() -> bool:
                    tail.poll(100)
                    if supervise() is not None:
                        raise AssertionError("worker stopped\n" + ns.log_tail())
                    return len(tail.distinct()) >= quarter

                wait_until(some, timeout_s, f"{quarter} alert events", ns.log_tail)
                if replay.poll() is not None:
                    raise AssertionError("the replay ended before the broker was killed\n" + ns.log_tail())
                at_kill = {"alert events on the topic": len(tail.distinct()), "of": len(case.alerts)}
                assert broker.pid is not None
                os.killpg(broker.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                broker.stop()  # reaps the killed JVM
                broker.start()  # same data dir, same port
                restarted_s = time.monotonic() - killed_at
                replay.wait(timeout=timeout_s)
                resumed_from = None
                if replay.returncode == 1:
                    found = re.search(r"--from-line (\d+)", ns.log_tail(200))
                    if not found:
                        raise AssertionError("replay failed without a line to resume from\n" + ns.log_tail())
                    resumed_from = found.group(1)
                    again = ns.run("replay", str(case.path), "--from-line", resumed_from, "--no-carm-barrier")
                    if again.returncode != 0:
                        raise AssertionError(again.stderr)
                elif replay.returncode != 0:
                    raise AssertionError("replay failed\n" + ns.log_tail())

                def topic_complete() -> bool:
                    tail.poll(100)
                    return len(tail.distinct()) >= len(case.alerts)

                verdict, settled = wait_settled(
                    slack, case.finals, timeout_s=timeout_s, ready=topic_complete, alive=supervise
                )
                tail.read_to_end()
                letters = TopicTail(broker.bootstrap, ns.topics["deadletter"])
                try:
                    letters.read_to_end()
                    dead_letters = dead_letter_verdict(letters.values, case.dead_letters)
                finally:
                    letters.close()
                return FaultResult(
                    fault="(b) broker SIGKILLed mid-replay, restarted on the same port",
                    test="tests/integration/test_worker_broker_restart.py (without Slack)",
                    records=case.records,
                    expected_events=len(case.alerts),
                    slack=verdict,
                    recover_s=settled - killed_at,
                    topic=topic_verdict(tail.alerts(), case.alerts),
                    dead_letters=dead_letters,
                    evidence={
                        "at kill": at_kill,
                        "broker back after s": round(restarted_s, 1),
                        "worker restarts (exit 1)": restarts,
                        "replay resumed from line": resumed_from,
                    },
                    log_tail=ns.log_tail(),
                )
            finally:
                stop(worker)
                if replay is not None:
                    stop(replay)
                tail.close()
    finally:
        broker.stop()
