"""`holdwatch topics create`: create holdwatch's topics (idempotent) and check co-partitioning."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.kafka.admin import co_partitioning_problems, ensure_topics, retention_warnings
from streams.kafka.config import KafkaConfigError, explain_connection_error, resolve_bootstrap
from streams.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="manage holdwatch's Kafka topics",
        description="Manage holdwatch's Kafka topics on HOLDWATCH_KAFKA_BOOTSTRAP or the local broker.",
    )
    sub = parser.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create",
        help="create the input, alert and dead-letter topics if missing",
        description=(
            "Create emanifest.events, rns.events, carm.readiness (compacted), holdwatch.alerts and "
            "holdwatch.deadletter (names from HOLDWATCH_TOPIC_*) with HOLDWATCH_PARTITIONS partitions "
            "and HOLDWATCH_REPLICATION_FACTOR replicas. Existing topics are left alone and reported. "
            "Exits 1 if the co-partitioned input topics have different partition counts. Warns on "
            "stderr, with the fix, when an input topic's retention could delete records before the "
            "pipeline consumes them (retention.bytes set, or retention.ms under a day; docs/replay.md)."
        ),
    )
    create.set_defaults(func=create_topics)


def create_topics(args: argparse.Namespace, settings: Settings) -> int:
    try:
        bootstrap = resolve_bootstrap(settings)
    except KafkaConfigError as exc:
        print(f"holdwatch topics: {exc}", file=sys.stderr)
        return 2
    print(f"topics on {bootstrap}:")
    try:
        results = ensure_topics(settings)
    except Exception as exc:  # noqa: BLE001 - a broker problem is reported, not a traceback
        print(f"holdwatch topics: failed: {explain_connection_error(settings, exc)}", file=sys.stderr)
        return 1
    for result in results:
        print(f"  {result.describe()}")
    for warning in retention_warnings(results):
        print(f"WARNING: {warning}", file=sys.stderr)
    problems = co_partitioning_problems(results)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0
