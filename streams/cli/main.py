"""The `holdwatch` console command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streams.settings import Settings

# Each module registers its own subcommands; listed here so `--help` shows them in order.
COMMAND_MODULES = (
    "devtools.commands.broker",
    "streams.cli.topics",
    "streams.cli.worker",
    "streams.cli.notifier",
    "streams.cli.replay",
    "streams.cli.backtest",
    "devtools.commands.simulate",
    "streams.cli.schemas",
    "streams.cli.status",
    "streams.cli.slack",
    "streams.cli.connect",
    "streams.cli.ingest",
    "streams.cli.carm",
    "devtools.commands.demo",
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
        importlib.import_module(name).register(sub)
    return parser


def with_local_broker(settings: Settings) -> Settings:
    """Without HOLDWATCH_KAFKA_BOOTSTRAP, point the settings at the local development broker when
    one runs (`holdwatch broker start`). The one place where the product looks at a dev tool."""
    if settings.kafka_bootstrap:
        return settings
    from devtools.broker import running_broker

    state = running_broker(settings.home)
    return settings if state is None else settings.model_copy(update={"kafka_bootstrap": state.bootstrap})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = with_local_broker(Settings())
    except Exception as exc:  # noqa: BLE001 - a bad setting is a user error, said plainly
        print(f"holdwatch: invalid settings: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
