"""Decode throughput: validated models vs plain `json.loads` of the same bytes, in one run.

    .venv/bin/python bench/bench_decode.py [--events N] [--repeat R] [--seed S] [--clock cpu|wall]
    .venv/bin/python bench/bench_decode.py --before TREE [--rounds K]   # side by side with TREE

Builds a realistic mix of raw Kafka values (mostly notices, RNS statuses and cargo reports,
a few CARM snapshots; about one timestamp in ten carries a non-UTC offset), then times, over
the same list, `json.loads` alone, `decode()` on the raw bytes, and `json.loads` followed by
`decode_parsed()` (the event-log path). The list is cut into chunks of 2,000 records and every
method runs on a chunk before the next chunk; each (method, chunk) keeps its best of R runs,
and a method's time is the sum over the chunks. So machine noise hits every method alike and
a burst of it spoils one chunk's run, not a whole pass. The clock is the thread's CPU time by
default (the machines are shared: time spent descheduled is not decode's); `--clock wall` too.
Ratios are to `json.loads`.

`--before TREE` runs this same script K times against the code in TREE (another checkout, e.g.
`git worktree add /tmp/base <commit>`) and K times against this checkout, alternating, each in
its own process, and prints both side by side (median of the K rounds).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
TREE_ENV = "HOLDWATCH_BENCH_TREE"
"""Which checkout's holdwatch to import (set by --before for its rounds; default: this one)."""
sys.path.insert(0, os.environ.get(TREE_ENV) or str(HERE))

from schemas.decode import _VALIDATE_JSON, Decoded, TopicKind, decode, decode_parsed  # noqa: E402

Record = tuple[TopicKind, bytes, bytes]

MIX: list[tuple[str, int]] = [
    ("notice", 38),
    ("rns_status", 25),
    ("cargo_reported", 14),
    ("eta_updated", 8),
    ("cargo_accepted", 5),
    ("cargo_rejected", 1),
    ("cancelled", 2),
    ("carm_snapshot", 7),
]
NOTICES = ["matched", "not_matched", "document_not_on_file", "reported", "arrived", "released", "held"]
START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def _stamp(rng: random.Random, at: datetime) -> str:
    if rng.random() < 0.1:
        local = at.astimezone(timezone(timedelta(hours=-5)))
        return local.isoformat(timespec="seconds")
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ccn(rng: random.Random) -> str:
    return f"{rng.choice(['8ABC', '9XYZ', 'PBRS', 'TQKL'])}{rng.randrange(10**9, 10**10)}"


def _bn(rng: random.Random) -> str:
    return f"{rng.randrange(10**8, 10**9)}RM{rng.randrange(1, 10):04d}"


def _event(rng: random.Random, event_type: str, n: int) -> tuple[TopicKind, str, dict[str, Any]]:
    at = START + timedelta(seconds=n * 7)
    base: dict[str, Any] = {
        "event_id": f"{event_type[:3]}-{rng.getrandbits(64):016x}-{n}",
        "event_type": event_type,
        "occurred_at": _stamp(rng, at),
        "schema_version": 1,
    }
    ccn = _ccn(rng)
    eta = _stamp(rng, at + timedelta(hours=rng.randrange(1, 12)))
    if event_type == "carm_snapshot":
        bn = _bn(rng)
        base |= {
            "importer_bn": bn,
            "legal_name": "Maple Leaf Hardware Distribution Inc.",
            "ccp_registered": True,
            "rm_account_linked": rng.random() < 0.9,
            "delegations": [
                {
                    "broker_code": f"B{rng.randrange(100, 999)}",
                    "access": "business_management",
                    "transaction_visibility": True,
                }
                for _ in range(rng.randrange(1, 4))
            ],
            "rpp_enrolled": rng.random() < 0.8,
            "security": {"kind": "surety", "amount_cad": rng.randrange(5000, 250000)},
            "highest_monthly_duties_taxes_cad": round(rng.uniform(1000, 400000), 2),
            "last_portal_login_at": _stamp(rng, at - timedelta(days=rng.randrange(1, 300))),
            "contact": {"name": "Jane Tremblay", "phone": "+1-416-555-0142", "email": "customs@example.ca"},
        }
        return TopicKind.CARM, bn, base
    base["ccn"] = ccn
    if event_type == "notice":
        base["notice"] = rng.choice(NOTICES)
        if rng.random() < 0.5:
            base["text"] = "ACI eManifest notice received from CBSA for this cargo control number"
    elif event_type == "rns_status":
        base |= {
            "processing_indicator": rng.choice([1, 4, 5, 9, 23, 34]),
            "transaction_number": f"{rng.randrange(10**13, 10**14)}",
            "broker_code": f"B{rng.randrange(100, 999)}",
            "office": rng.choice(["0427", "0453", "0440"]),
            "description": "Goods released",
        }
    elif event_type == "cargo_reported":
        base |= {
            "carrier_code": ccn[:4],
            "trip_number": f"{ccn[:4]}{rng.randrange(10**6, 10**7)}",
            "load_ref": f"LD-{rng.randrange(10**5, 10**6)}",
            "port_of_entry": rng.choice(["0427", "0453", "0440"]),
            "eta": eta,
            "importer_bn": _bn(rng),
            "importer_name": "Maple Leaf Hardware Distribution Inc.",
            "shipper_name": "Great Lakes Fasteners LLC",
            "broker_code": f"B{rng.randrange(100, 999)}",
            "broker_name": "Northern Customs Brokers Ltd.",
            "release_mode": "rpp",
            "dispatch_team": "east",
            "producer_trace_id": f"{rng.getrandbits(64):016x}",  # an extra field, ignored
        }
    elif event_type == "eta_updated":
        base |= {"eta": eta, "port_of_entry": "0427"}
    elif event_type == "cargo_rejected":
        base["reason"] = "Invalid shipper address"
    kind = TopicKind.RNS if event_type == "rns_status" else TopicKind.EMANIFEST
    return kind, ccn, base


