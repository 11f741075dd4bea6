"""Worker throughput and latency on a real local broker, side by side in one run (issue 5).

Passes, each on its own fresh topic holding the same N input records:
  aiokafka   plain consume -> produce pass-through (the Python limit on this machine)
  faust      a bare Faust agent that only consumes and decodes (the framework's ceiling; uvloop,
             like the worker)
  worker     `holdwatch worker` (decode, state table, engine, alerts), flat out
Then latency: records produced at a fixed rate (default 1000/s) with Kafka timestamp = now,
measured from the record's Kafka timestamp to its alert event's broker timestamp
(LogAppendTime on the alert topic: the moment the broker acknowledged it).

    .venv/bin/python bench/bench_worker.py [--events 60000] [--rate 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BN = "123456789RM0001"


def _event(i: int, now: datetime, load: int) -> tuple[str, bytes, bytes]:
    """A realistic stream: per load one cargo_reported then notices and RNS statuses."""
    ccn = f"BNCH{load:09d}"
    base: dict[str, Any] = {
        "event_id": f"b{i}",
        "occurred_at": now.isoformat(),
        "schema_version": 1,
        "ccn": ccn,
    }
    step = i % 8
    if step == 0:
        value = {
            **base,
            "event_type": "cargo_reported",
            "carrier_code": "BNCH",
            "trip_number": "T",
            "load_ref": f"L{load}",
            "port_of_entry": "0453",
            "eta": now.replace(year=now.year + 1).isoformat(),
            "importer_bn": BN,
            "importer_name": "Bench Imports",
            "shipper_name": "Shipper",
            "broker_code": "BRK1",
            "broker_name": "B",
        }
        topic = "emanifest"
    elif step in (1, 3, 5):
        value = {**base, "event_type": "notice", "notice": "cargo_complete"}
        topic = "emanifest"
    else:
        value = {**base, "event_type": "rns_status", "processing_indicator": 34 if step != 7 else 1}
        topic = "rns"
    return topic, ccn.encode(), json.dumps(value).encode()


def _bootstrap(tmp: Path) -> tuple[str, Any]:
    if os.environ.get("HOLDWATCH_KAFKA_BOOTSTRAP"):
        return os.environ["HOLDWATCH_KAFKA_BOOTSTRAP"], None
    from devtools.broker import LocalBroker
    from streams.settings import Settings

    broker = LocalBroker(tmp / "kafka", home=Settings().home)
    broker.start()
    return broker.bootstrap, broker


def _topics(
    bootstrap: str, names: list[str], partitions: int = 6, config: dict[str, str] | None = None
) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(n, partitions, 1, topic_configs=config or {}) for n in names])
    admin.close()


def _produce(bootstrap: str, prefix: str, n: int, rate: float | None = None) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    start = time.perf_counter()
    for i in range(n):
        if rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        now = datetime.now(UTC)
        topic, key, value = _event(i, now, i // 8)
        producer.send(f"{prefix}{topic}", key=key, value=value, timestamp_ms=int(now.timestamp() * 1000))
    producer.flush()
    producer.close()


def _count_group(bootstrap: str, group: str, topics: list[str], total: int, timeout: float) -> float:
    """Seconds from the group's first commit until its committed offsets cover `total` records."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    partitions = [TopicPartition(topic, p) for topic in topics for p in range(6)]
    first: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                offsets = admin.list_group_offsets({group: partitions}).get(group, {})
            except Exception:  # noqa: BLE001 - the group's coordinator is not there yet
                time.sleep(0.2)
                continue
            done = sum(
                meta.offset for tp, meta in offsets.items() if meta.offset is not None and meta.offset > 0
            )
            if done and first is None:
                first = time.monotonic()
            if done >= total and first is not None:
                return time.monotonic() - first
            time.sleep(0.05)
    finally:
        admin.close()
    raise RuntimeError(f"group {group} did not finish in {timeout} s")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _spawn_worker(env: dict[str, str], tag: str, group: str, tmp: Path, log: Path) -> subprocess.Popen[bytes]:
    """`holdwatch worker` (wall clock, no notifier) on the `<tag>*` topics, as consumer group `group`."""
    names = {
        "emanifest": f"{tag}emanifest",
        "rns": f"{tag}rns",
        "carm": f"{tag}carm",
        "alerts": f"{tag}alerts",
        "deadletter": f"{tag}deadletter",
    }
    worker_env = {**env, "HOLDWATCH_APP_ID": group}
    worker_env.update({f"HOLDWATCH_TOPIC_{name.upper()}": topic for name, topic in names.items()})
    cmd = [
        sys.executable,
        "-m",
        "streams.cli.main",
        "worker",
        "--clock",
        "wall",
        "--no-notifier",
        "--data-dir",
        str(tmp / tag),
    ]
    return _spawn(cmd, worker_env, log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


AIOKAFKA_PASSTHROUGH = r"""
import asyncio, sys
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
async def main(bootstrap, group, topics, out):
    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                         enable_auto_commit=True, auto_commit_interval_ms=200)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await c.start(); await p.start()
    try:
        while True:
            batch = await c.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                for r in records:
                    await p.send(out, r.value, key=r.key)
    finally:
        await c.stop(); await p.stop()
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]))
"""

BARE_FAUST = r"""
import sys, mode.loop
mode.loop.use("uvloop")  # as the worker (its default loop)
import faust
from schemas.decode import TopicKind, decode
bootstrap, app_id, topics, datadir = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
app = faust.App(app_id, broker=f"kafka://{bootstrap}", value_serializer="raw", key_serializer="raw",
                web_enabled=False, store="memory://", datadir=datadir, broker_commit_interval=0.2)
source = app.topic(*topics, value_serializer="raw", key_serializer="raw")
@app.agent(source, concurrency=1)
async def consume(stream):
    async for event in stream.events():
        kind = TopicKind.RNS if event.message.topic.endswith("rns") else TopicKind.EMANIFEST
        decode(kind, event.message.key, event.message.value)
faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s for the latency pass")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency pass")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="holdwatch-bench-"))
    bootstrap, broker = _bootstrap(tmp)
    env = {**os.environ, "HOLDWATCH_KAFKA_BOOTSTRAP": bootstrap, "HOLDWATCH_METRICS_PORT": "0"}
    results: dict[str, float] = {}
    try:
        for name in ("aiokafka", "faust", "worker"):
            tag = f"{name}-{uuid.uuid4().hex[:6]}-"
            inputs = [f"{tag}emanifest", f"{tag}rns"]
            _topics(bootstrap, [*inputs, f"{tag}carm", f"{tag}alerts", f"{tag}deadletter", f"{tag}out"])
            _produce(bootstrap, tag, args.events)
            group = f"{tag}group"
            log = tmp / f"{name}.log"
            if name == "aiokafka":
                cmd = [
                    sys.executable,
                    "-c",
                    AIOKAFKA_PASSTHROUGH,
                    bootstrap,
                    group,
                    ",".join(inputs),
                    f"{tag}out",
                ]
                process = _spawn(cmd, env, log)
            elif name == "faust":
                cmd = [
                    sys.executable,
                    "-c",
                    BARE_FAUST,
                    bootstrap,
                    group,
                    ",".join(inputs),
                    str(tmp / "faust"),
                ]
                process = _spawn(cmd, {**env, "PYTHONPATH": str(ROOT)}, log)
            else:
                process = _spawn_worker(env, tag, group, tmp, log)
            try:
                seconds = _count_group(bootstrap, group, inputs, args.events, timeout=900)
            finally:
                _stop(process)
            results[name] = args.events / seconds
            print(f"{name:<9} {results[name]:>10,.0f} records/s", file=sys.stderr, flush=True)
        latency = _latency(bootstrap, env, tmp, args.rate, args.seconds)
    finally:
        if broker is not None:
            broker.stop()
    print(f"\n{'pass':<10}{'records/s':>12}{'vs bare Faust':>15}")
    for name, rate in results.items():
        print(f"{name:<10}{rate:>12,.0f}{rate / results['faust']:>14.2f}x")
    print(f"\nlatency, Kafka timestamp -> alert acknowledged by the broker, at {args.rate:g} records/s:")
    print(
        f"  alerts {latency['n']:,.0f}  p50 {latency['p50'] * 1000:,.1f} ms"
        f"  p99 {latency['p99'] * 1000:,.1f} ms"
    )
    return 0


def _latency(bootstrap: str, env: dict[str, str], tmp: Path, rate: float, seconds: float) -> dict[str, float]:
    from kafka import KafkaConsumer, TopicPartition

    tag = f"lat-{uuid.uuid4().hex[:6]}-"
    inputs = [f"{tag}emanifest", f"{tag}rns"]
    _topics(bootstrap, [*inputs, f"{tag}carm", f"{tag}deadletter"])
    _topics(bootstrap, [f"{tag}alerts"], config={"message.timestamp.type": "LogAppendTime"})
    log = tmp / "latency-worker.log"
    process = _spawn_worker(env, tag, f"{tag}group", tmp, log)
    try:
        deadline = time.monotonic() + 120
        while b"Worker]: Ready" not in log.read_bytes():
            if time.monotonic() > deadline:
                raise RuntimeError("worker not ready")
            time.sleep(0.5)
        time.sleep(2.0)
        _produce(bootstrap, tag, int(rate * seconds), rate=rate)
        time.sleep(3.0)
    finally:
        _stop(process)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(f"{tag}alerts", p) for p in range(6)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    samples: list[float] = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=1000).values():
            for record in batch:
                alert = json.loads(record.value)
                if alert.get("trigger") == "event":
                    at = datetime.fromisoformat(alert["at"]).timestamp()
                    samples.append(record.timestamp / 1000 - at)
    consumer.close()
    samples.sort()
    return {
        "n": len(samples),
        "p50": statistics.median(samples) if samples else float("nan"),
        "p99": samples[int(0.99 * (len(samples) - 1))] if samples else float("nan"),
    }


if __name__ == "__main__":
    sys.exit(main())
