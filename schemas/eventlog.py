"""Event-log files (events.md): JSON Lines, optionally gzip-compressed.

One record per line: {"topic", "key", "value", "timestamp"}. Reading streams with
constant memory; a line that cannot be read is reported with its number and skipped.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of an event log; `value` is the parsed JSON value (None = tombstone)."""

    topic: str
    key: str | None
    value: Any
    timestamp: int | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a readable log record."""

    line: int
    reason: str
    detail: str
    text: str


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, mode + "b"), encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115 - returned to caller


def parse_line(text: str, line: int) -> LogRecord | BadLine:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return BadLine(line, "not_json", f"line {line}: not JSON ({exc})", text[:200])
    if not isinstance(obj, dict):
        return BadLine(line, "not_object", f"line {line}: a record must be a JSON object", text[:200])
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic:
        return BadLine(line, "missing_topic", f"line {line}: no 'topic' string", text[:200])
    key = obj.get("key")
    if key is not None and not isinstance(key, str):
        return BadLine(line, "wrong_type", f"line {line}: 'key' must be a string or null", text[:200])
    ts = obj.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 0):
        return BadLine(line, "wrong_type", f"line {line}: 'timestamp' must be epoch milliseconds", text[:200])
    if "value" not in obj:
        return BadLine(line, "missing_value", f"line {line}: no 'value' (use null for a tombstone)", text[:200])
    return LogRecord(topic, key, obj["value"], ts, line)


def read_log(path: Path) -> Iterator[LogRecord | BadLine]:
    """Yield each line of the log as a record or a bad line, in file order."""
    with _open_text(path, "r") as handle:
        for number, text in enumerate(handle, start=1):
            stripped = text.strip()
            if not stripped:
                continue
            yield parse_line(stripped, number)


class LogWriter:
    """Writes an event log; `.gz` paths are compressed."""

    def __init__(self, path: Path) -> None:
        self._handle = _open_text(path, "w")
        self.count = 0

    def write(self, topic: str, key: str | None, value: Any, timestamp: int | None = None) -> None:
        record: dict[str, Any] = {"topic": topic, "key": key, "value": value}
        if timestamp is not None:
            record["timestamp"] = timestamp
        self._handle.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
        self._handle.write("\n")
        self.count += 1

    def write_raw_line(self, text: str) -> None:
        """Write a line as it is (used to simulate unreadable records)."""
        self._handle.write(text.replace("\n", " ") + "\n")
        self.count += 1

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_log(path: Path, records: Iterable[LogRecord]) -> int:
    with LogWriter(path) as writer:
        for record in records:
            writer.write(record.topic, record.key, record.value, record.timestamp)
        return writer.count
