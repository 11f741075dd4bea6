"""Topic `holdwatch.deadletter`: every record the pipeline could not use, with why and the bytes.

A dead letter keeps the original key and value byte for byte (base64) and where they came
from, so that a record can be inspected, fixed upstream and replayed; nothing is dropped.
Format and reasons: docs/dead-letters.md.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.common import Timestamp, WireModel
from schemas.decode import DeadLetterReason, Rejected

__all__ = ["DeadLetter", "DeadLetterReason", "encode_dead_letter", "make_dead_letter"]


class DeadLetter(WireModel):
    schema_version: Literal[1] = 1
    reason: DeadLetterReason = Field(description="machine-readable reason (docs/dead-letters.md)")
    detail: str = Field(max_length=2048, description="human-readable: the field and what is wrong")
    source_topic: str
    source_partition: int | None = Field(default=None, ge=0, description="null for an event-log line")
    source_offset: int | None = Field(
        default=None, ge=0, description="Kafka offset; for an event-log line, its line number"
    )
    key_b64: str | None = Field(description="the original key bytes, base64; null when there was none")
    value_b64: str | None = Field(description="the original value bytes, base64; null for a tombstone")
    source_timestamp_ms: int | None = Field(default=None, description="the source record's Kafka timestamp")
    dead_lettered_at: Timestamp = Field(description="when the pipeline dead-lettered it (UTC)")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def make_dead_letter(
    rejected: Rejected,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
    now: datetime,
) -> DeadLetter:
    """Build the dead letter for a rejected record; `now` is injected (the caller's clock)."""
    return DeadLetter(
        reason=rejected.reason,
        detail=rejected.detail[:2048],
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key_b64=_b64(key),
        value_b64=_b64(value),
        source_timestamp_ms=timestamp_ms,
        dead_lettered_at=now,
    )


def encode_dead_letter(dead_letter: DeadLetter) -> bytes:
    """The record value to publish on the dead-letter topic (key: the source key, unchanged)."""
    return dead_letter.model_dump_json().encode("utf-8")
