"""The notifier's durable memory: per lifecycle, what Slack already shows (ts, seq) and what is owed.

One entry per key: an alert lifecycle (key = alert_id) or a storm digest (key = `digest:...`).
The shell keeps it in a compacted topic; `put` queues an entry, `flush` makes every queued entry
durable. The consumer flushes before it commits input offsets, so an accepted alert event (and
whatever Slack ts is known) survives a restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.alerts import AlertEvent

DIGEST_PREFIX = "digest:"
HANDOVER_PREFIX = "handover:"  # a channel's last shift handover posted (alerting.notify.handover)


class Ledger(Protocol):
    async def put(self, key: str, entry: Mapping[str, Any] | None) -> None:
        """Queue `entry` (None deletes). Not durable until `flush` returns."""
        ...

    async def put_durable(self, key: str, entry: Mapping[str, Any] | None) -> None:
        """Write `entry` and wait until it (and what was queued before it) is durable."""
        ...

    async def flush(self) -> None: ...


class LedgerError(ValueError):
    """A ledger entry that cannot be read back."""


MAX_APPLIED = 32
"""Action ids a lifecycle remembers, to apply a click Slack delivers twice only once."""


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who handles a lifecycle (dispatch acted in Slack), and when nobody-acted escalation is due.

    Times are wall-clock epoch seconds (they survive restarts in the ledger). `watch_from` is
    when the lifecycle last became critical and unowned: escalation counts from it."""

    owner: str | None = None  # Slack user id
    owner_name: str | None = None
    owned_at: float | None = None
    snoozed_until: float | None = None
    snoozed_by: str | None = None
    watch_from: float | None = None
    pages: int = 0  # on-call escalations posted since watch_from
    paged_at: float | None = None  # when the last of them was posted
    applied: tuple[str, ...] = ()  # the newest MAX_APPLIED action ids applied

    def to_entry(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "owner_name": self.owner_name,
            "owned_at": self.owned_at,
            "snoozed_until": self.snoozed_until,
            "snoozed_by": self.snoozed_by,
            "watch_from": self.watch_from,
            "pages": self.pages,
            "paged_at": self.paged_at,
            "applied": list(self.applied),
        }

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any] | None) -> Ownership:
        if not entry:
            return cls()
        return cls(
            owner=entry.get("owner"),
            owner_name=entry.get("owner_name"),
            owned_at=_float_or_none(entry.get("owned_at")),
            snoozed_until=_float_or_none(entry.get("snoozed_until")),
            snoozed_by=entry.get("snoozed_by"),
            watch_from=_float_or_none(entry.get("watch_from")),
            pages=int(entry.get("pages", 0)),
            paged_at=_float_or_none(entry.get("paged_at")),
            applied=tuple(str(a) for a in entry.get("applied", [])),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class AlertRecord:
    """One lifecycle: the newest accepted event (desired state) and what Slack shows."""

    alert_id: str
    channel: str
    latest: AlertEvent
    partition: int | None = None
    channel_id: str | None = None
    ts: str | None = None
    shown_seq: int = 0
    shown_fp: str | None = None
    owed: list[str] = field(default_factory=list)  # thread replies still to post, e.g. "escalation:3"
    intent: str | None = None  # a post that may have reached Slack: look for it before posting again
    intent_at: float | None = None  # wall-clock epoch seconds of that attempt
    digest: str | None = None  # grouped into this storm digest instead of its own message
    silent: bool = False  # over before anything reached Slack: never to be shown
    text_only: bool = False  # Slack rejected our blocks once: send the fallback text only
    ownership: Ownership = field(default_factory=Ownership)
    notes: dict[str, str] = field(default_factory=dict)  # owed reply key -> its text (actions, pages)
    replayed: bool = False  # replayed traffic: never escalated to on-call
    restyle: bool = False  # the message must be edited though its seq is shown (ownership changed)

    def to_entry(self) -> dict[str, Any]:
        return {
            "kind": "alert",
            "alert_id": self.alert_id,
            "channel": self.channel,
            "partition": self.partition,
            "channel_id": self.channel_id,
            "ts": self.ts,
            "shown_seq": self.shown_seq,
            "shown_fp": self.shown_fp,
            "owed": list(self.owed),
            "intent": self.intent,
            "intent_at": self.intent_at,
            "digest": self.digest,
            "silent": self.silent,
            "text_only": self.text_only,
            "ownership": self.ownership.to_entry(),
            "notes": dict(self.notes),
            "replayed": self.replayed,
            "restyle": self.restyle,
            "latest": self.latest.model_dump(mode="json"),
        }

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> AlertRecord:
        try:
            latest = AlertEvent.model_validate_json(json.dumps(entry["latest"]))
            return cls(
                alert_id=str(entry["alert_id"]),
                channel=str(entry["channel"]),
                latest=latest,
                partition=entry.get("partition"),
                channel_id=entry.get("channel_id"),
                ts=entry.get("ts"),
                shown_seq=int(entry.get("shown_seq", 0)),
                shown_fp=entry.get("shown_fp"),
                owed=[str(k) for k in entry.get("owed", [])],
                intent=entry.get("intent"),
                intent_at=entry.get("intent_at"),
                digest=entry.get("digest"),
                silent=bool(entry.get("silent", False)),
                text_only=bool(entry.get("text_only", False)),
                ownership=Ownership.from_entry(entry.get("ownership")),
                notes={str(k): str(v) for k, v in (entry.get("notes") or {}).items()},
                replayed=bool(entry.get("replayed", False)),
                restyle=bool(entry.get("restyle", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"unreadable alert ledger entry: {exc}") from exc

    @property
    def settled(self) -> bool:
        """Slack shows the latest state and owes nothing (or the lifecycle lives in a digest)."""
        if self.digest is not None or self.silent:
            return True
        shown = self.ts is not None and self.shown_seq >= self.latest.seq and not self.restyle
        return shown and not self.owed


@dataclass
class DigestRecord:
    """One storm digest: a single message listing every lifecycle grouped into it."""

    digest_id: str
    channel: str
    members: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)  # members the digest has shown (a line each)
    channel_id: str | None = None
    ts: str | None = None
    shown_fp: str | None = None
    intent: str | None = None
    intent_at: float | None = None
    started_wall: float = 0.0

    def to_entry(self) -> dict[str, Any]:
        return {
            "kind": "digest",
            "digest_id": self.digest_id,
            "channel": self.channel,
            "members": list(self.members),
            "listed": list(self.listed),
            "channel_id": self.channel_id,
            "ts": self.ts,
            "shown_fp": self.shown_fp,
            "intent": self.intent,
            "intent_at": self.intent_at,
            "started_wall": self.started_wall,
        }

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> DigestRecord:
        try:
            return cls(
                digest_id=str(entry["digest_id"]),
                channel=str(entry["channel"]),
                members=[str(m) for m in entry.get("members", [])],
                listed=[str(m) for m in entry.get("listed", _listed_before_it_was_kept(entry))],
                channel_id=entry.get("channel_id"),
                ts=entry.get("ts"),
                shown_fp=entry.get("shown_fp"),
                intent=entry.get("intent"),
                intent_at=entry.get("intent_at"),
                started_wall=float(entry.get("started_wall", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"unreadable digest ledger entry: {exc}") from exc


def _listed_before_it_was_kept(entry: Mapping[str, Any]) -> list[Any]:
    """Entries written before `listed` existed: a posted digest showed every member."""
    members = entry.get("members", [])
    return list(members) if entry.get("ts") and isinstance(members, list) else []


def encode_entry(entry: Mapping[str, Any] | None) -> bytes | None:
    return None if entry is None else json.dumps(entry, separators=(",", ":")).encode()


def decode_entry(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError(f"ledger entry is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise LedgerError("ledger entry is not a JSON object")
    return value


class MemoryLedger:
    """A ledger that survives only as long as this object: tests, console mode, benchmarks."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.entries: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (entries or {}).items()}
        self.durable: dict[str, dict[str, Any]] = dict(self.entries)
        self.puts = 0
        self.flushes = 0

    async def put(self, key: str, entry: Mapping[str, Any] | None) -> None:
        self.puts += 1
        if entry is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = dict(entry)

    async def put_durable(self, key: str, entry: Mapping[str, Any] | None) -> None:
        await self.put(key, entry)
        await self.flush()

    async def flush(self) -> None:
        self.flushes += 1
        self.durable = {k: dict(v) for k, v in self.entries.items()}
