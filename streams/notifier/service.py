"""The Slack notifier's Kafka shell: `holdwatch.alerts` in, Slack (or the console) out.

At-least-once from the topic, exactly-once as dispatch sees it:
1. at start the ledger topic (compacted, key = alert_id) is read to its end: every lifecycle's
   Slack ts, newest accepted event and what Slack still owes;
2. each polled batch of alert events is accepted into the delivery core, the ledger entries it
   produced are flushed (acks=all), and only then are the input offsets committed; a ledger
   write the broker refused stops the notifier (`KafkaLedger`: no commit after it, ever);
3. Slack calls run beside the consumer (one worker per channel) and write the ts they learn to
   the ledger before anything depends on it; they start once the history present at start is
   read, so a lifecycle that is already over by then is never posted.
A crash anywhere replays at most the uncommitted batch, which the ledger's per-lifecycle seq
drops. A first start on existing history (new Slack token, lost ledger) posts only lifecycles
still open, in their newest state; alerts of replayed traffic are skipped (counted, offsets
committed) unless `HOLDWATCH_NOTIFY_REPLAYED` is set. Alerts Slack refuses (bad token, unknown
channel) stay pending in the ledger, so the consumer keeps committing and other channels keep
flowing; they are delivered once fixed.

One active notifier per consumer group is the supported deployment (a second instance is a
standby that takes over on rebalance); storm digests assume it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from pydantic import ValidationError

from alerting.notify.clock import Clock, SystemClock
from alerting.notify.console import ConsoleGateway
from alerting.notify.delivery import Delivery, DeliveryPolicy, Origin
from alerting.notify.gateway import SlackGateway
from alerting.notify.handover import Handovers
from alerting.notify.ledger import LedgerError, decode_entry, encode_entry
from alerting.notify.metrics import NotifyMetrics, NullMetrics
from alerting.notify.render import Reference
from alerting.notify.routing import load_routing
from alerting.notify.slack import SlackWebGateway, make_web_client
from schemas.actions import DispatchAction
from schemas.alerts import AlertEvent
from schemas.envelope import parse_alert_origin
from streams.feeds.brokers import load_broker_directory
from streams.feeds.ports import load_ports
from streams.notifier.act import Authorizer
from streams.notifier.commands import SlashCommands, StatusApi
from streams.notifier.interactions import Responder, choose_transport
from streams.settings import Settings

log = logging.getLogger("holdwatch.notifier")


def ledger_topic_name(settings: Settings) -> str:
    """`holdwatch.slack-ledger` next to `holdwatch.alerts` (follows a renamed alert topic)."""
    name = settings.topic_alerts
    return name.replace("alerts", "slack-ledger", 1) if "alerts" in name else f"{name}.slack-ledger"


def delivery_policy(
    settings: Settings, *, console: bool = False, interactive: bool = False
) -> DeliveryPolicy:
    return DeliveryPolicy(
        interactive=interactive,
        escalate_after_s=settings.escalate_after_min * 60,
        min_interval_s=0.0 if console else settings.slack_min_interval_s,
        storm_threshold=settings.storm_threshold,
        storm_window_s=settings.storm_window_s,
        critical_mention=settings.slack_critical_mention,
        include_replayed=settings.notify_replayed,
        # Resolved lifecycles leave the ledger after the time closed loads stay in the worker's tables.
        ledger_retention=timedelta(hours=settings.retention_closed_h),
    )


def load_reference(settings: Settings) -> Reference:
    """The CBSA offices and the broker directory the messages name, read once at start (a bad
    file stops the notifier with every bad row listed, rather than alerts without the numbers)."""
    return Reference(
        ports=load_ports(settings.ports_file), brokers=load_broker_directory(settings.broker_directory_file)
    )


def make_gateway(settings: Settings, client: Any = None) -> SlackGateway:
    """Slack through `client` or the configured token; the console when there is no token."""
    if client is not None:
        return SlackWebGateway(client)
    if settings.slack_token is not None and settings.slack_token.get_secret_value():
        return SlackWebGateway(make_web_client(settings.slack_token, settings.slack_base_url))
    return ConsoleGateway()


class LedgerWriteFailed(RuntimeError):
    """A ledger record the broker did not confirm: the notifier must stop and redo the work."""


class KafkaLedger:
    """Ledger entries as records of a compacted topic (acks=all, idempotent producer).

    A failed write is sticky: once any record was refused (or its send raised), every later
    `flush` and `check` raise `LedgerWriteFailed`, so no input offset is committed after it,
    whichever task wrote it (the consumer's accepts, the Slack workers' ts and intents) and
    even if that task swallowed the error. The notifier then stops; on restart it reads the
    ledger and redoes what the broker did not confirm (the intents make posts idempotent).
    """

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._in_flight: list[asyncio.Future[Any]] = []
        self.failure: BaseException | None = None

    def check(self) -> None:
        """Raise if any write failed so far."""
        if self.failure is not None:
            raise LedgerWriteFailed(f"a write to ledger topic {self.topic} failed: {self.failure!r}")

    async def _send(self, key: str, entry: Mapping[str, Any] | None) -> asyncio.Future[Any]:
        self.check()
        try:
            future: asyncio.Future[Any] = await self.producer.send(
                self.topic, key=key.encode(), value=encode_entry(entry)
            )
        except Exception as exc:
            self._failed(exc)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        """Every record's outcome is seen, even of puts nobody awaits before the next flush."""
        if future.cancelled():
            self._failed(asyncio.CancelledError("ledger write cancelled"))
        elif future.exception() is not None:
            self._failed(future.exception())

    def _failed(self, exc: BaseException | None) -> None:
        if self.failure is None and exc is not None:
            self.failure = exc
            log.error("notifier: ledger write to %s failed (%r); stopping", self.topic, exc)

    async def put(self, key: str, entry: Mapping[str, Any] | None) -> None:
        self._in_flight.append(await self._send(key, entry))
        if len(self._in_flight) > 1024:  # long without input: settled ones are seen by `_done` already
            self._in_flight = [future for future in self._in_flight if not future.done()]

    async def put_durable(self, key: str, entry: Mapping[str, Any] | None) -> None:
        """Wait for this record's ack (acks=all): with the idempotent producer, the records queued
        before it in the same ledger partition (same key included) are acknowledged first."""
        future = await self._send(key, entry)
        try:
            await future
        except Exception as exc:
            self._failed(exc)
            raise LedgerWriteFailed(f"a write to ledger topic {self.topic} failed: {exc!r}") from exc

    async def flush(self) -> None:
        """Every record queued so far is acknowledged; raises if any write ever failed."""
        self.check()
        pending, self._in_flight = self._in_flight, []
        if pending:
            await self.producer.flush()
            for outcome in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    self._failed(outcome)
        self.check()


