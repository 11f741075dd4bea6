"""BorderConnect WebSocket messages → holdwatch input events: one table, each row marked with how
sure we are of it.

What public material says about BorderConnect's messages is uneven (../shared/notes/borderconnect.md):
some fields come from BorderConnect's own manuals, most only from third-party client code. So every
fact this mapping relies on is a row of `TABLE` (which message type, which discriminating value,
where the CCN and the time are, what it becomes) with its confidence, and a carrier with a live
account corrects one row without touching the rest (docs/connectors.md, "How to correct a row").

Pure: `map_message(text, context)` turns one received frame into events to publish, an ignore
(understood, nothing to publish), the server's own status (`API_RESPONSE`, for the handshake) or
`Unusable` with a dead-letter reason. It never raises on input.

- Times without a zone (`cbsaDateTime` is `yyyy-mm-dd hh:mm:ss`) are read in `context.tz`; events
  never carry a naive time.
- `event_id`s are a digest of the message's content (type, CCN, discriminator, the time as sent,
  codes), so a re-sent message gives the same ids: the pipeline treats it as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Literal, TypeAlias

from pydantic import ValidationError

from schemas.decode import DeadLetterReason, TopicKind
from schemas.emanifest import CargoAccepted, CargoRejected, Notice, NoticeKind
from schemas.rns import RnsStatus

Confidence = Literal["doc", "ex", "3p", "guess"]
CONFIDENCE: Final[Mapping[Confidence, str]] = {
    "doc": "BorderConnect's own manual or API page",
    "ex": "a published JSON example",
    "3p": "seen only in third-party client code (unverified against a live account)",
    "guess": "inferred; nothing public shows it",
}

MAX_FRAME_CHARS: Final = 1_048_576
"""Frames larger than this are dead-lettered unparsed (the limit of a Kafka record)."""
EVENT_ID_PREFIX: Final = "bc-"


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """Where a value is in the message: dotted paths tried in order (`a.b`, `list[].c` for every
    element of a list); the first path that holds a value wins (CCNs: every path, all values)."""

    paths: tuple[str, ...]
    confidence: Confidence


@dataclass(frozen=True, slots=True)
class ToAccepted:
    """CBSA accepted the cargo → `cargo_accepted`."""


@dataclass(frozen=True, slots=True)
class ToRejected:
    """CBSA rejected the cargo → `cargo_rejected`, the reason being the error texts."""

    errors: Field
    code: Field
    field_name: Field
    text: Field


@dataclass(frozen=True, slots=True)
class ToNotice:
    """A CBSA notice → `notice` of this kind."""

    notice: NoticeKind


@dataclass(frozen=True, slots=True)
class ToRnsStatus:
    """An RNS message → `rns_status`; what the processing indicator means is a rule (rules.py)."""

    indicator: Field
    transaction_number: Field
    office: Field
    description: Field


@dataclass(frozen=True, slots=True)
class Ignore:
    """Understood, and nothing for holdwatch: counted and logged, never published."""

    why: str


Becomes: TypeAlias = ToAccepted | ToRejected | ToNotice | ToRnsStatus | Ignore


@dataclass(frozen=True, slots=True)
class Row:
    """One discriminating value of a message type and what it becomes.

    `without_ccn`: what to do when the message names no CCN (a trip-level response): `ignore` it,
    or dead-letter it so that someone looks (a trip reject must not pass unseen)."""

    becomes: Becomes
    confidence: Confidence
    source: str
    without_ccn: Literal["ignore", "dead_letter"] = "dead_letter"


ANY: Final = "*"
"""A row for every value of the discriminator (RNS: every release code is passed on)."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One BorderConnect message type (`data`)."""

    confidence: Confidence
    source: str
    ccn: Field | None = None
    time: Field | None = None
    selector: Field | None = None
    rows: Mapping[str, Row] = field(default_factory=dict)
    text: Field | None = None


_RNS = ToRnsStatus(
    indicator=Field(("status.releaseCode.number",), "3p"),
    transaction_number=Field(("transactionNumber",), "3p"),
    office=Field(("releaseOffice.number",), "3p"),
    description=Field(("status.releaseCode.longName", "status.releaseCode.shortName"), "3p"),
)
_REJECT = ToRejected(
    errors=Field(("errorResponses",), "3p"),
    code=Field(("errorCode",), "3p"),
    field_name=Field(("errorField",), "3p"),
    text=Field(("errorDescription", "errorText"), "3p"),
)


def _notice(kind: NoticeKind, confidence: Confidence, source: str) -> Row:
    return Row(ToNotice(kind), confidence, source)


