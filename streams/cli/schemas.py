"""`holdwatch schemas export [--check]`: keep schemas/json/ in step with the models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schemas.jsonschema import JSON_DIR, drifted, export


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schemas", help="JSON Schema files of the wire contract")
    commands = parser.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    exporter = commands.add_parser(
        "export",
        help="regenerate schemas/json/*.json from the models",
        description="Write one JSON Schema file per topic, generated from the pydantic models.",
    )
    exporter.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and list the files that differ from the models",
    )
    exporter.add_argument(
        "--dir", type=Path, default=JSON_DIR, help=f"target directory (default: {JSON_DIR})"
    )
    exporter.set_defaults(func=run_export)


def run_export(args: argparse.Namespace, _settings: object) -> int:
    directory: Path = args.dir
    if args.check:
        stale = drifted(directory)
        for name in stale:
            print(f"drifted: {directory / name}", file=sys.stderr)
        if stale:
            print("run `holdwatch schemas export` and commit the result", file=sys.stderr)
            return 1
        print(f"schemas in {directory} match the models")
        return 0
    changed = export(directory)
    for name in changed:
        print(f"wrote {directory / name}")
    if not changed:
        print(f"schemas in {directory} already match the models")
    return 0
