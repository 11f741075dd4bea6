"""Back-test throughput and memory on a simulated log of >= 1M events (issues 4 and 15).

Measured side by side in one run, each pass in its own child process (fair peak RSS):
  json      plain json.loads of every line (the floor: reading JSON at all)
  decode    the back-test's read + decode only (event-log parse + validated models)
  backtest  the whole back-test (read, decode, engine, alert output)
Also: memory per tracked shipment (tracemalloc over the runner's state, on a sample).

Then `holdwatch backtest` itself, end to end (issue 15): the code of another tree (`--base`, e.g.
a git worktree of the commit before) and this tree with `--jobs 1` and `--jobs 2`, alternated for
`--rounds` rounds: wall time, CPU time of all its processes, CPU time of the busiest job, peak
RSS of each job, and whether the alert files are byte-identical. `--control` adds the log's two
`--jobs 2` halves run as two independent `--jobs 1` processes at once: on a shared machine, what
two jobs could take at best at that moment.

    .venv/bin/python bench/bench_backtest.py [--loads 110000] [--seed 1] [--log PATH]
        [--base /work/base-bt] [--rounds 2] [--jobs 1,2] [--control] [--only-cli]
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


def _cli_pass(tree: Path, log: Path, jobs: int | None, out: Path) -> dict[str, Any]:
    """`holdwatch backtest` of `tree` (jobs None: a tree without --jobs) in a child process:
    its wall time, the CPU time of all its processes, and its peak RSS (per job if it says)."""
    summary = out.with_suffix(".summary.json")
    command = [sys.executable, "-m", "streams.cli.main", "backtest", str(log), "--out", str(out)]
    command += ["--summary-json", str(summary), "--quiet"] + ([] if jobs is None else ["--jobs", str(jobs)])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = json.loads(summary.read_text())
    jobs_rss = [j["peak_rss_mib"] for j in data.get("jobs", [])] or [after.ru_maxrss / 1024]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    job_cpu = max((j["cpu_seconds"] for j in data.get("jobs", [])), default=cpu)
    return {"wall": wall, "cpu": cpu, "job_cpu": job_cpu, "records": data["records"], "rss": jobs_rss}


def _cli_child(tree: Path, log: Path, jobs: int | None, out: Path) -> dict[str, Any]:
    """_cli_pass in a child of its own: its RUSAGE_CHILDREN are that run's alone."""
    command = [sys.executable, __file__, "--child", "cli", "--log", str(log), "--tree", str(tree)]
    command += ["--cli-out", str(out)] + ([] if jobs is None else ["--cli-jobs", str(jobs)])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _halves(log: Path, tmp: Path) -> list[Path]:
    """The log cut in two as `--jobs 2` routes it (CARM lines in both): the control run."""
    from schemas.decode import topic_kinds
    from streams import backtest
    from streams.settings import Settings

    s = Settings()
    job = backtest._Job(
        s.thresholds(),
        topic_kinds(s.topic_emanifest, s.topic_rns, s.topic_carm),
        lambda index, keyed: None,
        count=2,
    )
    paths = [tmp / f"half-{k}.jsonl" for k in (0, 1)]
    handles = [path.open("wb") for path in paths]
    for number, raw in enumerate(backtest._file_lines(log), start=1):
        if isinstance(raw, bytes):
            route = job.route(raw, number, backtest._locate(raw))
            for k in (0, 1):
                if route in (k, backtest.ALL):
                    handles[k].write(raw.rstrip(b"\n") + b"\n")
    for handle in handles:
        handle.close()
    return paths


def _control(tree: Path, halves: list[Path], tmp: Path) -> dict[str, Any]:
    """Both halves at once, each a `--jobs 1` run: what two jobs would take with nothing shared."""
    with ThreadPoolExecutor(2) as pool:
        start = time.perf_counter()
        runs = list(pool.map(lambda k: _cli_child(tree, halves[k], 1, tmp / f"half-{k}.out"), (0, 1)))
        wall = time.perf_counter() - start
    return {
        "wall": wall,
        "cpu": sum(r["cpu"] for r in runs),
        "job_cpu": max(r["job_cpu"] for r in runs),
        "records": sum(r["records"] for r in runs),
        "rss": [r["rss"][0] for r in runs],
    }


