"""Worker throughput and latency on a real local broker, side by side in one run (issue 5).

Passes, each on its own fresh topic holding the same N input records:
  aiokafka   plain consume -> produce pass-through (the Python limit on this machine)
  faust      a bare Faust agent that only consumes and decodes (the framework's ceiling; uvloop,
             like the worker)
  worker     `holdwatch worker` (decode, state table, engine, alerts), flat out
Then latency: records produced at a fixed rate (default 1000/s) with Kafka timestamp = now,
measured from the record's Kafka timestamp to its alert event's broker timestamp
(LogAppendTime on the alert topic: the moment the broker acknowledged it).

Before/after (issue 15): `--base TREE` runs the worker of another tree (a git worktree) too, in
the same run, and `--rounds N` repeats the faust and worker passes N times (the trees alternated
in each round), so every ratio compares passes a few seconds apart on the same broker; the
summary is the median of the rounds. `--profile DIR` adds one more worker pass per tree under
py-spy (`pip install py-spy`): its raw stacks go to DIR and a summary (where the samples are, by
package and by function) is printed. Profiled passes do not count in the figures.

    .venv/bin/python bench/bench_worker.py [--events 60000] [--rate 1000] [--seconds 20]
        [--base /tmp/wk-base] [--rounds 3] [--profile /tmp/prof] [--no-aiokafka]
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


def _spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _spawn_worker(
    env: dict[str, str],
    tag: str,
    group: str,
    tmp: Path,
    log: Path,
    tree: Path = ROOT,
    profile: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`holdwatch worker` of `tree` (wall clock, no notifier) on the `<tag>*` topics, as consumer
    group `group`; with `profile`, under `py-spy record` writing its raw stacks there."""
    names = {
        "emanifest": f"{tag}emanifest",
        "rns": f"{tag}rns",
        "carm": f"{tag}carm",
        "alerts": f"{tag}alerts",
        "deadletter": f"{tag}deadletter",
    }
    worker_env = {**env, "HOLDWATCH_APP_ID": group, "PYTHONPATH": str(tree)}
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
    if profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy), "record", "--nolineno", "-r", "100", "-f", "raw", "-o", str(profile), "--", *cmd]
    return _spawn(cmd, worker_env, log, cwd=tree)


def _stop(process: subprocess.Popen[bytes], *, profiled: bool = False) -> None:
    if process.poll() is None:
        if profiled:  # stop the worker only: py-spy then writes its file and exits
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            for child in children:
                os.kill(int(child), signal.SIGTERM)
            try:
                process.wait(timeout=60)
                return
            except subprocess.TimeoutExpired:
                pass
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


