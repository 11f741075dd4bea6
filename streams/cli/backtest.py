"""`holdwatch backtest`: run the engine over event logs in event time."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from streams.cli.argtypes import integer, timestamp
from streams.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "backtest",
        help="run the rules over event logs (files) and summarise the alerts",
        description=(
            "Read event logs (JSON Lines, .gz too), decode them with the same contract as the pipeline, "
            "run the hold-risk engine on the log's own clock (a deadline fires before the first event "
            "later than it; at the end every deadline up to the last event fires), write the alert "
            "events as JSON Lines and print a summary for tuning thresholds (HOLDWATCH_RULE_* settings). "
            "With --jobs N the loads are split by CCN across N processes; the alert file and the summary "
            "are the same as with --jobs 1, byte for byte."
        ),
        epilog=(
            "examples:\n"
            "  holdwatch backtest day.jsonl.gz --out alerts.jsonl\n"
            "  HOLDWATCH_RULE_PARS_WARNING_MIN=180 holdwatch backtest week/*.jsonl --out a.jsonl --jobs 2\n"
            "  holdwatch backtest day.jsonl --out a.jsonl --jobs 1   # one process, no fork"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "logs", nargs="+", type=Path, metavar="LOG", help="event log file(s), in replay order"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where to write the alert events (JSON Lines)"
    )
    parser.add_argument("--until", type=timestamp, help="advance event time to this instant at the end")
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--jobs",
        type=integer(1),
        default=os.cpu_count() or 1,
        metavar="N",
        help=(
            "processes to split the loads across, by CCN (default: the number of cores, here %(default)s; "
            "1: one process, no fork). Every job reads the whole log, applies its CCNs' records and every "
            "CARM record, and follows the shared event-time clock. A log that cannot be split exactly "
            "(a CARM tombstone without a timestamp, a duplicate record that crossed another job's deadline, "
            "a line whose parsed key is not its raw key) is run again in one process, with a note on stderr"
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.decode import topic_kinds
    from streams.backtest import format_summary, run_backtest

    missing = [str(p) for p in args.logs if not p.is_file()]
    if missing:
        print(f"holdwatch backtest: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2

    def progress(records: int, seconds: float) -> None:
        print(f"backtest: {records:,} records, {records / seconds:,.0f}/s", file=sys.stderr, flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    kinds = topic_kinds(settings.topic_emanifest, settings.topic_rns, settings.topic_carm)
    with args.out.open("w", encoding="utf-8") as out:
        report = run_backtest(
            args.logs,
            out,
            settings.thresholds(),
            kinds,
            until=args.until,
            progress=None if args.quiet else progress,
            jobs=args.jobs,
        )
    print(format_summary(report))
    print(f"alert events written to {args.out}")
    if args.summary_json:
        summary = {**report.as_dict(), "jobs": [job.as_dict() for job in report.jobs]}
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0
