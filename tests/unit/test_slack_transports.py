"""The notifier's inbound Slack transports against the local Slack server, through real slack-sdk clients.

Socket Mode: the server plays Slack's side of the WebSocket (hello, envelopes, disconnect) and records
the acks. HTTP: requests signed with a known secret at a fixed clock, and forged, unsigned, stale,
replayed, oversized and malformed ones. Nothing sleeps: every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from streams.notifier.interactions import (
    HttpTransport,
    Responder,
    SocketModeRefused,
    SocketModeTransport,
    choose_transport,
)
from tests.fixtures.slack import (
    SlackTestServer,
    StoredMessage,
    block_actions_payload,
    sign_request,
    slash_command_payload,
)

APP_TOKEN = "xapp-1-A0HOLDWATCH-test"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_795_000_000  # the HTTP transport's clock, unix seconds
TIMEOUT = 5.0


class RecordingSink:
    """Records what it is handed; can block on `gate` or raise for payloads `fail_when` accepts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.entered: list[tuple[str, dict[str, Any]]] = []
        self.gate: asyncio.Event | None = None
        self.fail_when: Any = None
        self._changed = asyncio.Event()

    async def handle(self, kind: str, payload: dict[str, Any]) -> None:
        self.entered.append((kind, payload))
        self._changed.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_when is not None and self.fail_when(payload):
            raise RuntimeError("the sink broke")
        self.calls.append((kind, payload))
        self._changed.set()

    async def wait(self, condition: Any, timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@dataclass
class RecordingMetrics:
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    acks: list[tuple[str, float]] = field(default_factory=list)

    def request(self, transport: str, kind: str, outcome: str) -> None:
        self.requests.append((transport, kind, outcome))

    def ack_latency(self, transport: str, seconds: float) -> None:
        self.acks.append((transport, seconds))

    def outcomes(self) -> list[str]:
        return [outcome for _, _, outcome in self.requests]


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


def web_client(slack: SlackTestServer) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])


@pytest_asyncio.fixture
async def socket_mode(
    slack_server: SlackTestServer, sink: RecordingSink, metrics: RecordingMetrics
) -> AsyncIterator[SocketModeTransport]:
    transport = SocketModeTransport(APP_TOKEN, web_client(slack_server), sink, metrics, drain_s=0.5)
    async with transport:
        await slack_server.socket_connected(TIMEOUT)
        yield transport


