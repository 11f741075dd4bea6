"""The simulator: deterministic, in event-time order, CARM first, realistic coverage, valid records."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from alerting.engine.rules import KNOWN_INDICATORS
from devtools.simulate import (
    IMPORTER_FLAW_RATES,
    MALFORMED_KINDS,
    SimulationConfig,
    SimulationStats,
    simulate,
    write_simulation,
)
from schemas.carm import CarmEvent, CarmSnapshot
from schemas.emanifest import CargoReported, EManifestEvent, Notice
from schemas.eventlog import BadLine, LogRecord, read_log
from schemas.ports import PORTS
from schemas.rns import RnsEvent, RnsStatus
from streams.cli.main import main as cli_main

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
TOPICS = {"emanifest.events": "emanifest", "rns.events": "rns", "carm.readiness": "carm"}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "emanifest": TypeAdapter(EManifestEvent),
    "rns": TypeAdapter(RnsEvent),
    "carm": TypeAdapter(CarmEvent),
}


def _decode_with_pydantic(topic: str, key: str | None, value: Any) -> Any | None:
    try:
        event = _ADAPTERS[TOPICS[topic]].validate_python(value)
    except ValidationError:
        return None
    body_key = event.importer_bn if isinstance(event, CarmSnapshot) else event.ccn
    return event if key == body_key else None


def _decoder() -> Callable[[str, str | None, Any], Any | None]:
    """schemas.decode.decode_parsed when it exists (the pipeline's own decoder), else pydantic directly."""
    try:
        from schemas.decode import Decoded, TopicKind, decode_parsed
    except ImportError:
        return _decode_with_pydantic

    def decode(topic: str, key: str | None, value: Any) -> Any | None:
        result = decode_parsed(TopicKind(TOPICS[topic]), key, value)
        return result.event if isinstance(result, Decoded) else None

    return decode


@dataclass
class Run:
    path: Path
    stats: SimulationStats
    lines: list[LogRecord | BadLine]
    events: list[tuple[LogRecord, Any]]
    """First occurrence of each valid event, decoded, in file order."""
    duplicates: list[LogRecord]
    rejected: list[LogRecord | BadLine]


def _run(path: Path, **overrides: Any) -> Run:
    config = SimulationConfig(**{"loads": 500, "seed": 11, "start": START, **overrides})
    stats = write_simulation(config, path)
    decode = _decoder()
    lines = list(read_log(path))
    events: list[tuple[LogRecord, Any]] = []
    duplicates: list[LogRecord] = []
    rejected: list[LogRecord | BadLine] = []
    seen: set[str] = set()
    for line in lines:
        if isinstance(line, BadLine):
            rejected.append(line)
            continue
        event = decode(line.topic, line.key, line.value)
        if event is None:
            rejected.append(line)
        elif event.event_id in seen:
            duplicates.append(line)
        else:
            seen.add(event.event_id)
            events.append((line, event))
    return Run(path, stats, lines, events, duplicates, rejected)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """500 loads with noise rates high enough to count."""
    path = tmp_path_factory.mktemp("sim") / "noisy.jsonl"
    return _run(path, duplicate_rate=0.02, malformed_rate=0.02)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    path = tmp_path_factory.mktemp("sim") / "default.jsonl"
    return _run(path, loads=3000, seed=5)


def _ms(stamp: datetime) -> int:
    return int(stamp.timestamp() * 1000)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    config = SimulationConfig(loads=200, seed=3, start=START)
    write_simulation(config, tmp_path / "a.jsonl")
    write_simulation(config, tmp_path / "b.jsonl")
    write_simulation(SimulationConfig(loads=200, seed=4, start=START), tmp_path / "c.jsonl")
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes()
    assert a != (tmp_path / "c.jsonl").read_bytes()


def test_records_are_in_event_time_order(noisy: Run) -> None:
    stamps = [line.timestamp for line in noisy.lines if isinstance(line, LogRecord)]
    assert all(isinstance(s, int) for s in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    occurred = [_ms(event.occurred_at) for _, event in noisy.events]
    assert occurred == sorted(occurred)
    # The record timestamp is the event time; only a re-send carries its later send time.
    assert all(line.timestamp == _ms(event.occurred_at) for line, event in noisy.events)
    by_id = {event.event_id: line for line, event in noisy.events}
    for dup in noisy.duplicates:
        original = by_id[dup.value["event_id"]]
        assert dup.value == original.value
        assert dup.timestamp is not None and original.timestamp is not None
        assert 1000 <= dup.timestamp - original.timestamp <= 20_000


def test_carm_snapshots_come_first_at_the_start(default_run: Run) -> None:
    topics = [line.topic for line, _ in default_run.events]
    first_shipment = next(i for i, topic in enumerate(topics) if topic != "carm.readiness")
    initial = [event for _, event in default_run.events[:first_shipment]]
    assert initial and all(isinstance(e, CarmSnapshot) and e.occurred_at == START for e in initial)
    assert len({e.importer_bn for e in initial}) == len(initial)
    # Later snapshots are mid-way fixes: a later time, an importer that had a flaw or no record.
    later = [e for _, e in default_run.events[first_shipment:] if isinstance(e, CarmSnapshot)]
    assert later and all(e.occurred_at > START for e in later)
    assert len(later) == default_run.stats.midway_fixes


def test_no_midway_fixes_means_no_later_snapshot(tmp_path: Path) -> None:
    run = _run(tmp_path / "nofix.jsonl", midway_fixes=False)
    later = [e for _, e in run.events if isinstance(e, CarmSnapshot) and e.occurred_at > START]
    assert later == []


def test_every_event_type_notice_and_indicator_appears(noisy: Run) -> None:
    kinds: Counter[str] = Counter()
    for _, event in noisy.events:
        kinds[event.event_type] += 1
        if isinstance(event, Notice):
            kinds["notice:" + event.notice] += 1
        if isinstance(event, RnsStatus):
            kinds[f"rns:{event.processing_indicator}"] += 1
    expected = {
        "carm_snapshot",
        "cargo_reported",
        "cargo_accepted",
        "cargo_rejected",
        "eta_updated",
        "notice",
        "cancelled",
        "rns_status",
        *(
            f"notice:{n}"
            for n in (
                "matched",
                "not_matched",
                "document_not_on_file",
                "cargo_complete",
                "document_package_complete",
                "reported",
                "arrived",
                "released",
                "authorized_to_deliver",
                "held",
            )
        ),
        *(f"rns:{i}" for i in KNOWN_INDICATORS),
    }
    assert expected - set(kinds) == set()


def _required_surety(highest: float | None) -> float:
    if highest == 0:
        return 0.0
    return 5000.0 if highest is None else max(5000.0, 0.5 * highest)


def _flaws(snapshot: CarmSnapshot, broker: str | None, now: datetime) -> set[str]:
    """The readiness problems of rules.md, judged from the record itself (not from the generator)."""
    flaws = set()
    if not snapshot.ccp_registered or not snapshot.rm_account_linked:
        flaws.add("not_registered")
    access = {d.broker_code: d for d in snapshot.delegations if d.access != "none"}
    if broker is not None and broker not in access:
        flaws.add("not_delegated")
    if broker in access and not access[broker].transaction_visibility:
        flaws.add("delegation_incomplete")
    if not snapshot.rpp_enrolled:
        flaws.add("no_rpp")
    elif snapshot.security.kind == "none" and _required_surety(snapshot.highest_monthly_duties_taxes_cad) > 0:
        flaws.add("security_none")
    elif snapshot.security.kind == "surety" and snapshot.security.amount_cad < _required_surety(
        snapshot.highest_monthly_duties_taxes_cad
    ):
        flaws.add("security_short")
    login = snapshot.last_portal_login_at
    if login is not None and now - login > timedelta(days=180):
        flaws.add("login_dormant")
    return flaws


def _shipments(run: Run) -> dict[str, list[Any]]:
    by_ccn: dict[str, list[Any]] = defaultdict(list)
    for _, event in run.events:
        if not isinstance(event, CarmSnapshot):
            by_ccn[event.ccn].append(event)
    return by_ccn


def test_every_readiness_flaw_and_load_variant_appears(noisy: Run) -> None:
    snapshots = {
        e.importer_bn: e for _, e in noisy.events if isinstance(e, CarmSnapshot) and e.occurred_at == START
    }
    seen: Counter[str] = Counter()
    for events in _shipments(noisy).values():
        reported = next((e for e in events if isinstance(e, CargoReported)), None)
        if reported is None:
            continue
        if reported.broker_code is None:
            seen["broker_missing"] += 1
        if reported.release_mode == "prepaid":
            seen["prepaid"] += 1
        snapshot = snapshots.get(reported.importer_bn)
        if snapshot is None:
            seen["unknown"] += 1
            continue
        flaws = _flaws(snapshot, reported.broker_code, reported.occurred_at)
        seen.update(flaws)
        if not flaws:
            seen["ready"] += 1
        if isinstance(events[0], RnsStatus):
            seen["rns_before_cargo_reported"] += 1
    expected = {*IMPORTER_FLAW_RATES, "broker_missing", "prepaid", "ready"}
    assert expected - set(seen) == set()
    assert seen["ready"] > 0.6 * sum(1 for _ in _shipments(noisy))


def test_early_rns_exercises_unknown_ccns(default_run: Run) -> None:
    early = [events for events in _shipments(default_run).values() if isinstance(events[0], RnsStatus)]
    assert early, "some CCN's first event is an RNS message, before its cargo_reported"
    assert all(any(isinstance(e, CargoReported) for e in events) for events in early)


def test_every_normal_record_decodes_and_only_malformed_ones_fail(noisy: Run) -> None:
    stats = noisy.stats
    assert len(noisy.rejected) == stats.malformed
    assert len(noisy.duplicates) == stats.duplicates
    assert len(noisy.events) == stats.events
    assert len(noisy.lines) == stats.records == stats.events + stats.duplicates + stats.malformed
    assert set(stats.malformed_kinds) == set(MALFORMED_KINDS)
    assert (
        len([line for line in noisy.rejected if isinstance(line, BadLine)])
        == stats.malformed_kinds["not_json"]
    )


def _near(count: int, trials: int, rate: float) -> bool:
    expected = trials * rate
    return abs(count - expected) <= 4 * math.sqrt(expected * (1 - rate)) + 1


def test_noise_counts_are_near_the_configured_rates(noisy: Run, default_run: Run) -> None:
    assert _near(noisy.stats.duplicates, noisy.stats.events, 0.02)
    assert _near(noisy.stats.malformed, noisy.stats.events, 0.02)
    assert _near(default_run.stats.duplicates, default_run.stats.events, 0.002)
    assert _near(default_run.stats.malformed, default_run.stats.events, 0.001)


def test_no_noise_when_rates_are_zero(tmp_path: Path) -> None:
    run = _run(tmp_path / "clean.jsonl", duplicate_rate=0.0, malformed_rate=0.0)
    assert run.rejected == [] and run.duplicates == []


def test_event_ids_are_unique_and_events_well_formed(default_run: Run) -> None:
    ids = [event.event_id for _, event in default_run.events]
    assert len(ids) == len(set(ids))
    for line, event in default_run.events:
        assert line.value["schema_version"] == 1
        assert line.value["occurred_at"].endswith("Z")
        if isinstance(event, CargoReported):
            assert event.port_of_entry in PORTS
            assert event.ccn.startswith(event.carrier_code)


def _held(events: list[Any]) -> bool | None:
    """Held at the border as the back-test counts it; None for a load that never arrived."""
    arrival = next(
        (e.occurred_at for e in events if isinstance(e, Notice) and e.notice in ("reported", "arrived")), None
    )
    if arrival is None:
        return None
    if any(
        (isinstance(e, RnsStatus) and e.processing_indicator == 5)
        or (isinstance(e, Notice) and e.notice == "held")
        for e in events
    ):
        return True
    released = next(
        (
            e.occurred_at
            for e in events
            if (isinstance(e, RnsStatus) and e.processing_indicator in (4, 8, 23))
            or (isinstance(e, Notice) and e.notice in ("released", "authorized_to_deliver"))
        ),
        None,
    )
    return released is None or released > arrival + timedelta(minutes=30)


def test_loads_of_unready_importers_are_held_more_often(default_run: Run) -> None:
    snapshots = {
        e.importer_bn: e
        for _, e in default_run.events
        if isinstance(e, CarmSnapshot) and e.occurred_at == START
    }
    held: dict[bool, list[bool]] = {True: [], False: []}
    for events in _shipments(default_run).values():
        reported = next(e for e in events if isinstance(e, CargoReported))
        outcome = _held(events)
        snapshot = snapshots.get(reported.importer_bn)
        if outcome is None or snapshot is None or reported.broker_code is None:
            continue
        ready = not _flaws(snapshot, reported.broker_code, reported.occurred_at)
        held[ready].append(outcome)
    ready_rate = sum(held[True]) / len(held[True])
    unready_rate = sum(held[False]) / len(held[False])
    assert 0.02 < ready_rate < 0.25
    assert unready_rate > 2 * ready_rate


def test_gzip_output_holds_the_same_records(tmp_path: Path) -> None:
    config = SimulationConfig(loads=100, seed=2, start=START, malformed_rate=0.0)
    write_simulation(config, tmp_path / "log.jsonl")
    write_simulation(config, tmp_path / "log.jsonl.gz")
    assert (tmp_path / "log.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"
    plain = list(read_log(tmp_path / "log.jsonl"))
    assert plain and list(read_log(tmp_path / "log.jsonl.gz")) == plain


def test_stats_are_filled_while_streaming() -> None:
    stats = SimulationStats()
    records = list(simulate(SimulationConfig(loads=50, seed=1, start=START), stats))
    assert stats.loads == 50 and stats.records == len(records)
    assert sum(stats.outcomes.values()) == 50


@pytest.mark.parametrize(
    "overrides",
    [
        {"loads": -1},
        {"hours": 0},
        {"duplicate_rate": 1.5},
        {"start": datetime(2026, 1, 1)},  # noqa: DTZ001 - a naive time is the point
    ],
)
def test_bad_config_is_a_clear_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**{"loads": 1, "seed": 1, **overrides})


def test_command_writes_the_log_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.jsonl"
    code = cli_main(
        [
            "simulate",
            "--loads",
            "20",
            "--seed",
            "9",
            "--start",
            "2026-03-02T01:00:00-05:00",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert "loads=20" in summary and f"bytes={out.stat().st_size}" in summary
    first = json.loads(out.read_text().splitlines()[0])
    assert first["topic"] == "carm.readiness" and first["value"]["occurred_at"] == "2026-03-02T06:00:00Z"


def test_command_rejects_a_time_without_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "simulate",
                "--loads",
                "5",
                "--seed",
                "1",
                "--start",
                "2026-03-02T06:00:00",
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )
    assert exit_info.value.code == 2
    assert "offset" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_every_simulated_port_is_a_known_port_with_a_real_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from devtools.simulate import PORT_SHARES, PORT_TEAMS

    assert set(PORT_SHARES) == set(PORT_TEAMS) <= set(PORTS)
    for code, port in PORTS.items():
        assert port.code == code and len(code) == 4 and code.isdigit()
        ZoneInfo(port.tz)  # raises for a misspelt zone
