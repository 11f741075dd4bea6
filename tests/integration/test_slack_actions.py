"""Dispatch acts in Slack, end to end: the real broker, the notifier, slack-sdk's Socket Mode client
and the local Slack server playing Slack's side (envelopes, acks, response_url).

Raise → click Acknowledge → the message shows the owner → no escalation; a duplicate click is one
action; a restart keeps the owner; an unacknowledged critical is paged once its time has come on
the notifier's (injected) clock; a user outside the channel is refused; the HTTP Request URL mode
takes a signed click and refuses a forged one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr

from alerting.notify.delivery import DeliveryPolicy
from alerting.notify.metrics import CountingMetrics
from schemas.alerts import AlertEvent
from streams.kafka.config import admin_client, kafka_python_config
from streams.notifier.service import ledger_topic_name, read_ledger, run_notifier
from streams.settings import Settings
from tests.fixtures.slack import (
    SlackTestServer,
    StoredMessage,
    block_actions_payload,
    make_alert,
    sign_request,
    slash_command_payload,
)
from tests.integration.test_notifier_kafka import publish, wait_for

pytestmark = pytest.mark.integration

POLICY = DeliveryPolicy(min_interval_s=0.0, edit_delay_s=0.2, storm_threshold=50, interactive=True)
DISPATCHER, OUTSIDER = "U0DISPATCH1", "U0OUTSIDER"


class JumpClock:
    """Real time plus an offset a test moves forward: the notifier's waits wake every 50 ms, so a
    jump takes effect at once (as if the minutes had passed)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        cap = 0.05 if timeout is None else max(0.0, min(timeout, 0.05))
        if cap > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), cap)


def caught_up(settings: Settings, group_id: str) -> bool:
    """The group committed every record of the alert and action topics (empty partitions aside)."""
    from kafka import KafkaConsumer, TopicPartition

    config = kafka_python_config(settings)
    consumer = KafkaConsumer(**config, enable_auto_commit=False)
    admin = admin_client(config, client_id="holdwatch-tests")
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in (settings.topic_alerts, settings.actions_topic())
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = consumer.end_offsets(parts)
        committed = admin.list_group_offsets({group_id: parts}).get(group_id, {})
        return all(
            ends[tp] == 0 or (tp in committed and (committed[tp].offset or 0) >= ends[tp]) for tp in parts
        )
    finally:
        consumer.close()
        admin.close()


class Notifier:
    def __init__(self, settings: Settings, group: str, clock: JumpClock) -> None:
        self.settings, self.group = settings, group
        self.stop, self.ready = asyncio.Event(), asyncio.Event()
        self.metrics = CountingMetrics()
        self.task = asyncio.create_task(
            run_notifier(
                settings,
                stop=self.stop,
                group_id=group,
                policy=POLICY,
                ready=self.ready,
                metrics=self.metrics,
                clock=clock,
            )
        )

    async def started(self) -> Notifier:
        await asyncio.wait_for(self.ready.wait(), 60)
        return self

    async def idle(self) -> None:
        """Every alert record is committed and Slack owes nothing (a due page would be owed)."""
        await wait_for(lambda: self.task.done() or self.metrics.pending_now == 0)
        for _ in range(600):
            if await asyncio.to_thread(caught_up, self.settings, self.group) and not self.metrics.pending_now:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"notifier did not catch up (Slack changes pending: {self.metrics.pending_now})")

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)


def settings_for(kafka_settings: Settings, slack: SlackTestServer, **extra: Any) -> Settings:
    update: dict[str, Any] = {
        "slack_token": SecretStr("xoxb-test"),
        "slack_base_url": slack.base_url,
        "partitions": 2,
        "slack_app_token": SecretStr("xapp-test"),
        **extra,
    }
    return kafka_settings.model_copy(update=update)


def the_message(slack: SlackTestServer) -> StoredMessage:
    (message,) = slack.top_level("#dispatch")
    return message


def thread(slack: SlackTestServer) -> list[str]:
    return [m.text for m in slack.replies("#dispatch", the_message(slack).ts)]


def pages(slack: SlackTestServer) -> list[float]:
    return [
        r.at
        for r in slack.calls("chat.postMessage")
        if r.body.get("thread_ts") and "Unacknowledged CRITICAL" in str(r.body.get("text"))
    ]


def critical(seq: int = 1, action: str = "raised") -> AlertEvent:
    return make_alert("ACT1", seq, action, "critical")


