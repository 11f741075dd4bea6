"""The notifier's inbound Slack transports: how a click or a slash command reaches it, and the answer.

Two ways in, one contract. Socket Mode (`SocketModeTransport`, the default: an outbound WebSocket, so
nothing listens in public) or Slack's HTTP Request URL (`HttpTransport`: every request is verified
against the signing secret before a byte of it is parsed, and a replay is refused). Both acknowledge
first and hand the payload to an `InteractionSink` in the background, because Slack gives an app
3 seconds and acting (Slack calls, the ledger) may take longer; the sink answers the user itself,
through the payload's `response_url` (`Responder`). `choose_transport` says which one runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger("holdwatch.notifier.interactions")

KINDS = ("interactive", "slash_commands")
"""What a sink is handed: a click or modal (`interactive`) or a slash command's fields."""

REJECTIONS = ("unsigned", "bad_signature", "stale", "replayed", "too_large", "malformed")
"""The `outcome` of a refused HTTP request (the others: "accepted"; Socket Mode's "ignored")."""

MAX_SKEW_S = 300
"""Slack's rule: a request signed more than 5 minutes from now is refused (it may be a replay)."""


class InteractionSink(Protocol):
    """Acts on a click or a slash command; runs after Slack was acknowledged, so it may be slow."""

    async def handle(self, kind: str, payload: dict[str, Any]) -> None: ...


class InteractionMetrics(Protocol):
    def request(self, transport: str, kind: str, outcome: str) -> None: ...

    def ack_latency(self, transport: str, seconds: float) -> None: ...


class NullInteractionMetrics:
    def request(self, transport: str, kind: str, outcome: str) -> None:
        pass

    def ack_latency(self, transport: str, seconds: float) -> None:
        pass


class InteractionSettings(Protocol):
    """The settings `choose_transport` reads (`streams.settings.Settings` has them)."""

    @property
    def slack_app_token(self) -> SecretStr | None: ...

    @property
    def slack_signing_secret(self) -> SecretStr | None: ...


def _present(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value().strip())


def choose_transport(settings: InteractionSettings) -> Literal["socket", "http"] | None:
    """Socket Mode whenever an app token is set (no public endpoint); the HTTP Request URL only with
    a signing secret and no app token; neither (no buttons, no slash command) without both."""
    if _present(settings.slack_app_token):
        return "socket"
    if _present(settings.slack_signing_secret):
        return "http"
    return None


