"""`holdwatch status` / `check` printing: ETA in the port's zone, reasons in the alerts' words."""

from __future__ import annotations

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.status import load_status, readiness_check
from streams.cli.status import countdown, format_check, format_load
from tests.enginekit import BN, BROKER, accepted, at, carm, reported


def test_a_load_at_risk_prints_its_countdown_local_eta_and_what_to_do() -> None:
    record = carm(rpp=False)
    runner = EventTimeRunner(Thresholds())
    runner.on_carm(BN, record, record.occurred_at)
    runner.on_shipment_event(reported(0, eta=300))
    runner.on_shipment_event(accepted(1))
    status = load_status(runner.shipments["ABCD100"], record, at(200), Thresholds())
    text = format_load(status, colour=False)
    assert "AT RISK (critical)" in text.splitlines()[0]
    assert "in 1 h 40 min" in text
    assert (
        status.port_tz is not None
        and "ETA at" in text
        and "UTC" not in text.split("ETA at")[1].splitlines()[0]
    )
    assert "what to do:" in text and "\033[" not in text
    assert "\033[1;31m" in format_load(status, colour=True)


def test_the_check_says_ready_or_what_is_missing() -> None:
    th = Thresholds()
    ready = format_check(readiness_check(BN, carm(), BROKER, "rpp", at(0), th), colour=False)
    assert "READY: nothing missing" in ready and "1 h old" in ready
    unknown = format_check(readiness_check("999999999RM0001", None, BROKER, "rpp", at(0), th), colour=False)
    assert "NOT READY" in unknown and "no CARM record" in unknown


def test_countdowns_read_naturally() -> None:
    assert countdown(100) == "in 1 h 40 min"
    assert countdown(5.4) == "in 5 min"
    assert countdown(-90) == "1 h 30 min ago"
