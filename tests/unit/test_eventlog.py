"""Event-log files: round trips (plain and .gz), bad lines reported by number, streaming reads."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import threading
from pathlib import Path

import pytest

from schemas import eventlog
from schemas.decode import Decoded, TopicKind, decode_parsed
from schemas.eventlog import BadLine, LogRecord, LogWriter, parse_line, read_log, write_log
from tests.unit.test_schemas_models import BN, CCN, body

RECORDS = [
    LogRecord("emanifest.events", CCN, body("cargo_reported"), 1763900000000, 1),
    LogRecord("rns.events", CCN, body("rns_status"), None, 2),
    LogRecord("carm.readiness", BN, body("carm_snapshot"), 1763900000500, 3),
    LogRecord("carm.readiness", BN, None, 1763900001000, 4),  # a tombstone
    LogRecord("emanifest.events", None, {"note": "ünïcödé \u2028 and a newline\n inside"}, None, 5),
]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_a_log_round_trips(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_log(path, RECORDS) == len(RECORDS)
    assert list(read_log(path)) == RECORDS


def test_gz_logs_are_compressed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    write_log(path, RECORDS)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().rstrip("\n").split("\n")  # not splitlines(): U+2028 is not a line end
    assert len(lines) == len(RECORDS)
    assert json.loads(lines[0])["topic"] == "emanifest.events"


def test_the_file_format_is_the_one_in_events_md(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_log(path, RECORDS[:2])
    first, second = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    assert first == {
        "topic": "emanifest.events",
        "key": CCN,
        "value": body("cargo_reported"),
        "timestamp": 1763900000000,
    }
    assert "timestamp" not in second


def test_records_read_from_a_log_decode_into_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_log(path, RECORDS[:4])
    kinds = {
        "emanifest.events": TopicKind.EMANIFEST,
        "rns.events": TopicKind.RNS,
        "carm.readiness": TopicKind.CARM,
    }
    results = [
        decode_parsed(kinds[r.topic], r.key, r.value) for r in read_log(path) if isinstance(r, LogRecord)
    ]
    assert all(isinstance(result, Decoded) for result in results)
    assert results[-1] == Decoded(TopicKind.CARM, BN, None)


BAD_LINES = [
    ("not json at all", "not_json"),
    ('{"topic": "rns.events", "key": "K", "value": {', "not_json"),
    ('["a", "list"]', "not_object"),
    ('{"key": "K", "value": {}}', "missing_topic"),
    ('{"topic": "", "key": "K", "value": {}}', "missing_topic"),
    ('{"topic": "rns.events", "key": 42, "value": {}}', "wrong_type"),
    ('{"topic": "rns.events", "key": "K", "value": {}, "timestamp": "1763900000000"}', "wrong_type"),
    ('{"topic": "rns.events", "key": "K", "value": {}, "timestamp": true}', "wrong_type"),
    ('{"topic": "rns.events", "key": "K", "value": {}, "timestamp": -1}', "wrong_type"),
    ('{"topic": "rns.events", "key": "K"}', "missing_value"),
    ("[" * 200_000, "not_json"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_LINES)
def test_a_bad_line_is_reported_with_its_number_and_the_rest_is_read(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "events.jsonl"
    with LogWriter(path) as writer:
        writer.write("rns.events", CCN, body("rns_status"))
        writer.write_raw_line(text)
        writer.write("carm.readiness", BN, None)
    first, bad, last = read_log(path)
    assert isinstance(bad, BadLine)
    assert (bad.line, bad.reason) == (2, reason)
    assert "line 2" in bad.detail
    assert len(bad.text) <= 200
    assert first == LogRecord("rns.events", CCN, body("rns_status"), None, 1)
    assert last == LogRecord("carm.readiness", BN, None, None, 3)


def test_a_line_of_bad_bytes_is_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps({"topic": "rns.events", "key": CCN, "value": None}).encode()
    path.write_bytes(good + b"\n" + b'{"topic": "\xff\xfe"}\n' + good + b"\n")
    records = list(read_log(path))
    assert [type(r).__name__ for r in records] == ["LogRecord", "BadLine", "LogRecord"]
    assert isinstance(records[1], BadLine)
    assert (records[1].line, records[1].reason) == (2, "not_utf8")
    assert records[2].line == 3


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_an_overlong_line_is_skipped_without_being_held_in_memory(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventlog, "MAX_LINE_BYTES", 100)
    path = tmp_path / name
    with LogWriter(path) as writer:
        writer.write("a", None, "x" * 20)
        writer.write("b", None, "y" * 1000)  # ten times the limit
        writer.write("c", None, "z" * 20)
        writer.write("d", None, "w" * 500)  # the last line, too long, without a newline after it
    records = list(read_log(path))
    assert [(r.line, type(r).__name__) for r in records] == [
        (1, "LogRecord"),
        (2, "BadLine"),
        (3, "LogRecord"),
        (4, "BadLine"),
    ]
    assert isinstance(records[1], BadLine) and records[1].reason == "too_large"
    assert isinstance(records[2], LogRecord) and records[2].value == "z" * 20


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '\n{"topic": "a", "key": null, "value": 1}\r\n   \n{"topic": "b", "value": 2}\n', encoding="utf-8"
    )
    assert [(r.line, r.topic) for r in read_log(path) if isinstance(r, LogRecord)] == [(2, "a"), (4, "b")]


def test_a_truncated_gz_log_yields_what_it_can_then_one_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    write_log(path, RECORDS * 50)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    records = list(read_log(path))
    assert records, "the readable part is read"
    *good, last = records
    assert all(isinstance(r, LogRecord) for r in good[:-1])
    assert isinstance(last, BadLine)
    assert last.reason == "unreadable"
    assert last.line == good[-1].line + 1


def test_a_file_that_is_not_gzip_is_one_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(b'{"topic": "a", "value": 1}\n')
    assert [(type(r).__name__, r.line) for r in read_log(path)] == [("BadLine", 1)]


def test_parse_line_accepts_exactly_the_record_shape() -> None:
    assert parse_line('{"topic": "t", "key": "k", "value": [1], "timestamp": 5, "extra": 1}', 7) == LogRecord(
        "t", "k", [1], 5, 7
    )


def test_reading_is_lazy() -> None:
    assert inspect.isgeneratorfunction(read_log)


@pytest.mark.timeout(10)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_reading_streams_records_before_the_file_is_complete(tmp_path: Path) -> None:
    # Through a pipe the writer holds back the second record until the reader has the first:
    # a reader that loaded the whole file first would wait forever (and the timeout fails it).
    pipe = tmp_path / "events.jsonl"
    os.mkfifo(pipe)
    first_read = threading.Event()

    def produce() -> None:
        with pipe.open("wb") as handle:
            handle.write(b'{"topic": "a", "key": null, "value": 1}\n')
            handle.flush()
            first_read.wait(timeout=30)  # longer than the test timeout
            handle.write(b'{"topic": "b", "key": null, "value": 2}\n')

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    records = read_log(pipe)
    first = next(records)
    assert isinstance(first, LogRecord) and first.topic == "a"
    assert not first_read.is_set()
    first_read.set()
    assert [r.topic for r in records if isinstance(r, LogRecord)] == ["b"]
    writer.join(timeout=10)
