"""Faults, measured (issue 11, item 6): the scenarios of tests/integration/test_faults.py at a larger
size, on a real broker and the local Slack server, reported as a Markdown table (docs/reliability.md).

  (a) `holdwatch worker` with its notifier in-process SIGKILLed mid-replay, restarted on its data dir;
  (b) the broker SIGKILLed mid-replay under that worker, restarted on the same port (the steps of
      tests/integration/test_worker_broker_restart.py, on a broker of its own; needs Java and Maven);
  (c) `holdwatch notifier` SIGKILLed after a post landed on Slack but before its answer (the ts) came;
  (d) Slack down for --outage-s (500s, dropped connections, dropped answers), then a burst of 429s,
      while alert events keep coming.

For each: records of the simulated log, alert events the back-test expects, lifecycles (shown on
Slack / over before ever shown), lost (alert events missing from the topic or not in the back-test,
open lifecycles without a message, messages not showing their final state), doubled (alert event
copies on the topic, which consumers drop by event_id; Slack messages or replies posted twice),
dead letters against the back-test, and the time from the fault until the topic and Slack show
everything (for (d): from the end of the outage).

    .venv/bin/python -m bench.bench_faults [--loads 3000] [--outage-s 60] [--only a,b,c,d] [--out FILE]

Broker: HOLDWATCH_KAFKA_BOOTSTRAP, else a local broker started for the run. Exit 1 if a scenario
lost or doubled anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration import fault_scenarios as fs  # noqa: E402 - after the path is set


def _bootstrap(tmp: Path) -> tuple[str, Any]:
    if os.environ.get("HOLDWATCH_KAFKA_BOOTSTRAP"):
        return os.environ["HOLDWATCH_KAFKA_BOOTSTRAP"], None
    from devtools.broker import LocalBroker, free_port
    from streams.settings import Settings

    broker = LocalBroker(tmp / "kafka", home=Settings().home, port=free_port())
    broker.start()
    return broker.bootstrap, broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=3000, help="loads of the simulated day (default 3000)")
    parser.add_argument(
        "--outage-s",
        type=float,
        default=fs.outage_seconds(60.0),
        help=f"how long Slack is down in (d) (default {fs.OUTAGE_ENV} or 60)",
    )
    parser.add_argument("--ratelimits", type=int, default=10, help="429s after the outage (default 10)")
    parser.add_argument("--retry-after", type=float, default=3.0, help="their Retry-After, s (default 3)")
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=None,
        help="Faust's BROKER_SESSION_TIMEOUT for (a) (default: Faust's, 60 s)",
    )
    parser.add_argument(
        "--publish-s",
        type=float,
        default=30.0,
        help="(c), (d): seconds over which each part of the alert events is published (default 30)",
    )
    parser.add_argument("--only", default="a,b,c,d", help="scenarios to run, e.g. a,d (default all)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="holdwatch-faults-"))
    bootstrap, broker = _bootstrap(tmp)
    scenarios: dict[str, Callable[[], fs.FaultResult]] = {
        "a": lambda: fs.worker_killed_mid_replay(
            bootstrap, tmp / "a", loads=args.loads, session_timeout_s=args.session_timeout, timeout_s=900
        ),
        "b": lambda: fs.broker_killed_mid_replay(tmp / "b", loads=args.loads, kill_at=0.1, timeout_s=900),
        "c": lambda: fs.notifier_killed_after_post(
            bootstrap, tmp / "c", loads=args.loads, publish_s=args.publish_s, timeout_s=900
        ),
        "d": lambda: fs.slack_down_then_rate_limited(
            bootstrap,
            tmp / "d",
            loads=args.loads,
            outage_s=args.outage_s,
            ratelimits=args.ratelimits,
            retry_after_s=args.retry_after,
            publish_s=args.publish_s,
            timeout_s=900,
        ),
    }
    results: list[fs.FaultResult] = []
    try:
        for name in [n.strip() for n in args.only.split(",") if n.strip()]:
            started = time.monotonic()
            print(f"bench_faults: ({name}) running ...", file=sys.stderr, flush=True)
            result = scenarios[name]()
            results.append(result)
            print(
                f"bench_faults: ({name}) {'ok' if result.ok else 'FAILED'} "
                f"in {time.monotonic() - started:.0f} s; "
                f"evidence {json.dumps(result.evidence, default=str)}",
                file=sys.stderr,
                flush=True,
            )
            if not result.ok:
                print(result.explain(), file=sys.stderr)
    finally:
        if broker is not None:
            broker.stop()
    table = fs.markdown_table(results)
    print(table)
    if args.out is not None:
        args.out.write_text(table + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
