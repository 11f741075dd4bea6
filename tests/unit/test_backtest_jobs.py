"""`holdwatch backtest --jobs N`: the same alert file, byte for byte, and the same summary as one
process, on simulated logs with junk lines, duplicates and mid-run CARM changes; the clock shared
across jobs; the cases one process alone can decide are redone in one process."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from alerting.engine.config import Thresholds
from schemas.alerts import AlertEvent
from schemas.decode import Decoded, decode_parsed, topic_kinds
from schemas.eventlog import BadLine, LogWriter, read_log
from streams import backtest
from streams.cli.main import main
from tests.enginekit import BN, accepted, at, carm, reported

KINDS = topic_kinds("emanifest.events", "rns.events", "carm.readiness")

# Lines LogWriter never writes: each takes the slow path, and must classify as read_log +
# decode_parsed do, be counted once, and route the same in every job.
JUNK = [
    "",
    "   ",
    "{this is not json",
    "[1, 2]",
    '{"topic": "emanifest.events", "key": null, "value": {}}',
    '{"topic":"other.topic","key":"X","value":{}}',
    '{"topic":"carm.readiness","key":"123456789RM0001","value":null,"timestamp":1762146000000}',
    '{"topic":"rns.events","key":"ZZZZ000000001","value":{"event_type":"rns_status"},"timestamp":5}',
    '{"topic":"emanifest.events","key":"abc","value":{"x":1},"timestamp":-1}',
    '{"topic":"emanifest.events","key":"abc","value":{"x":1},"timestamp":01}',
]


def _simulated(tmp_path: Path, *, loads: int = 300, seed: int = 5, hours: int = 48) -> Path:
    log = tmp_path / f"sim-{seed}.jsonl"
    args = ["simulate", "--loads", str(loads), "--seed", str(seed), "--hours", str(hours), "--out", str(log)]
    assert main([*args, "--malformed-rate", "0.01", "--duplicate-rate", "0.02"]) == 0
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    step = len(lines) // (len(JUNK) + 1)
    for n, junk in enumerate(JUNK, start=1):
        lines.insert(n * step, junk + "\n")
    for n in range(5, len(lines), 97):
        if lines[n].startswith('{"topic":"emanifest.events","key":"'):
            lines[n] = _rewritten(lines[n], n)
    log.write_text("".join(lines), encoding="utf-8")
    return log


def _rewritten(line: str, n: int) -> str:
    """A valid record as another writer puts it (slow path): with spaces, or its key escaped."""
    record = json.loads(line)
    if n % 2:
        return json.dumps(record) + "\n"
    key = record["key"]
    compact = json.dumps(record, separators=(",", ":"))
    return compact.replace(f'"key":"{key}"', f'"key":"{key[:-1]}\\u{ord(key[-1]):04x}"', 1) + "\n"


def _run(log: Path, tmp_path: Path, jobs: int, *extra: str) -> tuple[bytes, dict[str, object]]:
    out, summary = tmp_path / f"alerts-{jobs}.jsonl", tmp_path / f"summary-{jobs}.json"
    args = ["backtest", str(log), "--out", str(out), "--summary-json", str(summary), "--quiet"]
    assert main([*args, "--jobs", str(jobs), *extra]) == 0
    data = json.loads(summary.read_text())
    assert len(data.pop("jobs")) == jobs
    data.pop("seconds")
    return out.read_bytes(), data


def test_jobs_write_the_one_process_file_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _simulated(tmp_path)
    capsys.readouterr()
    one, summary = _run(log, tmp_path, 1)
    printed = capsys.readouterr()
    assert summary["dead_letters"] and summary["duplicates"] and one.count(b"\n") > 100
    for jobs in (2, 3):
        assert _run(log, tmp_path, jobs) == (one, summary)
        again = capsys.readouterr()
        assert "running in one" not in again.err
        # Bad lines are reported once (by job 0), like one process does.
        assert sorted(again.err.splitlines()) == sorted(printed.err.splitlines())


def test_jobs_match_with_retention_forgetting_and_until(tmp_path: Path) -> None:
    log = _simulated(tmp_path, loads=200, seed=4, hours=336)
    short = Thresholds(retention_closed=timedelta(hours=6), retention_unknown=timedelta(hours=6))
    until = at(60 * 24 * 30)
    results = []
    for jobs in (1, 2, 3):
        out = io.StringIO()
        report = backtest.run_backtest([log], out, short, KINDS, until=until, jobs=jobs)
        assert len(report.jobs) == jobs and all(j.peak_rss_mib > 0 for j in report.jobs)
        results.append((out.getvalue(), {k: v for k, v in report.as_dict().items() if k != "seconds"}))
    assert results[0][1]["forgotten_by_retention"] > 150
    assert results[1] == results[0] and results[2] == results[0]


def _ccns_of_two_jobs() -> tuple[str, str]:
    ccns = [f"JOBS{n:06d}" for n in range(50)]
    first = ccns[0]
    other = next(c for c in ccns if backtest._owner(c.encode(), 2) != backtest._owner(first.encode(), 2))
    return first, other


def _write(path: Path, items: list[object]) -> None:
    with LogWriter(path) as log:
        for item in items:
            value = item.model_dump(mode="json")  # type: ignore[attr-defined]
            topic = "carm.readiness" if value["event_type"] == "carm_snapshot" else "emanifest.events"
            key = value["importer_bn"] if topic == "carm.readiness" else value["ccn"]
            log.write(topic, key, value, int(item.occurred_at.timestamp() * 1000))  # type: ignore[attr-defined]


def test_a_deadline_fires_on_another_jobs_record_before_a_late_carm_record(tmp_path: Path) -> None:
    """A's PARS deadline (ETA-120 = minute 180) fires on B's record at 200, another job's; then a
    CARM record stamped 170 arrives. One process evaluates it after the deadline (at 180); a job
    that did not follow B's time would apply it first (at 170) and fire the deadline after."""
    a, b = _ccns_of_two_jobs()
    items: list[object] = [
        carm(-60),
        reported(0, ccn=a, eta=300),
        accepted(1, ccn=a),
        reported(2, ccn=b, eta=2000),
        accepted(200, ccn=b),
        carm(170, registered=False, eid="late-carm"),
    ]
    log = tmp_path / "late.jsonl"
    _write(log, items)
    outs = []
    for jobs in (1, 2):
        out = io.StringIO()
        backtest.run_backtest([log], out, Thresholds(), KINDS, jobs=jobs)
        outs.append(out.getvalue())
    assert outs[1] == outs[0]
    steps = [AlertEvent.model_validate_json(line) for line in outs[0].splitlines()]
    assert [(s.ccn, s.action, s.trigger, s.at) for s in steps if s.ccn == a][:2] == [
        (a, "raised", "deadline", at(180)),
        (a, "updated", "carm", at(180)),
    ]