def _compare_cli(log: Path, base: Path | None, jobs: list[int], rounds: int, control: bool) -> None:
    """The end-to-end table: every variant once per round, alternated, same log."""
    variants: list[tuple[str, Path, int | None]] = [("before", base, None)] if base else []
    variants += [(f"--jobs {n}", ROOT, n) for n in jobs]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="hw-bench-bt-") as tmp:
        halves = _halves(log, Path(tmp)) if control else []
        outs = {name: Path(tmp) / f"alerts-{k}.jsonl" for k, (name, _, _) in enumerate(variants)}
        for r in range(1, rounds + 1):
            for name, tree, n in variants:
                print(f"round {r}: {name} ({tree}) ...", file=sys.stderr, flush=True)
                rows[name].append(_cli_child(tree, log, n, outs[name]))
            if control:
                print(f"round {r}: two halves at once ...", file=sys.stderr, flush=True)
                rows.setdefault("halves", []).append(_control(ROOT, halves, Path(tmp)))
        reference = outs[variants[0][0]]
        identical = {name: filecmp.cmp(reference, path, shallow=False) for name, path in outs.items()}
    if control:
        variants.append(("halves", ROOT, 1))
        identical["halves"] = False  # two files, not one
    _print_cli(variants, rows, identical, rounds)


def _print_cli(
    variants: list[tuple[str, Path, int | None]],
    rows: dict[str, list[dict[str, Any]]],
    identical: dict[str, bool],
    rounds: int,
) -> None:
    """The table, then the ratios: wall (what a user waits) and CPU of the busiest job (what the
    wall would be on two otherwise idle cores; this machine is shared)."""
    first = variants[0][0]
    print(f"\nholdwatch backtest, {rows[first][0]['records']:,} records, {rounds} rounds:")
    print(
        f"{'variant':<10}{'round':>6}{'wall s':>8}{'CPU s':>8}{'busiest job CPU s':>19}{'records/s':>11}"
        f"  peak RSS MiB per job  same file as {first}"
    )
    for name, _, _ in variants:
        for r, row in enumerate(rows[name]):
            rss = ", ".join(f"{m:,.0f}" for m in row["rss"])
            print(
                f"{name:<10}{r + 1:>6}{row['wall']:>8.1f}{row['cpu']:>8.1f}{row['job_cpu']:>19.1f}"
                f"{row['records'] / row['wall']:>11,.0f}  {rss:<21} {identical[name]}"
            )

    def ratio(a: str, b: str, field: str) -> str:
        values = [rows[a][r][field] / rows[b][r][field] for r in range(rounds)]
        each = ", ".join(f"{v:.2f}" for v in values)
        return f"{statistics.median(values):.2f}x (rounds: {each})"

    pairs = [(first, name) for name, _, _ in variants[1:]]
    named = [name for name, _, _ in variants if name.startswith("--jobs") or name == "halves"]
    pairs += [(named[0], name) for name in named[1:] if (named[0], name) not in pairs]
    for a, b in pairs:
        # The tree before has no job figures: compare all CPU there (interpreter start included).
        cpu = ("CPU", "cpu") if a == "before" else ("busiest job CPU", "job_cpu")
        print(f"{a} / {b}: wall {ratio(a, b, 'wall')}; {cpu[0]} {ratio(a, b, cpu[1])}")


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
    parser.add_argument("--base", type=Path, help="a tree with the code to compare against (a git worktree)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of the end-to-end runs")
    parser.add_argument("--jobs", default="1,2", help="--jobs values of this tree to run end to end")
    parser.add_argument("--only-cli", action="store_true", help="only the end-to-end table")
    parser.add_argument(
        "--control",
        action="store_true",
        help="also run the log's two --jobs 2 halves as two independent --jobs 1 runs at once "
        "(nothing shared: the ceiling of two jobs on this machine at that moment)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cli-jobs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cli-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "cli":
        print(json.dumps(_cli_pass(args.tree, args.log, args.cli_jobs, args.cli_out)))
        return 0
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
    jobs = [int(n) for n in args.jobs.split(",") if n]
    if args.only_cli:
        _compare_cli(log, args.base, jobs, args.rounds, args.control)
        return 0
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
    _compare_cli(log, args.base, jobs, args.rounds, args.control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