async def read_ledger(settings: Settings, topic: str) -> dict[str, dict[str, Any]]:
    """Every live entry of the ledger topic (its last value per key), read to the current end."""
    from aiokafka import AIOKafkaConsumer

    from streams.kafka.config import aiokafka_config

    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_config(settings),
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    entries: dict[str, dict[str, Any]] = {}
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            # Never guess "empty": that would post every lifecycle again.
            raise RuntimeError(f"ledger topic {topic} has no visible partitions; is it created?")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    key = record.key.decode() if record.key else None
                    if key is None:
                        continue
                    try:
                        value = decode_entry(record.value)
                    except LedgerError as exc:
                        log.error("ignoring ledger record %s@%d: %s", key, record.offset, exc)
                        continue
                    if value is None:
                        entries.pop(key, None)
                    else:
                        entries[key] = value
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return entries


def origin_of(record: Any) -> Origin:
    """The alert record's Kafka timestamp and the worker's headers (trigger timestamp, traffic)."""
    origin = parse_alert_origin(record.headers)
    return Origin(
        alert_ms=record.timestamp if record.timestamp and record.timestamp > 0 else None,
        trigger_ms=origin.trigger_ms,
        traffic=origin.traffic,
    )


def decode_alert(raw: bytes | None) -> AlertEvent | None:
    """An alert event from a record value; None (logged) for anything unreadable."""
    if raw is None:
        return None
    try:
        return AlertEvent.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        preview = raw[:200].decode(errors="replace")
        log.error(
            "skipping an unreadable alert event (%s): %s", json.dumps(preview), str(exc).splitlines()[0]
        )
        return None


