"""`holdwatch connect borderconnect`: a long-running connector from a real feed to the input topics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from streams.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "connect",
        help="run a connector that turns a real feed into holdwatch events (docs/connectors.md)",
        description="Long-running connectors from the carrier's feeds to holdwatch's input topics.",
    )
    feeds = parser.add_subparsers(dest="connect_command", metavar="FEED", required=True)
    borderconnect = feeds.add_parser(
        "borderconnect",
        help="hold the BorderConnect WebSocket: CBSA responses, notices and RNS messages → events",
        description=(
            "Connect to HOLDWATCH_BORDERCONNECT_URL with HOLDWATCH_BORDERCONNECT_API_KEY (sent only in the "
            "handshake), map ACI_RESPONSE, ACI_NOTICE and RNS_SHIPMENT messages to cargo_accepted, "
            "cargo_rejected, notice and rns_status events on the emanifest and rns topics (key: the CCN), "
            "and dead-letter what the mapping does not understand. Reconnects with a jittered backoff. "
            "Service-provider mode: HOLDWATCH_BORDERCONNECT_COMPANY_KEYS. Times without a zone are read in "
            "HOLDWATCH_FEED_LOCAL_TZ. Metrics on HOLDWATCH_METRICS_PORT. Exit 2 when BorderConnect denies "
            "the key (no retry) or a setting is missing; 0 on SIGTERM/SIGINT. See docs/connectors.md."
        ),
    )
    borderconnect.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    borderconnect.set_defaults(func=run)


async def _main(settings: Settings) -> None:
    from streams.feeds.borderconnect import ConnectorMetrics, run_borderconnect

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    metrics = None
    if settings.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()  # the connector's families only
        metrics = ConnectorMetrics(
            registry, disconnected_alert_s=settings.borderconnect_disconnected_alert_min * 60
        )
        start_http_server(settings.metrics_port, registry=registry)
        print(f"borderconnect: metrics on port {settings.metrics_port}", file=sys.stderr)
    await run_borderconnect(settings, stop=stop, metrics=metrics)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.feeds.borderconnect import AccessDenied, settings_problems, shown_url
    from streams.kafka.config import KafkaConfigError

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problems = settings_problems(settings)
    if problems:
        for problem in problems:
            print(f"holdwatch connect borderconnect: {problem}", file=sys.stderr)
        return 2
    print(
        f"borderconnect: {shown_url(settings.borderconnect_url)} -> {settings.topic_emanifest}, "
        f"{settings.topic_rns} (dead letters: {settings.topic_deadletter})",
        file=sys.stderr,
    )
    try:
        asyncio.run(_main(settings))
    except AccessDenied as exc:
        print(
            f"holdwatch connect borderconnect: BorderConnect denied access ({exc}): check "
            "HOLDWATCH_BORDERCONNECT_API_KEY (it changes when regenerated in the account's preferences). "
            "Not retrying.",
            file=sys.stderr,
        )
        return 2
    except KafkaConfigError as exc:
        print(f"holdwatch connect borderconnect: {exc}", file=sys.stderr)
        return 2
    return 0