def build_records(count: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    types = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    records = []
    for n in range(count):
        kind, key, body = _event(rng, rng.choices(types, weights)[0], n)
        records.append((kind, key.encode(), json.dumps(body, separators=(",", ":")).encode()))
    return records


def _run_loads(records: list[Record]) -> None:
    loads = json.loads
    for _kind, _key, value in records:
        loads(value)


def _run_decode(records: list[Record]) -> None:
    for kind, key, value in records:
        decode(kind, key, value)


def _run_loads_then_decode_parsed(records: list[Record]) -> None:
    loads = json.loads
    for kind, key, value in records:
        decode_parsed(kind, key.decode(), loads(value))


def _run_validator_only(records: list[Record]) -> None:
    # What decode() costs without its key check and result object: pydantic-core alone.
    validate = _VALIDATE_JSON
    for kind, _key, value in records:
        validate[kind](value)


METHODS: list[tuple[str, Callable[[list[Record]], None]]] = [
    ("json.loads -> dict", _run_loads),
    ("decode(bytes) -> model", _run_decode),
    ("  of which pydantic-core", _run_validator_only),
    ("json.loads + decode_parsed", _run_loads_then_decode_parsed),
]
CHUNK = 2_000
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}


def measure(
    records: list[Record], repeat: int, clock: Callable[[], float] = time.thread_time
) -> dict[str, float]:
    """Seconds per method: the sum over chunks of each chunk's best of `repeat` runs."""
    chunks = [records[i : i + CHUNK] for i in range(0, len(records), CHUNK)]
    best = {name: [float("inf")] * len(chunks) for name, _ in METHODS}
    for _ in range(repeat):
        gc.collect()
        for index, chunk in enumerate(chunks):
            for name, run in METHODS:
                started = clock()
                run(chunk)
                best[name][index] = min(best[name][index], clock() - started)
    return {name: sum(times) for name, times in best.items()}


def _check(records: list[Record]) -> str | None:
    outcomes = Counter(type(decode(kind, key, value)).__name__ for kind, key, value in records)
    if outcomes["Decoded"] != len(records):
        return f"bench data does not decode cleanly: {dict(outcomes)}"
    assert all(isinstance(decode(*r), Decoded) for r in records[:10])
    return None


def _print_table(records: list[Record], best: dict[str, float]) -> None:
    base = best[METHODS[0][0]]
    print(f"{'method':<30} {'events/s':>12} {'throughput ratio':>17} {'time ratio':>11}")
    for name, _ in METHODS:
        seconds = best[name]
        rate = len(records) / seconds
        print(f"{name:<30} {rate:>12,.0f} {base / seconds:>16.2f}x {seconds / base:>10.2f}x")
    print()
    print("throughput ratio = events/s of the method / events/s of json.loads (higher is faster);")
    print("time ratio = time of the method / time of json.loads (goal: decode() <= 1.00).")


def _round(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    """One measurement in its own process against `tree`: {method: seconds}."""
    argv = [sys.executable, __file__, "--json", f"--events={args.events}", f"--repeat={args.repeat}"]
    argv += [f"--seed={args.seed}", f"--clock={args.clock}"]
    env = {**os.environ, TREE_ENV: str(tree), "PYTHONPATH": str(tree)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def side_by_side(before: Path, args: argparse.Namespace) -> int:
    """Alternate rounds of the two trees; print each method's median time ratio to json.loads."""
    trees = {"before": before.resolve(), "after": HERE}
    ratios: dict[str, dict[str, list[float]]] = {tree: {n: [] for n, _ in METHODS} for tree in trees}
    for number in range(1, args.rounds + 1):
        for label, tree in trees.items():
            best = _round(tree, args)
            for name, _ in METHODS:
                ratios[label][name].append(best[name] / best[METHODS[0][0]])
            shown = ", ".join(f"{ratios[label][n][-1]:.3f}" for n, _ in METHODS[1:])
            print(f"round {number} {label:<6} ({tree}): time ratios {shown}", flush=True)
    print(
        f"\ntime / json.loads time, median of {args.rounds} rounds, {args.clock} time, {args.events} events:"
    )
    print(f"{'method':<30} {'before':>8} {'after':>8} {'after/before':>13}")
    for name, _ in METHODS:
        old, new = (statistics.median(ratios[label][name]) for label in trees)
        print(f"{name:<30} {old:>7.3f}x {new:>7.3f}x {new / old:>12.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--before", type=Path, metavar="TREE", help="compare with the code in TREE")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per tree with --before")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.before is not None:
        return side_by_side(args.before, args)

    records = build_records(args.events, args.seed)
    problem = _check(records)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    best = measure(records, args.repeat, CLOCKS[args.clock])
    if args.json:
        print(json.dumps(best))
        return 0
    mix = Counter(json.loads(value)["event_type"] for _, _, value in records)
    size = sum(len(value) for _, _, value in records) / len(records)
    print(
        f"{len(records)} events, mean {size:.0f} bytes, best of {args.repeat} runs per chunk, "
        f"{args.clock} time; mix: "
        + ", ".join(f"{name} {mix[name] * 100 / len(records):.0f}%" for name, _ in MIX)
    )
    print()
    _print_table(records, best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
