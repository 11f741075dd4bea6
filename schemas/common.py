"""Shared field types and the base model for every wire format.

Strict types (a number in quotes is a wrong type), unknown fields ignored,
timestamps must carry an offset and are normalised to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

SCHEMA_VERSION = 1


def _require_timestamp_text(value: Any) -> Any:
    # Timestamps are validated leniently (so that dicts from a JSON log parse like
    # raw JSON) but only from RFC 3339 text: an epoch number is a wrong type.
    if isinstance(value, str | datetime):
        return value
    raise ValueError("a timestamp must be an RFC 3339 string with an offset")


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Timestamp = Annotated[
    AwareDatetime,
    Strict(False),
    BeforeValidator(_require_timestamp_text),
    AfterValidator(_to_utc),
]
"""RFC 3339 with an offset, normalised to UTC. A naive timestamp is invalid."""

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Ccn = Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z0-9-]{5,25}$")]
"""Cargo Control Number, upper-cased on input."""
CarrierCode = Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z0-9]{4}$")]
ImporterBn = Annotated[str, StringConstraints(to_upper=True, pattern=r"^[0-9]{9}[Rr][Mm][0-9]{4}$")]
"""CRA business number with an import/export (RM) program account: BN15."""
OfficeCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
"""4-digit CBSA office (port) code."""
BrokerCode = Annotated[str, StringConstraints(to_upper=True, strip_whitespace=True, min_length=1, max_length=32)]
TransactionNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{14}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=2048)]
NonNegativeAmount = Annotated[float, Field(ge=0)]


class WireModel(BaseModel):
    """Base of every wire model: strict, frozen, tolerant of extra fields."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class EventEnvelope(WireModel):
    """Fields every input event carries."""

    event_id: EventId
    occurred_at: Timestamp
    schema_version: Literal[1]
