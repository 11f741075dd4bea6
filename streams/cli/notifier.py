"""`holdwatch notifier`: post alert events to Slack (or print them without a token)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from alerting.notify.routing import RoutingError
from streams.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "notifier",
        help="deliver alert events to Slack: one living message per load (console without a token)",
        description=(
            "Consume the alert topic and keep one Slack message per alert lifecycle: posted when raised, "
            "edited on updates, a thread reply on escalation and a broadcast reply when resolved. Slack "
            "timestamps live in the compacted topic holdwatch.slack-ledger, so restarts never post twice. "
            "Without HOLDWATCH_SLACK_TOKEN the same content is printed. Routing: HOLDWATCH_SLACK_CHANNEL, "
            "HOLDWATCH_SLACK_ROUTING_FILE (JSON or TOML: teams/ports/default, oncall, shifts). With "
            "HOLDWATCH_SLACK_APP_TOKEN (Socket Mode) or HOLDWATCH_SLACK_SIGNING_SECRET (HTTP) dispatch can "
            "acknowledge, snooze and release alerts, unowned criticals are paged to on-call, shifts get a "
            "handover and /holdwatch answers. See docs/slack.md."
        ),
    )
    parser.add_argument("--group-id", help="consumer group (default: <HOLDWATCH_APP_ID>-notifier)")
    parser.add_argument(
        "--include-replayed",
        action="store_true",
        help="also deliver alerts of replayed traffic (HOLDWATCH_NOTIFY_REPLAYED); only for a replay app "
        "with its own alert topic and channel",
    )
    parser.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(func=run)


async def _main(settings: Settings, group_id: str | None) -> None:
    from streams.notifier.service import run_notifier

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    metrics = None
    if settings.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        from streams.notifier.telemetry import NotifierMetrics

        registry = CollectorRegistry()  # the notifier's families only: no worker series at 0
        metrics = NotifierMetrics(registry)
        start_http_server(settings.metrics_port, registry=registry)
        print(f"notifier: metrics on port {settings.metrics_port}", file=sys.stderr)
    await run_notifier(settings, stop=stop, group_id=group_id, metrics=metrics)


def _interactivity(settings: Settings) -> str:
    from streams.notifier.interactions import choose_transport

    if settings.slack_token is None:
        return "off (console)"
    mode = choose_transport(settings)
    if mode == "socket":
        return f"Socket Mode (buttons, /holdwatch; actions on {settings.actions_topic()})"
    if mode == "http":
        where = f"{settings.slack_interactions_bind}:{settings.slack_interactions_port}"
        return f"HTTP Request URL on http://{where}/slack/events (signed requests only)"
    return "off: read-only messages (set HOLDWATCH_SLACK_APP_TOKEN for buttons and /holdwatch)"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.feeds.brokers import BrokerDirectoryError
    from streams.feeds.ports import PortsFileError
    from streams.kafka.config import KafkaConfigError
    from streams.notifier.service import load_reference

    try:
        load_reference(settings)  # a bad reference file is said now, not as a traceback later
    except (BrokerDirectoryError, PortsFileError) as exc:
        print(f"holdwatch notifier: {exc}", file=sys.stderr)
        return 2
    if args.include_replayed:
        settings = settings.model_copy(update={"notify_replayed": True})
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    target = "Slack" if settings.slack_token is not None else "the console (no HOLDWATCH_SLACK_TOKEN)"
    replayed = "including" if settings.notify_replayed else "skipping"
    print(f"notifier: {settings.topic_alerts} -> {target} ({replayed} replayed traffic)", file=sys.stderr)
    print(f"notifier: dispatch actions in Slack: {_interactivity(settings)}", file=sys.stderr)
    try:
        asyncio.run(_main(settings, args.group_id))
    except (RoutingError, KafkaConfigError) as exc:
        print(f"holdwatch notifier: {exc}", file=sys.stderr)
        return 2
    return 0
