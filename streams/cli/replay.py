"""`holdwatch replay`: publish event logs to the input topics (docs/replay.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.cli.argtypes import integer, number
from streams.settings import Settings

if TYPE_CHECKING:  # the replay modules are imported when the command runs (fast --help)
    from streams.replay.plan import ReplayTopics
    from streams.replay.publish import Sender


def parse_speed(text: str) -> float | None:
    """`max` -> None (as fast as possible), `realtime` -> 1.0, N -> N (a float > 0)."""
    lowered = text.strip().lower()
    if lowered == "max":
        return None
    if lowered == "realtime":
        return 1.0
    try:
        value = float(lowered.removesuffix("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--speed is max, realtime or a number > 0, got {text!r}") from exc
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"--speed must be a number > 0, got {text!r}")
    return value


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "replay",
        help="publish event logs to the input topics, in the log's order and on its clock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Publish event logs (JSON Lines, .gz too; the format `holdwatch simulate` writes and
`holdwatch backtest` reads) to HOLDWATCH_TOPIC_EMANIFEST / _RNS / _CARM, so that a pipeline
running `holdwatch worker --clock event` produces the alerts the back-test produces.

What it sends:
  * every record with its key, its value as compact JSON bytes (malformed values too: the
    pipeline dead-letters them), the Kafka timestamp left to the producer (now: retention
    counts from the replay), header hw-log-ts = the line's `timestamp`, else the value's
    occurred_at, else the replay's event time so far (never "now"), and header hw-seq = a
    per-replay base (from the clock) + its position in the whole replay (across files);
  * every --tick-every records, and once at the end (final), a tick to EVERY partition of the
    eManifest and RNS topics: "nothing before seq S follows here; event time is T". The final
    tick carries the log's last event time, so every deadline up to it fires in every partition.
  * CARM barrier: the log's leading carm.readiness records are sent first; then replay waits
    until the consumer group HOLDWATCH_APP_ID has committed them all, and then its internal
    control topic (where the pipeline re-publishes them to the shipment partitions), so no
    shipment event can overtake the snapshot it is judged against. Without a running pipeline
    it warns after --barrier-timeout seconds and carries on.

Unreadable lines and records of other topics are reported (file:line) and skipped. Progress
goes to stderr every 2 s, a summary at the end. Exit codes: 0 done, 1 Kafka failure,
2 bad arguments / missing files / no broker configured, 130 interrupted. Details: docs/replay.md.

Delivery: every record counts as sent only once the broker acknowledged it. While the broker is
away (a restart), replay retries for up to --broker-timeout seconds and says so on stderr; if
records still cannot be delivered it exits 1 naming how many and the first line that may be
missing: rerun with the same logs and --from-line N (lines 1..N-1 of the logs, counted across
the files in order, are read for the replay clock but not published).""",
    )
    parser.add_argument(
        "logs", nargs="+", type=Path, metavar="LOG", help="event log file(s), in replay order"
    )
    parser.add_argument(
        "--speed",
        type=parse_speed,
        default=None,
        metavar="max|realtime|N",
        help=(
            "max (default): as fast as possible; realtime: event time advances at wall-clock speed; "
            "N: N times real time (e.g. 600 = ten minutes of events per second). A gap longer than "
            "60 s of wall time is cut to 60 s"
        ),
    )
    parser.add_argument(
        "--no-carm-barrier",
        dest="carm_barrier",
        action="store_false",
        help="do not wait for the pipeline to consume the leading CARM snapshots",
    )
    parser.add_argument(
        "--barrier-timeout",
        type=number(0),
        default=120.0,
        metavar="S",
        help="give up waiting at the CARM barrier after S seconds, with a warning (default 120)",
    )
    parser.add_argument(
        "--broker-timeout",
        type=number(1),
        default=300.0,
        metavar="S",
        help=(
            "retry records the broker does not acknowledge (e.g. while it restarts) for S seconds, "
            "then stop with exit code 1 and the line to resume from (default 300)"
        ),
    )
    parser.add_argument(
        "--from-line",
        type=integer(1),
        default=1,
        metavar="N",
        help=(
            "resume a replay: publish from line N of the logs (counted across the files in order, "
            "as replay's messages count them); earlier lines only move the replay clock (default 1)"
        ),
    )
    parser.add_argument(
        "--tick-every",
        type=integer(1),
        default=500,
        metavar="N",
        help="send a tick after every N records (default 500)",
    )
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.config import KafkaConfigError, kafka_python_config
    from streams.replay.plan import ReplayTopics
    from streams.replay.publish import KafkaPythonSender

    missing = [str(path) for path in args.logs if not path.is_file()]
    if missing:
        _say(f"holdwatch replay: no such file: {', '.join(missing)}")
        return 2
    topics = ReplayTopics.from_settings(settings)
    try:
        topics.kinds()
        config: dict[str, Any] = dict(kafka_python_config(settings))
    except (ValueError, KafkaConfigError) as exc:
        _say(f"holdwatch replay: {exc}")
        return 2
    failed = _prepare_topics(settings, config)
    if failed is not None:
        return failed
    try:
        sender = KafkaPythonSender.create(config, broker_timeout_s=args.broker_timeout, say=_say)
    except Exception as exc:  # noqa: BLE001 - unreachable broker, bad credentials: said plainly
        _say(f"holdwatch replay: cannot connect a producer to {config['bootstrap_servers']}: "
             f"{type(exc).__name__}: {exc}")  # fmt: skip
        return 1
    try:
        return _publish(args, settings, config, topics, sender)
    finally:
        sender.close()