async def ensure_notifier_topics(settings: Settings, ledger_topic: str) -> None:
    """The ledger (compacted) and holdwatch.actions (co-partitioned with the alerts by CCN)."""
    from streams.kafka.admin import TopicSpec, ensure_topics

    ledger = TopicSpec(
        name=ledger_topic,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        config={"cleanup.policy": "compact"},
        role="internal",
    )
    actions = TopicSpec(
        name=settings.actions_topic(),
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        config={},
        role="internal",
    )
    await asyncio.to_thread(ensure_topics, settings, [ledger, actions])


def decode_action(raw: bytes | None) -> DispatchAction | None:
    """A dispatch action from a record value; None (logged) for anything unreadable."""
    if raw is None:
        return None
    try:
        return DispatchAction.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        log.error("skipping an unreadable dispatch action: %s", str(exc).splitlines()[0])
        return None


async def run_notifier(
    settings: Settings,
    *,
    stop: asyncio.Event,
    client: Any = None,
    clock: Clock | None = None,
    metrics: NotifyMetrics | None = None,
    gateway: SlackGateway | None = None,
    group_id: str | None = None,
    ledger_topic: str | None = None,
    policy: DeliveryPolicy | None = None,
    ready: asyncio.Event | None = None,
    reference: Reference | None = None,
    authorizer: Authorizer | None = None,
) -> None:
    """Consume alert events and deliver them until `stop` is set (an asyncio task in any process).

    `client` (an AsyncWebClient) or `gateway` replace the one built from the settings; without a
    token the console sink prints instead (own ledger topic and group: a dry run). `ready` is set
    once the consumer has started. `reference` replaces the port table and broker directory read
    from the settings' files. With an app token (Socket Mode) or a signing secret (HTTP), dispatch
    can act on the messages; `authorizer` replaces who may (default: the alert's channel members
    and `HOLDWATCH_SLACK_ACTOR_GROUPS`).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.kafka.config import aiokafka_config

    routing = load_routing(settings.slack_routing_file, default_channel=settings.slack_channel)
    reference = reference or load_reference(settings)
    gateway = gateway or make_gateway(settings, client)
    console = isinstance(gateway, ConsoleGateway)
    transport = None if console else choose_transport(settings)
    # The console sink is a dry run: its own ledger and group, so switching to Slack later starts
    # on the whole history (open lifecycles posted once in their newest state, closed ones not).
    suffix = "-console" if console else ""
    topic = ledger_topic or ledger_topic_name(settings) + suffix
    await ensure_notifier_topics(settings, topic)
    config = aiokafka_config(settings)

    producer = AIOKafkaProducer(**config, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    ledger = KafkaLedger(producer, topic)
    delivery = Delivery(
        gateway,
        ledger,
        routing,
        policy=policy or delivery_policy(settings, console=console, interactive=transport is not None),
        clock=clock or SystemClock(),
        metrics=metrics or NullMetrics(),
        reference=reference,
    )
    consumer = AIOKafkaConsumer(
        **config,
        group_id=group_id or f"{settings.app_id}-notifier{suffix}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # holdwatch.actions partition p goes with holdwatch.alerts partition p (same key, the CCN).
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    service = _Service(settings, topic, consumer, ledger, delivery)
    if routing.shifts:
        service.handovers = Handovers(
            routing.shifts, lambda: delivery.alerts.values(), gateway, ledger, delivery.clock, reference
        )
    api = StatusApi(settings.web_base_url(), _first_token(settings))
    if transport is not None:
        slash = SlashCommands(
            api,
            lambda: delivery.alerts.values(),
            service.handovers,
            Responder().respond,
            delivery.clock,
            reference,
        )
        service.dispatch = _dispatch(
            settings, transport, delivery, producer, gateway, metrics, authorizer, slash.handle
        )
    try:
        await service.run(stop, ready)
    finally:
        await api.close()
        await producer.stop()


def _first_token(settings: Settings) -> str | None:
    """The status API's bearer token the slash commands send (the first of HOLDWATCH_WEB_TOKENS)."""
    return settings.web_tokens[0].get_secret_value() if settings.web_tokens else None


