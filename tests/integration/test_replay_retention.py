"""A replay of weeks-old history loses nothing to the input topics' time retention.

The input topics are created as a production cluster has them (retention.ms = 7 days), with
segment.ms = 1 day so that a partition rolls a segment per day of Kafka timestamps, and the test
broker checks retention every second, from its start (tests/fixtures/kafka.py). A 21-day log from
2025 is replayed while the worker is stopped, then the worker consumes it all.

Without the fix (replay publishing each record with its log timestamp as the Kafka timestamp),
every partition rolls about 20 segments whose timestamps are months past the 7-day retention:
the broker deletes them at its next check, the input topics' earliest offsets move past 0 and
the worker never sees most of the log (its alerts differ from the back-test). Checked by hand on
the local broker: 2,000 records spread over 21 days of 2025 timestamps, in such a topic, were all
deleted within 5 s; the same records published without a timestamp were all kept. With the fix
(Kafka timestamp = the replay's wall time, the log's in `hw-log-ts`) nothing is old to Kafka.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from schemas.envelope import LOG_TS_HEADER, TICK_HEADER, header_value
from streams.replay.plan import Barrier
from streams.replay.publish import kafka_barrier
from tests.integration.pipeline_harness import Namespace
from tests.integration.test_pipeline import _backtest, _comparable, _replay

pytestmark = pytest.mark.integration

PARTITIONS = 3
WEEK_MS = 7 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
MAX_CHECK_INTERVAL_MS = 30_000


def _retention_check_interval_ms(admin: KafkaAdminClient) -> int:
    """The broker's log.retention.check.interval.ms (static: set when it started)."""
    node = admin.describe_cluster()["brokers"][0]["broker_id"]
    resource = ConfigResource(ConfigResourceType.BROKER, str(node))
    described = admin.describe_configs([resource], config_filter="all")
    configs = described.get("broker", {}).get(str(node), {})
    return int(configs.get("log.retention.check.interval.ms", {}).get("value") or 300_000)


def _create_week_retention_inputs(ns: Namespace, admin: KafkaAdminClient) -> None:
    config = {"retention.ms": str(WEEK_MS), "segment.ms": str(DAY_MS)}
    topics = [ns.topics["emanifest"], ns.topics["rns"]]
    admin.create_topics(
        {name: {"num_partitions": PARTITIONS, "replication_factor": 1, "configs": config} for name in topics},
        wait_for_metadata=True,
    )


def _simulate_weeks(ns: Namespace, loads: int, seed: int, hours: int) -> Path:
    path = ns.tmp / f"sim-{loads}-{seed}-{hours}h.jsonl"
    args = ["--loads", str(loads), "--seed", str(seed), "--hours", str(hours), "--no-midway-fixes"]
    result = ns.run("simulate", *args, "--out", str(path))
    assert result.returncode == 0, result.stderr
    return path


def _split_carm_prefix(log: Path, carm_topic: str) -> tuple[Path, Path]:
    """The log's leading CARM snapshots and the rest (which must hold no CARM record: the worker
    consumes it after a restart, so a CARM change in it could race the shipments it judges)."""
    lines = log.read_text().splitlines(keepends=True)
    marker = json.dumps({"topic": carm_topic}, separators=(",", ":"))[:-1]  # '{"topic":"carm-..."'
    cut = next(i for i, line in enumerate(lines) if not line.startswith(marker))
    assert cut > 0 and not any(marker in line for line in lines[cut:])
    prefix, rest = log.with_suffix(".carm.jsonl"), log.with_suffix(".rest.jsonl")
    prefix.write_text("".join(lines[:cut]))
    rest.write_text("".join(lines[cut:]))
    return prefix, rest


def _earliest_offsets(ns: Namespace) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=ns.bootstrap)
    try:
        tps = [TopicPartition(ns.topics[name], p) for name in ("emanifest", "rns") for p in range(PARTITIONS)]
        return {
            f"{tp.topic}[{tp.partition}]": int(offset)
            for tp, offset in consumer.beginning_offsets(tps).items()
        }
    finally:
        consumer.close()


def _wait_for_the_carm_broadcast(ns: Namespace, records: int) -> None:
    config: dict[str, Any] = {"bootstrap_servers": ns.bootstrap}
    wait = kafka_barrier(config, ns.app_id, 120, then_topics=[f"{ns.app_id}.control"], say=lambda _: None)
    outcome = wait(Barrier(ns.topics["carm"], records))
    assert outcome.passed, outcome.detail + "\n" + ns.log_tail()


def test_a_replay_of_weeks_old_history_loses_nothing_to_retention(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="holdwatch-tests")
    try:
        interval_ms = _retention_check_interval_ms(admin)
        if interval_ms > MAX_CHECK_INTERVAL_MS:
            pytest.skip(
                f"the broker checks retention every {interval_ms} ms; this test needs a short interval"
            )
        _create_week_retention_inputs(ns, admin)
    finally:
        admin.close()
    created = ns.run("topics", "create")
    assert created.returncode == 0 and "retention" not in created.stderr, created.stdout + created.stderr
    log = _simulate_weeks(ns, 300, seed=21, hours=504)  # three weeks of event time, from 2025
    expected = _backtest(ns, log)
    prefix, rest = _split_carm_prefix(log, ns.topics["carm"])
    started_ms = int(time.time() * 1000)

    with ns.worker("w1"):  # the leading CARM snapshots reach every shipment partition first
        ns.wait_ready()
        _replay(ns, prefix)
        _wait_for_the_carm_broadcast(ns, len(prefix.read_text().splitlines()))
    _replay(ns, rest)  # no worker: three weeks of history wait in the topics
    time.sleep(3 * interval_ms / 1000 + 2)  # the broker's retention checks run meanwhile

    assert set(_earliest_offsets(ns).values()) == {0}, _earliest_offsets(ns)
    for record in ns.read_topic("emanifest") + ns.read_topic("rns"):
        assert record.timestamp >= started_ms  # the replay's wall time, not the log's
        if header_value(record.headers, TICK_HEADER) is None:
            assert header_value(record.headers, LOG_TS_HEADER) is not None
    with ns.worker("w2"):  # same group, state recovered from the changelogs: consumes the log now
        ns.wait_ready(2)
        actual = ns.wait_for_alerts(len(expected), timeout=300)
    assert _comparable(actual) == _comparable(expected)