def _prepare_topics(settings: Settings, config: dict[str, Any]) -> int | None:
    """Create missing topics and check co-partitioning; an exit code if replay cannot go on."""
    from streams.kafka.admin import co_partitioning_problems, ensure_topics, retention_warnings
    from streams.kafka.config import admin_client

    def admin(settings: Settings) -> Any:
        return admin_client(config, client_id="holdwatch-replay", bootstrap_timeout_ms=10_000)

    try:
        results = ensure_topics(settings, admin_factory=admin)
    except Exception as exc:  # noqa: BLE001 - a broker problem is reported, not a traceback
        _say(
            f"holdwatch replay: cannot prepare the topics on {config['bootstrap_servers']} (is the "
            f"broker running and reachable?): {type(exc).__name__}: {exc}"
        )
        return 1
    for warning in retention_warnings(results):  # a warning: replay goes on (docs/replay.md)
        _say(f"holdwatch replay: WARNING: {warning}")
    problems = co_partitioning_problems(results)
    for problem in problems:
        _say(f"holdwatch replay: {problem}")
    return 1 if problems else None


def _publish(
    args: argparse.Namespace, settings: Settings, config: dict[str, Any], topics: ReplayTopics, sender: Sender
) -> int:
    """Plan the logs, send them (paced, behind the CARM barrier) and report; the exit code."""
    from kafka.errors import KafkaError

    from streams.kafka.topics import control_topic
    from streams.replay.plan import log_items, plan_replay, seq_base_now
    from streams.replay.publish import ReplayError, ReplayOptions, kafka_barrier, run_replay

    options = ReplayOptions(speed=args.speed, tick_every=args.tick_every, carm_barrier=args.carm_barrier)
    speed = "max" if args.speed is None else f"{args.speed:g}x real time"
    _say(f"replay: {len(args.logs)} log(s) to {config['bootstrap_servers']}, speed {speed}, "
         f"tick every {args.tick_every}")  # fmt: skip
    actions = plan_replay(
        log_items(args.logs),
        topics,
        tick_every=args.tick_every,
        carm_barrier=args.carm_barrier,
        seq_base=seq_base_now(time.time_ns()),  # a resumed replay numbers above the first one too
        from_line=args.from_line,
    )
    wait = kafka_barrier(
        config, settings.app_id, args.barrier_timeout, then_topics=[control_topic(settings)], say=_say
    )
    try:
        report = run_replay(actions, topics, options, sender, wait_barrier=wait, say=_say)
    except ReplayError as exc:
        _say(f"holdwatch replay: failed: {exc}")
        return 1
    except KafkaError as exc:  # metadata or coordinator timeouts from the clients
        _say(f"holdwatch replay: Kafka failed: {type(exc).__name__}: {exc}")
        return 1
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a truncated .gz, a file that is not UTF-8
        _say(f"holdwatch replay: cannot read the log: {type(exc).__name__}: {exc}")
        return 1
    _say(report.summary())
    return 130 if report.interrupted else 0
