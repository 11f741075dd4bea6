"""Topic `rns.events` (key: ccn): Release Notification System messages."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.common import BrokerCode, Ccn, EventEnvelope, OfficeCode, ShortText, TransactionNumber

KNOWN_INDICATORS: dict[int, str] = {
    1: "message content accepted",
    2: "message content rejected",
    4: "goods released",
    5: "goods required for examination",
    8: "goods may move, detain at destination (CFIA)",
    9: "declaration accepted, awaiting arrival of goods",
    14: "error message",
    23: "authorised to deliver (CSA shipment)",
    34: "transaction awaiting processing",
}
"""RNS processing indicators the rules know; any other integer is kept and shown only."""


class RnsStatus(EventEnvelope):
    event_type: Literal["rns_status"]
    ccn: Ccn
    processing_indicator: int
    transaction_number: TransactionNumber | None = None
    broker_code: BrokerCode | None = None
    office: OfficeCode | None = None
    description: ShortText | None = None


RnsEvent = Annotated[RnsStatus, Field(discriminator="event_type")]
