"""Event-log files (events.md): JSON Lines, optionally gzip-compressed.

One record per line: {"topic", "key", "value", "timestamp"}. Reading streams with
constant memory; a line that cannot be read is reported with its number and skipped.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
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
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


def _open_binary(path: Path) -> io.BufferedIOBase:
    # A 1 MiB buffer for plain files (fewer refills; each refill releases the GIL to the replay
    # producer's I/O thread). Not for .gz: a big read-ahead on a truncated file would lose the
    # readable lines before the damage.
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")
    return io.BufferedReader(io.FileIO(path, "rb"), 1 << 20)


def _excerpt(text: str) -> str:
    return text[:200]


def parse_line(text: str, line: int) -> LogRecord | BadLine:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        return BadLine(line, "not_json", f"line {line}: not JSON ({exc})", _excerpt(text))
    if not isinstance(obj, dict):
        return BadLine(line, "not_object", f"line {line}: a record must be a JSON object", _excerpt(text))
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic:
        return BadLine(line, "missing_topic", f"line {line}: no 'topic' string", _excerpt(text))
    key = obj.get("key")
    if key is not None and not isinstance(key, str):
        return BadLine(line, "wrong_type", f"line {line}: 'key' must be a string or null", _excerpt(text))
    ts = obj.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 0):
        detail = f"line {line}: 'timestamp' must be epoch milliseconds"
        return BadLine(line, "wrong_type", detail, _excerpt(text))
    if "value" not in obj:
        detail = f"line {line}: no 'value' (use null for a tombstone)"
        return BadLine(line, "missing_value", detail, _excerpt(text))
    return LogRecord(topic, key, obj["value"], ts, line)


MAX_LINE_BYTES = 8 * 1024 * 1024
"""A longer line is reported as too large and skipped unparsed, so memory stays bounded."""


def _lines(handle: io.BufferedIOBase) -> Iterator[bytes | None]:
    """The file's lines; None for a line longer than MAX_LINE_BYTES (its bytes are skipped)."""
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield raw


def read_log(path: Path) -> Iterator[LogRecord | BadLine]:
    """Yield each line of the log as a record or a bad line, in file order, one line at a time.

    Lines are decoded one by one so that a line of bad bytes is reported and skipped like
    any bad record; a corrupt or truncated `.gz` ends the read with a final bad line.
    """
    number = 0
    with _open_binary(path) as handle:
        try:
            for number, raw in enumerate(_lines(handle), start=1):
                if raw is None:
                    detail = f"line {number}: longer than {MAX_LINE_BYTES} bytes"
                    yield BadLine(number, "too_large", detail, "")
                    continue
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    detail = f"line {number}: not UTF-8 ({exc})"
                    yield BadLine(number, "not_utf8", detail, _excerpt(raw.decode("utf-8", "replace")))
                    continue
                if text:
                    yield parse_line(text, number)
        except (OSError, EOFError, zlib.error) as exc:
            line = number + 1
            detail = f"line {line}: the file cannot be read from here on ({exc})"
            yield BadLine(line, "unreadable", detail, "")


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
