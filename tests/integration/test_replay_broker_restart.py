"""The broker SIGKILLed mid-replay and restarted on the same port (issue 11, item 3): replay either
delivers every record of the log, or fails naming the line to resume from. Never a silent loss."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from devtools.broker import LocalBroker, free_port
from devtools.simulate import SimulationConfig, write_simulation
from schemas.envelope import TICK_HEADER
from streams.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("emanifest.events", "rns.events", "carm.readiness")
SPEED = "5000"  # the simulated 27 h of event time in about 20 s

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="the local broker needs Java and Maven",
)


def log_event_ids(path: Path) -> tuple[set[str], Counter[str]]:
    """The event ids of the log's records for the input topics, and its record count per topic."""
    ids: set[str] = set()
    per_topic: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("topic") not in TOPICS:
            continue
        per_topic[record["topic"]] += 1
        value = record.get("value")
        if isinstance(value, dict) and isinstance(value.get("event_id"), str):
            ids.add(value["event_id"])
    return ids, per_topic


def topic_event_ids(bootstrap: str) -> tuple[set[str], Counter[str]]:
    consumer = KafkaConsumer(
        *TOPICS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None, consumer_timeout_ms=5000,
    )  # fmt: skip
    ids: set[str] = set()
    per_topic: Counter[str] = Counter()
    try:
        for message in consumer:
            if any(name == TICK_HEADER for name, _ in message.headers or []):
                continue
            per_topic[message.topic] += 1
            try:
                value = json.loads(message.value) if message.value else None
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("event_id"), str):
                ids.add(value["event_id"])
    finally:
        consumer.close()
    return ids, per_topic


def test_a_broker_killed_and_restarted_mid_replay_loses_nothing_silently(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    write_simulation(SimulationConfig(loads=600, seed=7, hours=12), log)
    broker = LocalBroker(tmp_path / "kafka", home=Settings().home, port=free_port())
    broker.start()
    try:
        env = {
            **os.environ,
            "HOLDWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
            "HOLDWATCH_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "HOLDWATCH_HOME": str(tmp_path / "home"),
        }
        command = [sys.executable, "-m", "streams.cli.main", "replay", str(log), "--speed", SPEED,
                   "--no-carm-barrier", "--broker-timeout", "120"]  # fmt: skip
        replay = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
        time.sleep(7)
        assert replay.poll() is None, "the replay ended before the broker was killed"
        assert broker.pid is not None
        os.killpg(broker.pid, signal.SIGKILL)
        broker.stop()  # reaps the killed JVM
        broker.start()  # same data dir, same port (requested_port)
        _, stderr = replay.communicate(timeout=300)
        want_ids, want_per_topic = log_event_ids(log)
        got_ids, got_per_topic = topic_event_ids(broker.bootstrap)
    finally:
        broker.stop()
    if replay.returncode == 0:
        assert "replay done" in stderr
        assert want_ids <= got_ids, f"{len(want_ids - got_ids)} event ids of the log are missing"
        for topic, count in want_per_topic.items():
            assert got_per_topic[topic] >= count  # duplicates only from producer retries
    else:
        assert replay.returncode == 1, stderr
        assert "not acknowledged" in stderr and "--from-line" in stderr, stderr