class _Handoff:
    """The sink's calls, started after the ack: tracked so `stop` can wait for them (and cancel the
    stragglers), and so a failing sink is logged rather than raised into the transport."""

    def __init__(self, sink: InteractionSink, transport: str) -> None:
        self._sink = sink
        self._transport = transport
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, kind: str, payload: dict[str, Any], origin: str) -> None:
        task = asyncio.create_task(self._run(kind, payload, origin), name=f"slack-{self._transport}-{kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, kind: str, payload: dict[str, Any], origin: str) -> None:
        try:
            await self._sink.handle(kind, payload)
        except Exception:
            log.exception("handling a Slack %s payload failed (%s, %s)", kind, self._transport, origin)

    async def drain(self, timeout_s: float) -> None:
        """Let running handlers finish for `timeout_s`, then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        if pending:
            log.warning("cancelling %d Slack interaction handler(s) still running at stop", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class SocketModeRefused(RuntimeError):
    """Slack would not open a Socket Mode connection with this app token (a configuration fix)."""


class SocketModeTransport:
    """Clicks and slash commands over Socket Mode. The SDK client keeps the socket (pings, reconnects
    on "disconnect" and on a dead connection); every envelope is acknowledged before anything else."""

    name = "socket"

    def __init__(
        self,
        app_token: str,
        web_client: AsyncWebClient,
        sink: InteractionSink,
        metrics: InteractionMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        ping_interval_s: float = 5.0,
        drain_s: float = 5.0,
    ) -> None:
        self._app_token = app_token
        self._web_client = web_client
        self._metrics = metrics
        self._clock = clock
        self._ping_interval_s = ping_interval_s
        self._drain_s = drain_s
        self._handoff = _Handoff(sink, self.name)
        self._client: SocketModeClient | None = None

    async def start(self) -> None:
        """Connect; raises `SocketModeRefused` at once if Slack refuses the token. (A socket that will
        not open is retried by the SDK, every `ping_interval_s`, until it does.)"""
        if self._client is not None:
            raise RuntimeError("SocketModeTransport already started")
        client = SocketModeClient(
            app_token=self._app_token,
            web_client=self._web_client,
            logger=logging.getLogger("holdwatch.notifier.socket_mode"),
            ping_interval=self._ping_interval_s,
        )
        client.socket_mode_request_listeners.append(self._on_request)
        self._client = client
        try:
            await client.connect_to_new_endpoint()
        except SlackApiError as exc:
            await self._close_client()
            error = exc.response.get("error") if exc.response is not None else None
            raise SocketModeRefused(
                f"apps.connections.open refused the app token ({error}): Socket Mode needs an app-level "
                "token (xapp-...) with the connections:write scope, and Socket Mode enabled for the app"
            ) from exc

    async def stop(self) -> None:
        """Close the socket, then give running handlers `drain_s` to finish."""
        await self._close_client()
        await self._handoff.drain(self._drain_s)

    async def connected(self) -> bool:
        return self._client is not None and await self._client.is_connected()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        await client.close()  # type: ignore[no-untyped-call]  # the SDK's close() lacks annotations
        loops = [client.message_processor, client.message_receiver, client.current_session_monitor]
        await asyncio.gather(*(f for f in loops if f is not None), return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _on_request(self, client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        """Ack first (Slack's 3 s clock runs from the envelope), then hand the payload on. An ack
        that could not be sent hands nothing on: Slack redelivers the envelope, on the new socket."""
        started = self._clock()
        try:
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.warning("could not ack Slack envelope %s (%s): %r", request.envelope_id, request.type, exc)
            return
        self._metrics.ack_latency(self.name, self._clock() - started)
        if request.type not in KINDS:
            log.info("ignored a Slack %s envelope (not subscribed to by holdwatch)", request.type)
            self._metrics.request(self.name, request.type, "ignored")
            return
        self._metrics.request(self.name, request.type, "accepted")
        self._handoff.spawn(request.type, request.payload, f"envelope {request.envelope_id}")


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


class _ReplayGuard:
    """Signed requests already accepted, each kept until its timestamp would be stale anyway (so a
    replay is refused as long as it could pass the freshness check). Bounded: past `limit`, the
    entry closest to expiring is forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def first_use(self, key: tuple[str, str], *, expires: float, now: float) -> bool:
        while self._heap and self._heap[0][0] < now:
            self._expiry.pop(heapq.heappop(self._heap)[1], None)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self._limit:
            self._expiry.pop(heapq.heappop(self._heap)[1], None)
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))
        return True


