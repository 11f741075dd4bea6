"""Per-shipment state: what the engine knows about one CCN, compact and serialisable."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import TypeAdapter

from schemas.emanifest import EManifestEvent
from schemas.rns import RnsStatus

LinkState = Literal["none", "linked", "not_matched", "not_on_file"]
ShipmentEvent = EManifestEvent | RnsStatus
"""Events keyed by CCN (eManifest and RNS topics)."""

_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(EManifestEvent | RnsStatus)


@dataclass(slots=True)
class ShipmentState:
    """Everything the rules need about one load, plus its alert lifecycle.

    A state with `known=False` only holds events that arrived before the
    shipment's first `cargo_reported` (`pending`).
    """

    ccn: str
    known: bool = False
    pending: list[ShipmentEvent] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    closed: Literal["released", "cancelled", "expired"] | None = None
    closed_at: datetime | None = None
    """When it closed (event time): retention counts from here."""
    # Facts from the latest cargo_reported (and eta_updated).
    carrier_code: str | None = None
    trip_number: str | None = None
    load_ref: str | None = None
    port_of_entry: str | None = None
    eta: datetime | None = None
    importer_bn: str | None = None
    importer_name: str | None = None
    shipper_name: str | None = None
    broker_code: str | None = None
    broker_name: str | None = None
    release_mode: Literal["rpp", "prepaid"] = "rpp"
    dispatch_team: str | None = None
    truck_number: str | None = None
    trailer_number: str | None = None
    driver_name: str | None = None
    driver_phone: str | None = None
    # CBSA answers and border progress.
    cargo_answer: Literal["accepted", "rejected"] | None = None
    reject_reason: str | None = None
    accepted_since_report: bool = False
    link: LinkState = "none"
    latest_rns: int | None = None
    last_rns_raw: int | None = None
    held: bool = False
    held_at: datetime | None = None
    arrived_at: datetime | None = None
    released_at: datetime | None = None
    last_eval: datetime | None = None
    last_event_at: datetime | None = None
    """When its latest eManifest/RNS event was applied (event time): expiry counts from here."""
    # Alert lifecycle.
    reasons: tuple[str, ...] = ()
    severity: Literal["warning", "critical"] | None = None
    lifecycles: int = 0
    seq: int = 0
    first_raised_at: datetime | None = None
    ever_alerted_at: datetime | None = None

    @property
    def alert_open(self) -> bool:
        return bool(self.reasons)

    @property
    def alert_id(self) -> str:
        return f"{self.ccn}:{self.lifecycles}"


_DATETIME_FIELDS = frozenset(
    {
        "eta",
        "held_at",
        "arrived_at",
        "released_at",
        "closed_at",
        "last_eval",
        "last_event_at",
        "first_raised_at",
        "ever_alerted_at",
    }
)
_SKIP = frozenset({"pending", "seen_ids", "reasons"})


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def state_to_dict(s: ShipmentState) -> dict[str, Any]:
    """A compact JSON-able form: defaults omitted, instants as epoch milliseconds."""
    out: dict[str, Any] = {}
    defaults = _DEFAULTS
    for name in ShipmentState.__slots__:
        if name in _SKIP:
            continue
        value = getattr(s, name)
        if value == defaults[name]:
            continue
        out[name] = _ms(value) if name in _DATETIME_FIELDS else value
    out["ccn"] = s.ccn
    if s.pending:
        out["pending"] = [e.model_dump(mode="json") for e in s.pending]
    if s.seen_ids:
        out["seen_ids"] = sorted(s.seen_ids)
    if s.reasons:
        out["reasons"] = list(s.reasons)
    return out


def state_from_dict(data: dict[str, Any]) -> ShipmentState:
    s = ShipmentState(ccn=data["ccn"])
    for name, value in data.items():
        if name in ("pending", "seen_ids", "reasons", "ccn"):
            continue
        setattr(s, name, _from_ms(value) if name in _DATETIME_FIELDS else value)
    s.pending = [_EVENT_ADAPTER.validate_python(e, strict=False) for e in data.get("pending", ())]
    s.seen_ids = set(data.get("seen_ids", ()))
    s.reasons = tuple(data.get("reasons", ()))
    return s


def state_to_bytes(s: ShipmentState) -> bytes:
    return json.dumps(state_to_dict(s), separators=(",", ":")).encode()


def state_from_bytes(raw: bytes) -> ShipmentState:
    return state_from_dict(json.loads(raw))


_DEFAULTS: dict[str, Any] = {
    name: getattr(ShipmentState(ccn=""), name) for name in ShipmentState.__slots__ if name not in _SKIP
}
