"""Lifecycle edge cases and properties of the engine and its event-time runner."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.engine import engine
from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState, state_from_bytes, state_to_bytes
from schemas.alerts import AlertEvent
from tests.enginekit import (
    accepted,
    at,
    cancelled,
    carm,
    eta_updated,
    notice,
    rejected,
    reported,
    rns,
)
from tests.unit.test_engine_rules import run, steps


def test_a_later_eta_clears_a_deadline_reason() -> None:
    alerts = run(carm(), reported(0), accepted(3), eta_updated(200, 900))
    assert steps(alerts) == [
        ("raised", "warning", ["PARS_NOT_MATCHED"], 180, None),
        ("resolved", None, [], 200, "cleared"),
    ]


def test_an_earlier_eta_applies_the_passed_deadlines_at_once() -> None:
    alerts = run(carm(), reported(0), eta_updated(100, 150))
    # At 100 the new ETA is 150: ETA-120, ETA-60 and ETA-30 have all passed.
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_NOT_ACCEPTED", "PARS_NOT_MATCHED"], 100, None),
    ]


def test_cancel_closes_the_alert_and_nothing_alerts_again() -> None:
    alerts = run(
        carm(), reported(0), rejected(3), cancelled(20), rejected(30), notice(400, "arrived"), finish=900
    )
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_REJECTED"], 3, None),
        ("resolved", None, [], 20, "cancelled"),
    ]


def test_release_closes_with_outcome_released() -> None:
    alerts = run(carm(), reported(0), accepted(3), notice(300, "arrived"), rns(400, 23), finish=900)
    assert steps(alerts)[-1] == ("resolved", None, [], 400, "released")


def test_events_before_cargo_reported_are_kept_and_applied() -> None:
    alerts = run(carm(), rns(-30, 9), accepted(-20), reported(0), finish=400)
    assert alerts == []


def test_an_older_eta_held_before_cargo_reported_does_not_override_its_eta() -> None:
    # The example: eta_updated at 09:10 (ETA 13:39), then cargo_reported at 11:22 (ETA 12:00).
    alerts = run(carm(), rns(80, 9), eta_updated(70, 339), reported(202, eta=240), accepted(215))
    # Judged against 12:00: ETA-60 = 11:00 has passed at 11:22, so the alert is raised then.
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_NOT_ACCEPTED"], 202, None),
        ("resolved", None, [], 215, "cleared"),
    ]
    assert alerts[0].eta == at(240)


def test_deadlines_come_from_the_eta_of_a_later_cargo_reported() -> None:
    alerts = run(carm(), eta_updated(70, 339), reported(100, eta=240), accepted(105), rns(230, 9))
    # PARS at ETA-120 = 120 and ETA-30 = 210 of 12:00, not 219/309 of the older 13:39.
    assert steps(alerts) == [
        ("raised", "warning", ["PARS_NOT_MATCHED"], 120, None),
        ("updated", "critical", ["PARS_NOT_MATCHED"], 210, None),
        ("resolved", None, [], 230, "cleared"),
    ]


def test_an_eta_that_occurred_after_cargo_reported_but_arrived_first_still_applies() -> None:
    alerts = run(carm(), eta_updated(150, 600), reported(100), accepted(105), rns(560, 9), finish=700)
    # ETA 600 (not the report's 300): PARS window opens at 480, the link at 560 clears it.
    assert steps(alerts) == [
        ("raised", "warning", ["PARS_NOT_MATCHED"], 480, None),
        ("resolved", None, [], 560, "cleared"),
    ]


def test_an_eta_at_the_same_instant_as_cargo_reported_applies_after_it() -> None:
    alerts = run(carm(), eta_updated(100, 600), reported(100), accepted(105), rns(560, 9), finish=700)
    assert steps(alerts)[0] == ("raised", "warning", ["PARS_NOT_MATCHED"], 480, None)


def test_a_port_change_held_before_cargo_reported_applies_in_event_time() -> None:
    th = Thresholds()
    older, _ = engine.on_event(None, eta_updated(-30, 320, port="0453"), None, th)
    s, _ = engine.on_event(older, reported(0), carm(), th)
    assert (s.port_of_entry, s.eta) == ("0427", at(300))  # the report's, not the older change's
    later, _ = engine.on_event(None, eta_updated(30, 320, port="0453"), None, th)
    s, _ = engine.on_event(later, reported(0), carm(), th)
    assert (s.port_of_entry, s.eta) == ("0453", at(320))


def test_an_answer_held_before_cargo_reported_answers_it_whatever_its_time() -> None:
    # A CBSA answer cannot precede the report it answers: it is applied after the report.
    assert run(carm(), accepted(-20), rns(-30, 9), reported(0), finish=400) == []
    alerts = run(carm(), rejected(-20), rns(-30, 9), reported(0), accepted(10))
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_REJECTED"], 0, None),
        ("resolved", None, [], 10, "cleared"),
    ]


def test_a_cancel_before_the_shipment_appears_closes_it_silently() -> None:
    assert run(carm(), cancelled(-5), reported(0), finish=900) == []


def test_duplicates_change_nothing_not_even_time() -> None:
    first = rejected(3)
    alerts = run(carm(), reported(0), first, accepted(10), first, rns(60, 9))
    assert steps(alerts) == [
        ("raised", "critical", ["EMANIFEST_REJECTED"], 3, None),
        ("resolved", None, [], 10, "cleared"),
    ]


def test_duplicate_carm_snapshot_does_not_reevaluate() -> None:
    runner = EventTimeRunner()
    snapshot = carm(-60, rpp=False)
    runner.on_carm(snapshot.importer_bn, snapshot, snapshot.occurred_at)
    assert len(runner.on_shipment_event(reported(0))) == 1
    assert runner.on_carm(snapshot.importer_bn, snapshot, at(100)) == []
    assert runner.duplicates == 1


def test_carm_fix_mid_flight_resolves_with_outcome_cleared() -> None:
    alerts = run(carm(rpp=False), reported(0), accepted(3), rns(60, 9), carm(90))
    assert steps(alerts)[-1] == ("resolved", None, [], 90, "cleared")


def test_carm_tombstone_makes_the_importer_unknown() -> None:
    runner = EventTimeRunner()
    runner.on_carm("123456789RM0001", carm(-60), at(-60))
    runner.on_shipment_event(reported(0))
    alerts = runner.on_carm("123456789RM0001", None, at(50))
    assert steps(alerts) == [("raised", "warning", ["CARM_IMPORTER_UNKNOWN"], 50, None)]


def test_the_end_of_a_log_fires_deadlines_up_to_and_including_the_last_event() -> None:
    runner = EventTimeRunner()
    runner.on_carm("123456789RM0001", carm(-60), at(-60))
    assert runner.on_shipment_event(reported(0)) == []
    runner.on_shipment_event(accepted(3))
    # Another load's event exactly at 180 does not fire the 180 deadline (not later than it)...
    assert runner.on_shipment_event(reported(180, ccn="WXYZ200", eta=900)) == []
    # ...but the end of the log does.
    assert steps(runner.finish()) == [("raised", "warning", ["PARS_NOT_MATCHED"], 180, None)]


def test_finish_until_advances_further() -> None:
    alerts = run(carm(), reported(0), accepted(3), finish=275)
    assert [a.at for a in alerts] == [at(180), at(270)]


def test_a_new_lifecycle_gets_a_new_alert_id() -> None:
    alerts = run(carm(), reported(0), rejected(3), accepted(10), rejected(20))
    assert [a.alert_id for a in alerts] == ["ABCD100:1", "ABCD100:1", "ABCD100:2"]
    assert [a.event_id for a in alerts] == ["ABCD100:1/1", "ABCD100:1/2", "ABCD100:2/1"]


def test_state_round_trips_through_bytes() -> None:
    th = Thresholds()
    s, _ = engine.on_event(None, rns(-5, 34), None, th)
    s2 = state_from_bytes(state_to_bytes(s))
    assert s2 == s
    s, _ = engine.on_event(s2, reported(0), carm(), th)
    s, _ = engine.on_event(s, rejected(3), carm(), th)
    assert state_from_bytes(state_to_bytes(s)) == s
    assert len(state_to_bytes(s)) < 1200


def test_out_of_order_event_is_evaluated_at_the_last_evaluation_time() -> None:
    th = Thresholds()
    snapshot = carm()
    s, _ = engine.on_event(None, reported(0), snapshot, th)
    _, alerts = engine.on_event(s, rejected(50), snapshot, th)
    _, alerts2 = engine.on_event(s, accepted(40), snapshot, th)
    assert [a.at for a in alerts + alerts2] == [at(50), at(50)]


# --- properties ------------------------------------------------------------------------

_STEP_KINDS = [
    "accepted",
    "rejected",
    "not_matched",
    "matched",
    "not_on_file",
    "rns",
    "eta",
    "arrived",
    "held",
]


@st.composite
def load_timeline(draw: st.DrawFn, index: int) -> list[object]:
    """One load's events at coarse times (multiples of 10 min, so that loads tie often).

    Each step gets its own id: two equal steps at the same minute are two events, not a duplicate.
    """
    ccn = f"LOAD{index:03d}"
    start = draw(st.integers(0, 30)) * 10
    eta = start + draw(st.integers(6, 40)) * 10
    broker = draw(st.sampled_from(["BRK1", "BRK2"]))
    events: list[object] = [reported(start, ccn=ccn, eta=eta, broker=broker, eid=f"{ccn}/0")]
    t = start
    for step in range(1, draw(st.integers(0, 8)) + 1):
        t += draw(st.integers(0, 12)) * 10
        kind = draw(st.sampled_from(_STEP_KINDS))
        eid = f"{ccn}/{step}"
        if kind == "accepted":
            events.append(accepted(t, ccn=ccn, eid=eid))
        elif kind == "rejected":
            events.append(rejected(t, ccn=ccn, eid=eid))
        elif kind in ("not_matched", "matched", "arrived", "held"):
            events.append(notice(t, kind, ccn=ccn, eid=eid))
        elif kind == "not_on_file":
            events.append(notice(t, "document_not_on_file", ccn=ccn, eid=eid))
        elif kind == "rns":
            events.append(rns(t, draw(st.sampled_from([1, 2, 5, 9, 14, 34])), ccn=ccn, eid=eid))
        else:
            events.append(eta_updated(t, t + draw(st.integers(1, 30)) * 10, ccn=ccn, eid=eid))
    if draw(st.booleans()):
        t += draw(st.integers(0, 20)) * 10
        release = rns(t, 4, ccn=ccn, eid=f"{ccn}/end") if draw(st.booleans()) else None
        events.append(release or notice(t, "released", ccn=ccn, eid=f"{ccn}/end"))
    return events


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[list[object]], int]:
    n = draw(st.integers(1, 5))
    return [draw(load_timeline(i)) for i in range(n)], draw(st.integers(0, 2**32 - 1))


def _merge_in_time_order(loads: list[list[object]], seed: int) -> list[object]:
    """Any interleaving that keeps event-time order and each load's own order (ties shuffled)."""
    rng = random.Random(seed)
    tagged = []
    for events in loads:
        tiebreak = rng.random()
        for position, event in enumerate(events):
            tagged.append((event.occurred_at, tiebreak, position, event))  # type: ignore[attr-defined]
    # Keep each load's own order: sort by time, then by a random key per load, then position.
    tagged.sort(key=lambda item: (item[0], item[1], item[2]))
    return [item[3] for item in tagged]


