"""A Faust table backed by RocksDB survives losing its local data: the worker is stopped, its RocksDB
directory deleted, and a restarted worker restores the table from the changelog topic in Kafka.

The restarted worker reads a *different* input topic, so the values can only come from the changelog
(re-reading the original input would hide a broken recovery).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
DUMP_KEY = "__dump__"  # same as tests/integration/faust_table_app.py (not imported: it builds the app)
EXPECTED = {f"truck-{i}": f"ccn-{i:04d}" for i in range(12)}


@contextmanager
def faust_worker(env: dict[str, str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the test app's worker as a subprocess; SIGTERM it (then SIGKILL) on exit."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.faust_table_app", "worker", "--loglevel", "info"],
            env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop_worker(process)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_dump(
    producer: KafkaProducer,
    topic: str,
    dump_file: Path,
    process: subprocess.Popen[bytes],
    log_file: Path,
    *,
    timeout_s: float = 150,
) -> dict[str, str]:
    """Ask the worker for its table (again and again) until it shows every expected value."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Faust worker exited with {process.returncode}:\n{log_tail(log_file)}")
        producer.send(topic, key=DUMP_KEY.encode(), value=b"")
        producer.flush(timeout=10)
        time.sleep(1.0)
        if dump_file.exists():
            seen = json.loads(dump_file.read_text())
            if seen == EXPECTED:
                return seen
    pytest.fail(f"the table never showed all values; last dump: {seen}\n{log_tail(log_file)}")


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def changelog_record_count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        begins = consumer.beginning_offsets(partitions)
    finally:
        consumer.close()
    return sum(ends[tp] - begins[tp] for tp in partitions)


def test_table_recovers_from_changelog_after_losing_rocksdb(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    first_input = make_topic("faust-in", partitions=PARTITIONS)
    second_input = make_topic("faust-in-after-restart", partitions=PARTITIONS)
    app_id = f"hw-faust-test-{uuid.uuid4().hex[:8]}"
    datadir = tmp_path / "faust-data"
    log_file = tmp_path / "worker.log"
    env = {
        **os.environ,
        "FAUST_TEST_BOOTSTRAP": kafka_bootstrap,
        "FAUST_TEST_APP_ID": app_id,
        "FAUST_TEST_DATADIR": str(datadir),
        "FAUST_TEST_PARTITIONS": str(PARTITIONS),
        "FAUST_TEST_INPUT": first_input,
        "FAUST_TEST_DUMP_FILE": str(tmp_path / "before.json"),
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        # 1. a worker fills the table from the first input topic
        with faust_worker(env, log_file) as worker:
            for key, value in EXPECTED.items():
                producer.send(first_input, key=key.encode(), value=value.encode())
            producer.flush(timeout=30)
            wait_for_dump(producer, first_input, tmp_path / "before.json", worker, log_file)
        assert worker.returncode is not None

        changelog = f"{app_id}-values-changelog"
        assert changelog_record_count(kafka_bootstrap, changelog) >= len(EXPECTED)

        # 2. the local state is lost
        rocksdb_files = [p for p in datadir.rglob("*") if "values" in p.name]
        assert rocksdb_files, f"no RocksDB table data under {datadir}"
        shutil.rmtree(datadir)

        # 3. a fresh worker, fed only by another topic, must rebuild the table from the changelog
        env["FAUST_TEST_INPUT"] = second_input
        env["FAUST_TEST_DUMP_FILE"] = str(tmp_path / "after.json")
        with faust_worker(env, log_file) as worker:
            restored = wait_for_dump(producer, second_input, tmp_path / "after.json", worker, log_file)
        assert restored == EXPECTED
        assert any(p.name.startswith("values") for p in datadir.rglob("*")), (
            "table not stored in RocksDB again"
        )
    finally:
        producer.close()
