"""Back-test throughput and memory on a simulated log of >= 1M events (issue 4 benchmark).

Measured side by side in one run, each pass in its own child process (fair peak RSS):
  json      plain json.loads of every line (the floor: reading JSON at all)
  decode    the back-test's read + decode only (event-log parse + validated models)
  backtest  the whole back-test (read, decode, engine, alert output)
Also: memory per tracked shipment (tracemalloc over the runner's state, on a sample).

    .venv/bin/python bench/bench_backtest.py [--loads 110000] [--seed 1] [--log PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pass_json(log: Path) -> dict[str, float]:
    from schemas.eventlog import _open_text

    n = 0
    start = time.perf_counter()
    with _open_text(log, "r") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                json.loads(line)
            n += 1
    return {"records": n, "seconds": time.perf_counter() - start}


def _kinds() -> dict[str, object]:
    from schemas.decode import topic_kinds
    from streams.settings import Settings

    s = Settings()
    return topic_kinds(s.topic_emanifest, s.topic_rns, s.topic_carm)  # type: ignore[return-value]


def _pass_decode(log: Path) -> dict[str, float]:
    from schemas.decode import decode_parsed
    from schemas.eventlog import LogRecord, read_log

    kinds = _kinds()
    n = 0
    start = time.perf_counter()
    for item in read_log(log):
        n += 1
        if isinstance(item, LogRecord):
            kind = kinds.get(item.topic)
            if kind is not None:
                decode_parsed(kind, item.key, item.value)  # type: ignore[arg-type]
    return {"records": n, "seconds": time.perf_counter() - start}


def _pass_backtest(log: Path) -> dict[str, float]:
    from streams.backtest import run_backtest
    from streams.settings import Settings

    start = time.perf_counter()
    report = run_backtest([log], io.StringIO(), Settings().thresholds(), _kinds())  # type: ignore[arg-type]
    return {
        "records": report.records,
        "seconds": time.perf_counter() - start,
        "shipments": report.shipments,
        "alert_events": sum(report.alert_actions.values()),
    }


def _pass_memory(log: Path) -> dict[str, float]:
    """Bytes per shipment held by the runner (states, CARM records, deadline heap)."""
    from schemas.eventlog import LogRecord, read_log
    from streams.backtest import Backtest
    from streams.settings import Settings

    tracemalloc.start()
    backtest = Backtest(Settings().thresholds(), _kinds(), lambda alert: None)  # type: ignore[arg-type]
    before = tracemalloc.get_traced_memory()[0]
    for item in read_log(log):
        if isinstance(item, LogRecord):
            backtest.feed_record(item.topic, item.key, item.value, item.timestamp)
    after = tracemalloc.get_traced_memory()[0]
    shipments = len(backtest.runner.shipments)
    open_ = sum(1 for s in backtest.runner.shipments.values() if s.closed is None)
    return {"bytes_per_shipment": (after - before) / max(shipments, 1), "shipments": shipments, "open": open_}


PASSES = {"json": _pass_json, "decode": _pass_decode, "backtest": _pass_backtest, "memory": _pass_memory}


def _child(name: str, log: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--log", str(log)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=110_000, help="loads to simulate (~9.3 events each)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", type=Path, help="use this log instead of simulating")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = PASSES[args.child](args.log)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    log = args.log or Path("/tmp") / f"holdwatch-bench-{args.loads}-{args.seed}.jsonl"
    if not log.exists():
        print(f"simulating {args.loads:,} loads into {log} ...", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "streams.cli.main",
                "simulate",
                "--loads",
                str(args.loads),
                "--seed",
                str(args.seed),
                "--out",
                str(log),
            ],
            check=True,
            cwd=ROOT,
        )
    results = {name: _child(name, log) for name in ("json", "decode", "backtest")}
    sample = Path("/tmp") / f"holdwatch-bench-mem-{args.seed}.jsonl"
    if not sample.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "streams.cli.main",
                "simulate",
                "--loads",
                "10000",
                "--seed",
                str(args.seed),
                "--out",
                str(sample),
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
    memory = _child("memory", sample)
    base = results["json"]["records"] / results["json"]["seconds"]
    print(f"\nlog: {log} ({results['json']['records']:,.0f} records)")
    print(f"{'pass':<10}{'records/s':>12}{'time vs json':>14}{'peak RSS MiB':>14}")
    for name, r in results.items():
        rate = r["records"] / r["seconds"]
        print(f"{name:<10}{rate:>12,.0f}{base / rate:>13.2f}x{r['peak_rss_mib']:>14,.0f}")
    bt = results["backtest"]
    print(f"backtest: {bt['shipments']:,.0f} shipments, {bt['alert_events']:,.0f} alert events")
    print(
        f"memory per tracked shipment: {memory['bytes_per_shipment']:,.0f} B "
        f"(tracemalloc, {memory['shipments']:,.0f} shipments of which {memory['open']:,.0f} open at the end)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