TABLE: Final[Mapping[str, MessageSpec]] = {
    "ACI_RESPONSE": MessageSpec(
        confidence="doc",
        source="ACI Response Manual (envelope); published example (type ACCEPT)",
        # Nothing public shows where a shipment response names its CCN: these paths are a guess.
        ccn=Field(
            ("cargoControlNumber", "sendRequest.cargoControlNumber", "shipments[].cargoControlNumber"),
            "guess",
        ),
        time=Field(("cbsaDateTime", "dateTime"), "ex"),
        selector=Field(("type",), "ex"),
        rows={
            "ACCEPT": Row(
                ToAccepted(),
                "ex",
                "published ACI_RESPONSE example",
                without_ccn="ignore",  # a trip (conveyance) accept names no cargo
            ),
            "REJECT": Row(_REJECT, "3p", "third-party clients: type REJECT with errorResponses[]"),
        },
    ),
    "ACI_NOTICE": MessageSpec(
        confidence="3p",
        source="third-party clients",
        ccn=Field(("cargoControlNumber", "references[].cargoControlNumber"), "3p"),
        time=Field(("cbsaDateTime", "dateTime"), "3p"),
        selector=Field(("type",), "3p"),
        text=Field(("message", "description"), "guess"),
        rows={
            "MATCHED": _notice("matched", "3p", "notice type seen in third-party clients"),
            "NOT_MATCHED": _notice("not_matched", "3p", "notice type seen in third-party clients"),
            # An arrival covers the CCNs in references[]; both arrival kinds mean the same to the rules.
            "ARRIVAL_REPORTED": _notice("reported", "3p", "notice type seen in third-party clients"),
            "CSA_REPORTED": _notice(
                "reported", "guess", "type seen in third-party clients; meaning inferred"
            ),
            "INSUFFICIENT_REVIEW_TIME_WARNING": Row(
                Ignore("CBSA's late-transmission warning: holdwatch's eManifest deadline rule covers it"),
                "3p",
                "notice type seen in third-party clients",
            ),
            # No public material shows these types; the names follow CBSA's notice names.
            "DOCUMENT_NOT_ON_FILE": _notice("document_not_on_file", "guess", "CBSA notice name"),
            "CARGO_COMPLETE": _notice("cargo_complete", "guess", "CBSA notice name"),
            "DOCUMENT_PACKAGE_COMPLETE": _notice("document_package_complete", "guess", "CBSA notice name"),
            "ARRIVED": _notice("arrived", "guess", "CBSA notice name"),
            "RELEASED": _notice("released", "guess", "CBSA notice name"),
            "AUTHORIZED_TO_DELIVER": _notice("authorized_to_deliver", "guess", "CBSA notice name"),
            "HELD": _notice("held", "guess", "CBSA notice name"),
        },
    ),
    "RNS_SHIPMENT": MessageSpec(
        confidence="3p",
        source="third-party clients",
        ccn=Field(("cargoControlNumber",), "3p"),
        time=Field(("status.dateTime", "dateTime"), "3p"),
        rows={ANY: Row(_RNS, "3p", "releaseCode.number taken as CBSA's RNS processing indicator [guess]")},
    ),
    "SYSTEM_ALERT": MessageSpec(
        confidence="3p",
        source="third-party clients",
        text=Field(("message",), "3p"),
        rows={ANY: Row(Ignore("a BorderConnect service message (logged)"), "3p", "third-party clients")},
    ),
    "ACE_RESPONSE": MessageSpec(
        confidence="3p",
        source="third-party clients",
        rows={ANY: Row(Ignore("the US (ACE) side: out of scope"), "3p", "third-party clients")},
    ),
}
"""Every message type holdwatch understands besides `API_RESPONSE` (the server's own status)."""

API_RESPONSE: Final = "API_RESPONSE"
API_STATUS: Final[Mapping[str, Literal["accepted", "denied"]]] = {
    "OK": "accepted",  # [3p] the handshake's answer
    "ACCESS_DENIED_ERROR": "denied",  # [3p] a bad API key: stop, never retry in a loop
}
"""`API_RESPONSE.status` values with a meaning for the connection; others are logged."""

OTHER_TYPE: Final = "other"
MESSAGE_TYPES: Final = (*TABLE, API_RESPONSE, OTHER_TYPE)
"""The `type` label values of the connector's message counter."""


def message_type_label(data: str | None) -> str:
    """A bounded metric label: a known message type, else `other`."""
    if data is not None and (data in TABLE or data == API_RESPONSE):
        return data
    return OTHER_TYPE


# --- results --------------------------------------------------------------------------------------