def _parse(body: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """An interaction (`payload` = JSON) or a slash command (`command`), both form-encoded."""
    expected = "a form body with `payload` (interactivity) or `command` (slash command)"
    if content_type != "application/x-www-form-urlencoded":
        raise _Rejected(400, "malformed", f"expected {expected}, got Content-Type {content_type or 'none'}")
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=100
        )
    except (UnicodeDecodeError, ValueError) as exc:  # the message would quote the body: not echoed
        raise _Rejected(400, "malformed", f"expected {expected}; this is not form-encoded UTF-8") from exc
    if "payload" in fields:
        try:
            payload = json.loads(fields["payload"][0])
        except json.JSONDecodeError as exc:
            raise _Rejected(400, "malformed", f"the `payload` field is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise _Rejected(400, "malformed", "the `payload` field is not a JSON object")
        return "interactive", payload
    if fields.get("command", [""])[0]:
        return "slash_commands", {name: values[0] for name, values in fields.items()}
    raise _Rejected(400, "malformed", f"expected {expected}; Events API requests are not served here")


class HttpTransport:
    """Clicks and slash commands on Slack's HTTP Request URL (`POST /slack/events`, both on one URL,
    and `GET /healthz`). A request is size-capped, then verified, then parsed; 200 with an empty body
    goes out before the sink runs. Refusals are JSON `{"error", "detail"}` and a warning in the log."""

    name = "http"
    path = "/slack/events"

    def __init__(
        self,
        signing_secret: str,
        sink: InteractionSink,
        metrics: InteractionMetrics,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        max_body: int = 64 * 1024,
        drain_s: float = 5.0,
    ) -> None:
        """`clock` is unix time (signatures' freshness); `timer` only measures the ack latency."""
        if not signing_secret.strip():
            raise ValueError(
                "HttpTransport needs the app's signing secret: unsigned requests are never served"
            )
        self._secret = signing_secret.encode()
        self._metrics = metrics
        self._host = host
        self._port = port
        self._clock = clock
        self._timer = timer
        self._max_body = max_body
        self._drain_s = drain_s
        self._replays = _ReplayGuard()
        self._handoff = _Handoff(sink, self.name)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen on host:port (0: any free port); returns the port bound."""
        if self._runner is not None:
            raise RuntimeError("HttpTransport already started")
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post(self.path, self._events)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        port: int = runner.addresses[0][1]
        log.info("Slack interactions: listening on %s:%d%s", self._host, port, self.path)
        return port

    async def stop(self) -> None:
        """Stop listening, then give running handlers `drain_s` to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._handoff.drain(self._drain_s)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "transport": self.name})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        started = self._timer()
        try:
            body = await self._read(request)
            self._verify(request, body)
            kind, payload = _parse(body, request.content_type)
        except _Rejected as rejected:
            return self._refuse(request, rejected)
        response = web.Response(status=200)
        await response.prepare(request)
        await response.write_eof()
        self._metrics.ack_latency(self.name, self._timer() - started)
        self._metrics.request(self.name, kind, "accepted")
        self._handoff.spawn(kind, payload, f"request from {request.remote}")
        return response

    async def _read(self, request: web.Request) -> bytes:
        """The raw body, never more than `max_body` bytes of it (whatever Content-Length claims)."""
        too_large = (
            f"Slack's interaction payloads are far smaller than this server's limit of {self._max_body} bytes"
        )
        if request.content_length is not None and request.content_length > self._max_body:
            raise _Rejected(413, "too_large", f"Content-Length {request.content_length}: {too_large}")
        body = bytearray()
        while chunk := await request.content.read(self._max_body + 1 - len(body)):
            body += chunk
            if len(body) > self._max_body:
                raise _Rejected(413, "too_large", f"the body exceeds the limit: {too_large}")
        return bytes(body)

    def _verify(self, request: web.Request, body: bytes) -> None:
        """Slack's v0 signature over the raw bytes, its 5-minute window, and one use per signature."""
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not timestamp or not signature:
            raise _Rejected(
                401,
                "unsigned",
                "X-Slack-Request-Timestamp and X-Slack-Signature are required (Slack signs every request)",
            )
        if not timestamp.isascii() or not timestamp.isdigit():
            raise _Rejected(401, "unsigned", "X-Slack-Request-Timestamp is not unix time in seconds")
        now = self._clock()
        skew = now - int(timestamp)
        if abs(skew) > MAX_SKEW_S:
            raise _Rejected(
                401,
                "stale",
                f"signed {abs(skew):.0f} s {'before' if skew > 0 else 'after'} this server's clock "
                f"(at most {MAX_SKEW_S} s apart): "
                "a replayed request, or this host's clock is off (check NTP)",
            )
        digest = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        if not hmac.compare_digest(f"v0={digest.hexdigest()}".encode(), signature.encode("utf-8", "replace")):
            raise _Rejected(
                401,
                "bad_signature",
                "the signature does not match the signing secret: check HOLDWATCH_SLACK_SIGNING_SECRET "
                "against the Slack app's Basic Information page (and that nothing rewrites the body)",
            )
        if not self._replays.first_use((timestamp, signature), expires=int(timestamp) + MAX_SKEW_S, now=now):
            raise _Rejected(
                401, "replayed", "this signed request was already accepted once; Slack sends each once"
            )

    def _refuse(self, request: web.Request, rejected: _Rejected) -> web.StreamResponse:
        log.warning(
            "refused a Slack request: %s (%s) from %s", rejected.reason, rejected.detail, request.remote
        )
        self._metrics.request(self.name, "unknown", rejected.reason)
        return web.json_response(
            {"error": rejected.reason, "detail": rejected.detail}, status=rejected.status
        )


class Responder:
    """Answers the person who clicked or typed, through the payload's `response_url`: best effort,
    so a failure is logged and returned as False, never raised into the handler that acted."""

    def __init__(self, *, timeout_s: int = 10) -> None:
        self._timeout_s = timeout_s

    async def respond(
        self,
        response_url: str,
        *,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        ephemeral: bool = True,
        replace_original: bool = False,
    ) -> bool:
        if not response_url:
            log.warning("cannot answer the user: the payload carried no response_url")
            return False
        where = urlsplit(response_url).netloc  # the URL lets anyone post for 30 min: only its host is logged
        client = AsyncWebhookClient(response_url, timeout=self._timeout_s)
        try:
            answer = await client.send(
                text=text,
                blocks=blocks,
                response_type="ephemeral" if ephemeral else "in_channel",
                replace_original=replace_original,
            )
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning("answering the user through %s failed: %r", where, exc)
            return False
        if answer.status_code != 200:
            log.warning(
                "answering the user through %s: HTTP %d %s", where, answer.status_code, answer.body[:200]
            )
            return False
        return True
