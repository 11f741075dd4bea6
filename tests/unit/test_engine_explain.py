"""Explanations name the configured thresholds: changing one changes the sentence."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from alerting.engine import rules
from alerting.engine.config import Thresholds
from alerting.engine.explain import explain, words_cad, words_duration, words_share
from alerting.engine.state import ShipmentState
from schemas.carm import CarmSnapshot
from tests.enginekit import BN, BROKER, at, carm


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(seconds=20), "less than 1 min"),
        (timedelta(0), "0 min"),
        (timedelta(minutes=45), "45 min"),
        (timedelta(minutes=60), "1 h"),
        (timedelta(minutes=90), "90 min"),
        (timedelta(minutes=120), "2 h"),
        (timedelta(minutes=150), "2 h 30 min"),
        (timedelta(minutes=150, seconds=59), "2 h 30 min"),
        (timedelta(hours=36), "36 h"),
        (timedelta(days=180), "180 days"),
        (timedelta(days=2, hours=5), "2 days 5 h"),
        (-timedelta(minutes=90), "90 min"),
    ],
)
def test_durations_are_worded_for_a_dispatcher(delta: timedelta, words: str) -> None:
    assert words_duration(delta) == words


def test_amounts_and_shares_are_worded() -> None:
    assert words_cad(10_000) == "$10,000"
    assert words_cad(4999.6) == "$5,000"
    assert words_share(0.5) == "50 %"
    assert words_share(0.25) == "25 %"


def _load(**facts: object) -> ShipmentState:
    s = ShipmentState(ccn="ABCD100", known=True, importer_bn=BN, broker_code=BROKER, eta=at(300))
    for name, value in facts.items():
        setattr(s, name, value)
    return s


def _summary(
    code: str,
    th: Thresholds,
    s: ShipmentState | None = None,
    snapshot: CarmSnapshot | None = None,
    now: float = 250,
) -> str:
    details = explain(s or _load(), snapshot, at(now), th, {code: rules.CRITICAL})
    return details[0].summary


DEFAULT = Thresholds()


def test_emanifest_deadline_names_the_configured_lead_time() -> None:
    assert "on file 1 h before the truck" in _summary(rules.EMANIFEST_NOT_ACCEPTED, DEFAULT)
    th = replace(DEFAULT, emanifest_deadline_before_eta=timedelta(minutes=90))
    assert "on file 90 min before the truck" in _summary(rules.EMANIFEST_NOT_ACCEPTED, th)


def test_pars_names_the_configured_warning_and_critical_lead_times() -> None:
    default = _summary(rules.PARS_NOT_MATCHED, DEFAULT)
    assert "(ETA in 50 min)" in default
    assert "due 2 h before the ETA, and critical from 30 min before it" in default
    warning = replace(DEFAULT, pars_warning_before_eta=timedelta(minutes=150))
    assert "due 2 h 30 min before the ETA" in _summary(rules.PARS_NOT_MATCHED, warning)
    critical = replace(DEFAULT, pars_critical_before_eta=timedelta(minutes=45))
    assert "critical from 45 min before it" in _summary(rules.PARS_NOT_MATCHED, critical)


def test_release_grace_names_the_configured_grace() -> None:
    s = _load(arrived_at=at(200))
    default = _summary(rules.NOT_RELEASED_AFTER_ARRIVAL, DEFAULT, s)
    assert "arrived 50 min ago" in default and "expected within 30 min of arrival" in default
    th = replace(DEFAULT, release_grace_after_arrival=timedelta(minutes=20))
    assert "expected within 20 min of arrival" in _summary(rules.NOT_RELEASED_AFTER_ARRIVAL, th, s)


def test_dormant_login_names_the_configured_limit() -> None:
    snapshot = carm(last_login=at(0) - timedelta(days=200))
    default = _summary(rules.CARM_LOGIN_DORMANT, DEFAULT, snapshot=snapshot, now=0)
    assert "for 200 days (more than 180 days)" in default
    th = replace(DEFAULT, login_dormant_after=timedelta(days=90))
    assert "(more than 90 days)" in _summary(rules.CARM_LOGIN_DORMANT, th, snapshot=snapshot, now=0)


def test_security_names_the_configured_minimum_and_surety_ratio() -> None:
    surety = carm(security=("surety", 4_000), highest=20_000)
    default = _summary(rules.CARM_SECURITY_SHORT, DEFAULT, snapshot=surety)
    assert "$4,000 against $10,000 required" in default
    assert "the larger of $5,000 and 50 % of the highest monthly duties and taxes" in default
    ratio = replace(DEFAULT, surety_ratio=0.25)
    assert "$4,000 against $5,000 required" in _summary(rules.CARM_SECURITY_SHORT, ratio, snapshot=surety)
    assert "25 % of the highest" in _summary(rules.CARM_SECURITY_SHORT, ratio, snapshot=surety)
    minimum = replace(DEFAULT, minimum_security_cad=12_000)
    changed = _summary(rules.CARM_SECURITY_SHORT, minimum, snapshot=surety)
    assert "against $12,000 required" in changed and "the larger of $12,000 and" in changed
    no_history = carm(security=("surety", 4_000), highest=None)
    assert "the $12,000 minimum: no duty history" in _summary(
        rules.CARM_SECURITY_SHORT, minimum, snapshot=no_history
    )
    cash = carm(security=("cash", 4_000), highest=20_000)
    assert "cash: the larger of $12,000 and the highest monthly" in _summary(
        rules.CARM_SECURITY_SHORT, minimum, snapshot=cash
    )
