"""The status API's responses (served by the worker, docs/status-api.md): the one source of truth.

`schemas/json/holdwatch.api.openapi.json` is generated from these models and checked in, like
the topics' JSON Schemas. Times are UTC with offset; `as_of` is the worker's clock (the wall
clock live, the stream's clock with `--clock event`), so a replayed history reads as it stood.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.alerts import LinkState, ReasonDetail, Severity
from schemas.brokers import BrokerContactView
from schemas.common import WireModel

LoadPhase = Literal["open", "released", "cancelled", "expired", "reported_events_only"]
"""`reported_events_only`: events arrived for the CCN but its `cargo_reported` did not (yet)."""


class AlertLifecycleView(WireModel):
    alert_id: str
    seq: int
    severity: Severity
    first_raised_at: AwareDatetime
    owner_id: str | None = Field(default=None, description="Slack user who acknowledged it (owns the load)")
    owner_name: str | None = None
    owned_since: AwareDatetime | None = None
    snoozed_until: AwareDatetime | None = Field(
        default=None, description="no on-call page before this (the notifier ends it early on a new critical)"
    )


class LoadStatus(WireModel):
    """What holdwatch knows about one load now, with the reasons it is at risk explained."""

    ccn: str
    phase: LoadPhase
    as_of: AwareDatetime = Field(description="the worker's clock when this was answered")
    load_ref: str | None = None
    carrier_code: str | None = None
    trip_number: str | None = None
    port_of_entry: str | None = None
    port_name: str | None = None
    port_tz: str | None = Field(default=None, description="IANA time zone of the port, for local times")
    eta: AwareDatetime | None = None
    minutes_to_eta: float | None = Field(default=None, description="negative once the ETA has passed")
    importer_bn: str | None = None
    importer_name: str | None = None
    shipper_name: str | None = None
    broker_code: str | None = None
    broker_name: str | None = None
    broker_contact: BrokerContactView | None = Field(
        default=None, description="the broker directory's entry for the broker, as of this answer"
    )
    release_mode: Literal["rpp", "prepaid"] | None = None
    dispatch_team: str | None = None
    truck_number: str | None = None
    trailer_number: str | None = None
    driver_name: str | None = None
    driver_phone: str | None = None
    cargo_answer: Literal["accepted", "rejected"] | None = None
    link_state: LinkState = "none"
    latest_rns_indicator: int | None = None
    held_for_examination: bool = False
    arrived_at: AwareDatetime | None = None
    released_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    severity: Severity | None = Field(default=None, description="of the open alert; none if not at risk")
    reasons: list[ReasonDetail] = Field(default_factory=list, description="active reasons, critical first")
    alert: AlertLifecycleView | None = Field(default=None, description="the open alert lifecycle")


class LoadPage(WireModel):
    """One page of loads, sorted by time to ETA (soonest first, loads without an ETA last)."""

    as_of: AwareDatetime
    total: int = Field(description="loads matching the filters, over every partition")
    offset: int
    limit: int
    next_offset: int | None = Field(default=None, description="absent on the last page")
    items: list[LoadStatus]


class ReadinessCheck(WireModel):
    """The pre-pickup check: what the engine would say of a new load of this importer now."""

    as_of: AwareDatetime
    importer_bn: str
    broker_code: str | None
    release_mode: Literal["rpp", "prepaid"]
    ready: bool = Field(description="no reason at all: the load can be picked up")
    severity: Severity | None = None
    reasons: list[ReasonDetail] = Field(default_factory=list)
    importer_name: str | None = None
    carm_record_at: AwareDatetime | None = Field(default=None, description="when the CARM record was taken")
    carm_record_age_hours: float | None = None


ErrorCode = Literal["bad_request", "unauthorized", "not_found", "not_ready", "unavailable", "internal_error"]


class ApiError(WireModel):
    """Every 4xx/5xx body: what went wrong, in words, and which input."""

    error: ErrorCode
    detail: str
    parameter: str | None = None


class Health(WireModel):
    status: Literal["ok"] = "ok"


class Readiness(WireModel):
    ready: bool
    partitions: int = Field(description="shipment partitions assigned to this worker")
    recovered: bool = Field(description="tables recovered from their changelogs")
    lag_records: int | None = Field(default=None, description="input records not yet consumed")
    idle_seconds: float | None = Field(default=None, description="since the last input record")
    detail: str


class LoadQuery(BaseModel):
    """The query string of `GET /v1/loads` (unknown parameters are refused: a typo is not ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open: bool = Field(default=True, description="only loads not yet released, cancelled or expired")
    port: str | None = Field(default=None, pattern=r"^[0-9]{4}$", description="CBSA office code")
    team: str | None = Field(default=None, min_length=1, max_length=64)
    eta_within_h: float | None = Field(default=None, gt=0, le=720, description="ETA at most this far ahead")
    severity: Severity | None = None
    at_risk: bool = Field(default=False, description="only loads with an open alert")
    load_ref: str | None = Field(default=None, min_length=1, max_length=64)
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


class ReadinessQuery(BaseModel):
    """The query string of `GET /v1/importers/{bn}/readiness`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str | None = Field(default=None, min_length=1, max_length=32, description="broker code")
    release_mode: Literal["rpp", "prepaid"] = "rpp"


API_MODELS: tuple[type[WireModel], ...] = (
    LoadStatus,
    LoadPage,
    ReadinessCheck,
    ApiError,
    Health,
    Readiness,
)
