"""Runs real `holdwatch` processes (worker, replay) against the test broker, each test in its own
namespace of topics and consumer group, and reads what the pipeline published."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas.alerts import AlertEvent
from schemas.decode import topic_kinds
from streams.backtest import run_backtest
from streams.settings import Settings

HOLDWATCH = [sys.executable, "-m", "streams.cli.main"]
MILESTONE = re.compile(
    r"Worker\]: (Starting|Ready)|Joined group|Setting newly assigned|Revoking|Recovery\]: "
    r"(Resuming|Recovery complete|Worker ready)|rebalancing again|\[(WARNING|ERROR|CRITICAL)\]"
    r"|loaded from the ledger|Signal received"
)
"""Log lines worth seeing when a test fails long after them."""
ROOT = Path(__file__).resolve().parents[2]


class Namespace:
    """Unique topics and app id for one test, as HOLDWATCH_* environment variables."""

    def __init__(self, bootstrap: str, tmp: Path, partitions: int = 6) -> None:
        tag = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.app_id = f"hw-{tag}"
        self.topics = {
            "emanifest": f"emanifest-{tag}",
            "rns": f"rns-{tag}",
            "carm": f"carm-{tag}",
            "alerts": f"alerts-{tag}",
            "deadletter": f"deadletter-{tag}",
        }
        self.env = {
            **os.environ,
            "HOLDWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "HOLDWATCH_APP_ID": self.app_id,
            "HOLDWATCH_PARTITIONS": str(partitions),
            "HOLDWATCH_HOME": str(tmp / "home"),
            "HOLDWATCH_METRICS_PORT": "0",
            "HOLDWATCH_WEB_PORT": "0",  # several workers per test: a test that needs the API sets a port
            **{f"HOLDWATCH_TOPIC_{name.upper()}": topic for name, topic in self.topics.items()},
        }
        self.logs: list[Path] = []

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HOLDWATCH, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextmanager
    def worker(self, name: str = "w1", *args: str) -> Iterator[subprocess.Popen[bytes]]:
        process = self.start_worker(name, *args)
        try:
            yield process
        finally:
            stop(process)

    def start_worker(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"worker-{name}.log"
        self.logs.append(log)
        handle = log.open("ab")
        return subprocess.Popen(
            [
                *HOLDWATCH,
                "worker",
                "--clock",
                "event",
                "--no-notifier",
                "--data-dir",
                str(self.tmp / f"state-{name}"),
                *args,
            ],
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker_with_notifier(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`holdwatch worker --clock event` running its notifier in-process (Slack per `self.env`);
        the same `name` reuses the same state directory (a restart)."""
        data_dir = str(self.tmp / f"state-{name}")
        return self.spawn(f"worker-{name}", "worker", "--clock", "event", "--data-dir", data_dir, *args)

    def start_notifier(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`holdwatch notifier` (group `<app_id>-notifier` unless `--group-id` is given)."""
        return self.spawn(f"notifier-{name}", "notifier", *args)

    def spawn(self, log_name: str, *args: str) -> subprocess.Popen[bytes]:
        """`holdwatch <args>` in its own session (so `stop` can kill the group), output appended
        to `<tmp>/<log_name>.log`, which `log_tail` shows."""
        log = self.tmp / f"{log_name}.log"
        if log not in self.logs:
            self.logs.append(log)
        handle = log.open("ab")
        return subprocess.Popen(
            [*HOLDWATCH, *args],
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_command(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`holdwatch <args>` in the background (e.g. a replay to interrupt), output to a log."""
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("ab") as handle:
            return subprocess.Popen(
                [*HOLDWATCH, *args], env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, count: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = sum(1 for log in self.logs if log.exists() and b"Worker]: Ready" in log.read_bytes())
            if ready >= count:
                return
            time.sleep(0.5)
        raise AssertionError("worker not ready:\n" + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        """Each log's last `lines`, after the milestones before them (starts, group joins,
        assignments, recovery, warnings): a stuck worker's tail is only heartbeats."""
        out = []
        for log in self.logs:
            if not log.exists():
                continue
            text = log.read_text(errors="replace").splitlines()
            earlier = [line for line in text[:-lines] if MILESTONE.search(line)]
            digest = [f"--- {log.name}: milestones before the tail", *earlier[-60:]] if earlier else []
            out.append("\n".join([*digest, f"--- {log.name}", *text[-lines:]]))
        return "\n".join(out)

    def read_topic(self, name: str) -> list[Any]:
        topic = self.topics[name]
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            out = []
            while any(consumer.position(tp) < end[tp] for tp in tps):
                for batch in consumer.poll(timeout_ms=1000).values():
                    out += batch
            return out
        finally:
            consumer.close()

    def alerts(self) -> list[AlertEvent]:
        return [AlertEvent.model_validate_json(r.value) for r in self.read_topic("alerts")]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.read_topic("deadletter")]

    def wait_for_alerts(self, expected: int, timeout: float = 240, settle: float = 3.0) -> list[AlertEvent]:
        """Distinct alert events (by event_id), once `expected` came and then nothing for `settle` s."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            distinct = {a.event_id: a for a in self.alerts()}
            if len(distinct) != last_count:
                last_count, last_change = len(distinct), time.monotonic()
            if len(distinct) >= expected and time.monotonic() - last_change >= settle:
                return list(distinct.values())
            time.sleep(1.0)
        raise AssertionError(f"{last_count} of {expected} alert events\n" + self.log_tail())


def stop(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def backtest(ns: Namespace, log: Path) -> list[AlertEvent]:
    """The alert events the back-test makes of `log` (the namespace's topic names)."""
    buffer = io.StringIO()
    kinds = topic_kinds(ns.topics["emanifest"], ns.topics["rns"], ns.topics["carm"])
    run_backtest([log], buffer, Settings().thresholds(), kinds)
    return [AlertEvent.model_validate_json(line) for line in buffer.getvalue().splitlines()]


def first_copies(alerts: list[AlertEvent]) -> list[AlertEvent]:
    """One alert event per event_id, each in the place of its first copy (a re-sent step after a
    crash or a producer retry is the same step)."""
    distinct: dict[str, AlertEvent] = {}
    for alert in alerts:
        distinct.setdefault(alert.event_id, alert)
    return list(distinct.values())


def comparable(alerts: list[AlertEvent]) -> dict[str, list[tuple[object, ...]]]:
    """Each load's alert events in order, lifecycle id and step included: a Kafka partition keeps
    one load's records in order, so the pipeline must give every load the back-test's sequence."""
    per_load: dict[str, list[tuple[object, ...]]] = {}
    for a in alerts:
        per_load.setdefault(a.ccn, []).append((a.alert_id, a.seq, *a.comparable()))
    return per_load
