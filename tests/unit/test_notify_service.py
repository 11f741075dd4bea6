"""The notifier shell's first-start gate: Slack delivery starts once the history present at start is read."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from alerting.notify.console import ConsoleGateway
from alerting.notify.delivery import Delivery
from alerting.notify.ledger import MemoryLedger
from alerting.notify.routing import Routing
from streams.notifier.service import _Service, delivery_policy
from streams.settings import Settings

TP0, TP1 = TopicPartition("holdwatch.alerts", 0), TopicPartition("holdwatch.alerts", 1)


class FakeConsumer:
    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = positions

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


def service(consumer: FakeConsumer) -> _Service:
    delivery = Delivery(ConsoleGateway(), MemoryLedger(), Routing(default="#dispatch"))
    return _Service(Settings(), "ledger", consumer, None, delivery)  # type: ignore[arg-type]


async def test_delivery_waits_until_every_partition_is_read_to_where_it_ended() -> None:
    consumer = FakeConsumer({TP0: 40, TP1: 3})
    shell = service(consumer)
    some: dict[Any, list[Any]] = {TP0: [object()]}
    assert not await shell.history_read(some)  # nothing assigned and loaded yet
    shell.loaded, shell.backlog = {0, 1}, {TP0: 40, TP1: 10}
    assert not await shell.history_read(some)  # partition 1 still has history to read
    consumer.positions[TP1] = 10
    assert await shell.history_read(some)
    consumer.positions[TP1] = 4
    assert await shell.history_read({})  # a poll came back empty: nothing more to read now


def test_the_replayed_opt_in_comes_from_the_settings() -> None:
    assert not delivery_policy(Settings()).include_replayed
    assert delivery_policy(Settings(notify_replayed=True)).include_replayed