async def posted(slack: SlackTestServer) -> StoredMessage:
    """An alert message with buttons, as the notifier posts it."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Critical* LD-A1"}},
        {
            "type": "actions",
            "block_id": "alert_actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "ack",
                    "value": "A1",
                    "text": {"type": "plain_text", "text": "Ack"},
                },
                {
                    "type": "static_select",
                    "action_id": "snooze",
                    "options": [{"value": "30", "text": {"type": "plain_text", "text": "30 min"}}],
                },
            ],
        },
    ]
    metadata = {"event_type": "holdwatch_alert", "event_payload": {"key": "A1"}}
    client = web_client(slack)
    await client.chat_postMessage(channel="C0DISPATCH", text="LD-A1", blocks=blocks, metadata=metadata)
    return slack.top_level("C0DISPATCH")[-1]


# --- Socket Mode ----------------------------------------------------------------------------------


async def test_socket_mode_connects_with_the_app_token(
    slack_server: SlackTestServer, socket_mode: SocketModeTransport
) -> None:
    opens = slack_server.calls("apps.connections.open")
    assert len(opens) == 1
    assert opens[0].headers["Authorization"] == f"Bearer {APP_TOKEN}"
    assert slack_server.socket_connections_opened == 1
    assert await socket_mode.connected()


async def test_each_envelope_is_acked_then_delivered_with_its_payload(
    slack_server: SlackTestServer,
    socket_mode: SocketModeTransport,
    sink: RecordingSink,
    metrics: RecordingMetrics,
) -> None:
    click = block_actions_payload(message=await posted(slack_server), action_id="ack", response_url="x")
    command = slash_command_payload("snooze LD-A1 30m", response_url=slack_server.response_url())
    sent = [
        await slack_server.socket_send("interactive", click),
        await slack_server.socket_send("slash_commands", command),
    ]
    for envelope_id in sent:
        ack = await slack_server.wait_ack(envelope_id, TIMEOUT)
        assert ack.payload is None
    assert set(slack_server.socket_acks) == set(sent)
    await sink.wait(lambda: len(sink.calls) == 2)
    assert sorted(sink.calls, key=lambda c: c[0]) == [("interactive", click), ("slash_commands", command)]
    assert sorted(metrics.requests) == [
        ("socket", "interactive", "accepted"),
        ("socket", "slash_commands", "accepted"),
    ]
    assert [transport for transport, _ in metrics.acks] == ["socket", "socket"]


async def test_a_failing_sink_does_not_stop_later_envelopes(
    slack_server: SlackTestServer,
    socket_mode: SocketModeTransport,
    sink: RecordingSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink.fail_when = lambda payload: payload.get("text") == "boom"
    with caplog.at_level(logging.ERROR, logger="holdwatch.notifier.interactions"):
        first = await slack_server.socket_send("slash_commands", slash_command_payload("boom"))
        await sink.wait(lambda: len(sink.entered) == 1)
        second = await slack_server.socket_send("slash_commands", slash_command_payload("status"))
        await sink.wait(lambda: len(sink.calls) == 1)
    for envelope_id in (first, second):
        await slack_server.wait_ack(envelope_id, TIMEOUT)
    assert sink.calls[0][1]["text"] == "status"
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert "slash_commands" in failures[0].getMessage() and first in failures[0].getMessage()


async def test_a_blocked_sink_does_not_delay_the_ack(
    slack_server: SlackTestServer, socket_mode: SocketModeTransport, sink: RecordingSink
) -> None:
    sink.gate = asyncio.Event()
    envelope_id = await slack_server.socket_send("slash_commands", slash_command_payload("status"))
    await slack_server.wait_ack(envelope_id, TIMEOUT)
    await sink.wait(lambda: len(sink.entered) == 1)
    assert sink.calls == []  # still blocked, yet Slack has its ack
    sink.gate.set()
    await sink.wait(lambda: len(sink.calls) == 1)


async def test_after_a_disconnect_the_client_reconnects_and_delivery_goes_on(
    slack_server: SlackTestServer, socket_mode: SocketModeTransport, sink: RecordingSink
) -> None:
    await slack_server.socket_disconnect("refresh_requested")
    await slack_server.socket_connected(TIMEOUT, opened=2)
    envelope_id = await slack_server.socket_send("slash_commands", slash_command_payload("status"))
    assert (await slack_server.wait_ack(envelope_id, TIMEOUT)) is slack_server.socket_acks[envelope_id]
    await sink.wait(lambda: len(sink.calls) == 1)
    assert slack_server.socket_connections_opened == 2
    assert len(slack_server.calls("apps.connections.open")) == 2


async def test_other_envelope_types_are_acked_but_not_delivered(
    slack_server: SlackTestServer,
    socket_mode: SocketModeTransport,
    sink: RecordingSink,
    metrics: RecordingMetrics,
) -> None:
    ignored = await slack_server.socket_send("events_api", {"event": {"type": "app_mention"}})
    await slack_server.wait_ack(ignored, TIMEOUT)
    delivered = await slack_server.socket_send("slash_commands", slash_command_payload("status"))
    await slack_server.wait_ack(delivered, TIMEOUT)
    await sink.wait(lambda: len(sink.calls) == 1)
    assert [kind for kind, _ in sink.entered] == ["slash_commands"]
    assert ("socket", "events_api", "ignored") in metrics.requests


async def test_stop_cancels_a_handler_that_outlives_the_grace(
    slack_server: SlackTestServer, sink: RecordingSink, metrics: RecordingMetrics
) -> None:
    sink.gate = asyncio.Event()  # never set
    transport = SocketModeTransport(APP_TOKEN, web_client(slack_server), sink, metrics, drain_s=0.05)
    await transport.start()
    await slack_server.wait_ack(await slack_server.socket_send("slash_commands", slash_command_payload("x")))
    await sink.wait(lambda: len(sink.entered) == 1)
    await asyncio.wait_for(transport.stop(), TIMEOUT)
    assert sink.calls == []
    assert not await transport.connected()


async def test_a_bot_token_is_refused_at_start(
    slack_server: SlackTestServer, sink: RecordingSink, metrics: RecordingMetrics
) -> None:
    transport = SocketModeTransport("xoxb-test", web_client(slack_server), sink, metrics)
    with pytest.raises(SocketModeRefused, match="not_allowed_token_type"):
        await transport.start()
    assert slack_server.socket_connections_opened == 0


# --- HTTP Request URL ------------------------------------------------------------------------------


@dataclass
class HttpRig:
    transport: HttpTransport
    url: str
    session: aiohttp.ClientSession

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        async with self.session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def signed(self, body: bytes, *, at: int = NOW, secret: str = SECRET) -> tuple[int, str]:
        return await self.post(body, sign_request(secret, body, at))


def interaction_form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def command_form(text: str) -> bytes:
    return urlencode(slash_command_payload(text)).encode()


@pytest_asyncio.fixture
async def http(sink: RecordingSink, metrics: RecordingMetrics) -> AsyncIterator[HttpRig]:
    transport = HttpTransport(
        SECRET, sink, metrics, host="127.0.0.1", port=0, clock=lambda: NOW, max_body=4096
    )
    port = await transport.start()
    async with aiohttp.ClientSession() as session:
        yield HttpRig(transport, f"http://127.0.0.1:{port}/slack/events", session)
    await transport.stop()


def error(text: str) -> str:
    return str(json.loads(text)["error"])


async def test_a_signed_interaction_is_answered_200_and_delivered(
    slack_server: SlackTestServer, http: HttpRig, sink: RecordingSink, metrics: RecordingMetrics
) -> None:
    click = block_actions_payload(message=await posted(slack_server), action_id="snooze", selected="30")
    assert await http.signed(interaction_form(click)) == (200, "")
    await sink.wait(lambda: len(sink.calls) == 1)
    assert sink.calls == [("interactive", click)]
    assert metrics.requests == [("http", "interactive", "accepted")]
    assert len(metrics.acks) == 1


async def test_a_signed_slash_command_is_delivered_as_its_fields(http: HttpRig, sink: RecordingSink) -> None:
    assert await http.signed(command_form("ack LD-A1")) == (200, "")
    await sink.wait(lambda: len(sink.calls) == 1)
    assert sink.calls == [("slash_commands", slash_command_payload("ack LD-A1"))]


async def test_refused_requests_never_reach_the_sink_and_each_is_counted(
    http: HttpRig, sink: RecordingSink, metrics: RecordingMetrics
) -> None:
    body = command_form("status")
    forged = await http.signed(body, secret="not-the-secret")
    unsigned = await http.post(body, {})
    stale = await http.signed(body, at=NOW - 301)
    future = await http.signed(body, at=NOW + 301)
    not_a_time = await http.post(
        body, {**sign_request(SECRET, body, NOW), "X-Slack-Request-Timestamp": "soon"}
    )
    assert [status for status, _ in (forged, unsigned, stale, future, not_a_time)] == [401] * 5
    assert [error(text) for _, text in (forged, unsigned, stale, future, not_a_time)] == [
        "bad_signature",
        "unsigned",
        "stale",
        "stale",
        "unsigned",
    ]
    assert await http.signed(body) == (200, "")  # the first valid one, last: the sink sees only it
    await sink.wait(lambda: len(sink.calls) == 1)
    assert sink.entered == sink.calls
    assert metrics.outcomes() == ["bad_signature", "unsigned", "stale", "stale", "unsigned", "accepted"]


async def test_a_replayed_request_is_refused(
    http: HttpRig, sink: RecordingSink, metrics: RecordingMetrics
) -> None:
    body = command_form("status")
    headers = sign_request(SECRET, body, NOW - 10)
    assert (await http.post(body, headers))[0] == 200
    status, text = await http.post(body, headers)
    assert (status, error(text)) == (401, "replayed")
    await sink.wait(lambda: len(sink.calls) == 1)
    assert metrics.outcomes() == ["accepted", "replayed"]


async def test_an_oversized_body_is_refused_413_whatever_its_length_header_says(
    http: HttpRig, sink: RecordingSink, metrics: RecordingMetrics
) -> None:
    big = urlencode({"command": "/holdwatch", "text": "x" * 5000}).encode()
    status, text = await http.signed(big)
    assert (status, error(text)) == (413, "too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the read itself is capped
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign_request(SECRET, big, NOW)}
    async with http.session.post(http.url, data=chunked(), headers=headers) as response:
        assert response.status == 413
        assert error(await response.text()) == "too_large"
    assert metrics.outcomes() == ["too_large", "too_large"]
    assert sink.entered == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"type": "url_verification", "challenge": "x"}', "application/json"),
        (b'{"type": "url_verification", "challenge": "x"}', "application/x-www-form-urlencoded"),
        (urlencode({"text": "no command"}).encode(), "application/x-www-form-urlencoded"),
        (urlencode({"payload": "{not json"}).encode(), "application/x-www-form-urlencoded"),
        (urlencode({"payload": "[1, 2]"}).encode(), "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
    ],
)
async def test_a_signed_but_malformed_body_is_refused_400(
    http: HttpRig, sink: RecordingSink, metrics: RecordingMetrics, body: bytes, content_type: str
) -> None:
    status, text = await http.post(body, {**sign_request(SECRET, body, NOW), "Content-Type": content_type})
    assert (status, error(text)) == (400, "malformed")
    assert json.loads(text)["detail"]
    assert metrics.outcomes() == ["malformed"]
    assert sink.entered == []


async def test_refusals_name_the_fix_and_never_the_secret(
    http: HttpRig, caplog: pytest.LogCaptureFixture
) -> None:
    body = command_form("status")
    with caplog.at_level(logging.WARNING, logger="holdwatch.notifier.interactions"):
        _, text = await http.signed(body, secret="wrong")
    detail = json.loads(text)["detail"]
    assert "HOLDWATCH_SLACK_SIGNING_SECRET" in detail
    assert SECRET not in text and SECRET not in caplog.text
    assert "bad_signature" in caplog.text and "127.0.0.1" in caplog.text


async def test_a_blocked_sink_does_not_delay_the_200(http: HttpRig, sink: RecordingSink) -> None:
    sink.gate = asyncio.Event()
    assert await asyncio.wait_for(http.signed(command_form("status")), TIMEOUT) == (200, "")
    await sink.wait(lambda: len(sink.entered) == 1)
    assert sink.calls == []
    sink.gate.set()
    await sink.wait(lambda: len(sink.calls) == 1)


async def test_healthz_answers_and_other_paths_do_not(http: HttpRig) -> None:
    base = http.url.removesuffix("/slack/events")
    async with http.session.get(f"{base}/healthz") as response:
        assert response.status == 200
    async with http.session.get(http.url) as response:
        assert response.status == 405


def test_an_empty_signing_secret_is_refused(sink: RecordingSink, metrics: RecordingMetrics) -> None:
    with pytest.raises(ValueError, match="signing secret"):
        HttpTransport(" ", sink, metrics)


# --- answering the user, choosing the transport ---------------------------------------------------


async def test_the_responder_answers_through_response_url(slack_server: SlackTestServer) -> None:
    url = slack_server.response_url()
    assert await Responder().respond(url, text="Snoozed LD-A1 for 30 min")
    [answer] = slack_server.responses
    assert answer.url == url
    assert answer.body == {
        "text": "Snoozed LD-A1 for 30 min",
        "response_type": "ephemeral",
        "replace_original": False,
    }


async def test_a_failed_answer_is_false_not_raised(slack_server: SlackTestServer) -> None:
    responder = Responder(timeout_s=2)
    unknown = slack_server.response_url().rsplit("/", 1)[0] + "/999"
    assert not await responder.respond(unknown, text="x")
    assert not await responder.respond("", text="x")
    url = slack_server.response_url()
    await slack_server.stop()  # nothing listens there any more: the connection is refused
    assert not await responder.respond(url, text="x")


@dataclass(frozen=True)
class FakeSettings:
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None


@pytest.mark.parametrize(
    ("app_token", "secret", "expected"),
    [
        ("xapp-1", "s3cret", "socket"),
        ("xapp-1", None, "socket"),
        (None, "s3cret", "http"),
        ("", "s3cret", "http"),
        (None, None, None),
        ("", " ", None),
    ],
)
def test_socket_mode_is_chosen_whenever_an_app_token_is_set(
    app_token: str | None, secret: str | None, expected: str | None
) -> None:
    settings = FakeSettings(
        SecretStr(app_token) if app_token is not None else None,
        SecretStr(secret) if secret is not None else None,
    )
    assert choose_transport(settings) == expected


# --- the test server's side of authorisation --------------------------------------------------------


async def test_the_server_answers_the_methods_that_decide_who_may_act(slack_server: SlackTestServer) -> None:
    slack_server.members["C0DISPATCH"] = ["U0DISPATCH1", "U0DISPATCH2"]
    slack_server.usergroups["S0ONCALL"] = ["U0ONCALL"]
    slack_server.users["U0DISPATCH1"] = {"name": "sam", "real_name": "Sam Roy"}
    client = web_client(slack_server)
    page = await client.conversations_members(channel="C0DISPATCH", limit=1)
    assert page["members"] == ["U0DISPATCH1"] and page["response_metadata"]["next_cursor"]
    rest = await client.conversations_members(
        channel="C0DISPATCH", cursor=page["response_metadata"]["next_cursor"]
    )
    assert rest["members"] == ["U0DISPATCH2"]
    assert (await client.usergroups_users_list(usergroup="S0ONCALL"))["users"] == ["U0ONCALL"]
    user = (await client.users_info(user="U0DISPATCH1"))["user"]
    assert (user["name"], user["real_name"], user["tz"]) == ("sam", "Sam Roy", "America/Toronto")
    assert (await client.chat_postEphemeral(channel="C0DISPATCH", user="U0DISPATCH2", text="only you"))["ok"]
    assert slack_server.ephemerals[0]["user"] == "U0DISPATCH2"
    for call, error_code in [
        (client.conversations_members(channel="C0NOWHERE"), "channel_not_found"),
        (client.usergroups_users_list(usergroup="S0NONE"), "no_such_subteam"),
        (client.chat_postEphemeral(channel="C0DISPATCH", user="U0STRANGER", text="x"), "user_not_in_channel"),
        (client.apps_connections_open(app_token="xoxb-test"), "not_allowed_token_type"),
        (
            AsyncWebClient(token=APP_TOKEN, base_url=slack_server.base_url).auth_test(),
            "not_allowed_token_type",
        ),
    ]:
        with pytest.raises(Exception, match=error_code):
            await call


def test_a_click_payload_carries_the_message_and_the_action(slack_message: StoredMessage) -> None:
    click = block_actions_payload(message=slack_message, action_id="ack", response_url="https://hooks/x")
    assert click["type"] == "block_actions"
    assert click["container"] == {
        "type": "message",
        "message_ts": slack_message.ts,
        "channel_id": slack_message.channel,
        "is_ephemeral": False,
    }
    assert click["message"]["metadata"]["event_payload"] == {"key": "A1"}
    [action] = click["actions"]
    assert (action["type"], action["block_id"], action["value"]) == ("button", "alert_actions", "A1")
    [chosen] = block_actions_payload(message=slack_message, action_id="snooze", selected="30")["actions"]
    assert chosen["selected_option"] == {"value": "30", "text": {"type": "plain_text", "text": "30 min"}}


@pytest.fixture
def slack_message() -> StoredMessage:
    return StoredMessage(
        channel="C0DISPATCH",
        ts="1795000000.000100",
        text="LD-A1",
        blocks=[
            {
                "type": "actions",
                "block_id": "alert_actions",
                "elements": [
                    {"type": "button", "action_id": "ack", "value": "A1"},
                    {
                        "type": "static_select",
                        "action_id": "snooze",
                        "options": [{"value": "30", "text": {"type": "plain_text", "text": "30 min"}}],
                    },
                ],
            }
        ],
        metadata={"event_type": "holdwatch_alert", "event_payload": {"key": "A1"}},
    )