OutboundEvent: TypeAlias = CargoAccepted | CargoRejected | Notice | RnsStatus


@dataclass(frozen=True, slots=True)
class Outbound:
    """One event to publish, with its Kafka key (the CCN) and the topic it belongs on."""

    topic: TopicKind
    key: str
    event: OutboundEvent


@dataclass(frozen=True, slots=True)
class Publish:
    data: str
    records: tuple[Outbound, ...]
    company: str | None
    """The carrier code of the message's company key (service-provider mode), else None."""


@dataclass(frozen=True, slots=True)
class Ignored:
    data: str
    why: str
    note: str = ""
    """The message's own text, for the log (a service message says what it is about)."""


@dataclass(frozen=True, slots=True)
class ApiStatus:
    """BorderConnect's own `API_RESPONSE`: the handshake's answer, or a later status."""

    status: str
    verdict: Literal["accepted", "denied", "other"]
    message: str


@dataclass(frozen=True, slots=True)
class Unusable:
    """A frame the mapping does not understand: dead-lettered with the raw text and this reason."""

    data: str | None
    reason: DeadLetterReason
    detail: str
    key: str | None = None


Mapped: TypeAlias = Publish | Ignored | ApiStatus | Unusable


@dataclass(frozen=True, slots=True)
class Context:
    """What the mapping needs from the settings: the zone of naive times, and in service-provider
    mode the company keys whose messages are ours (company key → carrier code)."""

    tz: tzinfo
    company_keys: Mapping[str, str] = field(default_factory=dict)


# --- the mapping ----------------------------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str, key: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.key = key


