"""Golden tests: for each rule, the sequence that raises it and the one that clears it, exact `at`s.

Timeline: minutes from T0; the load is reported at 0 with ETA 300, so the
deadlines are 180 (ETA-120), 240 (ETA-60) and 270 (ETA-30).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerting.engine import rules
from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from tests.enginekit import (
    BN,
    accepted,
    at,
    carm,
    eta_updated,
    notice,
    rejected,
    reported,
    rns,
)


def run(*items: object, finish: float | None = None) -> list[AlertEvent]:
    runner = EventTimeRunner()
    out: list[AlertEvent] = []
    for item in items:
        if isinstance(item, CarmSnapshot):
            out += runner.on_carm(item.importer_bn, item, item.occurred_at)
        else:
            out += runner.on_shipment_event(item)  # type: ignore[arg-type]
    out += runner.finish(at(finish) if finish is not None else None)
    return out


def steps(alerts: list[AlertEvent]) -> list[tuple[str, str | None, list[str], float, str | None]]:
    return [
        (a.action, a.severity, a.reasons, (a.at - at(0)) / timedelta(minutes=1), a.outcome) for a in alerts
    ]


def ready_load_events() -> list[object]:
    """A well-prepared load: accepted and linked early."""
    return [carm(), reported(0), accepted(3), rns(60, 9)]


def test_a_ready_load_never_alerts_and_closes_quietly() -> None:
    alerts = run(*ready_load_events(), notice(300, "arrived"), rns(310, 4), finish=2000)
    assert alerts == []


def test_broker_missing_raised_then_cleared_by_amendment() -> None:
    alerts = run(carm(), reported(0, broker=None), accepted(3), rns(60, 9), reported(90, eid="amend"))
    assert steps(alerts) == [
        ("raised", "critical", ["BROKER_MISSING"], 0, None),
        ("resolved", None, [], 90, "cleared"),
    ]


def test_importer_unknown_is_a_warning_cleared_when_the_record_arrives() -> None:
    alerts = run(reported(0), accepted(3), rns(60, 9), carm(100))
    assert steps(alerts) == [
        ("raised", "warning", ["CARM_IMPORTER_UNKNOWN"], 0, None),
        ("resolved", None, [], 100, "cleared"),
    ]
    assert alerts[-1].trigger == "carm"


@pytest.mark.parametrize(("registered", "linked"), [(False, True), (True, False)])
def test_not_registered_or_rm_not_linked_is_critical(registered: bool, linked: bool) -> None:
    alerts = run(carm(registered=registered, linked=linked), reported(0), accepted(3), rns(60, 9), carm(120))
    assert steps(alerts) == [
        ("raised", "critical", ["CARM_NOT_REGISTERED"], 0, None),
        ("resolved", None, [], 120, "cleared"),
    ]


@pytest.mark.parametrize(
    "delegations",
    [[], [("BRK1", "none", True)], [("OTHER", "business_management", True)]],
)
def test_broker_not_delegated(delegations: list[tuple[str, str, bool]]) -> None:
    alerts = run(carm(delegations=delegations), reported(0), accepted(3), rns(60, 9))
    assert steps(alerts) == [("raised", "critical", ["CARM_BROKER_NOT_DELEGATED"], 0, None)]


def test_delegation_without_transaction_visibility_is_a_warning() -> None:
    alerts = run(
        carm(delegations=[("BRK1", "program_management", False)]),
        reported(0),
        accepted(3),
        carm(45, delegations=[("BRK1", "program_management", True)]),
        rns(60, 9),
    )
    assert steps(alerts) == [
        ("raised", "warning", ["CARM_DELEGATION_INCOMPLETE"], 0, None),
        ("resolved", None, [], 45, "cleared"),
    ]


def test_no_rpp_is_critical_unless_the_load_is_prepaid() -> None:
    alerts = run(carm(rpp=False), reported(0), accepted(3), rns(60, 9))
    assert steps(alerts) == [("raised", "critical", ["CARM_NO_RPP"], 0, None)]
    assert run(carm(rpp=False), reported(0, mode="prepaid"), accepted(3), rns(60, 9)) == []


@pytest.mark.parametrize(
    ("security", "highest", "expected"),
    [
        (("surety", 9_999), 20_000, "warning"),  # needs max(5000, 0.5 x 20000) = 10000
        (("surety", 10_000), 20_000, None),
        (("cash", 19_999), 20_000, "warning"),  # cash needs 100 %
        (("none", 0), 20_000, "critical"),  # nothing posted
        (("surety", 0), 20_000, "critical"),
        (("surety", 4_999), None, "warning"),  # unknown history: the 5000 minimum
        (("none", 0), 0, None),  # zero-duty importer: nothing required
        (("surety", 5_000), 1_000, None),
    ],
)
def test_security_short(security: tuple[str, float], highest: float | None, expected: str | None) -> None:
    alerts = run(carm(security=security, highest=highest), reported(0), accepted(3), rns(60, 9))
    if expected is None:
        assert alerts == []
    else:
        assert steps(alerts) == [("raised", expected, ["CARM_SECURITY_SHORT"], 0, None)]


def test_security_is_not_checked_for_prepaid_loads() -> None:
    assert run(carm(security=("none", 0)), reported(0, mode="prepaid"), accepted(3), rns(60, 9)) == []


def test_dormant_login_is_noticed_at_the_next_evaluation() -> None:
    # Last login 180 days minus 10 minutes before T0: dormant from minute 10, noticed at the next event.
    login = at(0) - timedelta(days=180) + timedelta(minutes=10)
    alerts = run(carm(last_login=login), reported(0), accepted(3), rns(60, 9))
    assert steps(alerts) == [("raised", "warning", ["CARM_LOGIN_DORMANT"], 60, None)]


def test_emanifest_rejected_until_accepted() -> None:
    alerts = run(carm(), reported(0), rejected(3), reported(10, eid="resubmit"), accepted(13), rns(60, 9))
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_REJECTED"], 3, None),
        ("resolved", None, [], 13, "cleared"),
    ]


def test_emanifest_not_accepted_fires_at_eta_minus_60() -> None:
    alerts = run(carm(), reported(0), rns(60, 9), accepted(250))
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_NOT_ACCEPTED"], 240, None),
        ("resolved", None, [], 250, "cleared"),
    ]
    assert alerts[0].trigger == "deadline"


def test_an_amendment_needs_a_new_acceptance() -> None:
    alerts = run(carm(), reported(0), accepted(3), rns(60, 9), reported(200, eid="amend"), accepted(245))
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_NOT_ACCEPTED"], 240, None),
        ("resolved", None, [], 245, "cleared"),
    ]


def test_pars_not_matched_warns_at_eta_minus_120_and_turns_critical_at_eta_minus_30() -> None:
    alerts = run(carm(), reported(0), accepted(3), notice(20, "not_matched"), rns(280, 9))
    assert steps(alerts) == [
        ("raised", "warning", ["PARS_NOT_MATCHED"], 180, None),
        ("updated", "critical", ["PARS_NOT_MATCHED"], 270, None),
        ("resolved", None, [], 280, "cleared"),
    ]
    assert [a.seq for a in alerts] == [1, 2, 3]
    assert len({a.alert_id for a in alerts}) == 1


@pytest.mark.parametrize("indicator", [9, 34, 4, 8, 23])
def test_linking_indicators_prevent_pars_not_matched(indicator: int) -> None:
    alerts = run(carm(), reported(0), accepted(3), rns(60, indicator), finish=299)
    assert alerts == []


def test_pars_not_on_file_then_relinked() -> None:
    alerts = run(*ready_load_events(), notice(100, "document_not_on_file"), notice(200, "matched"))
    assert steps(alerts) == [
        ("raised", "critical", ["PARS_NOT_ON_FILE"], 100, None),
        ("updated", "critical", ["PARS_NOT_MATCHED", "PARS_NOT_ON_FILE"], 180, None),
        ("resolved", None, [], 200, "cleared"),
    ]


@pytest.mark.parametrize("indicator", [2, 14])
def test_rns_rejected_until_a_later_indicator(indicator: int) -> None:
    alerts = run(carm(), reported(0), accepted(3), rns(50, indicator), rns(70, 9))
    assert steps(alerts) == [
        ("raised", "critical", ["RNS_REJECTED"], 50, None),
        ("resolved", None, [], 70, "cleared"),
    ]


def test_unknown_indicators_change_no_rule() -> None:
    alerts = run(*ready_load_events(), rns(80, 2), rns(90, 77), finish=100)
    assert steps(alerts) == [("raised", "critical", ["RNS_REJECTED"], 80, None)]
    assert alerts[0].latest_rns_indicator == 2


@pytest.mark.parametrize("held", [rns(300, 5), notice(300, "held")])
def test_held_for_examination_until_released(held: object) -> None:
    alerts = run(*ready_load_events(), held, rns(500, 4))
    assert steps(alerts) == [
        ("raised", "critical", ["HELD_FOR_EXAMINATION"], 300, None),
        ("resolved", None, [], 500, "released"),
    ]


def test_not_released_30_minutes_after_arrival() -> None:
    alerts = run(*ready_load_events(), notice(300, "arrived"), notice(345, "released"))
    assert steps(alerts) == [
        ("raised", "critical", ["NOT_RELEASED_AFTER_ARRIVAL"], 330, None),
        ("resolved", None, [], 345, "released"),
    ]


def test_arrival_is_the_first_reported_or_arrived_notice() -> None:
    alerts = run(*ready_load_events(), notice(290, "reported"), notice(300, "arrived"), finish=330)
    assert steps(alerts) == [("raised", "critical", ["NOT_RELEASED_AFTER_ARRIVAL"], 320, None)]


def test_severity_is_the_highest_and_reasons_are_sorted() -> None:
    alerts = run(carm(delegations=[("BRK1", "business_management", False)]), reported(0), rejected(3))
    assert steps(alerts) == [
        ("raised", "warning", ["CARM_DELEGATION_INCOMPLETE"], 0, None),
        ("updated", "critical", ["CARM_DELEGATION_INCOMPLETE", "EMANIFEST_REJECTED"], 3, None),
    ]
    assert alerts[1].previous_severity == "warning"


def test_every_reason_is_explained_with_an_action_and_whom_to_call() -> None:
    alerts = run(carm(rpp=False, registered=False), reported(0, broker="ZZZ9"), rejected(3))
    last = alerts[-1]
    assert [d.code for d in last.details] == sorted(last.reasons)  # all critical here: sorted by code
    for detail in last.details:
        assert detail.summary and detail.action and detail.call
    by_code = {d.code: d for d in last.details}
    assert "Jane Roy" in (by_code["CARM_NO_RPP"].call or "")
    assert "ZZZ9" in by_code["CARM_BROKER_NOT_DELEGATED"].action
    assert last.importer_contact is not None and last.importer_bn == BN
    assert last.load_ref == "LOAD-ABCD100" and last.port_of_entry == "0427" and last.dispatch_team == "east"


def test_eta_later_moves_the_deadlines() -> None:
    alerts = run(carm(), reported(0), accepted(3), eta_updated(100, 600), rns(500, 9), finish=600)
    # PARS window now opens at 480 (600 - 120), and the link at 500 clears it.
    assert steps(alerts) == [
        ("raised", "warning", ["PARS_NOT_MATCHED"], 480, None),
        ("resolved", None, [], 500, "cleared"),
    ]


# --- the rule table's pure functions -----------------------------------------------------


def _alert(action: str, severity: str | None, previous: str | None) -> AlertEvent:
    return AlertEvent.model_validate(
        {
            "event_id": "ABCD100:1/2",
            "alert_id": "ABCD100:1",
            "seq": 2,
            "ccn": "ABCD100",
            "action": action,
            "severity": severity,
            "previous_severity": previous,
            "reasons": ["PARS_NOT_MATCHED"] if severity else [],
            "at": at(0),
            "first_raised_at": at(0),
        }
    )


@pytest.mark.parametrize(
    ("action", "severity", "previous_severity", "before", "expected"),
    [
        ("updated", "critical", "warning", "critical", True),
        ("updated", "critical", None, "warning", True),  # an older producer: no previous_severity
        ("updated", "critical", None, "critical", False),
        ("updated", "critical", "critical", "warning", False),
        ("updated", "warning", "critical", "critical", False),
        ("raised", "critical", None, "warning", False),
        ("resolved", None, "warning", "warning", False),
    ],
)
def test_an_escalation_is_an_update_from_warning_to_critical(
    action: str, severity: str | None, previous_severity: str | None, before: str, expected: bool
) -> None:
    previous = _alert("raised", before, None)
    assert rules.is_escalation(_alert(action, severity, previous_severity), previous) is expected


def test_severity_aggregates_to_the_most_severe_reason() -> None:
    assert rules.aggregate_severity({}) is None
    assert rules.aggregate_severity({"A": "warning", "B": "warning"}) == "warning"
    assert rules.aggregate_severity({"A": "warning", "B": "critical"}) == "critical"


def test_deadline_instants_follow_the_thresholds() -> None:
    th = Thresholds(pars_warning_before_eta=timedelta(minutes=100), expire_after_eta=timedelta(hours=24))
    s = ShipmentState(ccn="ABCD100", known=True, eta=at(300))
    expiry = at(300 + 24 * 60)
    assert sorted(rules.deadline_instants(s, th)) == [at(200), at(240), at(270), expiry]
    s.arrived_at = at(290)
    assert sorted(rules.deadline_instants(s, th)) == [at(200), at(240), at(270), at(320), expiry]
    s.last_event_at = at(400)  # news after the ETA: the expiry counts from it
    assert max(rules.deadline_instants(s, th)) == at(400 + 24 * 60)
    assert list(rules.deadline_instants(ShipmentState(ccn="X"), th)) == []


def test_removal_counts_from_the_close_or_the_latest_held_event() -> None:
    th = Thresholds(retention_closed=timedelta(hours=72), retention_unknown=timedelta(hours=10))
    s = ShipmentState(ccn="ABCD100", known=True, eta=at(300))
    assert rules.removal_instant(s, th) is None  # open: never removed, it expires first
    s.closed, s.closed_at = "released", at(320)
    assert rules.removal_instant(s, th) == at(320 + 72 * 60)
    held = ShipmentState(ccn="ABCD101", pending=[rns(50, 22, ccn="ABCD101"), rns(20, 1, ccn="ABCD101")])
    assert rules.removal_instant(held, th) == at(50 + 10 * 60)


def test_the_readiness_cache_gives_the_uncached_answer() -> None:
    cache = rules.ReadinessCache(max_entries=2)
    th = Thresholds()
    s = ShipmentState(ccn="ABCD100", known=True, broker_code="OTHER")
    for snapshot in (carm(rpp=False), carm(security=("surety", 1)), carm(), carm(rpp=False)):
        for _ in range(2):
            cached = rules.active_reasons(s, snapshot, at(0), th, cache)
            assert cached == rules.active_reasons(s, snapshot, at(0), th)
    assert len(cache._entries) <= 2