def _throughput(
    bootstrap: str, env: dict[str, str], tmp: Path, name: str, events: int, profile: Path | None = None
) -> float:
    """records/s of one pass on fresh topics holding `events` records. `name`: aiokafka, faust,
    or worker:<tree>."""
    tag = f"{name.split(':')[0]}-{uuid.uuid4().hex[:6]}-"
    inputs = [f"{tag}emanifest", f"{tag}rns"]
    _topics(bootstrap, [*inputs, f"{tag}carm", f"{tag}alerts", f"{tag}deadletter", f"{tag}out"])
    _produce(bootstrap, tag, events)
    group = f"{tag}group"
    log = tmp / f"{tag}.log"
    if name == "aiokafka":
        cmd = [sys.executable, "-c", AIOKAFKA_PASSTHROUGH, bootstrap, group, ",".join(inputs), f"{tag}out"]
        process = _spawn(cmd, env, log)
    elif name == "faust":
        cmd = [sys.executable, "-c", BARE_FAUST, bootstrap, group, ",".join(inputs), str(tmp / "faust")]
        process = _spawn(cmd, {**env, "PYTHONPATH": str(ROOT)}, log)
    else:
        tree = Path(name.split(":", 1)[1])
        process = _spawn_worker(env, tag, group, tmp, log, tree=tree, profile=profile)
    try:
        seconds = _count_group(bootstrap, group, inputs, events, timeout=900)
    finally:
        _stop(process, profiled=profile is not None)
    return events / seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s for the latency pass")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency pass")
    parser.add_argument("--base", type=Path, help="also run the worker of this tree (a git worktree)")
    parser.add_argument("--rounds", type=int, default=1, help="faust and worker passes, repeated")
    parser.add_argument("--profile", type=Path, help="one more worker pass per tree under py-spy")
    parser.add_argument("--no-aiokafka", action="store_true", help="skip the pass-through pass")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="holdwatch-bench-"))
    bootstrap, broker = _bootstrap(tmp)
    env = {**os.environ, "HOLDWATCH_KAFKA_BOOTSTRAP": bootstrap, "HOLDWATCH_METRICS_PORT": "0"}
    trees = {"after": ROOT, **({"before": args.base.resolve()} if args.base else {})}
    rounds: list[dict[str, float]] = []
    latencies: list[dict[str, dict[str, float]]] = []
    try:
        if not args.no_aiokafka:
            rate = _throughput(bootstrap, env, tmp, "aiokafka", args.events)
            print(f"aiokafka  {rate:>10,.0f} records/s", file=sys.stderr, flush=True)
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            row = {"faust": _throughput(bootstrap, env, tmp, "faust", args.events)}
            for label in order:
                row[label] = _throughput(bootstrap, env, tmp, f"worker:{trees[label]}", args.events)
            rounds.append(row)
            print(
                f"round {r + 1}: " + "  ".join(f"{k} {v:,.0f}/s" for k, v in row.items()),
                file=sys.stderr,
                flush=True,
            )
            lat: dict[str, dict[str, float]] = {}
            for label in order:
                lat[label] = _latency(bootstrap, env, tmp, args.rate, args.seconds, trees[label])
                print(
                    f"round {r + 1}: {label} p50 {lat[label]['p50'] * 1000:.1f} ms"
                    f" p99 {lat[label]['p99'] * 1000:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            latencies.append(lat)
        profiles: dict[str, Path] = {}
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for label, tree in trees.items():
                profiles[label] = args.profile / f"worker-{label}.txt"
                _throughput(bootstrap, env, tmp, f"worker:{tree}", args.events, profile=profiles[label])
    finally:
        if broker is not None:
            broker.stop()
    _report(args, list(trees), rounds, latencies)
    for label, path in profiles.items():
        print(f"\nprofile of the {label} worker ({path}):")
        print(summarize_profile(path))
    return 0


def _report(
    args: argparse.Namespace,
    labels: list[str],
    rounds: list[dict[str, float]],
    latencies: list[dict[str, dict[str, float]]],
) -> None:
    print(f"\n{args.events:,} records per pass, {len(rounds)} rounds; records/s (x bare Faust of the round)")
    print(f"{'round':<7}{'faust':>10}" + "".join(f"{label:>22}" for label in labels))
    for r, row in enumerate(rounds, 1):
        cells = "".join(f"{row[label]:>13,.0f} ({row[label] / row['faust']:.2f}x)" for label in labels)
        print(f"{r:<7}{row['faust']:>10,.0f}{cells}")
    median = statistics.median
    for label in labels:
        ratio = median(row[label] / row["faust"] for row in rounds)
        print(f"{label}: median {ratio:.2f}x bare Faust")
    if "before" in labels:
        speedup = median(row["after"] / row["before"] for row in rounds)
        print(f"after / before: median {speedup:.2f}x")
    print(f"\nlatency, Kafka timestamp -> alert acknowledged by the broker, at {args.rate:g} records/s:")
    for label in labels:
        each = ", ".join(f"{lat[label]['p99'] * 1000:.1f}" for lat in latencies)
        p50 = median(lat[label]["p50"] for lat in latencies) * 1000
        p99 = median(lat[label]["p99"] for lat in latencies) * 1000
        alerts = latencies[0][label]["n"] if latencies else 0
        print(
            f"  {label}: alerts {alerts:,.0f}/round  p50 {p50:.1f} ms  p99 {p99:.1f} ms"
            f" (median; rounds: {each})"
        )


PACKAGES = (
    ("holdwatch: engine", ("alerting/",)),
    ("holdwatch: schemas (decode, envelope)", ("schemas/",)),
    ("holdwatch: worker shell", ("streams/",)),
    ("faust", ("faust/",)),
    ("mode", ("mode/",)),
    ("aiokafka", ("aiokafka/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("pydantic", ("pydantic",)),
    ("asyncio", ("asyncio/",)),
)


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Where a py-spy raw profile's samples are: self time by package (the innermost frame's file),
    the top functions by self time, and the share of time under a few functions of interest.
    Start-up (imports) is left out."""
    own: dict[str, int] = {}
    by_package: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        if any("_find_and_load" in f for f in frames):
            continue
        total += count
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        where = next((label for label, keys in PACKAGES if any(k in leaf for k in keys)), "other")
        by_package[where] = by_package.get(where, 0) + count
        for name in {f.split(" (")[0] for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return "  (no samples)"
    out = [f"  {total:,} samples (100 per s, start-up left out); self time by package:"]
    for label, n in sorted(by_package.items(), key=lambda kv: -kv[1]):
        out.append(f"    {n / total:6.1%}  {label}")
    out.append("  top functions, self time:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"    {n / total:6.1%}  {frame}")
    out.append("  under (inclusive):")
    for name in INTEREST:
        if name in inclusive:
            out.append(f"    {inclusive[name] / total:6.1%}  {name}")
    return "\n".join(out)


INTEREST = (
    "process_shipments",
    "_record_of",
    "apply",
    "decode",
    "ingest",
    "emit",
    "emit_batch",
    "send",
    "settle",
    "confirm",
    "flush",
    "seen",
    "_observe",
    "observe",
    "gauges",
    "_py_run_maybe_in_executor",
)


def _latency(
    bootstrap: str, env: dict[str, str], tmp: Path, rate: float, seconds: float, tree: Path = ROOT
) -> dict[str, float]:
    from kafka import KafkaConsumer, TopicPartition

    tag = f"lat-{uuid.uuid4().hex[:6]}-"
    inputs = [f"{tag}emanifest", f"{tag}rns"]
    _topics(bootstrap, [*inputs, f"{tag}carm", f"{tag}deadletter"])
    _topics(bootstrap, [f"{tag}alerts"], config={"message.timestamp.type": "LogAppendTime"})
    log = tmp / f"{tag}worker.log"
    process = _spawn_worker(env, tag, f"{tag}group", tmp, log, tree=tree)
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