def _per_ccn(alerts: list[AlertEvent]) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for a in alerts:
        out[a.ccn].append((a.alert_id, a.seq, *a.comparable()))
    return dict(out)


def _feed(runner: EventTimeRunner, events: list[object]) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for event in events:
        out += runner.on_shipment_event(event)  # type: ignore[arg-type]
    return out


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_output_does_not_depend_on_how_loads_interleave(case: tuple[list[list[object]], int]) -> None:
    loads, seed = case
    snapshot = carm(-100)
    end = max(e.occurred_at for events in loads for e in events) + timedelta(minutes=1)  # type: ignore[attr-defined]
    together = EventTimeRunner()
    together.on_carm(snapshot.importer_bn, snapshot, snapshot.occurred_at)
    mixed = _feed(together, _merge_in_time_order(loads, seed)) + together.finish(end)
    alone: list[AlertEvent] = []
    for events in loads:
        runner = EventTimeRunner()
        runner.on_carm(snapshot.importer_bn, snapshot, snapshot.occurred_at)
        alone += _feed(runner, events) + runner.finish(end)
    assert _per_ccn(mixed) == _per_ccn(alone)


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_every_raised_alert_is_resolved_once_its_load_is_released(
    case: tuple[list[list[object]], int],
) -> None:
    loads, seed = case
    runner = EventTimeRunner()
    snapshot = carm(-100, rpp=False)  # a readiness problem: every load alerts from the start
    runner.on_carm(snapshot.importer_bn, snapshot, snapshot.occurred_at)
    released = []
    for events in loads:
        ccn = events[0].ccn  # type: ignore[attr-defined]
        last = max(e.occurred_at for e in events)  # type: ignore[attr-defined]
        events.append(rns((last - at(0)) / timedelta(minutes=1) + 10, 4, ccn=ccn, eid=f"{ccn}/release"))
        released.append(ccn)
    alerts = _feed(runner, _merge_in_time_order(loads, seed)) + runner.finish()
    by_ccn = _per_ccn(alerts)
    for ccn in released:
        lifecycle = by_ccn[ccn]
        assert lifecycle[0][3] == "raised"
        # CARM_NO_RPP holds until the release: one lifecycle, closed by the release itself.
        assert [step[3] for step in lifecycle].count("raised") == 1
        assert [step[3] for step in lifecycle].count("resolved") == 1
        assert lifecycle[-1][3] == "resolved"
        assert lifecycle[-1][-1] == "released"
        assert runner.shipments[ccn].closed is not None
        assert not runner.shipments[ccn].alert_open


def test_pending_events_for_unknown_ccns_are_bounded() -> None:
    th = Thresholds(max_pending_events_per_unknown_ccn=3)
    s: ShipmentState | None = None
    for i in range(10):
        s, _ = engine.on_event(s, rns(i, 34), None, th)
    assert s is not None and len(s.pending) == 3
