"""The back-test command end to end on small logs: alerts out, summary, bad lines, --until."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from schemas.alerts import AlertEvent
from schemas.eventlog import LogWriter
from streams.cli.main import main
from tests.enginekit import accepted, at, carm, notice, reported, rns


def _write(path: Path, items: list[object], *, bad_line: bool = False) -> None:
    with LogWriter(path) as log:
        for item in items:
            value = item.model_dump(mode="json")  # type: ignore[attr-defined]
            topic = {"carm_snapshot": "carm.readiness", "rns_status": "rns.events"}.get(
                value["event_type"], "emanifest.events"
            )
            key = value.get("importer_bn") if topic == "carm.readiness" else value["ccn"]
            ms = int(item.occurred_at.timestamp() * 1000)  # type: ignore[attr-defined]
            log.write(topic, key, value, ms)
        if bad_line:
            log.write_raw_line("{this is not json")
            log.write("rns.events", "WRONGKEY1", rns(5, 9, ccn="ABCD100").model_dump(mode="json"))


def _alerts(path: Path) -> list[AlertEvent]:
    return [AlertEvent.model_validate_json(line) for line in path.read_text().splitlines()]


def test_backtest_writes_alerts_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    duplicate = accepted(3, ccn="HELD0001")
    items: list[object] = [
        carm(-60),
        # A load held for examination, alerted beforehand (no PARS link at ETA-120).
        reported(0, ccn="HELD0001", eta=300),
        duplicate,
        duplicate,
        notice(300, "arrived", ccn="HELD0001"),
        rns(305, 5, ccn="HELD0001"),
        # A clean load that alerted anyway (noise): late PARS, released on arrival.
        reported(1, ccn="NOISE001", eta=300),
        accepted(4, ccn="NOISE001"),
        rns(200, 9, ccn="NOISE001"),
        notice(300, "arrived", ccn="NOISE001"),
        rns(310, 4, ccn="NOISE001"),
        # A clean load with no alert.
        reported(2, ccn="CLEAN001", eta=300),
        accepted(5, ccn="CLEAN001"),
        rns(30, 9, ccn="CLEAN001"),
        notice(301, "arrived", ccn="CLEAN001"),
        rns(311, 4, ccn="CLEAN001"),
    ]
    log = tmp_path / "day.jsonl.gz"
    _write(log, items, bad_line=True)
    out = tmp_path / "alerts.jsonl"
    summary = tmp_path / "summary.json"
    assert main(["backtest", str(log), "--out", str(out), "--summary-json", str(summary), "--quiet"]) == 0

    alerts = _alerts(out)
    held = [(a.action, a.reasons, a.at) for a in alerts if a.ccn == "HELD0001"]
    assert held == [
        ("raised", ["PARS_NOT_MATCHED"], at(180)),
        ("updated", ["PARS_NOT_MATCHED"], at(270)),
        ("updated", ["HELD_FOR_EXAMINATION", "PARS_NOT_MATCHED"], at(305)),
    ]
    assert {a.ccn for a in alerts} == {"HELD0001", "NOISE001"}

    data = json.loads(summary.read_text())
    assert data["shipments"] == 3
    assert data["duplicates"] == 1
    assert data["dead_letters"] == {"key_mismatch": 1, "not_json": 1}
    assert data["held_loads"] == 1 and data["held_alerted_before_arrival"] == 1 and data["recall"] == 1.0
    assert data["clean_loads"] == 2 and data["clean_loads_alerted"] == 1 and data["noise"] == 0.5
    assert data["lead_time_minutes"]["n"] == 2
    assert data["loads_by_rule"]["PARS_NOT_MATCHED"] == 2
    printed = capsys.readouterr()
    assert "recall 1.0" in printed.out
    assert ":17: skipped" in printed.err  # the bad line, by number


def test_until_advances_event_time(tmp_path: Path) -> None:
    log = tmp_path / "short.jsonl"
    _write(log, [carm(-60), reported(0, ccn="LATE0001", eta=300), accepted(3, ccn="LATE0001")])
    out = tmp_path / "a.jsonl"
    assert main(["backtest", str(log), "--out", str(out), "--quiet"]) == 0
    assert _alerts(out) == []
    assert main(["backtest", str(log), "--out", str(out), "--quiet", "--until", at(275).isoformat()]) == 0
    assert [(a.action, a.at) for a in _alerts(out)] == [("raised", at(180)), ("updated", at(270))]


def test_missing_log_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_gzip_log_is_really_compressed(tmp_path: Path) -> None:
    log = tmp_path / "x.jsonl.gz"
    _write(log, [carm(-60)])
    with gzip.open(log, "rt") as handle:
        assert json.loads(handle.readline())["topic"] == "carm.readiness"


def test_the_statistics_cover_the_whole_history_when_retention_forgets_loads(tmp_path: Path) -> None:
    """A load forgotten by retention is counted when it goes: the summary is the same as without."""
    import io
    from datetime import timedelta

    from alerting.engine.config import Thresholds
    from schemas.decode import topic_kinds
    from streams.backtest import run_backtest

    log = tmp_path / "weeks.jsonl"
    simulated = ["simulate", "--loads", "200", "--seed", "4", "--hours", "336", "--out", str(log)]
    assert main(simulated) == 0
    kinds = topic_kinds("emanifest.events", "rns.events", "carm.readiness")
    year = timedelta(days=365)
    reports = {}
    for name, th in {
        "forgetting": Thresholds(retention_closed=timedelta(hours=6), retention_unknown=timedelta(hours=6)),
        "remembering": Thresholds(retention_closed=year, retention_unknown=year),
    }.items():
        reports[name] = run_backtest([log], io.StringIO(), th, kinds).as_dict()
    forgetting, remembering = reports["forgetting"], reports["remembering"]
    assert forgetting.pop("forgotten_by_retention") > 150
    assert remembering.pop("forgotten_by_retention") == 0
    forgetting.pop("seconds", None), remembering.pop("seconds", None)
    assert forgetting == remembering
