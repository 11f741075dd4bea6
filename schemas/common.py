"""Shared field types and the base model for every wire format.

Strict types (a number in quotes is a wrong type), unknown fields ignored,
timestamps must carry an offset and are normalised to UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

SCHEMA_VERSION = 1


# RFC 3339 date-time; the offset is optional here only so that a missing offset is
# reported as a naive timestamp (timezone_aware) rather than as a malformed string.
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise PydanticCustomError("datetime_out_of_range", "timestamp out of range in UTC") from exc


def _datetime_as_text(value: Any) -> Any:
    # Models built in Python (tests, simulators) pass datetimes: validate them as their text.
    return value.isoformat() if isinstance(value, datetime) else value


# pydantic-core's parse of a timestamp that matched RFC3339_PATTERN: offset required, then the
# stdlib UTC object. It defines what is accepted and how a timestamp is rejected.
_EXACT_PARSE: Final[Callable[[str], datetime]] = SchemaValidator(
    core_schema.chain_schema(
        [
            core_schema.datetime_schema(strict=False, tz_constraint="aware"),
            core_schema.no_info_plain_validator_function(_to_utc),
        ]
    )
).validate_python
_FROM_ISOFORMAT: Final = datetime.fromisoformat


def _parse_timestamp(text: str) -> datetime:
    """Text that matched RFC3339_PATTERN -> its instant as a datetime in the stdlib UTC.

    Why two parsers: the stdlib's C parser returns the stdlib UTC for a `Z` at once, where
    pydantic-core's returns its own tzinfo that must then be converted (a sixth of a decode).
    Its result is kept only where it agrees with pydantic-core's (UTC, or a `±HH:MM` offset
    with minutes < 60: it reads "+05:60" as +06:00; the fuzz test in tests/unit/test_decode.py
    compares the two); anything else, and anything it refuses, is parsed by pydantic-core, so
    rejections (a naive timestamp, an impossible date) are exactly what they were.
    """
    try:
        value = _FROM_ISOFORMAT(text)
    except ValueError:
        return _EXACT_PARSE(text)
    if value.tzinfo is UTC:
        return value
    if text[-6] in "+-" and text[-2] in "012345":
        try:
            return value.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    return _EXACT_PARSE(text)


def _timestamp_schema(_source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    # RFC 3339 text only (an epoch number, even in quotes, is not a timestamp), parsed, offset
    # required, and normalised to the stdlib UTC object: comparisons between datetimes that
    # share one tzinfo object skip utcoffset() calls, ten times faster on the engine's hot path.
    # Raw JSON and json.loads dicts go through the same steps, so both decode paths agree.
    from_text = core_schema.chain_schema(
        [
            core_schema.str_schema(strict=True, pattern=RFC3339_PATTERN),
            core_schema.no_info_plain_validator_function(_parse_timestamp),
        ]
    )
    return core_schema.json_or_python_schema(
        json_schema=from_text,
        python_schema=core_schema.no_info_before_validator_function(_datetime_as_text, from_text),
    )


Timestamp = Annotated[
    datetime,
    GetPydanticSchema(_timestamp_schema),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""RFC 3339 with an offset, normalised to UTC. A naive timestamp is invalid."""


def _schema_version_schema(_source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    # Literal[1] alone accepts 1.0 and true; a strict int makes those a wrong type (and is
    # cheaper than a chain of int and literal).
    return core_schema.int_schema(strict=True, ge=SCHEMA_VERSION, le=SCHEMA_VERSION)


SchemaVersion = Annotated[
    Literal[1],
    GetPydanticSchema(_schema_version_schema),
    WithJsonSchema({"type": "integer", "const": SCHEMA_VERSION}),
]
"""The only supported input schema version; anything else is unsupported, a non-integer a wrong type."""

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Ccn = Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z0-9-]{5,25}$")]
"""Cargo Control Number, upper-cased on input."""
CarrierCode = Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z0-9]{4}$")]
ImporterBn = Annotated[str, StringConstraints(to_upper=True, pattern=r"^[0-9]{9}[Rr][Mm][0-9]{4}$")]
"""CRA business number with an import/export (RM) program account: BN15."""
OfficeCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
"""4-digit CBSA office (port) code."""
BrokerCode = Annotated[
    str, StringConstraints(to_upper=True, strip_whitespace=True, min_length=1, max_length=32)
]
TransactionNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{14}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=2048)]
NonNegativeAmount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class WireModel(BaseModel):
    """Base of every wire model: strict, frozen, tolerant of extra fields."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class EventEnvelope(WireModel):
    """Fields every input event carries."""

    event_id: EventId
    occurred_at: Timestamp
    schema_version: SchemaVersion
