"""Topic `carm.readiness` (key: importer_bn, compacted): full CARM readiness snapshots."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.common import (
    BrokerCode,
    EventEnvelope,
    ImporterBn,
    NonNegativeAmount,
    ShortText,
    Timestamp,
    WireModel,
)


class Delegation(WireModel):
    """A delegation of authority from the importer to a broker in the CARM Client Portal."""

    broker_code: BrokerCode
    access: Literal["business_management", "program_management", "none"]
    transaction_visibility: bool


class Security(WireModel):
    """Financial security posted for Release Prior to Payment."""

    kind: Literal["surety", "cash", "none"]
    amount_cad: NonNegativeAmount


class Contact(WireModel):
    name: ShortText | None = None
    phone: ShortText | None = None
    email: ShortText | None = None


class CarmSnapshot(EventEnvelope):
    """One importer's readiness; each snapshot replaces the previous one."""

    event_type: Literal["carm_snapshot"]
    importer_bn: ImporterBn
    legal_name: ShortText
    ccp_registered: bool
    rm_account_linked: bool
    delegations: list[Delegation] = Field(max_length=500)
    rpp_enrolled: bool
    security: Security
    highest_monthly_duties_taxes_cad: NonNegativeAmount | None
    last_portal_login_at: Timestamp | None
    contact: Contact | None = None


CarmEvent = Annotated[CarmSnapshot, Field(discriminator="event_type")]
