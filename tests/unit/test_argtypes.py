"""Command-line value types: clear usage errors for bad values."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.cli.argtypes import integer, number, timestamp


def test_timestamps_need_an_offset() -> None:
    assert timestamp("2026-03-02T08:00:00Z") == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert timestamp("2026-03-02T03:00:00-05:00").utcoffset() == timezone(timedelta(hours=-5)).utcoffset(None)
    for bad in ("2026-03-02T08:00:00", "yesterday"):
        with pytest.raises(argparse.ArgumentTypeError):
            timestamp(bad)


def test_integer_and_number_bounds() -> None:
    assert integer(1)("5") == 5
    assert number(0, 1)("0.5") == 0.5
    assert number(0, above_minimum=True)("0.1") == 0.1
    for parse, bad in (
        (integer(1), "0"),
        (integer(0), "1.5"),
        (number(0, 1), "1.1"),
        (number(0, above_minimum=True), "0"),
        (number(0), "inf"),
        (number(0), "nan"),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