async def click(slack: SlackTestServer, action_id: str, *, user: str = DISPATCHER, action_ts: str) -> str:
    payload = block_actions_payload(
        message=the_message(slack), action_id=action_id, user_id=user, action_ts=action_ts,
        response_url=slack.response_url(),
    )  # fmt: skip
    envelope = await slack.socket_send("interactive", payload)
    ack = await slack.wait_ack(envelope)
    assert ack.latency_s < 3.0  # Slack's limit: the ack goes out before any work
    return envelope


async def test_acknowledge_owns_the_load_once_survives_a_restart_and_stops_escalation(
    kafka_settings: Settings,
) -> None:
    clock = JumpClock()
    async with SlackTestServer(clock=clock.now) as slack:
        slack.members[slack.channel_id("#dispatch")] = [DISPATCHER]
        settings = settings_for(kafka_settings, slack)
        group = f"notifier-{uuid.uuid4().hex[:6]}"
        notifier = await Notifier(settings, group, clock).started()
        await publish(settings, [critical()])
        await wait_for(lambda: len(slack.top_level("#dispatch")) == 1)
        assert "Acknowledge" in str(the_message(slack).blocks)
        await slack.socket_connected(30)

        ts = f"{time.time():.6f}"
        await click(slack, "hw_ack", action_ts=ts)
        await wait_for(lambda: "Owned by *sam*" in str(the_message(slack).blocks))
        await click(slack, "hw_ack", action_ts=ts)  # Slack delivers the same click again
        await wait_for(lambda: notifier.metrics.actions[("acknowledge", "duplicate")] == 1)
        assert notifier.metrics.actions[("acknowledge", "applied")] == 1

        clock.jump(700)  # past escalate_after (600 s): owned, so nothing is owed
        await notifier.idle()
        assert pages(slack) == []
        assert sum("acknowledged" in text for text in thread(slack)) == 1
        await notifier.close()

        ledger = await read_ledger(settings, ledger_topic_name(settings))
        assert ledger["ACT1"]["ownership"]["owner"] == DISPATCHER
        notifier = await Notifier(settings, group, clock).started()  # a restart keeps the owner
        edits = len(slack.calls("chat.update"))
        await publish(settings, [critical(2, "updated")])
        await wait_for(lambda: len(slack.calls("chat.update")) > edits)
        clock.jump(700)
        await notifier.idle()
        assert "Owned by *sam*" in str(the_message(slack).blocks)
        assert pages(slack) == [] and len(slack.top_level("#dispatch")) == 1
        await notifier.close()


async def test_an_unacknowledged_critical_is_paged_when_its_time_comes(kafka_settings: Settings) -> None:
    clock = JumpClock()
    async with SlackTestServer(clock=clock.now) as slack:
        settings = settings_for(kafka_settings, slack)
        notifier = await Notifier(settings, f"notifier-{uuid.uuid4().hex[:6]}", clock).started()
        await publish(settings, [critical()])
        await wait_for(lambda: len(slack.top_level("#dispatch")) == 1)
        posted = slack.calls("chat.postMessage")[0].at
        await wait_for(lambda: caught_up(settings, notifier.group))
        assert pages(slack) == []  # not at the raise
        clock.jump(601)
        await wait_for(lambda: len(pages(slack)) == 1)
        assert pages(slack)[0] >= posted + 600
        await notifier.close()


