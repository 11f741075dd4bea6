"""Topic `rns.events` (key: ccn): Release Notification System messages.

The wire shape only: what each processing indicator means is a rule (alerting/engine/rules.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.common import BrokerCode, Ccn, EventEnvelope, OfficeCode, ShortText, TransactionNumber


class RnsStatus(EventEnvelope):
    event_type: Literal["rns_status"]
    ccn: Ccn
    processing_indicator: int
    transaction_number: TransactionNumber | None = None
    broker_code: BrokerCode | None = None
    office: OfficeCode | None = None
    description: ShortText | None = None


RnsEvent = Annotated[RnsStatus, Field(discriminator="event_type")]