_MAX_DETAIL: Final = 300


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _clip(text: str, limit: int = _MAX_DETAIL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def map_message(text: str, context: Context) -> Mapped:
    """One received frame (its text) → what holdwatch makes of it. Never raises."""
    data: str | None = None
    try:
        if len(text) > MAX_FRAME_CHARS:
            return Unusable(None, DeadLetterReason.TOO_LARGE, f"frame is {len(text)} chars")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return Unusable(None, DeadLetterReason.NOT_JSON, _clip(f"frame: not JSON: {exc}"))
        if not isinstance(message, dict):
            return Unusable(
                None,
                DeadLetterReason.NOT_OBJECT,
                f"frame: a JSON object is required, got {type(message).__name__}",
            )
        raw_data = message.get("data")
        if raw_data is None:
            return Unusable(None, DeadLetterReason.MISSING_FIELD, "data: the message type is missing")
        if not isinstance(raw_data, str):
            return Unusable(
                None, DeadLetterReason.WRONG_TYPE, f"data: a string is required (got {_short(raw_data)})"
            )
        data = raw_data
        if data == API_RESPONSE:
            return _api_status(message)
        spec = TABLE.get(data)
        if spec is None:
            return Unusable(
                data,
                DeadLetterReason.UNKNOWN_EVENT_TYPE,
                _clip(f"data: {_short(data)} has no row in the mapping (known: {', '.join(TABLE)})"),
            )
        return _map(data, spec, message, context)
    except _Problem as problem:
        return Unusable(data, problem.reason, _clip(problem.detail), problem.key)
    except Exception as exc:  # noqa: BLE001 - a mapping bug must not stop the connector; it is dead-lettered
        return Unusable(
            data, DeadLetterReason.INTERNAL_ERROR, _clip(f"mapping bug: {type(exc).__name__}: {exc}")
        )


def _api_status(message: Mapping[str, Any]) -> ApiStatus:
    status = message.get("status")
    status_text = status if isinstance(status, str) else repr(status)
    note = message.get("message")
    return ApiStatus(
        status_text,
        API_STATUS.get(status_text, "other"),
        _clip(note if isinstance(note, str) else "", 500),
    )


def _map(data: str, spec: MessageSpec, message: Mapping[str, Any], context: Context) -> Mapped:
    company = _company(message, context) if spec.ccn is not None else None
    selected = _first(message, spec.selector) if spec.selector is not None else None
    if spec.selector is not None and selected is None:
        raise _Problem(DeadLetterReason.MISSING_FIELD, f"{_where(spec.selector)}: required for {data}")
    if selected is not None and not isinstance(selected, str):
        raise _Problem(
            DeadLetterReason.WRONG_TYPE,
            f"{_where(spec.selector)}: a string is required (got {_short(selected)})",
        )
    row = spec.rows.get(selected) if selected is not None else None
    row = row or spec.rows.get(ANY)
    if row is None:
        raise _Problem(
            DeadLetterReason.UNKNOWN_EVENT_TYPE,
            f"{_where(spec.selector)}: {data} of type {_short(selected)} has no row in the mapping "
            f"(known: {', '.join(spec.rows)})",
        )
    if isinstance(row.becomes, Ignore):
        note = _first(message, spec.text) if spec.text is not None else None
        return Ignored(data, row.becomes.why, _clip(note, 500) if isinstance(note, str) else "")
    assert spec.ccn is not None and spec.time is not None, f"{data}: a row that publishes needs ccn and time"
    ccns = _ccns(message, spec.ccn)
    if not ccns:
        if row.without_ccn == "ignore":
            return Ignored(
                data, f"{data} {selected or ''} names no cargo control number (trip level)".strip()
            )
        raise _Problem(
            DeadLetterReason.MISSING_KEY,
            f"{data} {selected or ''}: no cargo control number at {', '.join(spec.ccn.paths)}"
            + _trip_note(message),
        )
    raw_time, occurred_at = _time(message, spec.time, context.tz)
    records = tuple(
        _event(data, spec, row.becomes, message, ccn, raw_time, occurred_at, selected) for ccn in ccns
    )
    return Publish(data, records, company)


def _trip_note(message: Mapping[str, Any]) -> str:
    trip = message.get("tripNumber")
    return f" (trip {_short(trip)})" if trip is not None else ""


def _company(message: Mapping[str, Any], context: Context) -> str | None:
    """Service-provider mode: the message must carry a configured company key."""
    if not context.company_keys:
        return None
    key = message.get("companyKey")
    if key is None:
        raise _Problem(
            DeadLetterReason.MISSING_FIELD,
            "companyKey: required in service-provider mode (HOLDWATCH_BORDERCONNECT_COMPANY_KEYS is set)",
        )
    if not isinstance(key, str):
        raise _Problem(DeadLetterReason.WRONG_TYPE, f"companyKey: a string is required (got {_short(key)})")
    carrier = context.company_keys.get(key)
    if carrier is None:
        raise _Problem(
            DeadLetterReason.INVALID_VALUE,
            f"companyKey {_short(key)} is not in HOLDWATCH_BORDERCONNECT_COMPANY_KEYS",
        )
    return carrier


def _event(
    data: str,
    spec: MessageSpec,
    becomes: Becomes,
    message: Mapping[str, Any],
    ccn: str,
    raw_time: str,
    occurred_at: datetime,
    selected: str | None,
) -> Outbound:
    common: dict[str, Any] = {"occurred_at": occurred_at, "schema_version": 1, "ccn": ccn}
    parts: list[str] = [data, selected or "", ccn, raw_time]
    event: OutboundEvent
    try:
        if isinstance(becomes, ToAccepted):
            event = CargoAccepted(event_id=_id(parts), event_type="cargo_accepted", **common)
            return Outbound(TopicKind.EMANIFEST, ccn, event)
        if isinstance(becomes, ToRejected):
            reason, codes = _reject_reason(message, becomes)
            event = CargoRejected(
                event_id=_id([*parts, *codes]), event_type="cargo_rejected", reason=reason, **common
            )
            return Outbound(TopicKind.EMANIFEST, ccn, event)
        if isinstance(becomes, ToNotice):
            text = _first(message, spec.text) if spec.text is not None else None
            event = Notice(
                event_id=_id([*parts, becomes.notice]),
                event_type="notice",
                notice=becomes.notice,
                text=_clip(text, 2048) if isinstance(text, str) and text else None,
                **common,
            )
            return Outbound(TopicKind.EMANIFEST, ccn, event)
        if isinstance(becomes, ToRnsStatus):
            indicator = _indicator(message, becomes.indicator)
            transaction = _transaction(message, becomes.transaction_number)
            office = _office(message, becomes.office)
            description = _first(message, becomes.description)
            event = RnsStatus(
                event_id=_id([*parts, str(indicator), transaction or "", office or ""]),
                event_type="rns_status",
                processing_indicator=indicator,
                transaction_number=transaction,
                office=office,
                description=_clip(description, 256) if isinstance(description, str) and description else None,
                **common,
            )
            return Outbound(TopicKind.RNS, ccn, event)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']} (got {_short(first['input'])})"
        raise _Problem(DeadLetterReason.INVALID_VALUE, detail, ccn) from None
    raise AssertionError(f"{data}: row {becomes!r} publishes nothing")


def _reject_reason(message: Mapping[str, Any], becomes: ToRejected) -> tuple[str, list[str]]:
    """The error texts, one per error (`code field: text`), and the codes for the event id."""
    errors = _first(message, becomes.errors)
    lines: list[str] = []
    codes: list[str] = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, Mapping):
            continue
        code = _first(error, becomes.code)
        where = _first(error, becomes.field_name)
        text = _first(error, becomes.text)
        head = " ".join(str(part) for part in (code, where) if part not in (None, ""))
        body = str(text) if text not in (None, "") else "(no text)"
        lines.append(f"{head}: {body}" if head else body)
        codes.append(f"{code}/{where}/{body}")
    if not lines:
        note = message.get("message")
        lines.append(
            note if isinstance(note, str) and note else "rejected by CBSA (BorderConnect sent no error text)"
        )
    return _clip("; ".join(lines), 2048), codes


