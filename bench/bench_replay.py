"""`holdwatch replay --speed max` throughput on a real local broker, side by side in one run (issue 15).

    .venv/bin/python bench/bench_replay.py [--loads 5000] [--rounds 3] [--before TREE]

Simulates one log (`holdwatch simulate --loads N`, ~9.3 records per load) and a gzipped copy,
then, round after round, each pass in its own process, into the default input topics
(6 partitions; every pass appends to them):
  bare         a bare kafka-python producer sending the log's records (read into memory first,
               with the replay's two headers), with the replay's producer settings before issue 15
               (linger 20 ms, kafka-python's own pure-Python CRC-32C): the issue's baseline
  bare tuned   the same with the replay's settings now (linger 100 ms, a compiled CRC-32C)
  before       `holdwatch replay --speed max --no-carm-barrier` from TREE (PYTHONPATH=TREE),
               plain and .gz
  after        the same from this checkout
A replay's records/s is its own summary's (`replay done: N records in S s`: from its start to
the last acknowledgement, the reader process's start included); `wall s` is the whole command.
Medians of the rounds; ratios between medians. Starts its own broker unless
HOLDWATCH_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INPUTS = ("emanifest.events", "rns.events", "carm.readiness")
DONE = re.compile(r"replay done: ([\d,]+) records in ([\d,.]+) s")


def _bootstrap(tmp: Path) -> tuple[str, Any]:
    if os.environ.get("HOLDWATCH_KAFKA_BOOTSTRAP"):
        return os.environ["HOLDWATCH_KAFKA_BOOTSTRAP"], None
    from devtools.broker import LocalBroker
    from streams.settings import Settings

    broker = LocalBroker(tmp / "kafka", home=Settings().home)
    broker.start()
    return broker.bootstrap, broker


def _simulate(loads: int, log: Path) -> None:
    cmd = [sys.executable, "-m", "streams.cli.main", "simulate", "--loads", str(loads), "--seed", "3"]
    subprocess.run([*cmd, "--out", str(log)], cwd=ROOT, check=True, capture_output=True)
    with log.open("rb") as src, gzip.open(log.with_suffix(".jsonl.gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)


def _replay(tree: Path, log: Path, env: dict[str, str]) -> tuple[float, float]:
    """(records/s from the replay's summary, wall seconds of the command) for one replay of `log`."""
    cmd = [sys.executable, "-m", "streams.cli.main", "replay", "--no-carm-barrier", str(log)]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    found = DONE.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"replay from {tree} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    records, seconds = (float(group.replace(",", "")) for group in found.groups())
    return records / seconds, wall


def _bare(log: Path, env: dict[str, str], settings: str) -> tuple[float, float]:
    cmd = [sys.executable, __file__, "--bare", str(log), "--settings", settings]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["rate"]), time.perf_counter() - started


