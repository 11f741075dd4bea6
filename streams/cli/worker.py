"""`holdwatch worker`: the live pipeline (Faust worker)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "worker",
        help="run the live pipeline: consume the topics, keep state, publish alert events",
        description=(
            "Consume emanifest/rns (key CCN) and carm.readiness (key BN), keep shipment state and CARM "
            "copies in changelog-backed tables, run the hold-risk engine and publish alert events to the "
            "alert topic. Bad records go to the dead-letter topic. Run several workers with the same "
            "HOLDWATCH_APP_ID to share the partitions."
        ),
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "event"),
        help="wall: deadlines fire by the wall clock (live); event: by the records' event time and "
        "replay ticks (replaying history). Default: HOLDWATCH_CLOCK or wall",
    )
    parser.add_argument(
        "--store", choices=("rocksdb", "memory"), help="table store (default HOLDWATCH_STORE)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="local table state (default HOLDWATCH_STATE_DIR or ~/.cache)"
    )
    parser.add_argument(
        "--metrics-addr",
        default="0.0.0.0",
        help="address for /metrics (port: HOLDWATCH_METRICS_PORT, 0 = off)",
    )
    parser.add_argument(
        "--no-notifier",
        action="store_true",
        help="do not deliver alerts from this process (run `holdwatch notifier` separately)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (default uvloop: about 40%% more records/s than asyncio's)",
    )
    parser.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import mode.loop

    if args.loop == "uvloop":
        mode.loop.use("uvloop")  # before Faust creates its event loop
    import faust
    from prometheus_client import CollectorRegistry, start_http_server

    from streams.kafka.admin import ensure_topics
    from streams.kafka.config import KafkaConfigError, explain_connection_error
    from streams.kafka.topics import internal_topic_specs
    from streams.worker.app import build_app

    clock = args.clock or settings.clock
    data_dir = args.data_dir or settings.state_dir or settings.home / "state" / settings.app_id
    data_dir.mkdir(parents=True, exist_ok=True)
    from streams.worker.app import discard_suspect_state

    suspect = discard_suspect_state(data_dir)
    if suspect is not None:
        print(
            f"worker: the last run stopped on a failed send ({suspect}); its local table state was "
            "removed and is recovered from the changelogs now",
            file=sys.stderr,
        )
    try:
        for result in ensure_topics(settings, internal_topic_specs(settings)):
            if result.status == "created":
                print(f"worker: created topic {result.describe()}", file=sys.stderr)
    except KafkaConfigError as exc:
        print(f"holdwatch worker: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - an unreachable broker or a refused login, said plainly
        print(
            f"holdwatch worker: cannot reach Kafka: {explain_connection_error(settings, exc)}",
            file=sys.stderr,
        )
        return 1
    registry = CollectorRegistry()
    from streams.feeds.brokers import BrokerDirectoryError
    from streams.feeds.ports import PortsFileError

    try:
        app = build_app(
            settings,
            clock=clock,
            data_dir=data_dir,
            store=args.store,
            registry=registry,
            with_notifier=not args.no_notifier,
        )
    except (BrokerDirectoryError, PortsFileError) as exc:
        print(f"holdwatch worker: {exc}", file=sys.stderr)
        return 2
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, addr=args.metrics_addr, registry=registry)
        except OSError as exc:
            print(
                f"holdwatch worker: cannot serve /metrics on port {settings.metrics_port}: {exc}",
                file=sys.stderr,
            )
            return 2
        print(
            f"worker: metrics on http://{args.metrics_addr}:{settings.metrics_port}/metrics", file=sys.stderr
        )
    print(f"worker: app {settings.app_id}, clock {clock}, state in {data_dir}", file=sys.stderr)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