# --- fields ---------------------------------------------------------------------------------------


def _values(node: Any, path: str) -> Iterator[Any]:
    """Every value at a dotted path; `name[]` steps into each element of a list."""
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    name = head.removesuffix("[]")
    if not isinstance(node, Mapping) or name not in node:
        return
    value = node[name]
    items = value if many and isinstance(value, list) else [value] if not many else []
    for item in items:
        if rest:
            yield from _values(item, rest)
        elif item is not None:
            yield item


def _first(node: Any, where: Field) -> Any:
    for path in where.paths:
        for value in _values(node, path):
            return value
    return None


def _where(where: Field | None) -> str:
    return " or ".join(where.paths) if where is not None else "?"


def _ccns(message: Mapping[str, Any], where: Field) -> list[str]:
    found: list[str] = []
    for path in where.paths:
        for value in _values(message, path):
            if not isinstance(value, str):
                raise _Problem(
                    DeadLetterReason.WRONG_TYPE, f"{path}: a string is required (got {_short(value)})"
                )
            ccn = value.strip().upper()
            if ccn and ccn not in found:
                found.append(ccn)
    return found


def parse_time(raw: str, tz: tzinfo) -> datetime:
    """`yyyy-mm-dd hh:mm:ss` (BorderConnect's form, no zone: read in `tz`) or ISO 8601 with an offset,
    as an aware UTC datetime. Raises ValueError."""
    value = datetime.fromisoformat(raw.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _time(message: Mapping[str, Any], where: Field, tz: tzinfo) -> tuple[str, datetime]:
    raw = _first(message, where)
    if raw is None:
        raise _Problem(DeadLetterReason.MISSING_FIELD, f"{_where(where)}: the message has no time")
    if not isinstance(raw, str):
        raise _Problem(
            DeadLetterReason.WRONG_TYPE, f"{_where(where)}: a string is required (got {_short(raw)})"
        )
    try:
        return raw, parse_time(raw, tz)
    except (ValueError, OverflowError):
        raise _Problem(
            DeadLetterReason.INVALID_VALUE,
            f"{_where(where)}: not a time yyyy-mm-dd hh:mm:ss (got {_short(raw)})",
        ) from None


def _indicator(message: Mapping[str, Any], where: Field) -> int:
    raw = _first(message, where)
    if raw is None:
        raise _Problem(DeadLetterReason.MISSING_FIELD, f"{_where(where)}: the release code is missing")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise _Problem(
        DeadLetterReason.INVALID_VALUE,
        f"{_where(where)}: a release code number is required (got {_short(raw)})",
    )


def _transaction(message: Mapping[str, Any], where: Field) -> str | None:
    raw = _first(message, where)
    if raw is None or raw == "":
        return None
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str):
        raise _Problem(
            DeadLetterReason.WRONG_TYPE, f"{_where(where)}: a string is required (got {_short(raw)})"
        )
    digits = text.replace(" ", "").replace("-", "")
    if len(digits) != 14 or not digits.isdigit():
        raise _Problem(
            DeadLetterReason.INVALID_VALUE, f"{_where(where)}: 14 digits are required (got {_short(raw)})"
        )
    return digits


def _office(message: Mapping[str, Any], where: Field) -> str | None:
    raw = _first(message, where)
    if raw is None or raw == "":
        return None
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str) or not text.strip().isdigit() or len(text.strip()) > 4:
        raise _Problem(
            DeadLetterReason.INVALID_VALUE,
            f"{_where(where)}: a CBSA office number is required (got {_short(raw)})",
        )
    return text.strip().zfill(4)


def _id(parts: list[str]) -> str:
    """The event id: a digest of the message's content, so a re-sent message is a duplicate."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return EVENT_ID_PREFIX + digest[:40]


def dead_letter_digest(raw: bytes) -> str:
    """An id for a frame that goes to the dead-letter topic: a re-sent bad frame is dead-lettered once."""
    return "dl-" + hashlib.sha256(raw).hexdigest()[:40]
