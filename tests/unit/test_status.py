"""The on-demand answers (alerting/engine/status.py): same rules, same words as the alerts."""

from __future__ import annotations

from datetime import timedelta

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.status import LoadFilter, load_status, page_of, readiness_check
from tests.enginekit import BN, BROKER, accepted, at, carm, reported, rns

TH = Thresholds()


def _runner(*items: object) -> EventTimeRunner:
    runner = EventTimeRunner(TH)
    for item in items:
        if hasattr(item, "importer_bn") and getattr(item, "event_type", "") == "carm_snapshot":
            runner.on_carm(item.importer_bn, item, item.occurred_at)  # type: ignore[attr-defined]
        else:
            runner.on_shipment_event(item)  # type: ignore[arg-type]
    return runner


def test_a_load_at_risk_shows_its_open_alert_with_the_alerts_explanations() -> None:
    record = carm(rpp=False)
    runner = _runner(record, reported(0, eta=300), accepted(3))
    runner.advance(at(200), inclusive=True)
    s = runner.shipments["ABCD100"]
    status = load_status(s, record, at(200), TH)
    assert status.phase == "open" and status.minutes_to_eta == 100.0
    assert status.severity == "critical"
    assert [r.code for r in status.reasons] == ["CARM_NO_RPP", "PARS_NOT_MATCHED"]
    assert status.alert is not None and status.alert.alert_id == "ABCD100:1"
    assert status.port_name is not None and status.port_tz is not None


def test_a_released_load_has_no_reasons() -> None:
    runner = _runner(carm(), reported(0), accepted(3), rns(60, 9), rns(310, 4))
    status = load_status(runner.shipments["ABCD100"], carm(), at(320), TH)
    assert (status.phase, status.severity, status.reasons, status.alert) == ("released", None, [], None)
    assert status.released_at == at(310)


def test_the_pre_pickup_check_gives_the_reasons_a_new_load_would_get() -> None:
    record = carm(rpp=False)
    check = readiness_check(BN, record, BROKER, "rpp", at(0), TH)
    assert not check.ready and [r.code for r in check.reasons] == ["CARM_NO_RPP"]
    runner = _runner(record, reported(0, eta=10_000))  # a real load of the importer: same reasons
    real = runner.shipments["ABCD100"].reasons
    assert set(real) >= {r.code for r in check.reasons}
    assert check.carm_record_age_hours == 1.0
    assert readiness_check(BN, record, BROKER, "prepaid", at(0), TH).ready


def test_the_pre_pickup_check_of_an_unknown_importer_advises_rather_than_fails() -> None:
    check = readiness_check("999999999RM0001", None, BROKER, "rpp", at(0), TH)
    assert [r.code for r in check.reasons] == ["CARM_IMPORTER_UNKNOWN"]
    assert check.reasons[0].action  # advice: what to ask the shipper
    assert check.carm_record_at is None


def test_another_broker_than_the_delegated_one_is_not_ready() -> None:
    check = readiness_check(BN, carm(), "OTHR", "rpp", at(0), TH)
    assert "CARM_BROKER_NOT_DELEGATED" in {r.code for r in check.reasons}


def test_loads_filter_and_page_by_time_to_eta() -> None:
    record = carm()
    items = [reported(0, ccn=f"ABCD10{n}", eta=eta) for n, eta in enumerate((900, 300, 600, 2000))]
    runner = _runner(record, *items)
    now = at(100)
    statuses = [load_status(s, record, now, TH) for s in runner.states()]
    within = LoadFilter(eta_within=timedelta(hours=14))
    matching = [s for s in statuses if within.matches(s)]
    page = page_of(matching, now, 0, 2)
    assert [s.ccn for s in page.items] == ["ABCD101", "ABCD102"]
    assert (page.total, page.next_offset) == (3, 2)
    last = page_of(matching, now, 2, 2)
    assert [s.ccn for s in last.items] == ["ABCD100"] and last.next_offset is None
    assert not LoadFilter(team="west").matches(statuses[0])
