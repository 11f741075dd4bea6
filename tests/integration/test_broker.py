"""The broker is real: clients from both libraries talk to it, topics are created as specified,
SASL rejects a wrong password, and a stopped (or orphaned) broker leaves no JVM behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from pydantic import SecretStr

from devtools.broker import LocalBroker, pid_alive
from streams.kafka.admin import co_partitioning_problems, ensure_topics
from streams.kafka.config import aiokafka_config, kafka_python_config
from streams.settings import Settings
from tests.fixtures.kafka import SaslKafka

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_local_broker = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="the local broker needs Java and Maven",
)


async def test_kafka_python_producer_to_aiokafka_consumer(
    kafka_settings: Settings, make_topic: Callable[..., str]
) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = make_topic("roundtrip", partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    producer = KafkaProducer(**kafka_python_config(kafka_settings), acks="all")
    try:
        for key, value in sent.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumer = AIOKafkaConsumer(
        topic, **aiokafka_config(kafka_settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    partitions_seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    assert record.key is not None and record.value is not None
                    received[record.key] = record.value
                    partitions_seen.add(tp.partition)
    finally:
        await consumer.stop()
    assert received == sent
    assert len(partitions_seen) > 1  # keys really spread over the topic's partitions


def _admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(**kafka_python_config(settings))


def test_ensure_topics_creates_then_reports_existing(kafka_settings: Settings) -> None:
    first = ensure_topics(kafka_settings)
    assert [(r.name, r.status, r.partitions) for r in first] == [
        (name, "created", kafka_settings.partitions) for name in kafka_settings.topic_names().values()
    ]
    second = ensure_topics(kafka_settings)
    assert {r.status for r in second} == {"exists"}
    assert co_partitioning_problems(second) == []

    from kafka.admin import ConfigResource, ConfigResourceType

    admin = _admin(kafka_settings)
    try:
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, kafka_settings.topic_carm)], config_filter="all"
        )["topic"][kafka_settings.topic_carm]
    finally:
        admin.close()
    assert configs["cleanup.policy"]["value"] == "compact"


def test_ensure_topics_flags_partition_and_config_drift(kafka_settings: Settings) -> None:
    admin = _admin(kafka_settings)
    try:
        admin.create_topics(
            {
                kafka_settings.topic_rns: {"num_partitions": 2, "replication_factor": 1},
                kafka_settings.topic_carm: {
                    "num_partitions": kafka_settings.partitions,
                    "replication_factor": 1,
                },
            },
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    results = {r.name: r for r in ensure_topics(kafka_settings)}
    assert results[kafka_settings.topic_rns].status == "exists"
    assert results[kafka_settings.topic_rns].partitions == 2
    assert results[kafka_settings.topic_emanifest].status == "created"
    problems = co_partitioning_problems(list(results.values()))
    assert len(problems) == 1 and kafka_settings.topic_rns in problems[0]
    carm = results[kafka_settings.topic_carm]
    assert carm.config_mismatches == ("cleanup.policy=delete (wanted compact)",)


def test_topics_command_reports_and_fails_on_mismatch(kafka_settings: Settings) -> None:
    env = {
        **os.environ,
        "HOLDWATCH_KAFKA_BOOTSTRAP": str(kafka_settings.kafka_bootstrap),
        "HOLDWATCH_TOPIC_EMANIFEST": kafka_settings.topic_emanifest,
        "HOLDWATCH_TOPIC_RNS": kafka_settings.topic_rns,
        "HOLDWATCH_TOPIC_CARM": kafka_settings.topic_carm,
        "HOLDWATCH_TOPIC_ALERTS": kafka_settings.topic_alerts,
        "HOLDWATCH_TOPIC_DEADLETTER": kafka_settings.topic_deadletter,
    }
    command = [sys.executable, "-m", "streams.cli.main", "topics", "create"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created, 6 partitions") == 5
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(": exists, 6 partitions") == 5
    env["HOLDWATCH_TOPIC_RNS"] = kafka_settings.topic_rns + ".other"
    env["HOLDWATCH_PARTITIONS"] = "3"
    mismatch = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert mismatch.returncode == 1
    assert "co-partitioned input topics have different partition counts" in mismatch.stderr


def _sasl_settings(sasl: SaslKafka, password: str) -> Settings:
    return Settings(
        kafka_bootstrap=sasl.sasl_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=sasl.username,
        kafka_sasl_password=SecretStr(password),
    )


@needs_local_broker
async def test_sasl_listener_accepts_the_user_and_rejects_a_wrong_password(sasl_kafka: SaslKafka) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=sasl_kafka.bootstrap)
    try:
        admin.create_topics(
            {"sasl.check": {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
        )
    finally:
        admin.close()

    good = AIOKafkaProducer(**aiokafka_config(_sasl_settings(sasl_kafka, sasl_kafka.password)))
    await good.start()
    try:
        metadata = await good.send_and_wait("sasl.check", b"hello")
    finally:
        await good.stop()
    assert metadata.offset >= 0

    bad = AIOKafkaProducer(
        **aiokafka_config(_sasl_settings(sasl_kafka, "not-the-password")), request_timeout_ms=10000
    )
    with pytest.raises(KafkaError):
        await bad.start()
    await bad.stop()


@needs_local_broker
def test_stop_leaves_no_jvm(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "data", home=Settings().home)
    broker.start()
    pid = broker.pid
    assert pid is not None and pid_alive(pid)
    broker.stop()
    broker.stop()  # idempotent
    assert not pid_alive(pid)


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from devtools.broker import LocalBroker
broker = LocalBroker(Path(sys.argv[1]), home=Path(sys.argv[2])).start()
print(broker.pid, flush=True)
time.sleep(600)
"""


@needs_local_broker
def test_jvm_dies_when_its_owner_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed owner runs no cleanup code; the watchdog must still stop the JVM."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(tmp_path / "data"), str(Settings().home)],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        jvm_pid = int(owner.stdout.readline())
        assert pid_alive(jvm_pid)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 60
    while pid_alive(jvm_pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    alive = pid_alive(jvm_pid)
    if alive:
        os.killpg(jvm_pid, signal.SIGKILL)
    assert not alive, "the broker JVM outlived its owner"


@needs_local_broker
def test_broker_cli_start_status_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "kafka").symlink_to(Settings().home / "kafka")  # reuse the machine's jar cache
    env = {**os.environ, "HOLDWATCH_HOME": str(home)}
    env.pop("HOLDWATCH_KAFKA_BOOTSTRAP", None)

    def holdwatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli.main", *args],
            env=env, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
        )  # fmt: skip

    assert holdwatch("broker", "status").stdout.strip() == "stopped"
    started = holdwatch("broker", "start")
    try:
        assert started.returncode == 0, started.stderr
        assert "export HOLDWATCH_KAFKA_BOOTSTRAP=127.0.0.1:" in started.stdout
        status = holdwatch("broker", "status")
        assert status.returncode == 0 and status.stdout.startswith("running on 127.0.0.1:")
        topics = holdwatch("topics", "create")  # finds the broker through the state dir
        assert topics.returncode == 0, topics.stderr
        assert topics.stdout.count(": created") == 5
    finally:
        stopped = holdwatch("broker", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert holdwatch("broker", "status").returncode == 3