def bare_producer(log: Path, bootstrap: str, settings: str) -> dict[str, float]:
    """The baseline pass (in its own process): the log's records, sent flat out, then flushed."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from schemas.envelope import log_ts_headers
    from streams.replay.plan import value_bytes
    from streams.replay.publish import PRODUCER_TUNING, producer_timeouts, use_compiled_crc32c

    records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for line in log.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("topic") in INPUTS:
            key = None if row.get("key") is None else str(row["key"]).encode()
            headers = [("hw-seq", str(len(records) + 1).encode()), *log_ts_headers(row.get("timestamp") or 0)]
            records.append((row["topic"], key, value_bytes(row.get("value")), headers))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    for name in INPUTS:  # as replay creates them (6 partitions) if no pass has yet
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, 6, 1)])
    admin.close()
    tuning = {**PRODUCER_TUNING, "linger_ms": 20} if settings == "before" else PRODUCER_TUNING
    if settings == "now" and not use_compiled_crc32c():
        raise RuntimeError("no compiled CRC-32C available")
    producer = KafkaProducer(bootstrap_servers=bootstrap, **tuning, **producer_timeouts(300))
    for name in INPUTS:
        producer.partitions_for(name)
    started = time.perf_counter()
    for topic, key, value, headers in records:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return {"records": len(records), "rate": len(records) / seconds}


Runs = dict[str, list[tuple[float, float]]]


def _passes(log: Path, trees: dict[str, Path], env: dict[str, str]) -> list[tuple[str, Any]]:
    """(name, thunk) of every pass of one round."""
    logs = {"plain": log, "gz": log.with_suffix(".jsonl.gz")}
    found: list[tuple[str, Any]] = [
        (name, lambda settings=settings: _bare(log, env, settings))
        for name, settings in (("bare", "before"), ("bare tuned", "now"))
    ]
    for label, tree in trees.items():
        for kind, path in logs.items():
            found.append((f"{label} {kind}", lambda tree=tree, path=path: _replay(tree, path, env)))
    return found


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="holdwatch-bench-replay-"))
    log = tmp / "replay.jsonl"
    _simulate(args.loads, log)
    bootstrap, broker = _bootstrap(tmp)
    env = {**os.environ, "HOLDWATCH_KAFKA_BOOTSTRAP": bootstrap}
    trees = {"before": args.before.resolve(), "after": ROOT} if args.before else {"after": ROOT}
    passes = _passes(log, trees, env)
    runs: Runs = {name: [] for name, _ in passes}
    try:
        for number in range(1, args.rounds + 1):
            # every other round in reverse order: a burst of load on the machine hits no pass more
            for name, measure in passes if number % 2 else reversed(passes):
                runs[name].append(measure())
            shown = ", ".join(f"{name} {got[-1][0]:,.0f}" for name, got in runs.items())
            print(f"round {number}: records/s {shown}", file=sys.stderr, flush=True)
    finally:
        if broker is not None:
            broker.stop()
    _report(runs, log, args)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _ratios(median: dict[str, float], best: dict[str, float], name: str, to: str) -> str:
    return f"{median[name] / median[to]:.2f}/{best[name] / best[to]:.2f}x"


def _report(runs: Runs, log: Path, args: argparse.Namespace) -> None:
    """Median and best of the rounds (the machines are shared: the best is the least disturbed),
    and the median of each round's own after/before ratio (passes of one round run minutes apart
    at most, so they share most of the machine's load)."""
    lines = sum(1 for _ in log.open("rb"))
    print(f"\n{lines:,}-line log ({args.loads} loads), {args.rounds} rounds, records/s:")
    heads = ("median", 9), ("best", 9), ("wall s", 8), ("vs bare", 15), ("vs before", 15), ("per round", 11)
    print(f"{'pass':<14}" + "".join(f"{head:>{width}}" for head, width in heads))
    median = {name: statistics.median(r for r, _ in got) for name, got in runs.items()}
    best = {name: max(r for r, _ in got) for name, got in runs.items()}
    for name, got in runs.items():
        wall = statistics.median(w for _, w in got)
        bare = _ratios(median, best, name, "bare")
        before = name.replace("after", "before")
        versus, paired = "", ""
        if before != name and before in runs:
            versus = _ratios(median, best, name, before)
            rounds = [new / old for (new, _), (old, _) in zip(got, runs[before], strict=True)]
            paired = f"{statistics.median(rounds):.2f}x"
        print(
            f"{name:<14}{median[name]:>9,.0f}{best[name]:>9,.0f}{wall:>8.1f}{bare:>15}{versus:>15}{paired:>11}"
        )
    print("ratios: median/best; per round: the median of the rounds' own after/before")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, metavar="TREE", help="also replay with the code in TREE")
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", choices=["before", "now"], default="before", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare is not None:
        print(json.dumps(bare_producer(args.bare, os.environ["HOLDWATCH_KAFKA_BOOTSTRAP"], args.settings)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