def _dispatch(
    settings: Settings,
    transport: str,
    delivery: Delivery,
    producer: Any,
    gateway: SlackGateway,
    metrics: NotifyMetrics | None,
    authorizer: Authorizer | None,
    commands: Callable[[dict[str, Any]], Awaitable[None]],
) -> Any:
    """The inbound transport (not started) whose clicks become records of holdwatch.actions."""
    from streams.notifier.act import ChannelAuthorizer, Interactions
    from streams.notifier.interactions import (
        HttpTransport,
        NullInteractionMetrics,
        Responder,
        SocketModeTransport,
    )

    client = gateway.client if isinstance(gateway, SlackWebGateway) else None
    if client is None:
        raise RuntimeError("Slack interactivity needs the Slack Web API (HOLDWATCH_SLACK_TOKEN)")

    async def publish(action: DispatchAction) -> None:
        value = action.model_dump_json().encode()
        await producer.send_and_wait(settings.actions_topic(), key=action.ccn.encode(), value=value)

    sink = Interactions(
        delivery.alerts.get,
        publish,
        authorizer or ChannelAuthorizer(client, settings.slack_actor_groups, delivery.clock),
        Responder().respond,
        delivery.metrics,
        commands=commands,
        source="socket_mode" if transport == "socket" else "http",
    )
    counted: Any = metrics if hasattr(metrics, "request") else NullInteractionMetrics()
    if transport == "socket":
        assert settings.slack_app_token is not None
        return SocketModeTransport(settings.slack_app_token.get_secret_value(), client, sink, counted)
    assert settings.slack_signing_secret is not None
    return HttpTransport(
        settings.slack_signing_secret.get_secret_value(),
        sink,
        counted,
        host=settings.slack_interactions_bind,
        port=settings.slack_interactions_port,
    )


