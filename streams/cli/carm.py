"""`holdwatch carm import|template|show|export`: the CARM readiness registry, kept in a spreadsheet.

The dispatcher's file (CSV or YAML, docs/connectors.md) is the source; the compacted
`carm.readiness` topic is what the pipeline reads. Import validates every row, prints the diff
against the topic and publishes only new and changed importers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.feeds.carm_sheet import (
    TEMPLATE_HEADER,
    CellError,
    SheetFormat,
    SheetOptions,
    cells_of,
    describe_diff,
    describe_snapshot,
    diff_registry,
    parse_bn,
    read_sheet,
    template_rows,
    write_sheet,
)
from streams.feeds.carm_topic import CarmTopic, CarmTopicError, KafkaCarmTopic, TopicState
from streams.kafka.config import KafkaConfigError, explain_connection_error
from streams.settings import Settings

TopicFactory = Callable[[Settings], CarmTopic]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "carm",
        help="the CARM readiness registry: import a spreadsheet, show, export",
        description=(
            "Keep the importers' CARM readiness in a spreadsheet (CSV or YAML; columns in "
            "docs/connectors.md) and publish it to the compacted topic HOLDWATCH_TOPIC_CARM."
        ),
    )
    actions = parser.add_subparsers(dest="carm_command", metavar="ACTION", required=True)
    load = actions.add_parser(
        "import",
        help="validate a CSV/YAML file, print the diff against the topic, publish what changed",
        description=(
            "Validate every row (line, column and reason for each bad one; nothing is published if "
            "any row is bad unless --skip-bad), print the diff against what the topic holds (new, "
            "changed with the fields, unchanged, missing from the file) and publish the new and "
            "changed importers. Importers missing from the file are kept. Exit 0 on success, 1 on "
            "bad rows or a failed publish, 2 on a usage or connection problem."
        ),
    )
    load.add_argument("file", metavar="FILE", type=Path, help="FILE.csv or FILE.yaml/.yml")
    load.add_argument("--dry-run", action="store_true", help="print the diff only; publish nothing")
    load.add_argument("--skip-bad", action="store_true", help="publish the good rows even if some are bad")
    load.set_defaults(func=run_import)

    template = actions.add_parser(
        "template",
        help="write an example file with every column and three example importers",
        description="Write an example registry file (every documented column, three example importers).",
    )
    template.add_argument("out", metavar="OUT", type=Path, help="where to write it")
    template.add_argument("--format", choices=("csv", "yaml"), help="default: from OUT's extension, else csv")
    template.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    template.set_defaults(func=run_template)

    show = actions.add_parser(
        "show",
        help="what the topic holds for one importer",
        description="Print the current CARM record of an importer (BN15) as the topic holds it.",
    )
    show.add_argument("bn", metavar="BN", help="the importer's BN15, e.g. 123456789RM0001")
    show.add_argument("--json", action="store_true", help="the snapshot as JSON")
    show.set_defaults(func=run_show)

    export = actions.add_parser(
        "export",
        help="write the topic's current records to a file the import reads back identically",
        description=(
            "Write every importer the topic holds to FILE (.csv or .yaml/.yml), in the template's "
            "columns; importing it back changes nothing."
        ),
    )
    export.add_argument("file", metavar="FILE", type=Path)
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    export.set_defaults(func=run_export)


class UsageError(Exception):
    """A problem the user fixes by changing the command or the settings (exit 2)."""


def sheet_options(settings: Settings) -> SheetOptions:
    try:
        tz = ZoneInfo(settings.feed_local_tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(f"HOLDWATCH_FEED_LOCAL_TZ={settings.feed_local_tz!r} is not a time zone") from exc
    return SheetOptions(settings.carm_date_order, tz)


def file_format(path: Path, given: str | None = None) -> SheetFormat:
    if given in ("csv", "yaml"):
        return "csv" if given == "csv" else "yaml"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise UsageError(f"{path}: the file must end in .csv, .yaml or .yml")


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _read_topic(topic: CarmTopic, settings: Settings) -> TopicState:
    try:
        state = topic.read()
    except (CarmTopicError, KafkaConfigError) as exc:
        raise UsageError(str(exc)) from exc
    except Exception as exc:
        raise UsageError(f"cannot read {topic.name}: {explain_connection_error(settings, exc)}") from exc
    for line in state.unreadable:
        _err(f"warning: {topic.name}: a record the pipeline dead-letters: {line}")
    return state


def _missing_topic(name: str) -> str:
    return f"topic {name} does not exist: create it with `holdwatch topics create`"


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except UsageError as exc:
        _err(f"holdwatch carm: {exc}")
        return 2


def run_import(
    args: argparse.Namespace,
    settings: Settings,
    *,
    topic_factory: TopicFactory = KafkaCarmTopic,
    clock: Clock = utc_now,
) -> int:
    def run() -> int:
        path: Path = args.file
        fmt = file_format(path)
        options = sheet_options(settings)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        now = clock()
        result = read_sheet(data, fmt, options, now)
        for warning in result.warnings:
            _err(f"warning: {path}: {warning}")
        if result.file_errors:
            for error in result.file_errors:
                _err(f"{path}: {error}")
            _err("nothing published: the file cannot be read as a registry")
            return 1
        for error in result.errors:
            _err(f"{path}: {error}")
        bad = len(result.bad_lines)
        if bad and not args.skip_bad:
            _err(
                f"{bad} bad row(s): nothing published. Fix them, or use --skip-bad to publish the "
                f"{len(result.rows)} good row(s)"
            )
            return 1
        if bad:
            lines = ", ".join(str(line) for line in result.bad_lines)
            print(f"skipping {bad} bad row(s) (--skip-bad): line(s) {lines}")
        for row in result.rows:
            if row.assumed:
                print(f"note: line {row.line} {row.snapshot.importer_bn}: {'; '.join(row.assumed)}")
        topic = topic_factory(settings)
        state = _read_topic(topic, settings)
        if not state.exists and not args.dry_run:
            raise UsageError(_missing_topic(topic.name))
        where = topic.name if state.exists else f"{topic.name} (does not exist yet)"
        print(f"{path}: {len(result.rows)} importer(s); {where}: {len(state.snapshots)} importer(s)")
        diff = diff_registry(state.snapshots, result.snapshots(), options)
        for line in describe_diff(diff):
            print(f"  {line}")
        to_publish = diff.to_publish()
        if args.dry_run:
            print(f"dry run: nothing published ({len(to_publish)} snapshot(s) would be)")
            return 0
        if not to_publish:
            print("nothing to publish: the topic already holds this file")
            return 0
        try:
            topic.publish(to_publish)
        except Exception as exc:  # noqa: BLE001 - CarmTopicError or a broker problem: said, exit 1
            text = str(exc) if isinstance(exc, CarmTopicError) else explain_connection_error(settings, exc)
            _err(f"holdwatch carm import: publish failed: {text}")
            return 1
        print(
            f"published {len(to_publish)} snapshot(s) to {topic.name} "
            f"({len(diff.new)} new, {len(diff.changed)} changed); "
            f"{len(diff.unchanged)} unchanged not re-published"
        )
        return 0

    return _guarded(run)


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} exists: use --force to overwrite it")


def run_template(args: argparse.Namespace, settings: Settings, *, clock: Clock = utc_now) -> int:
    def run() -> int:
        out: Path = args.out
        fmt = file_format(out, args.format) if args.format or out.suffix else "csv"
        _refuse_overwrite(out, args.force)
        options = sheet_options(settings)
        today = clock().astimezone(options.tz).date()
        out.write_bytes(write_sheet(template_rows(today, options.date_order), fmt, TEMPLATE_HEADER))
        print(
            f"wrote {out}: every column and 3 example importers; edit it, then `holdwatch carm import {out}`"
        )
        return 0

    return _guarded(run)


def run_show(
    args: argparse.Namespace,
    settings: Settings,
    *,
    topic_factory: TopicFactory = KafkaCarmTopic,
    clock: Clock = utc_now,
) -> int:
    def run() -> int:
        try:
            bn = parse_bn(args.bn)
        except CellError as exc:
            raise UsageError(f"BN {exc}") from exc
        options = sheet_options(settings)
        topic = topic_factory(settings)
        state = _read_topic(topic, settings)
        if not state.exists:
            raise UsageError(_missing_topic(topic.name))
        snapshot = state.snapshots.get(bn)
        if snapshot is None:
            if bn in state.deleted:
                at = state.deleted[bn]
                where = f"partition {at.partition}, offset {at.offset} of {topic.name}"
                print(f"{bn}: deleted (a tombstone at {where})")
            else:
                print(f"{bn}: no CARM record on {topic.name} ({len(state.snapshots)} importer(s) there)")
            return 1
        if args.json:
            print(snapshot.model_dump_json(indent=2))
            return 0
        for line in describe_snapshot(snapshot, options, clock()):
            print(line)
        position = state.positions.get(bn)
        where = f" partition {position.partition}, offset {position.offset}" if position else ""
        print(
            f"  record: {topic.name}{where}; event_id {snapshot.event_id}; "
            f"occurred_at {snapshot.occurred_at.isoformat().replace('+00:00', 'Z')}"
        )
        return 0

    return _guarded(run)


def run_export(
    args: argparse.Namespace,
    settings: Settings,
    *,
    topic_factory: TopicFactory = KafkaCarmTopic,
    clock: Clock = utc_now,
) -> int:
    def run() -> int:
        path: Path = args.file
        fmt = file_format(path)
        _refuse_overwrite(path, args.force)
        options = sheet_options(settings)
        topic = topic_factory(settings)
        state = _read_topic(topic, settings)
        if not state.exists:
            raise UsageError(_missing_topic(topic.name))
        snapshots = [state.snapshots[bn] for bn in sorted(state.snapshots)]
        rows = [cells_of(snapshot, options) for snapshot in snapshots]
        data = write_sheet(rows, fmt)
        # The promise is that importing the file changes nothing: checked before writing it.
        check = read_sheet(data, fmt, options, clock())
        read_back = {s.importer_bn: cells_of(s, options) for s in check.snapshots()}
        differ = [row["importer_bn"] for row in rows if read_back.get(row["importer_bn"]) != row]
        problems = [str(error) for error in (*check.file_errors, *check.errors)]
        if differ or problems:
            _err(f"holdwatch carm export: these records would not read back identically: {', '.join(differ)}")
            for problem in problems:
                _err(f"  {problem}")
            return 1
        path.write_bytes(data)
        print(f"wrote {len(rows)} importer(s) from {topic.name} to {path}")
        return 0

    return _guarded(run)
