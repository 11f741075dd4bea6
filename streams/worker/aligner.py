"""Merges the CCN-keyed input topics of one partition back into the log's order.

Replay stamps records with their position in the log (`hw-seq`) and sends ticks
(schemas/envelope.py). Kafka keeps order only per topic-partition, so records of
emanifest[p] and rns[p] can arrive interleaved in any way; this merge releases
them in seq order. An item is released once every other topic is known to hold
nothing earlier: it has delivered a later record, or a tick beyond it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(slots=True)
class SeqAligner(Generic[Item]):
    topics: tuple[str, ...]
    # progress[t] = F: every record of topic t with seq < F has been pushed.
    _progress: dict[str, int] = field(default_factory=dict)
    # (seq, 0 for a tick / 1 for a record, arrival counter, topic, item): a tick at S sits
    # between the records S-1 and S.
    _heap: list[tuple[int, int, int, str, Item]] = field(default_factory=list)
    _counter: int = 0

    def push(self, topic: str, seq: int, item: Item, *, is_tick: bool = False) -> None:
        floor = seq if is_tick else seq + 1
        if floor > self._progress.get(topic, 0):
            self._progress[topic] = floor
        self._counter += 1
        heapq.heappush(self._heap, (seq, 0 if is_tick else 1, self._counter, topic, item))

    def _ready(self, seq: int, kind: int, topic: str) -> bool:
        position = seq if kind == 1 else seq - 1  # the last record seq this item comes after
        progress = self._progress
        return all(progress.get(t, 0) > position for t in self.topics if t != topic)

    def pop_ready(self) -> list[Item]:
        """Items that can no longer be overtaken, in log order."""
        out: list[Item] = []
        heap = self._heap
        while heap and self._ready(heap[0][0], heap[0][1], heap[0][3]):
            out.append(heapq.heappop(heap)[4])
        return out

    def __len__(self) -> int:
        return len(self._heap)
