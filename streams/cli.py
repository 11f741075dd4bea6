"""The `holdwatch` console command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streams.settings import Settings

# Each module registers its own subcommands; listed here so `--help` shows them in order.
COMMAND_MODULES = (
    "streams.commands.broker",
    "streams.commands.topics",
    "streams.commands.worker",
    "streams.commands.notifier",
    "streams.commands.replay",
    "streams.commands.backtest",
    "streams.commands.simulate",
    "streams.commands.schemas",
    "streams.commands.slack",
    "streams.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holdwatch",
        description=(
            "Early warning for Canada-bound loads about to be held at the border. "
            "Settings come from HOLDWATCH_* environment variables (see the README)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - a bad setting is a user error, said plainly
        print(f"holdwatch: invalid settings: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
