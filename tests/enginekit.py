"""Builders for engine tests: terse events on a fixed timeline (minutes from T0).

Event ids are derived from the content (type, CCN or BN, time and body), so they do not
depend on which tests ran before: the same builder call gives the same id, and an event
with the same content is a duplicate (pass `eid` to make a distinct copy).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.carm import CarmSnapshot, Contact, Delegation, Security
from schemas.emanifest import Cancelled, CargoAccepted, CargoRejected, CargoReported, EtaUpdated, Notice
from schemas.rns import RnsStatus

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BN = "123456789RM0001"
BROKER = "BRK1"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def content_id(prefix: str, content: dict[str, Any]) -> str:
    """A stable id from the content: `prefix` + a digest of the canonical JSON."""
    canonical = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return f"{prefix}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _with_id(body: dict[str, Any], t: float, eid: str | None) -> dict[str, Any]:
    common = {"occurred_at": at(t), "schema_version": 1}
    content = {**common, **body}
    return {**content, "event_id": eid or content_id("e", content)}


def reported(
    t: float = 0,
    *,
    ccn: str = "ABCD100",
    eta: float = 300,
    broker: str | None = BROKER,
    bn: str = BN,
    mode: str = "rpp",
    eid: str | None = None,
    team: str | None = "east",
) -> CargoReported:
    body = {
        "event_type": "cargo_reported",
        "ccn": ccn,
        "carrier_code": ccn[:4],
        "trip_number": "T1",
        "load_ref": f"LOAD-{ccn}",
        "port_of_entry": "0427",
        "eta": at(eta),
        "importer_bn": bn,
        "importer_name": "Maple Imports Ltd",
        "shipper_name": "Ohio Widgets",
        "broker_code": broker,
        "broker_name": "Border Brokers" if broker else None,
        "release_mode": mode,
        "dispatch_team": team,
    }
    return CargoReported.model_validate(_with_id(body, t, eid), strict=False)


def accepted(t: float, *, ccn: str = "ABCD100", eid: str | None = None) -> CargoAccepted:
    body = {"event_type": "cargo_accepted", "ccn": ccn}
    return CargoAccepted.model_validate(_with_id(body, t, eid), strict=False)


def rejected(t: float, *, ccn: str = "ABCD100", eid: str | None = None) -> CargoRejected:
    body = {"event_type": "cargo_rejected", "ccn": ccn, "reason": "bad weight"}
    return CargoRejected.model_validate(_with_id(body, t, eid), strict=False)


def eta_updated(
    t: float, eta: float, *, ccn: str = "ABCD100", port: str | None = None, eid: str | None = None
) -> EtaUpdated:
    body: dict[str, Any] = {"event_type": "eta_updated", "ccn": ccn, "eta": at(eta)}
    if port is not None:  # only when given: the ids of the other events stay the same
        body["port_of_entry"] = port
    return EtaUpdated.model_validate(_with_id(body, t, eid), strict=False)


def notice(t: float, kind: str, *, ccn: str = "ABCD100", eid: str | None = None) -> Notice:
    body = {"event_type": "notice", "ccn": ccn, "notice": kind}
    return Notice.model_validate(_with_id(body, t, eid), strict=False)


def rns(t: float, indicator: int, *, ccn: str = "ABCD100", eid: str | None = None) -> RnsStatus:
    body = {"event_type": "rns_status", "ccn": ccn, "processing_indicator": indicator}
    return RnsStatus.model_validate(_with_id(body, t, eid), strict=False)


def cancelled(t: float, *, ccn: str = "ABCD100", eid: str | None = None) -> Cancelled:
    body = {"event_type": "cancelled", "ccn": ccn}
    return Cancelled.model_validate(_with_id(body, t, eid), strict=False)


def carm(
    t: float = -60,
    *,
    bn: str = BN,
    registered: bool = True,
    linked: bool = True,
    delegations: list[tuple[str, str, bool]] | None = None,
    rpp: bool = True,
    security: tuple[str, float] = ("surety", 50_000),
    highest: float | None = 20_000,
    last_login: datetime | None = None,
    eid: str | None = None,
) -> CarmSnapshot:
    dels = delegations if delegations is not None else [(BROKER, "business_management", True)]
    content = {
        "t": t,
        "bn": bn,
        "registered": registered,
        "linked": linked,
        "delegations": dels,
        "rpp": rpp,
        "security": security,
        "highest": highest,
        "last_login": last_login,
    }
    return CarmSnapshot(
        event_id=eid or content_id("c", content),
        occurred_at=at(t),
        schema_version=1,
        event_type="carm_snapshot",
        importer_bn=bn,
        legal_name="Maple Imports Ltd",
        ccp_registered=registered,
        rm_account_linked=linked,
        delegations=[
            Delegation(broker_code=b, access=a, transaction_visibility=v)  # type: ignore[arg-type]
            for b, a, v in dels
        ],
        rpp_enrolled=rpp,
        security=Security(kind=security[0], amount_cad=security[1]),  # type: ignore[arg-type]
        highest_monthly_duties_taxes_cad=highest,
        last_portal_login_at=last_login if last_login is not None else at(-24 * 60),
        contact=Contact(name="Jane Roy", phone="+1 519 555 0100", email="jane@maple.example"),
    )
