"""The one decode function every consumer uses: raw Kafka bytes → a typed event or a reason.

Upstream producers are outside our control, so decoding never raises on input: every
record becomes a `Decoded` event or a `Rejected` with a machine-readable reason (for the
dead-letter topic) and a short human-readable detail. Raw bytes go through pydantic-core's
JSON validator; values already parsed from an event log go through the same models in
Python mode, and both paths classify the same input the same way.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeAlias

from pydantic import TypeAdapter, ValidationError
from pydantic_core import CoreConfig, ErrorDetails, SchemaValidator

from schemas.carm import CarmEvent, CarmSnapshot
from schemas.common import SCHEMA_VERSION, ImporterBn
from schemas.emanifest import (
    Cancelled,
    CargoAccepted,
    CargoRejected,
    CargoReported,
    EManifestEvent,
    EtaUpdated,
    Notice,
)
from schemas.rns import RnsEvent, RnsStatus

MAX_VALUE_BYTES: Final = 1_048_576
"""Values larger than this (Kafka's default message size limit) are rejected unparsed."""
MAX_DETAIL_CHARS: Final = 300


class TopicKind(StrEnum):
    EMANIFEST = "emanifest"
    RNS = "rns"
    CARM = "carm"


class DeadLetterReason(StrEnum):
    """Why a record went to the dead-letter topic; docs/dead-letters.md explains each one."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    NAIVE_TIMESTAMP = "naive_timestamp"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    MISSING_KEY = "missing_key"
    INVALID_KEY = "invalid_key"
    KEY_MISMATCH = "key_mismatch"
    UNEXPECTED_TOMBSTONE = "unexpected_tombstone"
    UNKNOWN_TOPIC = "unknown_topic"
    TOO_LARGE = "too_large"
    INTERNAL_ERROR = "internal_error"


InputEvent: TypeAlias = (
    CargoReported | CargoAccepted | CargoRejected | EtaUpdated | Notice | Cancelled | RnsStatus | CarmSnapshot
)


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 0.2 µs more per record to build
class Decoded:
    """A valid event; `key` is the normalised body key (CCN or BN). `event` is None only for a
    CARM tombstone (the importer is deleted)."""

    kind: TopicKind
    key: str
    event: InputEvent | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that must go to the dead-letter topic."""

    reason: DeadLetterReason
    detail: str


_CARM: Final = TopicKind.CARM  # a module constant: `TopicKind.CARM` is a slow class attribute lookup


# One validator per topic, built once (schema building is the expensive part of pydantic) and
# called directly: TypeAdapter's Python wrapper costs ~15% of a decode. Only keys are interned
# (cache_strings="keys"): values such as event ids are unique, so caching them costs time.
def _validator(event_type: Any) -> SchemaValidator:
    return SchemaValidator(TypeAdapter(event_type).core_schema, CoreConfig(cache_strings="keys"))


_VALIDATORS: Final = {
    TopicKind.EMANIFEST: _validator(EManifestEvent),
    TopicKind.RNS: _validator(RnsEvent),
    TopicKind.CARM: _validator(CarmEvent),
}
_VALIDATE_JSON: Final = {kind: validator.validate_json for kind, validator in _VALIDATORS.items()}
_VALIDATE_PYTHON: Final = {kind: validator.validate_python for kind, validator in _VALIDATORS.items()}
_KEY_FIELD: Final = {TopicKind.EMANIFEST: "ccn", TopicKind.RNS: "ccn", TopicKind.CARM: "importer_bn"}
_IMPORTER_BN: Final[TypeAdapter[str]] = TypeAdapter(ImporterBn)

_short_repr = reprlib.Repr()
_short_repr.maxstring = 60
_short_repr.maxother = 60
_short_repr.maxlong = 40
_short_repr.maxdict = 4
_short_repr.maxlist = 4
_short_repr.maxlevel = 2


def _short(value: object) -> str:
    try:
        return _short_repr.repr(value)
    except Exception:  # noqa: BLE001 - a detail must never be the thing that fails
        return f"<{type(value).__name__}>"


def _detail(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def topic_kinds(emanifest: str, rns: str, carm: str) -> dict[str, TopicKind]:
    """Map the configured topic names (Settings.topic_*) to what they carry."""
    mapping = {emanifest: TopicKind.EMANIFEST, rns: TopicKind.RNS, carm: TopicKind.CARM}
    if len(mapping) != 3:
        raise ValueError(f"input topics must be distinct: {emanifest!r}, {rns!r}, {carm!r}")
    return mapping


def unknown_topic(topic: str) -> Rejected:
    """The rejection for a record from a topic that carries no input events (event-log replay)."""
    return Rejected(DeadLetterReason.UNKNOWN_TOPIC, _detail(f"topic {_short(topic)} is not an input topic"))


def decode(kind: TopicKind, key: bytes | None, value: bytes | None) -> Decoded | Rejected:
    """Decode one Kafka record's key and value bytes. Never raises."""
    try:
        if value is None:
            return _tombstone(kind, key)
        if len(value) > MAX_VALUE_BYTES:
            return Rejected(
                DeadLetterReason.TOO_LARGE, f"value is {len(value)} bytes, the limit is {MAX_VALUE_BYTES}"
            )
        try:
            event = _VALIDATE_JSON[kind](value)
        except ValidationError as exc:
            return _classify(exc, value)
        # The common case, inlined because it runs for every record: the key is the body's
        # (a missing key is never equal: _match_key rejects it).
        expected = event.importer_bn if kind is _CARM else event.ccn
        if key == expected.encode():
            return Decoded(kind, expected, event)
        return _match_key(kind, key, event)
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the pipeline; it is dead-lettered
        return _internal_error(exc)


def decode_parsed(kind: TopicKind, key: str | None, value: object) -> Decoded | Rejected:
    """Decode a value already parsed by `json.loads` (event logs), classified as `decode` would."""
    try:
        if value is None:
            return _tombstone(kind, key)
        try:
            event = _VALIDATE_PYTHON[kind](value)
        except ValidationError as exc:
            return _classify(exc, None)
        return _match_key(kind, key, event)
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the pipeline; it is dead-lettered
        return _internal_error(exc)


def _key_text(key: bytes | str | None) -> str | Rejected:
    if key is None or not key:
        return Rejected(DeadLetterReason.MISSING_KEY, "the record has no key")
    if isinstance(key, str):
        return key
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(DeadLetterReason.INVALID_KEY, _detail(f"the key is not UTF-8: {_short(key)}"))


def _match_key(kind: TopicKind, key: bytes | str | None, event: InputEvent) -> Decoded | Rejected:
    expected: str = event.importer_bn if isinstance(event, CarmSnapshot) else event.ccn
    text = _key_text(key)
    if isinstance(text, Rejected):
        return text
    # Keys are compared upper-cased, like the body's identifiers; ASCII only so that
    # Unicode case folding ("ß" → "SS") cannot make two different keys equal.
    if text == expected or (text.isascii() and text.upper() == expected):
        return Decoded(kind, expected, event)
    return Rejected(
        DeadLetterReason.KEY_MISMATCH,
        _detail(f"Kafka key {_short(text)} differs from the body's {_KEY_FIELD[kind]} {expected!r}"),
    )


def _tombstone(kind: TopicKind, key: bytes | str | None) -> Decoded | Rejected:
    if kind is not TopicKind.CARM:
        return Rejected(
            DeadLetterReason.UNEXPECTED_TOMBSTONE, f"a null value is only valid on the carm topic, not {kind}"
        )
    text = _key_text(key)
    if isinstance(text, Rejected):
        return text
    try:
        bn = _IMPORTER_BN.validate_python(text, strict=True)
    except ValidationError:
        return Rejected(
            DeadLetterReason.INVALID_KEY, _detail(f"tombstone key {_short(text)} is not an importer BN15")
        )
    return Decoded(kind, bn, None)


def _internal_error(exc: Exception) -> Rejected:
    return Rejected(DeadLetterReason.INTERNAL_ERROR, _detail(f"decoder bug: {type(exc).__name__}: {exc}"))


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _classify(exc: ValidationError, raw: bytes | None) -> Rejected:
    errors = exc.errors(include_url=False)
    first = errors[0]
    reason = _reason(first, raw)
    if reason is DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION:
        text = f"schema_version {_short(first['input'])} is not supported (supported: {SCHEMA_VERSION})"
    elif first["loc"]:
        path = ".".join(str(part) for part in first["loc"])
        text = f"{path}: {first['msg']}"
        if reason is not DeadLetterReason.MISSING_FIELD:
            text += f" (got {_short(first['input'])})"
    elif first["type"] == "union_tag_invalid":
        tag = first["input"].get("event_type") if isinstance(first["input"], dict) else None
        expected = first.get("ctx", {}).get("expected_tags", "")
        text = f"event_type: {_short(tag)} is not an event type of this topic (expected {expected})"
    elif first["type"] == "union_tag_not_found":
        text = "event_type: Field required"
    elif reason is DeadLetterReason.NOT_OBJECT:
        text = f"value: a JSON object is required, got {type(first['input']).__name__}"
    else:
        text = f"value: {first['msg']}"
    if len(errors) > 1:
        text += f" (+{len(errors) - 1} more)"
    return Rejected(reason, _detail(text))


_WRONG_TYPE_ERRORS: Final = frozenset({"int_from_float", "int_parsing", "float_parsing", "bool_parsing"})
_OUT_OF_RANGE_ERRORS: Final = frozenset({"greater_than_equal", "less_than_equal"})
_NOT_OBJECT_ERRORS: Final = frozenset({"dict_type", "model_type", "model_attributes_type"})


def _reason(error: ErrorDetails, raw: bytes | None) -> DeadLetterReason:
    kind = error["type"]
    loc = error["loc"]
    value = error["input"]
    if kind == "json_invalid":
        if raw is not None and not _is_utf8(raw):
            return DeadLetterReason.NOT_UTF8
        return DeadLetterReason.NOT_JSON
    if not loc:  # the whole value, or the event_type tag that selects the model
        if kind == "union_tag_invalid":
            tag = value.get("event_type") if isinstance(value, dict) else None
            if isinstance(tag, str):
                return DeadLetterReason.UNKNOWN_EVENT_TYPE
            return DeadLetterReason.WRONG_TYPE
        if kind == "union_tag_not_found":
            return DeadLetterReason.MISSING_FIELD
        if kind in _NOT_OBJECT_ERRORS:
            return DeadLetterReason.NOT_OBJECT
    if kind == "missing":
        return DeadLetterReason.MISSING_FIELD
    if kind == "timezone_aware":
        return DeadLetterReason.NAIVE_TIMESTAMP
    if loc[-1] == "schema_version" and kind in _OUT_OF_RANGE_ERRORS:  # an integer, but not 1
        return DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION
    if kind == "literal_error":
        return DeadLetterReason.INVALID_VALUE if isinstance(value, str) else DeadLetterReason.WRONG_TYPE
    if kind.endswith("_type") or kind in _WRONG_TYPE_ERRORS:
        return DeadLetterReason.WRONG_TYPE
    return DeadLetterReason.INVALID_VALUE
