"""The notifier shell: the first-start gate (Slack delivery starts once the history present at start
is read), the policy from the settings, and the ledger producer (no offset commit after a refused write)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, NotEnoughReplicasError

from alerting.notify.console import ConsoleGateway
from alerting.notify.delivery import Delivery
from alerting.notify.ledger import MemoryLedger
from alerting.notify.routing import Routing
from streams.notifier.service import KafkaLedger, LedgerWriteFailed, _Service, delivery_policy
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


def test_the_ledger_retention_comes_from_the_settings() -> None:
    assert delivery_policy(Settings()).ledger_retention == timedelta(hours=72)
    assert delivery_policy(Settings(retention_closed_h=5)).ledger_retention == timedelta(hours=5)


# --- the ledger producer: every write before a commit confirmed, a failure never swallowed ---------


class FakeProducer:
    """aiokafka's send/flush: a send returns a future the broker settles at flush (or `settle`)."""

    def __init__(self, refuse: bool = False, raise_on_send: bool = False) -> None:
        self.refuse, self.raise_on_send = refuse, raise_on_send
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.unsettled: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, *, key: bytes, value: bytes | None) -> asyncio.Future[Any]:
        if self.raise_on_send:
            raise KafkaTimeoutError("metadata not available")
        self.sent.append((key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.unsettled.append(future)
        return future

    def settle(self) -> None:
        for future in self.unsettled:
            if self.refuse:
                future.set_exception(NotEnoughReplicasError("min.insync.replicas"))
            else:
                future.set_result(None)
        self.unsettled.clear()

    async def flush(self) -> None:
        self.settle()


@dataclass
class Record:
    value: bytes
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


class CommittingConsumer(FakeConsumer):
    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        super().__init__(positions)
        self.commits: list[dict[TopicPartition, int]] = []
        self.batches: list[dict[Any, list[Any]]] = []
        self.stopped = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def start(self) -> None:
        pass

    def subscribe(self, topics: list[str], listener: Any) -> None:
        pass

    async def getmany(self, **_: Any) -> dict[Any, list[Any]]:
        await asyncio.sleep(0)
        return self.batches.pop(0) if self.batches else {}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    async def stop(self) -> None:
        self.stopped = True


def shell_with(producer: FakeProducer) -> tuple[_Service, CommittingConsumer, KafkaLedger]:
    consumer = CommittingConsumer({TP0: 0})
    ledger = KafkaLedger(producer, "ledger")
    delivery = Delivery(ConsoleGateway(), ledger, Routing(default="#dispatch"))
    return _Service(Settings(), "ledger", consumer, ledger, delivery), consumer, ledger


def alert_record(offset: int = 0) -> Record:
    from tests.fixtures.slack import make_alert

    return Record(make_alert("A1").model_dump_json().encode(), offset)


async def test_a_batch_is_committed_only_once_the_broker_confirmed_its_ledger_entries() -> None:
    producer = FakeProducer()
    shell, consumer, _ = shell_with(producer)
    await shell.accept_batch({TP0: [alert_record(0)]})
    assert producer.sent and not producer.unsettled  # flushed: every future settled ...
    assert consumer.commits == [{TP0: 1}]  # ... before the offset moved


async def test_a_refused_ledger_write_fails_the_notifier_and_no_offset_is_ever_committed() -> None:
    shell, consumer, ledger = shell_with(FakeProducer(refuse=True))
    with pytest.raises(LedgerWriteFailed):
        await shell.accept_batch({TP0: [alert_record(0)]})
    with pytest.raises(LedgerWriteFailed):  # the shutdown path commits what was processed: not this
        await shell.commit_processed()
    assert consumer.commits == [] and isinstance(ledger.failure, NotEnoughReplicasError)


async def test_a_send_that_raises_is_sticky_too() -> None:
    shell, consumer, _ = shell_with(FakeProducer(raise_on_send=True))
    with pytest.raises(KafkaTimeoutError):
        await shell.accept_batch({TP0: [alert_record(0)]})
    shell.processed[TP0] = 1  # as if the exception had been swallowed somewhere on the way
    with pytest.raises(LedgerWriteFailed):
        await shell.commit_processed()
    assert consumer.commits == []


async def test_a_failed_write_of_a_slack_worker_stops_the_loop_without_a_commit() -> None:
    """A put nobody awaits (a ts after a post) or a durable intent whose error a channel worker
    logged and swallowed: the consumer loop still stops, loudly, and commits nothing after it."""
    producer = FakeProducer(refuse=True)
    shell, consumer, ledger = shell_with(producer)
    await ledger.put("A1", {"kind": "alert"})  # fire and forget, as the executor does
    producer.settle()
    await asyncio.sleep(0)  # the broker's answer arrives
    consumer.batches = [{TP0: [alert_record(0)]}]
    with pytest.raises(LedgerWriteFailed):
        await asyncio.wait_for(shell.run(asyncio.Event(), None), 5)
    assert consumer.commits == [] and consumer.stopped
    with pytest.raises(LedgerWriteFailed):
        await ledger.put_durable("A2", {"kind": "alert"})  # nothing more is written after a failure
