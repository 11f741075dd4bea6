"""`holdwatch broker start|stop|status`: a local Kafka broker that outlives the command."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from devtools.broker import (
    BrokerError,
    LocalBroker,
    clear_state,
    port_free,
    port_open,
    read_state,
    state_dir,
    stop_detached,
    write_state,
)
from streams.settings import Settings


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run a local Apache Kafka broker (fetched from Maven Central; needs Java 17 and Maven)",
        description=(
            "A local single-node Apache Kafka broker (KRaft) on 127.0.0.1. The jars are fetched once "
            "with Maven into HOLDWATCH_HOME/kafka/<version>/ (version: HOLDWATCH_KAFKA_VERSION); data, "
            "logs and state live in HOLDWATCH_HOME/broker/. Other holdwatch commands find it "
            "automatically when HOLDWATCH_KAFKA_BOOTSTRAP is unset."
        ),
    )
    sub = parser.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    start = sub.add_parser(
        "start",
        help="start the broker in the background and print its bootstrap address",
        description="Start the broker detached, wait until it answers a metadata request, print its address.",
    )
    start.add_argument("--port", type=int, default=0, help="PLAINTEXT port (default: a free port)")
    start.add_argument("--fresh", action="store_true", help="delete the broker's data (all topics) first")
    start.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness (default 120)"
    )
    start.set_defaults(func=start_broker)
    stop = sub.add_parser(
        "stop", help="stop the broker (SIGTERM, then SIGKILL)", description="Stop the broker."
    )
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    stop.set_defaults(func=stop_broker)
    status = sub.add_parser(
        "status", help="say whether the broker runs, and where", description="Broker status."
    )
    status.set_defaults(func=broker_status)


def start_broker(args: argparse.Namespace, settings: Settings) -> int:
    state = read_state(settings.home)
    if state is not None and state.running():
        print(f"the broker is already running on {state.bootstrap} (pid {state.pid})")
        _print_hint(state.bootstrap)
        return 0
    data_dir = state_dir(settings.home) / "data"
    port = args.port or _previous_port(settings)
    if args.fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    broker = LocalBroker(
        data_dir,
        home=settings.home,
        version=settings.kafka_version,
        port=port,
        startup_timeout_s=args.timeout,
        progress=_progress,
    )
    try:
        broker.start(detached=True)
    except BrokerError as exc:
        print(f"holdwatch broker: {exc}", file=sys.stderr)
        return 1
    write_state(settings.home, broker.state())
    (state_dir(settings.home) / "last_port").write_text(broker.bootstrap.rsplit(":", 1)[1] + "\n")
    print(f"Kafka {settings.kafka_version} is running on {broker.bootstrap} (pid {broker.pid})")
    print(f"  logs: {broker.log_file}")
    _print_hint(broker.bootstrap)
    return 0


def _previous_port(settings: Settings) -> int:
    """The port of the last run if it is free again, so the address stays the same across restarts."""
    try:
        port = int((state_dir(settings.home) / "last_port").read_text())
    except (OSError, ValueError):
        return 0
    return port if 0 < port < 65536 and not port_open(port) and port_free(port) else 0


def _print_hint(bootstrap: str) -> None:
    print("holdwatch commands find it automatically; for other tools:")
    print(f"  export HOLDWATCH_KAFKA_BOOTSTRAP={bootstrap}")


def stop_broker(args: argparse.Namespace, settings: Settings) -> int:
    state = read_state(settings.home)
    if state is None or not state.running():
        clear_state(settings.home)
        print("the broker is not running")
        return 0
    print(f"stopping the broker on {state.bootstrap} (pid {state.pid}) ...", flush=True)
    stop_detached(state, timeout_s=args.timeout)
    clear_state(settings.home)
    print("stopped")
    return 0


def broker_status(args: argparse.Namespace, settings: Settings) -> int:
    state = read_state(settings.home)
    if state is None or not state.running():
        print("stopped")
        return 3  # like `systemctl status`: not running
    print(f"running on {state.bootstrap} (pid {state.pid}, Kafka {state.version})")
    print(f"  logs: {state.log_file}")
    return 0
