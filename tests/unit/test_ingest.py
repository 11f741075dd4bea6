"""The one decode → runner dispatch: snapshots, tombstones (and their time), duplicates, shipment events."""

from __future__ import annotations

from datetime import UTC, datetime

from alerting.engine.ingest import EPOCH, ingest, tombstone_time
from alerting.engine.runner import EventTimeRunner
from schemas.decode import Decoded, TopicKind
from tests.enginekit import BN, at, carm, rejected, reported


def _ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


def _runner_with_a_load() -> EventTimeRunner:
    runner = EventTimeRunner()
    ingest(runner, Decoded(TopicKind.CARM, BN, carm(-60)), None)
    ingest(runner, Decoded(TopicKind.EMANIFEST, "ABCD100", reported(0)), None)
    return runner


def test_a_snapshot_is_applied_at_its_own_time() -> None:
    runner = EventTimeRunner()
    snapshot = carm(-60)
    result = ingest(runner, Decoded(TopicKind.CARM, BN, snapshot), _ms(at(500)))
    assert (result.event_type, result.duplicate, result.alerts) == ("carm_snapshot", False, [])
    assert runner.carm[BN] is snapshot
    assert runner.clock == at(-60)


def test_a_shipment_event_reports_its_type_and_alerts() -> None:
    runner = _runner_with_a_load()
    result = ingest(runner, Decoded(TopicKind.EMANIFEST, "ABCD100", rejected(3)), None)
    assert result.event_type == "cargo_rejected" and not result.duplicate
    assert [(a.action, a.reasons, a.at) for a in result.alerts] == [("raised", ["EMANIFEST_REJECTED"], at(3))]


def test_a_duplicate_changes_nothing_and_says_so() -> None:
    runner = _runner_with_a_load()
    event = rejected(3)
    ingest(runner, Decoded(TopicKind.EMANIFEST, "ABCD100", event), None)
    again = ingest(runner, Decoded(TopicKind.EMANIFEST, "ABCD100", event), None)
    assert (again.event_type, again.duplicate, again.alerts) == ("cargo_rejected", True, [])
    snapshot = carm(-60, eid="same-snapshot")
    ingest(runner, Decoded(TopicKind.CARM, BN, snapshot), None)
    assert ingest(runner, Decoded(TopicKind.CARM, BN, snapshot), None).duplicate


def test_a_tombstone_with_a_timestamp_happens_then() -> None:
    runner = _runner_with_a_load()
    result = ingest(runner, Decoded(TopicKind.CARM, BN, None), _ms(at(50)))
    assert result.event_type == "carm_tombstone" and not result.duplicate
    assert [(a.action, a.reasons, a.at) for a in result.alerts] == [
        ("raised", ["CARM_IMPORTER_UNKNOWN"], at(50))
    ]
    assert BN not in runner.carm and runner.clock == at(50)


def test_a_tombstone_without_a_timestamp_happens_at_the_runner_clock() -> None:
    runner = _runner_with_a_load()
    result = ingest(runner, Decoded(TopicKind.CARM, BN, None), None)
    assert [(a.reasons, a.at) for a in result.alerts] == [(["CARM_IMPORTER_UNKNOWN"], at(0))]
    assert runner.clock == at(0)


def test_a_tombstone_with_neither_timestamp_nor_clock_happens_at_the_epoch() -> None:
    runner = EventTimeRunner()
    assert tombstone_time(runner, None) == EPOCH == datetime(1970, 1, 1, tzinfo=UTC)
    result = ingest(runner, Decoded(TopicKind.CARM, BN, None), None)
    assert (result.event_type, result.alerts) == ("carm_tombstone", [])
    assert runner.clock == EPOCH
