"""`holdwatch simulate`: write a synthetic, deterministic event log (docs/simulator.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from devtools.simulate import (
    DEFAULT_DUPLICATE_RATE,
    DEFAULT_MALFORMED_RATE,
    DEFAULT_START,
    SimulationConfig,
    SimulationStats,
    write_simulation,
)
from streams.cli.argtypes import integer, number, timestamp
from streams.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write a realistic synthetic event log (deterministic per seed)",
        description=(
            "Generate CARM snapshots, eManifest events, CBSA notices and RNS messages for N loads, "
            "in event-time order, as an event log (JSON Lines; .gz compresses). "
            "Same seed and arguments give a byte-identical file. See docs/simulator.md."
        ),
    )
    parser.add_argument("--loads", type=integer(0), required=True, help="number of loads")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument(
        "--start",
        type=timestamp,
        default=DEFAULT_START,
        help=f"time of the CARM snapshots, RFC 3339 with offset (default {DEFAULT_START.isoformat()})",
    )
    parser.add_argument(
        "--hours",
        type=number(0, above_minimum=True),
        default=24.0,
        help="period over which loads are reported (default 24)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output log path (.gz compresses)")
    parser.add_argument(
        "--no-midway-fixes", action="store_true", help="importers never fix their CARM record during the run"
    )
    parser.add_argument(
        "--malformed-rate",
        type=number(0, 1),
        default=DEFAULT_MALFORMED_RATE,
        help=f"extra malformed records per event (default {DEFAULT_MALFORMED_RATE})",
    )
    parser.add_argument(
        "--duplicate-rate",
        type=number(0, 1),
        default=DEFAULT_DUPLICATE_RATE,
        help=f"exact re-sends per event (default {DEFAULT_DUPLICATE_RATE})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings, stderr: TextIO | None = None) -> int:
    err = stderr if stderr is not None else sys.stderr
    try:
        config = SimulationConfig(
            loads=args.loads,
            seed=args.seed,
            start=args.start,
            hours=args.hours,
            midway_fixes=not args.no_midway_fixes,
            duplicate_rate=args.duplicate_rate,
            malformed_rate=args.malformed_rate,
            topic_emanifest=settings.topic_emanifest,
            topic_rns=settings.topic_rns,
            topic_carm=settings.topic_carm,
        )
    except ValueError as exc:
        print(f"holdwatch simulate: {exc}", file=err)
        return 2
    out: Path = args.out
    if out.parent and not out.parent.exists():
        print(f"holdwatch simulate: directory does not exist: {out.parent}", file=err)
        return 2

    began = time.monotonic()
    last_report = began

    def progress(stats: SimulationStats) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report >= 3.0:
            last_report = now
            print(
                f"simulate: {stats.loads}/{config.loads} loads planned, {stats.records} records, "
                f"{now - began:.0f} s",
                file=err,
                flush=True,
            )

    try:
        stats = write_simulation(config, out, on_progress=progress)
    except OSError as exc:
        print(f"holdwatch simulate: cannot write {out}: {exc}", file=err)
        return 1
    seconds = time.monotonic() - began
    size = out.stat().st_size
    print(
        f"simulate: wrote {out}: loads={stats.loads} events={stats.events} "
        f"duplicates={stats.duplicates} malformed={stats.malformed} records={stats.records} "
        f"bytes={size} seconds={seconds:.1f}",
        file=err,
        flush=True,
    )
    return 0
