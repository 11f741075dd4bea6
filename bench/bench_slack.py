"""Slack delivery benchmarks, side by side in one run.

1. Slack API calls per alert event over a simulated day: holdwatch's notifier (one living message
   per lifecycle, coalesced edits, storm digests) against Alertmanager-style one message per change
   (1.0 by construction). Alert events come from `holdwatch simulate` + `holdwatch backtest` (the
   real engine) when available, else from `--alerts FILE`, else from a synthetic lifecycle mix.
   Time is the alerts' own event time on a manual clock; Slack is an in-memory counter.
2. Alert -> Slack-acknowledged latency, p50/p99, against the local Slack test server (HTTP,
   slack-sdk AsyncWebClient, no rate limiting): the notifier (ledger in memory, and with `--kafka`
   the real Kafka ledger) against a bare `chat.postMessage` per event.

    .venv/bin/python -m bench.bench_slack [--loads 3000] [--seed 7] [--alerts FILE] [--kafka HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from alerting.notify.clock import ManualClock, SystemClock
from alerting.notify.delivery import Delivery, DeliveryPolicy, run_simulated
from alerting.notify.gateway import Posted
from alerting.notify.ledger import Ledger, MemoryLedger
from alerting.notify.metrics import CountingMetrics
from alerting.notify.render import SlackMessage, render_alert
from alerting.notify.routing import Routing
from alerting.notify.slack import SlackWebGateway, make_web_client
from schemas.alerts import AlertEvent
from tests.fixtures.slack import ALERT_T0, SlackTestServer, make_alert

TEAMS = ("ontario", "quebec", "west", "prairies", "atlantic")
ROUTING = Routing(default="#dispatch", teams={team: f"#dispatch-{team}" for team in TEAMS})


MENTIONS = ("<!subteam^", "<@", "<!here", "<!channel")


class CountingGateway:
    """Slack as a counter: every call succeeds at once."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.pings = 0
        """Posts that notify someone: top-level posts, channel broadcasts, replies with a mention."""
        self._n = 0

    async def post(
        self,
        channel: str,
        message: SlackMessage,
        *,
        key: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Posted:
        self._n += 1
        self.calls["chat.postMessage (reply)" if thread_ts else "chat.postMessage"] += 1
        if thread_ts is None or broadcast or any(m in message.text for m in MENTIONS):
            self.pings += 1
        return Posted(channel_id=channel, ts=f"{self._n}.000000")

    async def update(self, channel_id: str, ts: str, message: SlackMessage) -> None:
        self.calls["chat.update"] += 1

    async def find(
        self, channel_id: str, key: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        self.calls["conversations.history"] += 1
        return None

    async def channel_id(self, channel: str) -> str | None:
        return channel


# --- alert events ------------------------------------------------------------------------------


def engine_alerts(loads: int, seed: int, workdir: Path) -> list[AlertEvent] | None:
    """A simulated day through the real engine, or None if the commands are not available."""
    log, out = workdir / "day.jsonl.gz", workdir / "alerts.jsonl"
    cli = [sys.executable, "-m", "streams.cli.main"]
    try:
        subprocess.run(
            [*cli, "simulate", "--loads", str(loads), "--seed", str(seed), "--out", str(log)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*cli, "backtest", str(log), "--out", str(out), "--quiet"], check=True, capture_output=True
        )
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"(simulate/backtest unavailable: {exc}; using a synthetic mix)", file=sys.stderr)
        return None
    return read_alerts(out)


def read_alerts(path: Path) -> list[AlertEvent]:
    with path.open(encoding="utf-8") as lines:
        return [AlertEvent.model_validate_json(line) for line in lines if line.strip()]


def synthetic_alerts(lifecycles: int, seed: int) -> list[AlertEvent]:
    """A plausible day without the engine: most alerts warn, some escalate, most resolve."""
    rng = random.Random(seed)
    events: list[AlertEvent] = []
    for i in range(lifecycles):
        alert_id = f"SYN{i:05d}"
        team = rng.choice(TEAMS)
        t = ALERT_T0 + timedelta(seconds=rng.uniform(0, 86_400))
        seq, severity = 1, rng.choice(("warning", "warning", "warning", "critical"))
        events.append(make_alert(alert_id, seq, "raised", severity, at=t, team=team))
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            t += timedelta(minutes=rng.uniform(2, 90))
            seq += 1
            previous, severity = severity, ("critical" if rng.random() < 0.2 else severity)
            events.append(
                make_alert(alert_id, seq, "updated", severity, at=t, team=team, previous_severity=previous)
            )
        if rng.random() < 0.85:
            t += timedelta(minutes=rng.uniform(5, 180))
            outcome = rng.choice(("released", "released", "cleared", "cancelled"))
            events.append(make_alert(alert_id, seq + 1, "resolved", None, at=t, team=team, outcome=outcome))
    return sorted(events, key=lambda e: e.at)


def port_closure(loads: int) -> list[AlertEvent]:
    """A storm: one port closes, every load heading there is raised within two minutes."""
    events: list[AlertEvent] = []
    for i in range(loads):
        t = ALERT_T0 + timedelta(seconds=2 * i)
        events.append(make_alert(f"PC{i:03d}", 1, "raised", "critical", at=t, team="ontario"))
        events.append(
            make_alert(
                f"PC{i:03d}",
                2,
                "resolved",
                None,
                at=t + timedelta(hours=1),
                team="ontario",
                outcome="released",
            )
        )
    return sorted(events, key=lambda e: e.at)


# --- calls per event ---------------------------------------------------------------------------


async def calls_on_a_day(
    alerts: Sequence[AlertEvent], policy: DeliveryPolicy, routing: Routing = ROUTING
) -> tuple[int, Counter[str]]:
    total, calls, _ = await day_through(alerts, policy, routing)
    return total, calls


async def day_through(
    alerts: Sequence[AlertEvent], policy: DeliveryPolicy, routing: Routing
) -> tuple[int, Counter[str], int]:
    """Slack calls (total, by method) and pings of a day of alert events through the notifier."""
    clock = ManualClock()
    gateway = CountingGateway()
    delivery = Delivery(gateway, MemoryLedger(), routing, policy=policy, clock=clock)
    origin = alerts[0].at
    for alert in alerts:
        await run_simulated(delivery, clock, (alert.at - origin).total_seconds())
        await delivery.accept(alert)
    await run_simulated(delivery, clock, clock.now() + 86_400)
    return sum(gateway.calls.values()), gateway.calls, gateway.pings


# --- latency -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def notifier_latency(
    slack: SlackTestServer, alerts: Sequence[AlertEvent], rate: float, ledger: Ledger | None = None
) -> list[float]:
    metrics = CountingMetrics()
    gateway = SlackWebGateway(make_web_client(SecretStr("xoxb-bench"), slack.base_url))
    policy = DeliveryPolicy(min_interval_s=0.0, edit_delay_s=0.0, storm_threshold=10**6)
    delivery = Delivery(
        gateway, ledger or MemoryLedger(), ROUTING, policy=policy, clock=SystemClock(), metrics=metrics
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(delivery.run(stop))
    for alert in alerts:
        await delivery.accept(alert)
        await asyncio.sleep(1 / rate)
    while delivery.pending_count():
        await asyncio.sleep(0.01)
    stop.set()
    await runner
    if gateway.client.session is not None:
        await gateway.client.session.close()
    return metrics.latencies


async def kafka_ledger_latency(
    bootstrap: str, slack: SlackTestServer, alerts: Sequence[AlertEvent], rate: float
) -> list[float]:
    """The notifier with its real ledger: flushed (acks=all) before and after every post."""
    from aiokafka import AIOKafkaProducer

    from streams.kafka.config import aiokafka_config
    from streams.notifier.service import KafkaLedger, ensure_notifier_topics
    from streams.settings import Settings

    settings = Settings(kafka_bootstrap=bootstrap)
    topic = f"bench.slack-ledger.{int(time.time())}"
    await ensure_notifier_topics(settings, topic)
    producer = AIOKafkaProducer(**aiokafka_config(settings), acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        return await notifier_latency(slack, alerts, rate, KafkaLedger(producer, topic))
    finally:
        await producer.stop()


async def direct_latency(slack: SlackTestServer, alerts: Sequence[AlertEvent], rate: float) -> list[float]:
    """The floor: one bare chat.postMessage per event, awaited concurrently, nothing stored."""
    gateway = SlackWebGateway(make_web_client(SecretStr("xoxb-bench"), slack.base_url))
    latencies: list[float] = []

    async def send(alert: AlertEvent) -> None:
        start = time.monotonic()
        await gateway.post(ROUTING.channel_for(alert), render_alert(alert), key=alert.event_id)
        latencies.append(time.monotonic() - start)

    tasks = []
    for alert in alerts:
        tasks.append(asyncio.create_task(send(alert)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    return latencies


# --- main --------------------------------------------------------------------------------------


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=Path, help="alert events (JSON Lines, e.g. from holdwatch backtest)")
    parser.add_argument("--loads", type=int, default=3000, help="loads to simulate (default 3000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-events", type=int, default=600, help="events for the latency run")
    parser.add_argument(
        "--kafka", metavar="BOOTSTRAP", help="also measure with the Kafka ledger on this broker"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events per second in the latency run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.alerts:
            alerts, source = read_alerts(args.alerts), str(args.alerts)
        else:
            found = engine_alerts(args.loads, args.seed, Path(tmp))
            if found:
                alerts, source = (
                    found,
                    f"holdwatch simulate --loads {args.loads} --seed {args.seed} + backtest",
                )
            else:
                alerts, source = synthetic_alerts(args.loads // 3, args.seed), "synthetic lifecycle mix"
    alerts.sort(key=lambda a: a.at)
    actions = Counter(a.action for a in alerts)
    escalations = sum(1 for a in alerts if a.previous_severity == "warning" and a.severity == "critical")
    span_h = (alerts[-1].at - alerts[0].at).total_seconds() / 3600
    print(f"alert events: {len(alerts)} from {source} over {span_h:.1f} h event time")
    print(f"  {dict(actions)}, escalations {escalations}, lifecycles {len({a.alert_id for a in alerts})}")

    print("\nSlack API calls per alert event (simulated day, event-time clock):")
    print(f"  {'Alertmanager-style, one message per change':<58} 1.000  ({len(alerts)} calls)")
    variants = {
        "holdwatch, edits coalesced within 15 s (default)": DeliveryPolicy(),
        "holdwatch, no coalescing, no storm digest": DeliveryPolicy(edit_delay_s=0, storm_threshold=10**6),
        "holdwatch, edits coalesced within 5 min": DeliveryPolicy(edit_delay_s=300),
        "  + warnings held 30 min (cleared sooner: never posted)": DeliveryPolicy(
            edit_delay_s=300, warning_hold_s=1800
        ),
        "  + broadcast reply only when released": DeliveryPolicy(
            edit_delay_s=300, warning_hold_s=1800, resolution_reply_outcomes=frozenset({"released"})
        ),
        "floor: post + resolved edit + reply, nothing else": None,
    }
    for name, policy in variants.items():
        if policy is None:
            lifecycles = len({a.alert_id for a in alerts if a.action == "raised"})
            resolved = sum(1 for a in alerts if a.action == "resolved")
            floor = lifecycles + 2 * resolved
            print(f"  {name:<58} {floor / len(alerts):.3f}  ({floor} calls)")
            continue
        total, by_method = await calls_on_a_day(alerts, policy)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(by_method.items()))
        print(f"  {name:<58} {total / len(alerts):.3f}  ({total} calls: {detail})")

    storm = port_closure(60)
    total, by_method = await calls_on_a_day(storm, DeliveryPolicy())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(by_method.items()))
    print(
        f"  {'port closure: 60 loads raised in 2 min, released 1 h later':<58} {total / len(storm):.3f}  "
        f"({total} calls for {len(storm)} events: {detail})"
    )

    lifecycles = len({a.alert_id for a in alerts})
    print("\nnotifications per lifecycle (pings: top-level posts, broadcasts, replies with a mention):")
    loud = Routing(ROUTING.default, ROUTING.teams, broadcast_resolutions=frozenset(TEAMS) | {ROUTING.default})
    for name, routing in (
        ("resolutions broadcast to the channel (before)", loud),
        ("resolutions quiet in the thread (default)", ROUTING),
    ):
        _, _, pings = await day_through(alerts, DeliveryPolicy(), routing)
        print(f"  {name:<58} {pings / lifecycles:.3f}  ({pings} pings, {lifecycles} lifecycles)")

    sample = [a for a in alerts if a.action == "raised"][: args.latency_events]
    print(f"\nalert -> Slack ack latency, {len(sample)} raised alerts at {args.rate:g}/s (local server):")
    async with SlackTestServer() as slack:
        direct = await direct_latency(slack, sample, args.rate)
    async with SlackTestServer() as slack:
        notified = await notifier_latency(slack, sample, args.rate)
    runs = [("bare chat.postMessage per event", direct), ("holdwatch notifier (memory ledger)", notified)]
    if args.kafka:
        async with SlackTestServer() as slack:
            runs.append(
                (
                    "holdwatch notifier (Kafka ledger)",
                    await kafka_ledger_latency(args.kafka, slack, sample, args.rate),
                )
            )
    for name, values in runs:
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        ratio = statistics.median(values) / statistics.median(direct)
        print(
            f"  {name:<40} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   (n={len(values)}, p50 {ratio:.2f}x bare)"
        )


if __name__ == "__main__":
    asyncio.run(main())
