"""`holdwatch ingest aci-trip`: the carrier's own trip files → the eManifest topic (docs/connectors.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.cli.argtypes import number
from streams.settings import Settings

if TYPE_CHECKING:  # the feed modules are imported when the command runs (fast --help)
    from streams.feeds.aci_publish import KafkaPublisher

EXIT_OK = 0
EXIT_KAFKA = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "ingest",
        help="read a real feed's files into the input topics",
        description="Read a real feed's files into holdwatch's input topics (docs/connectors.md).",
    )
    feeds = parser.add_subparsers(dest="ingest_command", metavar="FEED", required=True)
    trip = feeds.add_parser(
        "aci-trip",
        help="the carrier's ACI_TRIP / ACI_SHIPMENT JSON (as uploaded to BorderConnect) → cargo_reported, "
        "eta_updated",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Publish the carrier's own ACI_TRIP / ACI_SHIPMENT JSON files (as uploaded to BorderConnect) to
HOLDWATCH_TOPIC_EMANIFEST, key CCN: cargo_reported the first time a CCN is seen and when its facts
change (an amendment), eta_updated when only its ETA or port changed since what this ingest last
published (remembered in the state file, --state).

A directory means its *.json files, in name order. Importer BN and broker missing from a shipment
are filled from HOLDWATCH_TRIP_MAPPING_FILE (shipper or consignee name -> importer BN, broker
code; CSV or YAML). Each shipment that still lacks a fact is listed with what to add; one without
a broker is published (the pipeline alerts BROKER_MISSING) and said. Times without an offset or a
time zone field are read in HOLDWATCH_FEED_LOCAL_TZ.

Event ids come from the content: a file ingested again unchanged publishes nothing, and one sent
twice (a crash before the state was written) is a duplicate the pipeline ignores.

Exit codes: 0 everything published or unchanged, 1 Kafka failure (nothing of the failed file is
marked done: rerun), 2 bad arguments, settings, mapping or state file, 3 done but some shipments
or files were not published (listed above), 130 interrupted.""",
    )
    trip.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR", help="trip files or directories")
    trip.add_argument(
        "--watch",
        action="store_true",
        help="keep polling the files and directories for new or changed files (Ctrl-C stops)",
    )
    trip.add_argument(
        "--interval",
        type=number(0.1),
        default=5.0,
        metavar="S",
        help="with --watch: seconds between polls (default 5)",
    )
    trip.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be published (with the JSON); publish nothing, write no state",
    )
    trip.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="what this ingest published per CCN and which files it read "
        "(default $HOLDWATCH_HOME/feeds/aci-trip-state.json); one ingest per state file",
    )
    trip.set_defaults(func=run_aci_trip)


def _say(message: str) -> None:
    print(message, flush=True)


def _error(message: str) -> None:
    print(f"holdwatch ingest aci-trip: {message}", file=sys.stderr, flush=True)


def run_aci_trip(args: argparse.Namespace, settings: Settings) -> int:
    from streams.feeds.aci_publish import (
        Publisher,
        PublishError,
        RecordingPublisher,
        StateFileError,
        TripIngest,
        default_state_path,
        load_mapping,
        load_state,
        trip_context,
    )
    from streams.feeds.aci_trip import MappingError

    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        _error(f"no such file or directory: {', '.join(missing)}")
        return EXIT_USAGE
    state_path: Path = args.state or default_state_path(settings)
    try:
        mapping, digest = load_mapping(settings.trip_mapping_file)
        context = trip_context(settings, mapping)
        state = load_state(state_path)
    except (MappingError, StateFileError, ValueError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    publisher: Publisher
    if args.dry_run:
        publisher = RecordingPublisher()
    else:
        made = _kafka_publisher(settings)
        if isinstance(made, int):
            return made
        publisher = made
    ingest = TripIngest(
        topic=settings.topic_emanifest,
        publisher=publisher,
        context=context,
        state=state,
        state_path=None if args.dry_run else state_path,
        mapping_path=settings.trip_mapping_file,
        mapping_digest=digest,
        dry_run=args.dry_run,
        say=_say,
    )
    where = "dry run, nothing published" if args.dry_run else f"to {settings.topic_emanifest}"
    mapping_note = settings.trip_mapping_file or "none (HOLDWATCH_TRIP_MAPPING_FILE)"
    _say(f"aci-trip: {where}; state {state_path}; mapping file {mapping_note}")
    try:
        if args.watch:
            ingest.watch(args.paths, interval_s=args.interval)
        ingest.run_once(args.paths)
    except KeyboardInterrupt:
        _say(ingest.report.summary() + " (interrupted)")
        return EXIT_INTERRUPTED
    except PublishError as exc:
        _error(f"Kafka failed: {exc}; rerun to publish the rest (duplicates are harmless)")
        _say(ingest.report.summary())
        return EXIT_KAFKA
    finally:
        publisher.close()
    _say(ingest.report.summary())
    return EXIT_INCOMPLETE if ingest.report.incomplete else EXIT_OK


def _kafka_publisher(settings: Settings) -> KafkaPublisher | int:
    """A KafkaPublisher once the topics exist, or an exit code."""
    from streams.feeds.aci_publish import KafkaPublisher
    from streams.kafka.admin import co_partitioning_problems, ensure_topics
    from streams.kafka.config import KafkaConfigError, explain_connection_error, kafka_python_config

    try:
        config = kafka_python_config(settings)
    except KafkaConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    try:
        problems = co_partitioning_problems(ensure_topics(settings))
        if problems:
            for problem in problems:
                _error(problem)
            return EXIT_KAFKA
        return KafkaPublisher.create(config)
    except Exception as exc:  # noqa: BLE001 - an unreachable broker is said, not a traceback
        _error(f"cannot prepare the topics or a producer: {explain_connection_error(settings, exc)}")
        return EXIT_KAFKA
