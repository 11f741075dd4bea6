"""Changelog-backed Faust tables, seen by the engine as plain mappings of one partition.

`shipments`: CCN → the shipment's state; `carm-copies`: importer BN → the CARM
snapshot, one copy per shipment partition (the CARM agent broadcasts every snapshot
through the control topic), so the join is a local lookup and never needs a
GlobalTable. Values carry their partition so a partition's keys can be listed after
recovery. Decoded values are cached: reads dominate, and each partition has one owner. Writes are
batched (`flush()`): a load changes on most of its events, and one changelog record per batch
is much cheaper than one per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from alerting.engine.state import ShipmentState, state_from_bytes, state_to_bytes
from schemas.carm import CarmSnapshot

V = TypeVar("V")


class PartitionView(MutableMapping[str, V], Generic[V]):
    def __init__(
        self,
        table: Any,
        partition: int,
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
    ) -> None:
        self._table = table
        self._partition = partition
        self._prefix = f"{partition}|".encode()
        self._encode = encode
        self._decode = decode
        self._cache: dict[str, V] = {}
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()  # tombstones written by the next flush
        self._complete = False  # every key of the partition is in the cache

    def __getitem__(self, key: str) -> V:
        value = self._cache.get(key)
        if value is None:
            if key in self._deleted:
                raise KeyError(key)
            raw = self._table.get(key.encode())
            if raw is None:
                raise KeyError(key)
            value = self._decode(raw.split(b"|", 1)[1])
            self._cache[key] = value
        return value

    def __setitem__(self, key: str, value: V) -> None:
        """Cached now, written by `flush()` (the caller flushes before acking the records)."""
        self._cache[key] = value
        self._dirty.add(key)
        self._deleted.discard(key)

    def flush(self) -> int:
        """Write every value changed since the last flush to the table; must run while a record
        of this partition is being processed (Faust picks the changelog partition from it)."""
        written = len(self._dirty) + len(self._deleted)
        table = self._table
        for key in self._dirty:
            table[key.encode()] = self._prefix + self._encode(self._cache[key])
        for key in self._deleted:
            raw_key = key.encode()
            if table.get(raw_key) is not None:  # never written (removed within one batch): no tombstone
                del table[raw_key]  # a tombstone in the changelog: compaction drops the key
        self._dirty.clear()
        self._deleted.clear()
        return written

    def __delitem__(self, key: str) -> None:
        """Forgotten now, the tombstone written by `flush()` (same batch as the writes)."""
        if key not in self._cache and key not in self._deleted and self._table.get(key.encode()) is None:
            raise KeyError(key)
        self._cache.pop(key, None)
        self._dirty.discard(key)
        self._deleted.add(key)

    def __iter__(self) -> Iterator[str]:
        if self._complete:
            yield from list(self._cache)
            return
        for key, raw in list(self._table.items()):
            if raw is not None and raw.startswith(self._prefix):
                text = key.decode() if isinstance(key, bytes) else str(key)
                if text in self._deleted:
                    continue
                if text not in self._cache:
                    self._cache[text] = self._decode(raw.split(b"|", 1)[1])
                yield text
        self._complete = True

    def __len__(self) -> int:
        if not self._complete:
            for _ in self:
                pass
        return len(self._cache)


def shipment_view(table: Any, partition: int) -> PartitionView[ShipmentState]:
    return PartitionView(table, partition, state_to_bytes, state_from_bytes)


def carm_view(table: Any, partition: int) -> PartitionView[CarmSnapshot]:
    return PartitionView(
        table, partition, lambda c: c.model_dump_json().encode(), CarmSnapshot.model_validate_json
    )


def define_tables(app: Any, partitions: int) -> tuple[Any, Any]:
    shipments = app.Table(
        "shipments", partitions=partitions, key_type=bytes, value_type=bytes, help="CCN -> state"
    )
    carm = app.Table(
        "carm-copies", partitions=partitions, key_type=bytes, value_type=bytes, help="BN -> CARM"
    )
    return shipments, carm


def define_ownership_table(app: Any, partitions: int) -> Any:
    """CCN → who owns its open alert (streams/worker/ownership.py), from holdwatch.actions."""
    return app.Table(
        "ownership", partitions=partitions, key_type=bytes, value_type=bytes, help="CCN -> owner"
    )