class _Service:
    """The consume → accept → flush ledger → commit loop of one notifier, with its rebalances."""

    def __init__(
        self, settings: Settings, ledger_topic: str, consumer: Any, ledger: KafkaLedger, delivery: Delivery
    ) -> None:
        self.settings, self.ledger_topic = settings, ledger_topic
        self.consumer, self.ledger, self.delivery = consumer, ledger, delivery
        self.processed: dict[Any, int] = {}  # partition -> next offset to commit
        self.loaded: set[int] = set()  # input partitions whose lifecycles are loaded from the ledger
        # Until Slack delivery starts: where each assigned partition ended when it was assigned.
        self.backlog: dict[Any, int] = {}
        self.dispatch: Any = None  # the inbound Slack transport, started once the history is read
        self.handovers: Handovers | None = None  # shift handovers, from the routing file's [shifts]

    async def commit_processed(self) -> None:
        if self.processed:
            await self.ledger.flush()  # ledger first: the entries must be durable before the offsets move
            await self.consumer.commit(dict(self.processed))
            self.processed.clear()

    async def partitions_revoked(self, revoked: Any) -> None:
        await self.commit_processed()
        gone = {tp.partition for tp in revoked}
        self.delivery.forget_partitions(gone)
        self.loaded.difference_update(gone)

    async def load_new_partitions(self) -> None:
        """Before any record of a newly assigned partition is accepted, load its lifecycles."""
        new = {tp.partition for tp in self.consumer.assignment()} - self.loaded
        if new:
            tps = [tp for tp in self.consumer.assignment() if tp.partition in new]
            self.backlog.update(await self.consumer.end_offsets(tps))
            entries = await read_ledger(self.settings, self.ledger_topic)
            pending = self.delivery.restore(entries, partitions=new)
            if self.handovers is not None:
                self.handovers.restore(entries)
            self.loaded.update(new)
            log.info("notifier: partitions %s loaded from the ledger, %d Slack changes pending",
                     sorted(new), pending)  # fmt: skip

    async def accept_batch(self, batch: Mapping[Any, list[Any]]) -> None:
        for tp, records in batch.items():
            actions = tp.topic == self.settings.actions_topic()
            for record in records:
                if actions:
                    action = decode_action(record.value)
                    if action is not None:
                        await self.delivery.accept_action(action)
                else:
                    alert = decode_alert(record.value)
                    if alert is not None:
                        await self.delivery.accept(alert, partition=tp.partition, origin=origin_of(record))
                self.processed[TopicPartition(tp.topic, tp.partition)] = record.offset + 1
        await self.commit_processed()

    async def history_read(self, batch: Mapping[Any, list[Any]]) -> bool:
        """Every assigned partition is read up to where it ended when assigned (or a poll came
        back empty): each lifecycle's newest state in that history is known, so what Slack gets
        first is only what is still open."""
        assignment = self.consumer.assignment()
        if not assignment or not self.loaded:
            return False
        if not any(batch.values()):
            return True
        for tp in assignment:
            if await self.consumer.position(tp) < self.backlog.get(tp, 0):
                return False
        return True

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None) -> None:
        await self.consumer.start()
        self.consumer.subscribe(
            [self.settings.topic_alerts, self.settings.actions_topic()], listener=_Rebalance(self)
        )
        deliver: asyncio.Task[None] | None = None
        connecting: asyncio.Task[Any] | None = None
        shifts: asyncio.Task[None] | None = None
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                if deliver is not None and deliver.done():
                    deliver.result()  # surface a crash of the delivery loop
                    break
                if shifts is not None and shifts.done():
                    shifts.result()  # a ledger write that failed stops the notifier
                    shifts = None
                if connecting is not None and connecting.done():
                    connecting.result()  # a refused app token or a port in use stops the notifier
                    connecting = None
                self.ledger.check()  # a Slack worker's write failed: stop, even with no input
                batch = await self.consumer.getmany(timeout_ms=500, max_records=500)
                await self.load_new_partitions()
                await self.accept_batch(batch)
                if deliver is None and await self.history_read(batch):
                    deliver = asyncio.create_task(self.delivery.run(stop), name="slack-delivery")
                    if self.dispatch is not None:  # clicks need the lifecycles: only now
                        connecting = asyncio.create_task(self.dispatch.start(), name="slack-interactions")
                    if self.handovers is not None:  # so is the first handover's list
                        shifts = asyncio.create_task(self.handovers.run(stop), name="shift-handovers")
        finally:
            stop.set()
            if self.dispatch is not None:
                with contextlib.suppress(Exception):
                    await self.dispatch.stop()
            if shifts is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(shifts, 10)
            if deliver is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(deliver, 10)
            try:
                await self.commit_processed()
                await self.ledger.flush()
            finally:
                await self.consumer.stop()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit and forget a revoked partition's lifecycles; assigned ones load in the poll loop."""

    def __init__(self, service: _Service) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.service.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass  # loaded in the poll loop, before any record of a new partition is accepted