def test_what_one_process_alone_decides_is_redone_in_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _ccns_of_two_jobs()
    log = tmp_path / "odd.jsonl"
    _write(log, [carm(-60), reported(0, ccn=a, eta=300), reported(1, ccn=b, eta=300)])
    with log.open("a", encoding="utf-8") as handle:
        # A CARM tombstone with no timestamp takes the clock's time: only one process has it.
        handle.write(json.dumps({"topic": "carm.readiness", "key": BN, "value": None}) + "\n")
    one = io.StringIO()
    backtest.run_backtest([log], one, Thresholds(), KINDS, jobs=1, until=at(400))
    two = io.StringIO()
    report = backtest.run_backtest([log], two, Thresholds(), KINDS, jobs=2, until=at(400))
    assert "running in one" in capsys.readouterr().err
    assert two.getvalue() == one.getvalue() and len(report.jobs) == 1


def test_a_line_routed_by_a_key_it_does_not_have_is_redone_in_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The raw key routes the line; a later duplicate "key" member is the parsed one."""
    a, b = _ccns_of_two_jobs()
    log = tmp_path / "twokeys.jsonl"
    _write(log, [carm(-60), reported(0, ccn=a, eta=300)])
    value = json.dumps(reported(1, ccn=b, eta=300).model_dump(mode="json"), separators=(",", ":"))
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f'{{"topic":"emanifest.events","key":"{a}","value":{value},"key":"{b}"}}\n')
    outs = []
    for jobs in (1, 2):
        out = io.StringIO()
        backtest.run_backtest([log], out, Thresholds(), KINDS, jobs=jobs, until=at(400))
        outs.append(out.getvalue())
    assert "running in one" in capsys.readouterr().err
    assert outs[1] == outs[0] and b in outs[0]


def test_a_duplicate_that_crossed_another_jobs_deadline_is_detected() -> None:
    ended = [("lines", at(5), [7], []), ("lines", at(9), [], [3, 7])]
    with pytest.raises(backtest._NeedsOneProcess):
        backtest._global_end(ended, None)
    ended = [("lines", at(5), [7], []), ("lines", at(9), [], [3, 8])]
    assert backtest._global_end(ended, None) == at(9)
    assert backtest._global_end(ended, at(20)) == at(20)


def test_the_fast_path_classifies_every_line_as_read_log_and_decode_parsed(tmp_path: Path) -> None:
    log = _simulated(tmp_path, loads=80, seed=9)
    job = backtest._Job(Thresholds(), KINDS, lambda index, keyed: None)
    expected: list[tuple[object, ...]] = []
    for item in read_log(log):
        if isinstance(item, BadLine):
            expected.append(("bad", item.reason, item.detail))
            continue
        kind = KINDS.get(item.topic)
        result = decode_parsed(kind, item.key, item.value) if kind else None
        if isinstance(result, Decoded):
            expected.append(("event", result.key, result.event, item.timestamp))
        else:
            expected.append(("rejected", "unknown_topic" if result is None else str(result.reason)))
    got: list[tuple[object, ...]] = []
    fast = 0
    for number, raw in enumerate(backtest._file_lines(log), start=1):
        assert isinstance(raw, bytes)
        line, stamp, took_fast = job.classify(raw, number, backtest._locate(raw))
        fast += took_fast
        if isinstance(line, BadLine):
            got.append(("bad", line.reason, line.detail))
        elif isinstance(line, Decoded):
            got.append(("event", line.key, line.event, stamp))
        elif line is not None:  # None: a blank line, which read_log skips
            got.append(("rejected", str(line.reason)))
    assert got == expected
    assert fast > 0.9 * len(got)


def test_the_time_hint_is_the_events_time_to_the_second() -> None:
    line = (
        b'{"topic":"rns.events","key":"ABCD1234","value":{"event_id":"e1",'
        b'"occurred_at":"2025-11-03T05:00:07Z","schema_version":1},"timestamp":1}\n'
    )
    assert backtest._locate(line) == (b"rns.events", b"ABCD1234", line.index(b"{", 1))
    assert backtest._occurred_hint(line) == b"2025-11-03T05:00:07"
    # Another occurred_at, an escape, or an offset: no hint (the line is decoded if it matters).
    for other in (
        line.replace(b'"timestamp"', b'"occurred_at":"2099-01-01T00:00:00Z","t"'),
        line.replace(b"e1", b"e\\u0031"),
        line.replace(b"07Z", b"07+01:00"),
    ):
        assert backtest._occurred_hint(other) is None


def test_the_file_order_is_the_runners_emission_order(tmp_path: Path) -> None:
    """The per-line sort (deadlines by instant and CCN, then the rest by CCN) only restates the
    order the runner emits in, so `--jobs 1` writes what the back-test always wrote."""
    log = _simulated(tmp_path, loads=300, seed=6)
    reordered: list[int] = []
    lines_with_several = 0

    def write(index: int, keyed: list[tuple[str, AlertEvent]]) -> None:
        nonlocal lines_with_several
        if len(keyed) > 1:
            lines_with_several += 1
            emitted = [int(key.rsplit(" ", 1)[1]) for key, _ in keyed]
            if emitted != sorted(emitted):
                reordered.append(index)

    job = backtest._Job(Thresholds(), KINDS, write, count=1)
    job.read([log])
    job.finish(at(60 * 24 * 10))
    assert lines_with_several >= 10 and reordered == []


def test_jobs_is_a_documented_positive_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["backtest", "--help"])
    assert "--jobs N" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["backtest", "x.jsonl", "--out", "a.jsonl", "--jobs", "0"])
    assert "must be >= 1" in capsys.readouterr().err
