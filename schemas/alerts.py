"""Topic `holdwatch.alerts` (key: ccn): the pipeline's output contract.

One alert lifecycle per shipment: `raised` → `updated`* → `resolved`. `alert_id`
is stable for a lifecycle and `seq` numbers its steps, so `(alert_id, seq)` (also
`event_id`) identifies an alert event: a consumer that sees it twice drops it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.carm import Contact
from schemas.common import WireModel

AlertAction = Literal["raised", "updated", "resolved"]
Severity = Literal["warning", "critical"]
Outcome = Literal["released", "cancelled", "cleared", "expired"]
LinkState = Literal["none", "linked", "not_matched", "not_on_file"]
Trigger = Literal["event", "deadline", "carm"]


class ReasonDetail(WireModel):
    """One active reason, explained for a dispatcher: what is wrong, whom to call, what to ask."""

    code: str
    severity: Severity
    summary: str
    action: str
    call: str | None = None


class AlertEvent(WireModel):
    schema_version: Literal[1] = 1
    event_id: str = Field(description="`<alert_id>/<seq>`: unique and stable per lifecycle step")
    alert_id: str = Field(description="stable for one alert lifecycle of one shipment")
    seq: int = Field(ge=1, description="lifecycle step: 1 for raised, then 2, 3, ...")
    ccn: str
    action: AlertAction
    severity: Severity | None = Field(default=None, description="absent on resolved")
    previous_severity: Severity | None = None
    reasons: list[str] = Field(description="active rule codes, sorted; empty on resolved")
    details: list[ReasonDetail] = Field(default_factory=list)
    at: AwareDatetime = Field(description="event time at which the change happened (UTC)")
    first_raised_at: AwareDatetime
    outcome: Outcome | None = Field(default=None, description="only on resolved")
    trigger: Trigger = "event"
    load_ref: str | None = None
    carrier_code: str | None = None
    port_of_entry: str | None = None
    eta: AwareDatetime | None = None
    importer_bn: str | None = None
    importer_name: str | None = None
    importer_contact: Contact | None = None
    shipper_name: str | None = None
    broker_code: str | None = None
    broker_name: str | None = None
    dispatch_team: str | None = None
    truck_number: str | None = None
    trailer_number: str | None = None
    driver_name: str | None = None
    driver_phone: str | None = None
    link_state: LinkState = "none"
    latest_rns_indicator: int | None = None
    arrived_at: AwareDatetime | None = None

    def comparable(self) -> tuple[str, str, str | None, tuple[str, ...], datetime, str | None]:
        """The fields on which back-test and replay must agree."""
        return (self.ccn, self.action, self.severity, tuple(self.reasons), self.at, self.outcome)