async def test_someone_outside_the_channel_is_refused(kafka_settings: Settings) -> None:
    clock = JumpClock()
    async with SlackTestServer(clock=clock.now) as slack:
        slack.members[slack.channel_id("#dispatch")] = [DISPATCHER]
        settings = settings_for(kafka_settings, slack)
        notifier = await Notifier(settings, f"notifier-{uuid.uuid4().hex[:6]}", clock).started()
        await publish(settings, [critical()])
        await wait_for(lambda: len(slack.top_level("#dispatch")) == 1)
        await slack.socket_connected(30)
        await click(slack, "hw_ack", user=OUTSIDER, action_ts=f"{time.time():.6f}")
        await wait_for(lambda: len(slack.responses) == 1)
        answer = slack.responses[0].body
        assert answer["response_type"] == "ephemeral" and "Only members" in answer["text"]
        assert notifier.metrics.actions[("acknowledge", "refused")] == 1
        assert "Unowned" in str(the_message(slack).blocks)
        await notifier.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_request_url_mode_takes_a_signed_click_and_refuses_a_forged_one(
    kafka_settings: Settings,
) -> None:
    clock = JumpClock()
    async with SlackTestServer(clock=clock.now) as slack:
        slack.members[slack.channel_id("#dispatch")] = [DISPATCHER]
        port = free_port()
        settings = settings_for(
            kafka_settings, slack, slack_app_token=None, slack_signing_secret=SecretStr("s3cret"),
            slack_interactions_bind="127.0.0.1", slack_interactions_port=port,
        )  # fmt: skip
        notifier = await Notifier(settings, f"notifier-{uuid.uuid4().hex[:6]}", clock).started()
        await publish(settings, [critical()])
        await wait_for(lambda: len(slack.top_level("#dispatch")) == 1)
        payload = block_actions_payload(
            message=the_message(slack), action_id="hw_ack", action_ts=f"{time.time():.6f}"
        )
        body = urlencode({"payload": json.dumps(payload)}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        url = f"http://127.0.0.1:{port}/slack/events"
        async with aiohttp.ClientSession() as http:
            await wait_for_server(http, f"http://127.0.0.1:{port}/healthz")
            forged = sign_request("wrong", body, int(time.time()))
            async with http.post(url, data=body, headers={**headers, **forged}) as response:
                assert response.status == 401
            signed = sign_request("s3cret", body, int(time.time()))
            async with http.post(url, data=body, headers={**headers, **signed}) as response:
                assert response.status == 200
        await wait_for(lambda: "Owned by *sam*" in str(the_message(slack).blocks))
        assert notifier.metrics.actions[("acknowledge", "applied")] == 1
        await notifier.close()


async def wait_for_server(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def test_slash_commands_and_the_shift_handover(kafka_settings: Settings, tmp_path: Path) -> None:
    clock = JumpClock()
    async with SlackTestServer(clock=clock.now) as slack:
        slack.members[slack.channel_id("#dispatch")] = [DISPATCHER]
        shift_at = datetime.fromtimestamp(clock.wall() + 120, UTC)  # two minutes from now, UTC
        routing = tmp_path / "routing.toml"
        routing.write_text(f'[shifts]\ndefault = {{ times = ["{shift_at:%H:%M}"], tz = "UTC" }}\n')
        nobody = f"http://127.0.0.1:{free_port()}"  # no worker answers the status API here
        settings = settings_for(kafka_settings, slack, slack_routing_file=routing, web_url=nobody)
        notifier = await Notifier(settings, f"notifier-{uuid.uuid4().hex[:6]}", clock).started()
        await publish(settings, [critical(), make_alert("ACT2", 1, "raised", "warning")])
        await wait_for(lambda: len(slack.top_level("#dispatch")) == 2)
        await slack.socket_connected(30)
        first = next(m for m in slack.top_level("#dispatch") if m.metadata["event_payload"]["key"] == "ACT1")
        payload = block_actions_payload(message=first, action_id="hw_ack", action_ts=f"{time.time():.6f}")
        await slack.wait_ack(await slack.socket_send("interactive", payload))
        await wait_for(lambda: notifier.metrics.actions[("acknowledge", "applied")] == 1)

        async def command(text: str) -> dict[str, Any]:
            url = slack.response_url()
            form = slash_command_payload(text, user_id=DISPATCHER, channel_id=first.channel, response_url=url)
            ack = await slack.wait_ack(await slack.socket_send("slash_commands", form))
            assert ack.latency_s < 3.0
            await wait_for(lambda: any(r.url.endswith(url.rsplit("/", 1)[1]) for r in slack.responses))
            return next(r.body for r in slack.responses if r.url.endswith(url.rsplit("/", 1)[1]))

        mine = await command("mine")
        assert (
            mine["response_type"] == "ephemeral"
            and "LD-ACT1" in mine["text"]
            and "LD-ACT2" not in mine["text"]
        )
        assert "status" in (await command("help"))["text"]
        status = await command("status LD-ACT1")  # no worker runs here: said plainly
        assert "unavailable" in status["text"]

        before = len(slack.top_level("#dispatch"))
        clock.jump(130)  # past the shift change
        await wait_for(lambda: len(slack.top_level("#dispatch")) == before + 1)
        handover = slack.top_level("#dispatch")[-1]
        shown = str(handover.blocks)
        assert "Shift handover" in handover.text and "1 unowned" in handover.text
        assert "LD-ACT1" in shown and "LD-ACT2" in shown and "sam" in shown
        await notifier.close()
