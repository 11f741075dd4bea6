"""Plain-language explanations: for each active reason, what is wrong, whom to call, what to ask.

Texts are plain (no Slack markup); the notifier escapes and formats them. Every
duration or amount a sentence names comes from the configured thresholds (or is
measured), worded by `words_duration` and `words_cad`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from alerting.engine import rules as r
from alerting.engine.config import Thresholds
from alerting.engine.state import ShipmentState
from schemas.alerts import ReasonDetail
from schemas.carm import CarmSnapshot


def _importer(s: ShipmentState, carm: CarmSnapshot | None) -> str:
    name = carm.legal_name if carm is not None else s.importer_name
    return f"{name or 'the importer'} ({s.importer_bn})"


def _broker(s: ShipmentState) -> str:
    if s.broker_code is None:
        return "the customs broker"
    return f"{s.broker_name} ({s.broker_code})" if s.broker_name else f"broker {s.broker_code}"


def _importer_contact(s: ShipmentState, carm: CarmSnapshot | None) -> str:
    contact = carm.contact if carm is not None else None
    parts = [p for p in (contact.name, contact.phone, contact.email) if p] if contact else []
    who = ", ".join(parts) if parts else "no contact on the CARM record"
    return f"Importer {_importer(s, carm)}: {who}"


def _broker_contact(s: ShipmentState, carm: CarmSnapshot | None) -> str:
    if s.broker_code is None:
        return f"Shipper {s.shipper_name or ''} / " + _importer_contact(s, carm)
    return f"Broker {_broker(s)}"


def words_duration(delta: timedelta) -> str:
    """A duration as a dispatcher says it: "45 min", "90 min", "1 h", "2 h 30 min", "36 h", "180 days".

    Whole minutes (rounded down); under two hours in minutes unless a whole hour;
    from two days on in days (and hours).
    """
    seconds = abs(delta.total_seconds())
    if 0 < seconds < 60:
        return "less than 1 min"
    minutes = int(seconds // 60)
    days, minutes_of_day = divmod(minutes, 24 * 60)
    if days >= 2:
        hours = minutes_of_day // 60
        return f"{days} days {hours} h" if hours else f"{days} days"
    hours, rest = divmod(minutes, 60)
    if hours == 0 or (hours < 2 and rest):
        return f"{minutes} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def words_cad(amount: float) -> str:
    """An amount in Canadian dollars, to the dollar: "$10,000"."""
    return f"${amount:,.0f}"


def words_share(ratio: float) -> str:
    """A ratio as a percentage: 0.5 -> "50 %"."""
    return f"{ratio * 100:g} %"


def _eta_phrase(s: ShipmentState, now: datetime) -> str:
    assert s.eta is not None  # the time rules that call this only fire with an ETA
    left = s.eta - now
    return f"ETA in {words_duration(left)}" if left > timedelta(0) else "past the ETA"


def _security_rule(c: CarmSnapshot, th: Thresholds) -> str:
    """How the required security was computed (mirrors rules.required_security)."""
    minimum = words_cad(th.minimum_security_cad)
    if c.highest_monthly_duties_taxes_cad is None:
        return f"the {minimum} minimum: no duty history"
    if c.security.kind == "cash":
        return f"cash: the larger of {minimum} and the highest monthly duties and taxes"
    return (
        f"{c.security.kind}: the larger of {minimum} and {words_share(th.surety_ratio)} "
        "of the highest monthly duties and taxes"
    )


Explainer = Callable[[ShipmentState, CarmSnapshot | None, datetime, Thresholds], tuple[str, str, str]]


def _broker_missing(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    return (
        "The eManifest names no customs broker, so nobody will file the release request (PARS).",
        "Ask the shipper which broker clears this load and have the broker file the PARS under this CCN.",
        _importer_contact(s, c),
    )


def _importer_unknown(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    return (
        f"holdwatch has no CARM readiness record for importer {_importer(s, c)}: registration, "
        "broker delegation and RPP security cannot be checked.",
        "Ask the broker to confirm the importer is registered in the CARM Client Portal, has delegated "
        "to them and has Release Prior to Payment security.",
        _broker_contact(s, c),
    )


def _not_registered(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    assert c is not None
    missing = "has no CARM Client Portal account" if not c.ccp_registered else "has not linked its RM account"
    return (
        f"Importer {_importer(s, c)} {missing}: CBSA cannot release its goods.",
        "Ask the importer to register in the CARM Client Portal and link business number "
        f"{s.importer_bn} before the truck reaches the border.",
        _importer_contact(s, c),
    )


def _not_delegated(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    return (
        f"Importer {_importer(s, c)} has not delegated authority to {_broker(s)} in the CARM Client Portal: "
        "the broker cannot act for it.",
        f"Ask the importer to delegate to {s.broker_code}: All programs, Business management, and all "
        "three transaction visibility rules.",
        _importer_contact(s, c),
    )


def _delegation_incomplete(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    return (
        f"{_broker(s)} is delegated but without transaction visibility: it cannot validate the "
        "supply-chain transmissions for this load.",
        "Ask the importer to tick the three transaction visibility rules in the broker's delegation.",
        _importer_contact(s, c),
    )


def _no_rpp(s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds) -> tuple[str, str, str]:
    return (
        f"Importer {_importer(s, c)} is not enrolled in Release Prior to Payment: duties and taxes must be "
        "paid before release, so the load waits at the border.",
        "Ask the importer to enrol in RPP with security, or to prepay through the broker "
        "(then mark the load prepaid).",
        _importer_contact(s, c),
    )


def _security_short(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    assert c is not None
    posted = r.posted_security(c)
    required = r.required_security(c, th)
    return (
        f"RPP security posted is {words_cad(posted)} against {words_cad(required)} required "
        f"({_security_rule(c, th)}): CBSA may refuse release before payment.",
        "Ask the importer to raise its surety bond or cash deposit to the required amount, or to prepay.",
        _importer_contact(s, c),
    )


def _login_dormant(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    assert c is not None and c.last_portal_login_at is not None
    days = (now - c.last_portal_login_at).days
    return (
        f"Nobody at {_importer(s, c)} has logged in to the CARM Client Portal for {days} days "
        f"(more than {words_duration(th.login_dormant_after)}): the account may be disabled.",
        "Ask the importer to log in to the CARM Client Portal now and check its delegations.",
        _importer_contact(s, c),
    )


def _rejected(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    why = f": {s.reject_reason}" if s.reject_reason else ""
    return (
        f"CBSA rejected the eManifest for this load{why}.",
        "Fix and resubmit the ACI eManifest (cargo and conveyance) now.",
        "Your eManifest desk",
    )


def _not_accepted(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    when = _eta_phrase(s, now)
    return (
        f"No CBSA acceptance of the eManifest since it was last sent, {when}: it must be on file "
        f"{words_duration(th.emanifest_deadline_before_eta)} before the truck reaches the port.",
        "Check the eManifest status and resubmit it if needed; hold the driver short of the border if it "
        "cannot be accepted in time.",
        "Your eManifest desk",
    )


def _pars_not_matched(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    when = _eta_phrase(s, now)
    return (
        f"No release request (PARS) is matched to this CCN yet ({when}): it is due "
        f"{words_duration(th.pars_warning_before_eta)} before the ETA, and critical from "
        f"{words_duration(th.pars_critical_before_eta)} before it.",
        f"Call {_broker(s)}: confirm they received the documents and filed the PARS under CCN {s.ccn}.",
        _broker_contact(s, c),
    )


def _pars_not_on_file(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    return (
        "CBSA says the release document is not on file: the PARS was cancelled or its CCN changed "
        "(CBSA sends no notice for that).",
        f"Call {_broker(s)}: ask them to re-file or re-link the PARS to CCN {s.ccn}.",
        _broker_contact(s, c),
    )


def _rns_rejected(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    meaning = r.KNOWN_INDICATORS.get(s.latest_rns or 0, "rejected")
    return (
        f"The broker's release transaction was refused (RNS {s.latest_rns}: {meaning}).",
        f"Call {_broker(s)}: ask them to correct and resubmit the declaration.",
        _broker_contact(s, c),
    )


def _held(s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds) -> tuple[str, str, str]:
    return (
        "CBSA referred the load for examination: expect hours to days at the border.",
        "Tell the driver and the consignee; ask the broker what CBSA needs and plan the driver's hours.",
        _broker_contact(s, c),
    )


def _not_released(
    s: ShipmentState, c: CarmSnapshot | None, now: datetime, th: Thresholds
) -> tuple[str, str, str]:
    assert s.arrived_at is not None
    waited = now - s.arrived_at
    grace = words_duration(th.release_grace_after_arrival)
    return (
        f"The truck arrived {words_duration(waited)} ago and the load is still not released "
        f"(expected within {grace} of arrival).",
        f"Call {_broker(s)} for the release status, and the importer if payment or CARM is the cause.",
        _broker_contact(s, c),
    )


EXPLAINERS: dict[str, Explainer] = {
    r.BROKER_MISSING: _broker_missing,
    r.CARM_IMPORTER_UNKNOWN: _importer_unknown,
    r.CARM_NOT_REGISTERED: _not_registered,
    r.CARM_BROKER_NOT_DELEGATED: _not_delegated,
    r.CARM_DELEGATION_INCOMPLETE: _delegation_incomplete,
    r.CARM_NO_RPP: _no_rpp,
    r.CARM_SECURITY_SHORT: _security_short,
    r.CARM_LOGIN_DORMANT: _login_dormant,
    r.EMANIFEST_REJECTED: _rejected,
    r.EMANIFEST_NOT_ACCEPTED: _not_accepted,
    r.PARS_NOT_MATCHED: _pars_not_matched,
    r.PARS_NOT_ON_FILE: _pars_not_on_file,
    r.RNS_REJECTED: _rns_rejected,
    r.HELD_FOR_EXAMINATION: _held,
    r.NOT_RELEASED_AFTER_ARRIVAL: _not_released,
}


def explain(
    s: ShipmentState,
    carm: CarmSnapshot | None,
    now: datetime,
    th: Thresholds,
    active: dict[str, r.Severity],
) -> list[ReasonDetail]:
    """One detail per active reason, critical first, then by code."""
    details = []
    for code in sorted(active, key=lambda c: (active[c] != r.CRITICAL, c)):
        summary, action, call = EXPLAINERS[code](s, carm, now, th)
        details.append(
            ReasonDetail(code=code, severity=active[code], summary=summary, action=action, call=call)
        )
    return details
