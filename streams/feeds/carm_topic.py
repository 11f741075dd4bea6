"""The compacted `carm.readiness` topic for the CARM registry commands: read it to its end, publish.

Thin shell around kafka-python; what the records mean (`fold_records`: the latest record per
importer wins, a tombstone deletes it, a record the worker would dead-letter leaves the previous
one in place, as in the worker) is pure and tested without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from schemas.carm import CarmSnapshot
from schemas.decode import Rejected, TopicKind, decode
from streams.kafka.config import kafka_python_config
from streams.settings import Settings

READ_TIMEOUT_S: Final = 60.0
"""Reading the topic to its end: thousands of importers take well under a second."""
PUBLISH_TIMEOUT_S: Final = 60.0


class CarmTopicError(RuntimeError):
    """The topic cannot be read or a snapshot was not acknowledged; the message says what to do."""


@dataclass(frozen=True)
class Position:
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class TopicRecord:
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class TopicState:
    """What the compacted topic holds now, as the worker sees it."""

    topic: str
    exists: bool = True
    snapshots: Mapping[str, CarmSnapshot] = field(default_factory=dict)
    positions: Mapping[str, Position] = field(default_factory=dict)  # of each current snapshot
    deleted: Mapping[str, Position] = field(default_factory=dict)  # latest record is a tombstone
    unreadable: tuple[str, ...] = ()  # records the worker dead-letters, one line each


def fold_records(topic: str, records: Iterable[TopicRecord]) -> TopicState:
    """Records in partition order (per key that is their order) → the current state."""
    snapshots: dict[str, CarmSnapshot] = {}
    positions: dict[str, Position] = {}
    deleted: dict[str, Position] = {}
    unreadable: list[str] = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        position = Position(record.partition, record.offset, record.timestamp_ms)
        decoded = decode(TopicKind.CARM, record.key, record.value)
        if isinstance(decoded, Rejected):
            unreadable.append(
                f"partition {record.partition} offset {record.offset}: {decoded.reason}: {decoded.detail}"
            )
            continue
        if decoded.event is None:
            snapshots.pop(decoded.key, None)
            positions.pop(decoded.key, None)
            deleted[decoded.key] = position
            continue
        assert isinstance(decoded.event, CarmSnapshot)
        snapshots[decoded.key] = decoded.event
        positions[decoded.key] = position
        deleted.pop(decoded.key, None)
    return TopicState(topic, True, snapshots, positions, deleted, tuple(unreadable))


class CarmTopic(Protocol):
    """What the commands need of the topic (a fake in unit tests)."""

    name: str

    def read(self) -> TopicState: ...

    def publish(self, snapshots: Sequence[CarmSnapshot]) -> None: ...


def producer_options() -> dict[str, Any]:
    """An idempotent producer where kafka-python has one (a retried send is written once),
    else acks=all with retries and one request in flight (order kept, duplicates possible, and
    harmless: the snapshot's event id is the same)."""
    from kafka import KafkaProducer

    if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
        return {"acks": "all", "enable_idempotence": True}
    return {"acks": "all", "retries": 10, "max_in_flight_requests_per_connection": 1}


class KafkaCarmTopic:
    """`settings.topic_carm` through kafka-python (security settings from streams.kafka.config)."""

    def __init__(
        self,
        settings: Settings,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.name = settings.topic_carm
        self._config = kafka_python_config(settings)
        self._read_timeout_s = read_timeout_s
        self._publish_timeout_s = publish_timeout_s

    def read(self) -> TopicState:
        """Every record from the beginning to the end offsets taken at the start."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            client_id="holdwatch-carm",
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            **self._config,
        )
        try:
            found = consumer.partitions_for_topic(self.name)
            if not found:
                return TopicState(self.name, exists=False)
            partitions = [TopicPartition(self.name, p) for p in sorted(found)]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            end = {tp: int(offset) for tp, offset in consumer.end_offsets(partitions).items()}
            records: list[TopicRecord] = []
            deadline = time.monotonic() + self._read_timeout_s
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise CarmTopicError(
                        f"{self.name}: not read to its end within {self._read_timeout_s:g} s "
                        f"({len(records)} records so far)"
                    )
                for batch in consumer.poll(timeout_ms=500).values():
                    records += [
                        TopicRecord(r.partition, r.offset, r.timestamp, r.key, r.value)
                        for r in batch
                        if r.offset < end[TopicPartition(self.name, r.partition)]
                    ]
        finally:
            consumer.close()
        return fold_records(self.name, records)

    def publish(self, snapshots: Sequence[CarmSnapshot]) -> None:
        """Each snapshot keyed by its BN; returns once every one is acknowledged, else raises."""
        from kafka import KafkaProducer

        producer = KafkaProducer(
            client_id="holdwatch-carm-import",
            allow_auto_create_topics=False,
            linger_ms=5,
            **producer_options(),
            **self._config,
        )
        try:
            futures = [
                (
                    snapshot.importer_bn,
                    producer.send(
                        self.name,
                        key=snapshot.importer_bn.encode(),
                        value=snapshot.model_dump_json().encode(),
                    ),
                )
                for snapshot in snapshots
            ]
            producer.flush(timeout=self._publish_timeout_s)
            failed: list[tuple[str, BaseException]] = []
            for bn, future in futures:
                try:
                    future.get(timeout=self._publish_timeout_s)
                except Exception as exc:  # noqa: BLE001 - counted and reported below
                    failed.append((bn, exc))
        finally:
            producer.close(timeout=10)
        if failed:
            bn, error = failed[0]
            raise CarmTopicError(
                f"{len(failed)} of {len(futures)} snapshot(s) not acknowledged by {self.name} "
                f"(first: {bn}: {type(error).__name__}: {error}). Run the import again: the importers "
                "already published show as unchanged and are skipped"
            )
