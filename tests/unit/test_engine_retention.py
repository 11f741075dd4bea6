"""Retention in event time: expired loads, forgotten states, bounded state over long histories."""

from __future__ import annotations

from datetime import timedelta

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from tests.enginekit import accepted, at, carm, eta_updated, notice, reported, rns
from tests.unit.test_engine_rules import steps

HOUR = 60.0  # enginekit's `at` counts minutes
TH = Thresholds(
    retention_closed=timedelta(hours=72),
    retention_unknown=timedelta(hours=10),
    expire_after_eta=timedelta(hours=24),
)


def _feed(runner: EventTimeRunner, *items: object) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for item in items:
        if isinstance(item, CarmSnapshot):
            out += runner.on_carm(item.importer_bn, item, item.occurred_at)
        else:
            out += runner.on_shipment_event(item)  # type: ignore[arg-type]
    return out


def test_an_open_load_with_no_news_expires_a_day_after_its_eta() -> None:
    runner = EventTimeRunner(TH)
    alerts = _feed(runner, carm(), reported(0, eta=300), accepted(3))
    alerts += runner.finish(at(300 + 30 * HOUR))
    assert steps(alerts) == [
        ("raised", "warning", ["PARS_NOT_MATCHED"], 180, None),
        ("updated", "critical", ["PARS_NOT_MATCHED"], 270, None),
        ("resolved", None, [], 300 + 24 * HOUR, "expired"),
    ]
    assert alerts[-1].trigger == "deadline"
    assert runner.shipments["ABCD100"].closed == "expired"


def test_news_after_the_eta_postpones_the_expiry() -> None:
    runner = EventTimeRunner(TH)
    alerts = _feed(runner, carm(), reported(0, eta=300), accepted(3), rns(100, 9), notice(600, "arrived"))
    alerts += runner.finish(at(600 + 23 * HOUR))
    assert alerts[-1].outcome != "expired"  # 23 h after its latest event: still open
    alerts += runner.finish(at(600 + 24 * HOUR))
    assert steps(alerts)[-1] == ("resolved", None, [], 600 + 24 * HOUR, "expired")


def test_a_release_after_the_expiry_is_late_news_and_changes_nothing() -> None:
    runner = EventTimeRunner(TH)
    alerts = _feed(runner, carm(), reported(0, eta=300), accepted(3))
    late = _feed(runner, rns(300 + 25 * HOUR, 4))
    alerts += late
    # The deadlines fire first, the expiry last at its own instant; the release itself changes nothing.
    expected = [("raised", None), ("updated", None), ("resolved", "expired")]
    assert [(a.action, a.outcome) for a in late] == expected
    assert late[-1].at == at(300 + 24 * HOUR)
    assert runner.shipments["ABCD100"].closed == "expired"


def test_a_closed_load_is_forgotten_after_the_retention_and_ignores_late_events_until_then() -> None:
    runner = EventTimeRunner(TH)
    _feed(runner, carm(), reported(0), accepted(3), rns(60, 9), rns(310, 4))
    assert runner.shipments["ABCD100"].closed == "released"
    assert _feed(runner, notice(310 + 71 * HOUR, "arrived")) == []  # ignored: still remembered as closed
    assert runner.shipments["ABCD100"].arrived_at is None
    assert runner.forgotten == 0
    _feed(runner, reported(310 + 76 * HOUR, ccn="ABCD200", eta=310 + 80 * HOUR))  # moves the clock on
    assert "ABCD100" not in runner.shipments
    assert runner.forgotten == 1


def test_a_late_event_after_the_retention_is_held_like_any_unknown_ccn_and_then_dropped() -> None:
    runner = EventTimeRunner(TH)
    _feed(runner, carm(), reported(0), accepted(3), rns(60, 9), rns(310, 4))
    assert _feed(runner, notice(310 + 73 * HOUR, "arrived")) == []
    held = runner.shipments["ABCD100"]
    assert not held.known and len(held.pending) == 1
    _feed(runner, reported(310 + 84 * HOUR, ccn="ABCD200", eta=310 + 90 * HOUR))
    assert "ABCD100" not in runner.shipments  # retention_unknown (10 h) after the held event


def test_events_of_a_ccn_that_never_appears_are_dropped_after_the_unknown_retention() -> None:
    runner = EventTimeRunner(TH)
    _feed(runner, carm(), rns(0, 9, ccn="ZZZZ1"), accepted(5 * HOUR, ccn="ZZZZ1"))
    _feed(runner, reported(5 * HOUR + 9 * HOUR, ccn="ABCD200", eta=20 * HOUR))
    assert "ZZZZ1" in runner.shipments  # 9 h after its latest event: kept
    _feed(runner, rns(5 * HOUR + 11 * HOUR, 9, ccn="ABCD200"))
    assert "ZZZZ1" not in runner.shipments
    # Its cargo_reported after that starts afresh: the dropped events are not applied.
    alerts = _feed(runner, reported(16 * HOUR + 1, ccn="ZZZZ1", eta=16 * HOUR + 60))
    assert alerts[0].reasons == ["EMANIFEST_NOT_ACCEPTED", "PARS_NOT_MATCHED"]


def test_a_month_of_traffic_keeps_only_the_retention_window_in_state() -> None:
    """Bounded at any history length: what remains is the last days' loads, not the month's."""
    runner = EventTimeRunner(TH)
    _feed(runner, carm())
    per_day, days = 40, 30
    for day in range(days):
        for n in range(per_day):
            t = day * 24 * HOUR + n * 30
            ccn = f"ABCD{day:03d}{n:03d}"
            events: list[object] = [reported(t, ccn=ccn, eta=t + 300), accepted(t + 3, ccn=ccn)]
            if n % 4:  # one load in four never gets a release: it must expire, then be forgotten
                events += [rns(t + 60, 9, ccn=ccn), rns(t + 310, 4, ccn=ccn)]
            _feed(runner, *events)
    tracked = len(runner.shipments)
    assert tracked <= per_day * 5  # about 3 days of retention + 1 of expiry, not 30 days
    assert runner.forgotten == per_day * days - tracked
    assert all(isinstance(s, ShipmentState) for s in runner.states())


def test_an_eta_update_resets_nothing_of_a_closed_load() -> None:
    runner = EventTimeRunner(TH)
    _feed(runner, carm(), reported(0), accepted(3), rns(60, 9), rns(310, 4))
    assert _feed(runner, eta_updated(320, 900)) == []
    assert runner.shipments["ABCD100"].eta == at(300)
