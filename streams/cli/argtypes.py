"""argparse types shared by the commands: a bad value is a clear usage error, not a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime


def timestamp(text: str) -> datetime:
    """RFC 3339 with an offset (`Z` or `+hh:mm`)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time needs an offset (Z or +hh:mm): {text!r}")
    return value


def integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def number(
    minimum: float, maximum: float = math.inf, *, above_minimum: bool = False
) -> Callable[[str], float]:
    """A finite number in [minimum, maximum] (or (minimum, maximum] with `above_minimum`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
        low_ok = value > minimum if above_minimum else value >= minimum
        if not (low_ok and value <= maximum and math.isfinite(value)):
            low = f"> {minimum:g}" if above_minimum else f">= {minimum:g}"
            high = "" if math.isinf(maximum) else f" and <= {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be {low}{high}, got {text}")
        return value

    return parse
