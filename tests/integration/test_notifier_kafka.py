"""The notifier against a real broker and the local Slack server: restarts and replays never post twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr

from alerting.notify.delivery import DeliveryPolicy
from alerting.notify.metrics import CountingMetrics
from schemas.alerts import AlertEvent
from schemas.envelope import TRAFFIC_HEADER
from streams.kafka.admin import ensure_topics
from streams.kafka.config import admin_client, aiokafka_config, kafka_python_config
from streams.notifier.service import ledger_topic_name, read_ledger, run_notifier
from streams.settings import Settings
from tests.fixtures.slack import SlackTestServer, make_alert

pytestmark = pytest.mark.integration

FAST = DeliveryPolicy(min_interval_s=0.0, edit_delay_s=0.2, storm_threshold=50)


def lifecycle(alert_id: str) -> list[AlertEvent]:
    return [
        make_alert(alert_id, 1, "raised", "warning"),
        make_alert(alert_id, 2, "updated", "warning", reasons=["pars_missing", "carm_not_delegated"]),
        make_alert(alert_id, 3, "updated", "critical", previous_severity="warning"),
        make_alert(alert_id, 4, "resolved", None, outcome="released"),
    ]


async def publish(
    settings: Settings, alerts: Iterable[AlertEvent], *, headers: list[tuple[str, bytes]] | None = None
) -> None:
    producer = AIOKafkaProducer(**aiokafka_config(settings), acks="all")
    await producer.start()
    try:
        for alert in alerts:
            await producer.send(
                settings.topic_alerts,
                key=alert.ccn.encode(),
                value=alert.model_dump_json().encode(),
                headers=headers,
            )
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for Slack to reach the expected state")
        await asyncio.sleep(0.1)


def caught_up(settings: Settings, group_id: str) -> bool:
    """The group committed every alert record: each one was accepted (and its ledger entry flushed)."""
    config = kafka_python_config(settings)
    consumer = KafkaConsumer(**config, enable_auto_commit=False)
    admin = admin_client(config, client_id="holdwatch-tests")
    try:
        parts = [
            TopicPartition(settings.topic_alerts, p)
            for p in consumer.partitions_for_topic(settings.topic_alerts)
        ]
        ends = consumer.end_offsets(parts)
        committed = admin.list_group_offsets({group_id: parts}).get(group_id, {})
        return all(
            tp in committed and committed[tp].offset is not None and committed[tp].offset >= ends[tp]
            for tp in parts
        )
    finally:
        consumer.close()
        admin.close()


class Notifier:
    """One notifier process, as an asyncio task."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings, self.group_id = settings, group_id
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.metrics = CountingMetrics()
        self.task = asyncio.create_task(
            run_notifier(
                settings,
                stop=self.stop,
                group_id=group_id,
                policy=FAST,
                ready=self.ready,
                metrics=self.metrics,
            )
        )

    async def started(self) -> Notifier:
        await asyncio.wait_for(self.ready.wait(), 60)
        return self

    async def idle(self, timeout_s: float = 60.0) -> None:
        """Every alert record is committed and Slack owes nothing: no call can follow any more."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.metrics.pending_now or not await asyncio.to_thread(
            caught_up, self.settings, self.group_id
        ):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"notifier group {self.group_id} did not catch up")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)


def parents(slack: SlackTestServer) -> list[str]:
    return [m.metadata["event_payload"]["key"] for m in slack.top_level("#dispatch") if m.metadata]


def reply_keys(slack: SlackTestServer) -> list[str]:
    return [
        m.metadata["event_payload"]["key"]
        for m in slack.all_messages()
        if m.thread_ts is not None and m.metadata is not None
    ]


def settled(slack: SlackTestServer, alert_ids: list[str]) -> bool:
    done = {
        m.metadata["event_payload"]["key"]
        for m in slack.top_level("#dispatch")
        if m.metadata and "Resolved" in m.text
    }
    return done >= set(alert_ids) and len(reply_keys(slack)) >= 2 * len(alert_ids)


async def test_restart_mid_stream_and_full_replay_post_nothing_twice(kafka_settings: Settings) -> None:
    async with SlackTestServer() as slack:
        settings = kafka_settings.model_copy(
            update={"slack_token": SecretStr("xoxb-test"), "slack_base_url": slack.base_url, "partitions": 3}
        )
        group = f"notifier-{uuid.uuid4().hex[:6]}"
        ids = [f"K{i}" for i in range(6)]
        events = [e for alert_id in ids for e in lifecycle(alert_id)]
        first = [e for e in events if e.seq <= 2]
        second = [e for e in events if e.seq > 2]

        notifier = await Notifier(settings, group).started()
        await publish(settings, first)
        await wait_for(lambda: len(parents(slack)) == len(ids))
        await notifier.close()  # restart mid-stream: half the lifecycles' steps are still to come

        await publish(settings, [*first[:4], *second])  # duplicates of early events, then the rest
        notifier = await Notifier(settings, group).started()
        await wait_for(lambda: settled(slack, ids))
        await notifier.idle()  # a would-be duplicate would be owed now
        await notifier.close()
        assert sorted(parents(slack)) == sorted(ids)
        assert len(reply_keys(slack)) == len(set(reply_keys(slack))) == 2 * len(ids)
        calls_before_replay = len(slack.calls())

        # A new consumer group reads the alert topic from the start: the ledger says it is all done.
        notifier = await Notifier(settings, f"{group}-replay").started()
        await notifier.idle()
        await notifier.close()
        assert len(slack.calls()) == calls_before_replay

        ledger = await read_ledger(settings, ledger_topic_name(settings))
        assert {k for k in ledger if not k.startswith("digest:")} == set(ids)
        assert all(entry["ts"] and entry["shown_seq"] == 4 and not entry["owed"] for entry in ledger.values())


async def test_refused_alert_survives_a_restart_and_is_posted_once_fixed(kafka_settings: Settings) -> None:
    async with SlackTestServer(missing_channels={"#dispatch"}) as slack:
        settings = kafka_settings.model_copy(
            update={"slack_token": SecretStr("xoxb-test"), "slack_base_url": slack.base_url, "partitions": 3}
        )
        group = f"notifier-{uuid.uuid4().hex[:6]}"
        policy_fast_retry = DeliveryPolicy(min_interval_s=0.0, edit_delay_s=0.2, permanent_retry_s=0.5)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run_notifier(settings, stop=stop, group_id=group, policy=policy_fast_retry, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 60)
        await publish(settings, [make_alert("F1")])
        await wait_for(lambda: any(r.outcome == "channel_not_found" for r in slack.requests))
        stop.set()
        await asyncio.wait_for(task, 60)  # offsets committed past F1: it lives on in the ledger

        slack.missing_channels.clear()
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run_notifier(settings, stop=stop, group_id=group, policy=policy_fast_retry, ready=ready)
        )
        await wait_for(lambda: len(parents(slack)) == 1)
        stop.set()
        await asyncio.wait_for(task, 60)
        assert parents(slack) == ["F1"]


async def test_a_fresh_group_over_history_posts_only_what_is_still_open(kafka_settings: Settings) -> None:
    """Turning Slack on over an existing alert topic: no ledger, a new group, the whole history."""
    async with SlackTestServer() as slack:
        settings = kafka_settings.model_copy(
            update={"slack_token": SecretStr("xoxb-test"), "slack_base_url": slack.base_url, "partitions": 3}
        )
        closed = [e for alert_id in ("H0", "H1", "H2") for e in lifecycle(alert_id)]
        still_open = [e for alert_id in ("H3", "H4") for e in lifecycle(alert_id)[:3]]
        await asyncio.to_thread(ensure_topics, settings)  # the alert topic exists before the notifier
        await publish(settings, [*closed, *still_open], headers=[(TRAFFIC_HEADER, b"live")])
        await publish(settings, lifecycle("H5")[:2], headers=[(TRAFFIC_HEADER, b"replay")])

        notifier = await Notifier(settings, f"notifier-{uuid.uuid4().hex[:6]}").started()
        await notifier.idle()
        await notifier.close()
        assert sorted(parents(slack)) == ["H3", "H4"]  # the closed and the replayed ones: nothing
        assert all("CRITICAL" in m.text for m in slack.top_level("#dispatch"))  # their newest state
        assert len(slack.calls("chat.postMessage")) == 2 and reply_keys(slack) == []
        assert notifier.metrics.counts["skipped:replayed"] == 2


async def test_resolved_lifecycles_leave_the_ledger_topic(kafka_settings: Settings) -> None:
    """Event time, not wall time: an alert 80 h later in the stream makes the notifier delete (tombstone)
    the lifecycle resolved 80 h before; the ledger read back no longer has it, the open ones stay."""
    async with SlackTestServer() as slack:
        settings = kafka_settings.model_copy(
            update={"slack_token": SecretStr("xoxb-test"), "slack_base_url": slack.base_url, "partitions": 3}
        )
        group = f"notifier-{uuid.uuid4().hex[:6]}"
        still_open = [f"K{i}" for i in range(1, 6)]  # with K0, a record in every partition (`caught_up`)
        notifier = await Notifier(settings, group).started()
        await publish(settings, [make_alert(alert_id) for alert_id in ["K0", *still_open]])
        await wait_for(lambda: len(parents(slack)) == 6)
        await publish(settings, lifecycle("K0")[1:])
        await wait_for(lambda: settled(slack, ["K0"]))
        await notifier.idle()
        assert "K0" in await read_ledger(settings, ledger_topic_name(settings))
        later = lifecycle("K0")[-1].at + timedelta(hours=80)
        await publish(settings, [make_alert("K1", 2, "updated", at=later)])
        await notifier.idle()
        await notifier.close()
        ledger = await read_ledger(settings, ledger_topic_name(settings))
        assert "K0" not in ledger and set(still_open) <= set(ledger)
        calls = len(slack.calls())
        notifier = await Notifier(settings, group).started()  # a restart finds nothing owed
        await notifier.idle()
        await notifier.close()
        assert len(slack.calls()) == calls
