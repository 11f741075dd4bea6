"""State at national scale (issue 11 item 7): does retention keep the state flat over a month?

Two parts, each on simulated traffic (devtools/simulate.py, one deterministic run of
DAYS x LOADS-PER-DAY loads spread over DAYS x 24 h, streamed: nothing is held in one big file).

Back-test (default). The simulator writes into a FIFO and the back-test reads it as an event
log (`schemas.eventlog.read_log` -> `streams.backtest.Backtest` -> `EventTimeRunner`, exactly
what `holdwatch backtest` does), so the simulator runs on the other core and its memory is not
in the measured process. Each pass runs in its own child process:
  on    retention as configured (HOLDWATCH_RETENTION_CLOSED_H / _UNKNOWN_H / EXPIRE_AFTER_ETA_H)
  off   retention effectively off (all three set to ten years), on the same traffic, for the
        first --off-days only (it grows without bound, which is the point)
At each mark (event time = simulation start + N days, measured just before the first record
at or after it) a row reports:
  tracked    states in the runner (len(runner.shipments)): open loads, closed loads still in
             their retention window, CCNs never reported
  forgotten  states removed by retention so far (runner.forgotten)
  table MB   what the `shipments` changelog holds after compaction: key + value bytes of the
             latest value of every live key, as the worker writes them (CCN -> "<partition>|"
             + state_to_bytes); forgotten keys are tombstoned, and compaction drops them
  RSS MiB    the process's VmRSS (after gc.collect())
  blocks k   sys.getallocatedblocks() / 1000: memory blocks the Python allocator holds for live
             objects, whole process (flat blocks with a growing RSS = fragmentation, not a leak)
  B/load RSS (RSS - RSS after the CARM snapshots) / tracked: what a tracked load costs the
             process, allocator overhead included
  B/load obj deep size of the runner's per-load structures (states, deadline and removal
             heaps, their indexes, the importer index: sys.getsizeof over gc.get_referents,
             shared objects counted once) / tracked; comparable to docs/benchmarks.md's
             tracemalloc figure (2.2 KB)
  deadlines  pending deadlines (runner.pending_deadlines()); heap = entries in the deadline
             and removal heaps, stale ones included (must stay bounded too)

Worker (--worker). A real `holdwatch worker --clock event` (RocksDB tables by default) on a
private local broker (or HOLDWATCH_KAFKA_BOOTSTRAP), fed by `holdwatch replay --speed max`, one
replay per chunk of days (its final tick moves every partition's clock to the chunk's last event
time). After each chunk it waits until the worker's consumer group has committed the end of both
input topics (the worker commits only what it has applied and written to the changelog), then
reports the worker's RSS (/proc/PID/status), its `holdwatch_shipments_in_state` gauge, the state
directory's size (of it RocksDB's write-ahead logs: the writes still in memtables), and the
changelog `<app_id>-shipments-changelog` read from the beginning: records and bytes as appended,
and after folding tombstones (the keys that survive compaction and their bytes). An in-process
back-test over the same chunks gives the expected count and bytes, so the table also checks
"replay = back-test, retention included" (on traffic without the simulator's mid-run CARM fixes
unless --worker-midway-fixes: see that option). Exit code 1 if that check fails.

Output: Markdown tables on stdout; progress on stderr.

    .venv/bin/python bench/bench_state.py                       # a month at 20k loads/day
    .venv/bin/python bench/bench_state.py --quick               # 6 days at 2k/day (a minute)
    .venv/bin/python bench/bench_state.py --worker              # 10 days at 2k/day, one worker
    .venv/bin/python bench/bench_state.py --worker --quick      # 4 days at 500/day
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOLDWATCH = [sys.executable, "-m", "streams.cli.main"]
START = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
"""Simulation start (the simulator's default): CARM snapshots here, loads from an hour later."""
OFF = timedelta(days=3650)
"""Retention 'off': ten years, far beyond any run."""
PREFIX_BYTES = 2
"""The worker prefixes each table value with "<partition>|" (2 bytes for up to 10 partitions)."""
DAY_MS = 86_400_000


def _say(message: str) -> None:
    print(f"bench_state: {message}", file=sys.stderr, flush=True)


def _kinds(topics: dict[str, str] | None = None) -> dict[str, Any]:
    from schemas.decode import topic_kinds
    from streams.settings import Settings

    s = Settings()
    t = topics or {"emanifest": s.topic_emanifest, "rns": s.topic_rns, "carm": s.topic_carm}
    return dict(topic_kinds(t["emanifest"], t["rns"], t["carm"]))


def _proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM in bytes from /proc (no tracemalloc: it would slow the run 3x)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def _deep_size(roots: Iterable[object]) -> int:
    """Bytes of every object reachable from `roots`, each counted once; types are not followed."""
    seen: set[int] = set()
    total = 0
    stack = list(roots)
    getsizeof, referents = sys.getsizeof, gc.get_referents
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in seen or isinstance(obj, type):
            continue
        seen.add(key)
        total += getsizeof(obj)
        stack.extend(referents(obj))
    return total


def _marks(text: str) -> list[float]:
    return sorted({float(x) for x in text.split(",") if x.strip()})


# --- the back-test part ---------------------------------------------------------------------


def _simulator(days: float, loads_per_day: int, seed: int, out: Path) -> subprocess.Popen[bytes]:
    """`holdwatch simulate` for the whole run, writing into `out` (a FIFO)."""
    return subprocess.Popen(
        [
            *HOLDWATCH,
            "simulate",
            "--loads",
            str(round(days * loads_per_day)),
            "--seed",
            str(seed),
            "--start",
            START.isoformat(),
            "--hours",
            str(days * 24),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _measure(backtest: Any, day: float, records: int, base_rss: int, seconds: float) -> dict[str, Any]:
    from alerting.engine.state import state_to_bytes

    runner = backtest.runner
    states = runner.shipments
    tracked = len(states)
    gc.collect()
    rss = _proc_status()["VmRSS"]
    table = sum(len(ccn) + PREFIX_BYTES + len(state_to_bytes(s)) for ccn, s in states.items())
    # The runner's per-load structures; CARM records, the readiness cache and the statistics are not per load.
    deep = _deep_size(
        [
            states,
            runner._heap,
            runner._scheduled,
            runner._removal_heap,
            runner._removals,
            runner._open_by_importer,
        ]
    )
    open_ = sum(1 for s in states.values() if s.known and s.closed is None)
    unknown = sum(1 for s in states.values() if not s.known)
    return {
        "day": day,
        "clock": runner.clock.isoformat() if runner.clock else None,
        "records": records,
        "seconds": round(seconds, 1),
        "tracked": tracked,
        "open": open_,
        "closed": tracked - open_ - unknown,
        "unknown": unknown,
        "forgotten": runner.forgotten,
        "table_bytes": table,
        "rss": rss,
        "blocks": sys.getallocatedblocks(),
        "stats_floats": len(backtest.report.lead_minutes),
        "rss_per_load": (rss - base_rss) / max(tracked, 1),
        "deep_per_load": deep / max(tracked, 1),
        "deadlines": runner.pending_deadlines(),
        "heap": len(runner._heap) + len(runner._removal_heap),
        "alert_events": sum(backtest.report.alert_actions.values()),
    }


def _child_month(
    retention: bool, days: float, sim_days: float, loads_per_day: int, seed: int, marks: list[float]
) -> int:
    """One pass (its own process): stream the simulation through the back-test, a JSON row per mark."""
    from schemas.eventlog import BadLine, read_log
    from streams.backtest import Backtest
    from streams.settings import Settings

    thresholds = Settings().thresholds()
    if not retention:
        thresholds = replace(thresholds, retention_closed=OFF, retention_unknown=OFF, expire_after_eta=OFF)
    carm_topic = Settings().topic_carm
    backtest = Backtest(thresholds, _kinds(), lambda alert: None)
    start_ms = int(START.timestamp() * 1000)
    pending = [m for m in marks if m <= days]
    label = "on" if retention else "off"
    with tempfile.TemporaryDirectory(prefix="hw-bench-state-") as tmp:
        fifo = Path(tmp) / "month.jsonl"
        os.mkfifo(fifo)
        sim = _simulator(sim_days, loads_per_day, seed, fifo)
        records, base_rss, measuring = 0, 0, 0.0
        started = time.perf_counter()
        next_progress = started + 10
        try:
            items = read_log(fifo)
            for item in items:
                if isinstance(item, BadLine):
                    records += 1
                    backtest.report.dead_letters[item.reason] += 1
                    continue
                ts = item.timestamp or 0
                if not base_rss and item.topic != carm_topic:
                    gc.collect()
                    base_rss = _proc_status()["VmRSS"]  # CARM snapshots in, no load yet
                while pending and ts >= start_ms + pending[0] * DAY_MS:
                    t0 = time.perf_counter()
                    elapsed = t0 - started - measuring
                    row = _measure(backtest, pending.pop(0), records, base_rss, elapsed)
                    print(json.dumps(row), flush=True)
                    measuring += time.perf_counter() - t0
                    _say(
                        f"[retention {label}] day {row['day']:g}: {row['tracked']:,} tracked, "
                        f"{row['table_bytes'] / 1e6:,.1f} MB table, RSS {row['rss'] / 2**20:,.0f} MiB"
                    )
                if not pending:
                    break
                backtest.feed_record(item.topic, item.key, item.value, item.timestamp)
                records += 1
                if records % 8192 == 0 and (now := time.perf_counter()) >= next_progress:
                    next_progress = now + 10
                    day = (ts - start_ms) / DAY_MS
                    rate = records / (now - started - measuring)
                    _say(
                        f"[retention {label}] {records:,} records, event day {day:.1f}, "
                        f"{len(backtest.runner.shipments):,} tracked, {rate:,.0f} records/s"
                    )
            getattr(items, "close", lambda: None)()  # closes the FIFO: the simulator stops
        finally:
            if sim.poll() is None:
                sim.terminate()
            sim.wait(timeout=30)
    if pending:
        _say(f"[retention {label}] the log ended before day(s) {pending}")
    return 0


def _run_child(args: argparse.Namespace, retention: bool, days: float) -> list[dict[str, Any]]:
    command = [
        sys.executable,
        __file__,
        "--child",
        "on" if retention else "off",
        "--days",
        str(args.days),
        "--child-days",
        str(days),
        "--loads-per-day",
        str(args.loads_per_day),
        "--seed",
        str(args.seed),
        "--marks",
        ",".join(f"{m:g}" for m in args.marks),
    ]
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _backtest_report(args: argparse.Namespace) -> int:
    from streams.settings import Settings

    th = Settings().thresholds()
    total = round(args.days * args.loads_per_day)
    _say(
        f"retention on: {total:,} loads over {args.days:g} days ({args.loads_per_day:,}/day), "
        f"marks {args.marks}"
    )
    t0 = time.perf_counter()
    on = _run_child(args, True, args.days)
    on_s = time.perf_counter() - t0
    off: list[dict[str, Any]] = []
    if args.off_days > 0:
        _say(f"retention off: the same traffic, first {args.off_days:g} days")
        off = _run_child(args, False, min(args.off_days, args.days))
    print(
        f"\n### Back-test: {total:,} loads, {args.days:g} days at {args.loads_per_day:,} loads/day "
        f"(seed {args.seed}); retention closed {th.retention_closed / timedelta(hours=1):g} h, "
        f"unknown {th.retention_unknown / timedelta(hours=1):g} h, expire after ETA "
        f"{th.expire_after_eta / timedelta(hours=1):g} h\n"
    )
    _table(on)
    if on:
        last = on[-1]
        rate = last["records"] / last["seconds"] if last["seconds"] else 0.0
        print(
            f"\n{last['records']:,} records to day {last['day']:g} in {on_s:,.0f} s wall "
            f"({rate:,.0f} records/s excluding measurements; the simulator on the other core)."
        )
    if off:
        print(f"\n### Retention off (ten years), the same traffic, first {args.off_days:g} days\n")
        _table(off)
        by_day = {r["day"]: r for r in on}
        print("\n| day | tracked off/on | table bytes off/on | RSS over baseline off/on |")
        print("|---:|---:|---:|---:|")
        for r in off:
            o = by_day.get(r["day"])
            if o is None:
                continue
            rss_ratio = (r["rss_per_load"] * r["tracked"]) / max(o["rss_per_load"] * o["tracked"], 1)
            print(
                f"| {r['day']:g} | {r['tracked'] / max(o['tracked'], 1):.2f}× | "
                f"{r['table_bytes'] / max(o['table_bytes'], 1):.2f}× | {rss_ratio:.2f}× |"
            )
    return 0


def _table(rows: list[dict[str, Any]]) -> None:
    print(
        "| day | tracked (open / closed / unknown) | forgotten | table MB | B/state | RSS MiB "
        "| B/load RSS | B/load obj | blocks k | deadlines | heap entries |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['day']:g} | {r['tracked']:,} ({r['open']:,} / {r['closed']:,} / {r['unknown']:,}) "
            f"| {r['forgotten']:,} | {r['table_bytes'] / 1e6:,.1f} "
            f"| {r['table_bytes'] / max(r['tracked'], 1):,.0f} | {_mib(r['rss'])} "
            f"| {r['rss_per_load']:,.0f} | {r['deep_per_load']:,.0f} | {r['blocks'] / 1000:,.0f} "
            f"| {r['deadlines']:,} | {r['heap']:,} |"
        )


# --- the worker part --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bootstrap(tmp: Path) -> tuple[str, Any]:
    if os.environ.get("HOLDWATCH_KAFKA_BOOTSTRAP"):
        return os.environ["HOLDWATCH_KAFKA_BOOTSTRAP"], None
    from devtools.broker import LocalBroker
    from streams.settings import Settings

    _say("starting a private local broker ...")
    broker = LocalBroker(tmp / "kafka", home=Settings().home)
    broker.start()
    return broker.bootstrap, broker


def _write_chunks(
    days: float,
    loads_per_day: int,
    seed: int,
    marks: list[float],
    topics: dict[str, str],
    tmp: Path,
    *,
    midway_fixes: bool,
) -> list[tuple[float, Path]]:
    """One simulation, cut at the marks (event time) into one log per chunk."""
    from devtools.simulate import SimulationConfig, simulate
    from schemas.eventlog import LogWriter

    config = SimulationConfig(
        loads=round(days * loads_per_day),
        seed=seed,
        start=START,
        hours=days * 24,
        midway_fixes=midway_fixes,
        topic_emanifest=topics["emanifest"],
        topic_rns=topics["rns"],
        topic_carm=topics["carm"],
    )
    start_ms = int(START.timestamp() * 1000)
    ends = [m for m in marks if m < days] + [float("inf")]
    labels = [m for m in marks if m < days] + [days]
    chunks: list[tuple[float, Path]] = []
    index = 0
    writer = LogWriter(tmp / "chunk-0.jsonl")
    chunks.append((labels[0], tmp / "chunk-0.jsonl"))
    for record in simulate(config):
        while record.timestamp_ms >= start_ms + ends[index] * DAY_MS:
            writer.close()
            index += 1
            path = tmp / f"chunk-{index}.jsonl"
            writer = LogWriter(path)
            chunks.append((labels[index], path))
        if record.raw is not None:
            writer.write_raw_line(record.raw)
        else:
            writer.write(record.topic, record.key, record.value, record.timestamp_ms)
    writer.close()
    return chunks


class _Pipeline:
    """A worker and its namespace of topics (as the integration harness does)."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.bootstrap = bootstrap
        self.app_id = f"hw-state-{tag}"
        self.topics = {name: f"{name}-{tag}" for name in ("emanifest", "rns", "carm", "alerts", "deadletter")}
        self.metrics_port = _free_port()
        self.env = {
            **os.environ,
            "HOLDWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "HOLDWATCH_APP_ID": self.app_id,
            "HOLDWATCH_HOME": str(tmp / "home"),
            "HOLDWATCH_METRICS_PORT": str(self.metrics_port),
            **{f"HOLDWATCH_TOPIC_{name.upper()}": topic for name, topic in self.topics.items()},
        }
        self.data_dir = tmp / "state"
        self.log = tmp / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-shipments-changelog"

    def run(self, *args: str, timeout: float = 1800) -> None:
        with (self.tmp / "commands.log").open("ab") as log:
            subprocess.run(
                [*HOLDWATCH, *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
                timeout=timeout,
                check=True,
            )

    def start(self, store: str, timeout: float = 180) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                *HOLDWATCH,
                "worker",
                "--clock",
                "event",
                "--no-notifier",
                "--store",
                store,
                "--data-dir",
                str(self.data_dir),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while b"Worker]: Ready" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.5)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics, label sets summed per family."""
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                family = name.split("{", 1)[0]
                out[family] = out.get(family, 0.0) + float(value)
        return out

    def wait_caught_up(self, timeout: float = 1800) -> float:
        """Until the group committed the end of both input topics; returns the seconds waited."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        started = time.monotonic()
        try:
            tps = [
                TopicPartition(topic, p)
                for topic in (self.topics["emanifest"], self.topics["rns"])
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            end = consumer.end_offsets(tps)
            while time.monotonic() - started < timeout:
                offsets = admin.list_group_offsets({self.app_id: tps}).get(self.app_id, {})
                committed = {tp: int(m.offset) for tp, m in offsets.items() if m.offset is not None}
                behind = sum(max(0, end[tp] - max(committed.get(tp, 0), 0)) for tp in tps)
                if behind <= 0:
                    return time.monotonic() - started
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError("worker exited:\n" + self.log.read_text(errors="replace")[-3000:])
                time.sleep(1.0)
            raise RuntimeError(f"worker still {behind:,} records behind after {timeout:g} s")
        finally:
            consumer.close()
            admin.close()

    def read_changelog(self) -> dict[str, float]:
        """The changelog as appended, and folded: the keys that survive compaction and their bytes."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            partitions = consumer.partitions_for_topic(self.changelog) or set()
            tps = [TopicPartition(self.changelog, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            live: dict[bytes, int] = {}
            records = raw_bytes = tombstones = 0
            while any(consumer.position(tp) < end[tp] for tp in tps):
                for batch in consumer.poll(timeout_ms=1000).values():
                    for r in batch:
                        records += 1
                        raw_bytes += len(r.key or b"") + len(r.value or b"")
                        if r.value is None:
                            tombstones += 1
                            live.pop(r.key, None)
                        else:
                            live[r.key] = len(r.key) + len(r.value)
            return {
                "records": records,
                "raw_bytes": raw_bytes,
                "tombstones": tombstones,
                "live_keys": len(live),
                "live_bytes": sum(live.values()),
            }
        finally:
            consumer.close()


def _dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def _reference(backtest: Any, path: Path) -> tuple[int, int]:
    """The back-test over the same chunk, ended like the replay's final tick: (tracked, table bytes)."""
    from alerting.engine.state import state_to_bytes
    from schemas.eventlog import LogRecord, read_log

    for item in read_log(path):
        if isinstance(item, LogRecord):
            backtest.feed_record(item.topic, item.key, item.value, item.timestamp)
    backtest.runner.finish()
    states = backtest.runner.shipments
    return len(states), sum(len(ccn) + PREFIX_BYTES + len(state_to_bytes(s)) for ccn, s in states.items())


def _worker_report(args: argparse.Namespace) -> int:
    from streams.backtest import Backtest
    from streams.settings import Settings

    days, per_day = args.worker_days, args.worker_loads_per_day
    marks = [m for m in args.worker_marks if m <= days]
    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-state-"))
    broker = None
    rows: list[dict[str, Any]] = []
    pipeline: _Pipeline | None = None
    try:
        bootstrap, broker = _bootstrap(tmp)
        pipeline = _Pipeline(bootstrap, tmp)
        _say(f"simulating {round(days * per_day):,} loads over {days:g} days into chunks at {marks} ...")
        chunks = _write_chunks(
            days, per_day, args.seed, marks, pipeline.topics, tmp, midway_fixes=args.worker_midway_fixes
        )
        pipeline.run("topics", "create")
        _say(f"starting the worker (app {pipeline.app_id}, log {pipeline.log}) ...")
        pipeline.start(args.worker_store)
        reference = Backtest(Settings().thresholds(), _kinds(pipeline.topics), lambda alert: None)
        for day, path in chunks:
            t0 = time.perf_counter()
            pipeline.run("replay", "--speed", "max", "--barrier-timeout", "300", str(path))
            replayed = time.perf_counter() - t0
            waited = pipeline.wait_caught_up()
            expected, expected_bytes = _reference(reference, path)
            time.sleep(6.0)  # the worker recomputes its gauges every 5 s
            metrics = pipeline.metrics()
            changelog = pipeline.read_changelog()
            assert pipeline.process is not None
            row = {
                "day": day,
                "records": sum(1 for _ in path.open("rb")),
                "replay_s": replayed,
                "catch_up_s": waited,
                "rss": _proc_status(pipeline.process.pid)["VmRSS"],
                "gauge": metrics.get("holdwatch_shipments_in_state", float("nan")),
                "deadlines": metrics.get("holdwatch_pending_deadlines", float("nan")),
                "state_dir": _dir_bytes(pipeline.data_dir),
                "wal": _dir_bytes(pipeline.data_dir, "*.log"),
                "expected": expected,
                "expected_bytes": expected_bytes,
                "forgotten": reference.runner.forgotten,
                **{f"changelog_{k}": v for k, v in changelog.items()},
            }
            rows.append(row)
            _say(
                f"day {day:g}: worker {row['gauge']:,.0f} states (back-test {expected:,}), changelog "
                f"{changelog['live_keys']:,} live keys of {changelog['records']:,} records, "
                f"RSS {_mib(row['rss'])} MiB"
            )
    finally:
        if pipeline is not None:
            pipeline.stop()
        if broker is not None:
            broker.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _say(f"kept {tmp}")
    print(
        f"\n### One worker (`--clock event`, `--store {args.worker_store}`, 6 partitions): "
        f"{round(days * per_day):,} loads, "
        f"{days:g} days at {per_day:,} loads/day (seed {args.seed}"
        f"{'' if args.worker_midway_fixes else ', no mid-run CARM fixes'}), "
        "one `holdwatch replay --speed max` per chunk\n"
    )
    print(
        "| day | records in chunk | replay s | catch-up s | worker RSS MiB | shipments gauge "
        "| back-test tracked | changelog records (tombstones) | raw MB | live keys | live bytes "
        "| back-test table bytes | state dir MB (of it WAL) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['day']:g} | {r['records']:,} | {r['replay_s']:.0f} | {r['catch_up_s']:.0f} "
            f"| {_mib(r['rss'])} | {r['gauge']:,.0f} | {r['expected']:,} "
            f"| {r['changelog_records']:,} ({r['changelog_tombstones']:,}) "
            f"| {r['changelog_raw_bytes'] / 1e6:,.1f} | {r['changelog_live_keys']:,} "
            f"| {r['changelog_live_bytes']:,} | {r['expected_bytes']:,} "
            f"| {r['state_dir'] / 1e6:,.1f} ({r['wal'] / 1e6:,.1f}) |"
        )
    same = all(
        r["gauge"] == r["expected"] == r["changelog_live_keys"]
        and r["changelog_live_bytes"] == r["expected_bytes"]
        for r in rows
    )
    print(
        "\nworker states = changelog live keys = back-test states, and live bytes = back-test table bytes, "
        f"at every mark: {'yes' if same else 'NO (see the rows)'}."
    )
    return 0 if same else 1


# --- command line ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=30.0, help="back-test: days of traffic (default 30)")
    parser.add_argument(
        "--loads-per-day", type=int, default=20_000, help="back-test: loads reported per day (default 20000)"
    )
    parser.add_argument(
        "--marks", type=_marks, default=None, help="back-test: days to report at (default 5,10,20,30)"
    )
    parser.add_argument(
        "--off-days",
        type=float,
        default=None,
        help="back-test: days of the retention-off pass (default 10; 0 skips it)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--worker", action="store_true", help="run the worker part instead (real broker, worker, replay)"
    )
    parser.add_argument(
        "--worker-days", type=float, default=None, help="worker: days of traffic (default 10)"
    )
    parser.add_argument(
        "--worker-loads-per-day", type=int, default=None, help="worker: loads per day (default 2000)"
    )
    parser.add_argument(
        "--worker-marks", type=_marks, default=None, help="worker: chunk ends, in days (default 2,4,6,8,10)"
    )
    parser.add_argument(
        "--worker-midway-fixes",
        action="store_true",
        help="worker: keep the simulator's mid-run CARM fixes (off by default: a CARM record in the middle "
        "of a replay reaches the partitions ahead of the shipment events before it and moves their clock, "
        "so the worker's states would differ from the back-test's and the equality check would fail)",
    )
    parser.add_argument(
        "--worker-store",
        choices=("rocksdb", "memory"),
        default="rocksdb",
        help="worker: table store (default rocksdb, as in production; memory shows the worker without "
        "RocksDB's memtables)",
    )
    parser.add_argument("--keep", action="store_true", help="worker: keep the temp dir (logs, chunks, state)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run: back-test 6 days at 2000/day (marks 2,4,6, off for 4 days); "
        "worker 4 days at 500/day (marks 1,2,3,4). Explicit options still win",
    )
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--child-days", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child_month(
            args.child == "on", args.child_days, args.days, args.loads_per_day, args.seed, args.marks
        )
    quick = args.quick
    defaults: dict[str, Any] = {
        "marks": [2.0, 4.0, 6.0] if quick else [5.0, 10.0, 20.0, 30.0],
        "off_days": 4.0 if quick else 10.0,
        "worker_days": 4.0 if quick else 10.0,
        "worker_loads_per_day": 500 if quick else 2000,
        "worker_marks": [1.0, 2.0, 3.0, 4.0] if quick else [2.0, 4.0, 6.0, 8.0, 10.0],
    }
    if quick and args.days == 30.0:
        args.days = 6.0
    if quick and args.loads_per_day == 20_000:
        args.loads_per_day = 2000
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.marks = [m for m in args.marks if m <= args.days]
    print(f"Command: `{' '.join(sys.argv)}`")
    return _worker_report(args) if args.worker else _backtest_report(args)


if __name__ == "__main__":
    sys.exit(main())
