"""The BorderConnect connector's shell: the WebSocket, reconnects, publishing, dead letters, metrics.

What each message becomes is `streams.feeds.borderconnect_map` (pure, one table); this module only
moves frames:

1. connect to HOLDWATCH_BORDERCONNECT_URL and send the API key in the first message (the only place
   the key ever goes: it is never logged, and is not in any error or metric);
2. the server's `API_RESPONSE` answers the handshake: `OK` → connected; `ACCESS_DENIED_ERROR` →
   `AccessDenied`, the process stops (exit 2) and never retries a bad key in a loop;
3. each frame is mapped; events are published with their CCN as the key on the emanifest or rns
   topic by an idempotent producer (acks=all) and confirmed before the next frame is read; what
   the mapping does not understand goes to the dead-letter topic with the raw text and the reason;
4. a dropped connection is retried after a jittered exponential backoff (reset once a connection
   has stayed up); Kafka send failures are retried the same way, the frame held meanwhile, so a
   received message is never dropped while the process lives.

Messages re-sent after a reconnect give the same event ids (content digests); the connector skips
the ids it published recently, and the pipeline drops any it did not (after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.deadletter import encode_dead_letter, make_dead_letter
from schemas.decode import DeadLetterReason, Rejected, TopicKind
from streams.feeds.borderconnect_map import (
    API_RESPONSE,
    MESSAGE_TYPES,
    ApiStatus,
    Context,
    Ignored,
    Mapped,
    Publish,
    Unusable,
    dead_letter_digest,
    map_message,
    message_type_label,
)
from streams.settings import Settings

log = logging.getLogger("holdwatch.borderconnect")

DEAD_LETTER_SOURCE: Final = "borderconnect"
"""`source_topic` of the connector's dead letters: the frame came from the WebSocket, not a topic."""
MESSAGE_OUTCOMES: Final = ("published", "duplicate", "ignored", "dead_lettered")
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
"""Frames up to this size are received (and a too-large one dead-lettered) rather than breaking the
connection, which would make the server send it again and again."""
DEAD_LETTER_VALUE_BYTES: Final = 512 * 1024
"""A dead letter keeps at most this much of the frame: the record must fit Kafka's 1 MB default."""
CONNECTION_OUTCOMES: Final = ("accepted", "denied", "failed")


class AccessDenied(Exception):
    """BorderConnect refused the API key: stop, do not reconnect."""


# --- metrics --------------------------------------------------------------------------------------


class ConnectorMetrics:
    """The connector's Prometheus families, on an injected registry, every series at 0 from the start.

    The self-alert (HoldwatchBorderConnectDisconnected) compares the time since
    `disconnected_since` with `disconnected_alert_threshold`, which carries
    HOLDWATCH_BORDERCONNECT_DISCONNECTED_ALERT_MIN: the setting is the alert's threshold."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        disconnected_alert_s: float = 600.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._now = now
        self._up = False
        self.connected = Gauge(
            "holdwatch_borderconnect_connected",
            "1 while the BorderConnect WebSocket is open and its handshake accepted, else 0",
            registry=registry,
        )
        self.disconnected_since = Gauge(
            "holdwatch_borderconnect_disconnected_since_timestamp_seconds",
            "When the current disconnection began (the process start before a first connection); 0 while "
            "connected",
            registry=registry,
        )
        self.disconnected_alert_threshold = Gauge(
            "holdwatch_borderconnect_disconnected_alert_threshold_seconds",
            "HOLDWATCH_BORDERCONNECT_DISCONNECTED_ALERT_MIN in seconds: the self-alert fires past it",
            registry=registry,
        )
        self.last_message = Gauge(
            "holdwatch_borderconnect_last_message_timestamp_seconds",
            "When the last BorderConnect message was received (0: none yet)",
            registry=registry,
        )
        self.messages = Counter(
            "holdwatch_borderconnect_messages",
            "BorderConnect messages received, by type (`data`, else other) and outcome",
            ["type", "outcome"],
            registry=registry,
        )
        self.connection_attempts = Counter(
            "holdwatch_borderconnect_connection_attempts",
            "WebSocket connection attempts, by outcome (accepted, denied: bad API key, failed)",
            ["outcome"],
            registry=registry,
        )
        self.publish_retries = Counter(
            "holdwatch_borderconnect_publish_retries",
            "Kafka sends of a received message retried after a failure",
            registry=registry,
        )
        for kind in MESSAGE_TYPES:
            for outcome in MESSAGE_OUTCOMES:
                self.messages.labels(kind, outcome)
        for outcome in CONNECTION_OUTCOMES:
            self.connection_attempts.labels(outcome)
        self.disconnected_alert_threshold.set(disconnected_alert_s)
        self.disconnected_since.set(now())

    def attempt(self, outcome: str) -> None:
        self.connection_attempts.labels(outcome).inc()

    def up(self) -> None:
        self._up = True
        self.connected.set(1)
        self.disconnected_since.set(0)

    def down(self) -> None:
        if self._up:  # the disconnection starts now; a failed retry keeps the start it had
            self.disconnected_since.set(self._now())
        self._up = False
        self.connected.set(0)

    def received(self) -> None:
        self.last_message.set(self._now())

    def message(self, kind: str, outcome: str) -> None:
        self.messages.labels(message_type_label(kind), outcome).inc()

    def publish_retried(self) -> None:
        self.publish_retries.inc()


# --- backoff --------------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, draw: float) -> float:
    """Seconds before retry number `attempt` (0-based): exponential, capped, jittered into its upper
    half (`draw` in [0, 1)), so reconnecting clients spread out yet never retry in a tight loop."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 62))
    return ceiling * (0.5 + 0.5 * draw)


@dataclass
class Backoff:
    base_s: float = 1.0
    cap_s: float = 60.0
    draw: Callable[[], float] = random.random
    attempt: int = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempt, base_s=self.base_s, cap_s=self.cap_s, draw=self.draw())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


# --- the sink -------------------------------------------------------------------------------------

KafkaRecord = tuple[str, bytes | None, bytes]
"""(topic, key, value)."""


class Sink(Protocol):
    async def start(self) -> None: ...

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        """Publish the records; return once the broker confirmed every one (raise otherwise)."""

    async def stop(self) -> None: ...


class KafkaSink:
    """An idempotent aiokafka producer, acks=all: a retried batch is never written twice."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        from streams.kafka.config import aiokafka_config

        producer = AIOKafkaProducer(
            **aiokafka_config(self.settings), acks="all", enable_idempotence=True, linger_ms=0
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        futures = [await self.producer.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None


def _transient_errors() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import KafkaError

    return (KafkaError, TimeoutError, OSError)


# --- settings -------------------------------------------------------------------------------------


def settings_problems(settings: Settings) -> list[str]:
    """What keeps the connector from starting, said plainly (never the key itself)."""
    problems = []
    scheme = urlsplit(settings.borderconnect_url).scheme
    if not settings.borderconnect_url:
        problems.append("set HOLDWATCH_BORDERCONNECT_URL (wss://<host>/api/sockets/<account>)")
    elif scheme not in ("ws", "wss"):
        problems.append(
            f"HOLDWATCH_BORDERCONNECT_URL must start with wss:// (or ws://), not {scheme or '?'}://"
        )
    if settings.borderconnect_api_key is None or not settings.borderconnect_api_key.get_secret_value():
        problems.append("set HOLDWATCH_BORDERCONNECT_API_KEY (BorderConnect account preferences)")
    try:
        ZoneInfo(settings.feed_local_tz)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"HOLDWATCH_FEED_LOCAL_TZ={settings.feed_local_tz!r} is not an IANA time zone")
    bad = {
        key: code for key, code in settings.borderconnect_company_keys.items() if not key or len(code) != 4
    }
    if bad:
        problems.append(
            "HOLDWATCH_BORDERCONNECT_COMPANY_KEYS maps each company key to a 4-character carrier code; "
            f"wrong: {sorted(bad)}"
        )
    return problems


def mapping_context(settings: Settings) -> Context:
    return Context(
        tz=ZoneInfo(settings.feed_local_tz),
        company_keys={key: code.upper() for key, code in settings.borderconnect_company_keys.items()},
    )


def shown_url(url: str) -> str:
    """The endpoint for logs: no query string or user info, in case someone put a secret there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- the connector --------------------------------------------------------------------------------


class _Seen:
    """Ids published recently (bounded): a message re-sent after a reconnect is not published again."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class Stopped(Exception):
    """The stop event was set while a frame waited to be published."""


@dataclass
class Clocks:
    """Injected time: `wall` (aware UTC, for dead letters), `monotonic` (durations), `sleep`."""

    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class BorderConnectConnector:
    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        *,
        metrics: ConnectorMetrics | None = None,
        backoff: Backoff | None = None,
        clocks: Clocks | None = None,
        handshake_timeout_s: float = 30.0,
        heartbeat_s: float = 30.0,
        stable_after_s: float = 60.0,
    ) -> None:
        assert settings.borderconnect_api_key is not None
        self.settings = settings
        self.sink = sink
        self.metrics = metrics or ConnectorMetrics(CollectorRegistry())
        self.backoff = backoff or Backoff()
        self.publish_backoff = Backoff(
            base_s=self.backoff.base_s, cap_s=self.backoff.cap_s, draw=self.backoff.draw
        )
        self.clocks = clocks or Clocks()
        self.context = mapping_context(settings)
        self.handshake_timeout_s = handshake_timeout_s
        self.heartbeat_s = heartbeat_s
        self.stable_after_s = stable_after_s
        self.topics = {TopicKind.EMANIFEST: settings.topic_emanifest, TopicKind.RNS: settings.topic_rns}
        self.seen = _Seen()
        self.url = settings.borderconnect_url

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the connection until `stop` is set; raises AccessDenied on a refused key."""
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                started = self.clocks.monotonic()
                accepted = False
                try:
                    accepted = await self._session(session, stop)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.metrics.attempt("failed")
                    log.warning("borderconnect: cannot connect to %s: %s", shown_url(self.url), _said(exc))
                except Stopped:
                    break
                finally:
                    self.metrics.down()
                if stop.is_set():
                    break
                if accepted and self.clocks.monotonic() - started >= self.stable_after_s:
                    self.backoff.reset()
                delay = self.backoff.next_delay()
                log.info("borderconnect: reconnecting in %.1f s", delay)
                await self._pause(delay, stop)

    async def _pause(self, seconds: float, stop: asyncio.Event) -> None:
        await pause(self.clocks, seconds, stop)

    async def _session(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> bool:
        """One connection: handshake, then frames until it ends. True once the handshake was accepted."""
        async with session.ws_connect(
            self.url, heartbeat=self.heartbeat_s, autoping=True, max_msg_size=MAX_FRAME_BYTES
        ) as ws:
            closer = asyncio.ensure_future(self._close_on(stop, ws))
            try:
                return await self._converse(ws, stop)
            finally:
                closer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await closer

    @staticmethod
    async def _close_on(stop: asyncio.Event, ws: aiohttp.ClientWebSocketResponse) -> None:
        await stop.wait()
        await ws.close()

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> bool:
        key = self.settings.borderconnect_api_key
        assert key is not None
        await ws.send_str(json.dumps({"apiKey": key.get_secret_value()}))
        first: tuple[str | None, bytes, Mapped | None] | None = None
        try:
            answer = await asyncio.wait_for(ws.receive(), self.handshake_timeout_s)
        except TimeoutError:
            # BorderConnect answers the handshake [3p]; a server that does not, yet keeps the socket
            # open, has not refused the key: carry on (the heartbeat finds a dead connection).
            log.warning(
                "borderconnect: no answer to the handshake in %.0f s; the key was not refused, carrying on",
                self.handshake_timeout_s,
            )
        else:
            frame = _frame(answer)
            if frame is None:
                self.metrics.attempt("failed")
                if not stop.is_set():
                    log.warning(
                        "borderconnect: the server closed the connection during the handshake (%s)",
                        _closed(ws),
                    )
                return False
            text, raw = frame
            mapped = map_message(text, self.context) if text is not None else None
            if isinstance(mapped, ApiStatus):
                self.metrics.received()
                self.metrics.message(API_RESPONSE, "ignored")
                if mapped.verdict == "denied":
                    self.metrics.attempt("denied")
                    raise AccessDenied(mapped.message or mapped.status)
                if mapped.verdict != "accepted":
                    self.metrics.attempt("failed")
                    log.warning(
                        "borderconnect: the handshake was answered %s: %s", mapped.status, mapped.message
                    )
                    return False
            else:  # data at once, no API_RESPONSE: the server took the key
                first = (text, raw, mapped)
        self.metrics.attempt("accepted")
        self.metrics.up()
        self.publish_backoff.reset()
        log.info("borderconnect: connected to %s", shown_url(self.url))
        if first is not None:
            await self._handle(*first, stop)
        while True:
            message = await ws.receive()
            frame = _frame(message)
            if frame is None:
                if not stop.is_set():
                    log.warning("borderconnect: the connection ended (%s)", _closed(ws))
                return True
            text, raw = frame
            await self._handle(text, raw, map_message(text, self.context) if text is not None else None, stop)

    async def _handle(self, text: str | None, raw: bytes, mapped: Mapped | None, stop: asyncio.Event) -> None:
        """One frame: publish its events, or dead-letter it, or count it ignored."""
        self.metrics.received()
        if mapped is None:  # a binary frame that is not UTF-8
            mapped = Unusable(None, DeadLetterReason.NOT_UTF8, "frame: binary and not UTF-8")
        if isinstance(mapped, ApiStatus):
            if mapped.verdict == "denied":
                self.metrics.message(API_RESPONSE, "ignored")
                raise AccessDenied(mapped.message or mapped.status)
            log.info("borderconnect: API_RESPONSE %s: %s", mapped.status, mapped.message)
            self.metrics.message(API_RESPONSE, "ignored")
        elif isinstance(mapped, Ignored):
            log.info(
                "borderconnect: %s ignored: %s%s",
                mapped.data,
                mapped.why,
                f": {mapped.note}" if mapped.note else "",
            )
            self.metrics.message(mapped.data, "ignored")
        elif isinstance(mapped, Unusable):
            await self._dead_letter(mapped, text, raw, stop)
        else:
            await self._publish(mapped, stop)

    async def _publish(self, mapped: Publish, stop: asyncio.Event) -> None:
        fresh = [record for record in mapped.records if record.event.event_id not in self.seen]
        if not fresh:
            self.metrics.message(mapped.data, "duplicate")
            return
        records = [
            (self.topics[record.topic], record.key.encode(), record.event.model_dump_json().encode())
            for record in fresh
        ]
        await self._deliver(records, mapped.data, stop)
        for record in fresh:
            self.seen.add(record.event.event_id)
        self.metrics.message(mapped.data, "published")

    async def _dead_letter(self, mapped: Unusable, text: str | None, raw: bytes, stop: asyncio.Event) -> None:
        digest = dead_letter_digest(raw)
        kind = mapped.data or "other"
        if digest in self.seen:
            self.metrics.message(kind, "duplicate")
            return
        log.warning("borderconnect: dead-letter (type %s): %s: %s", kind, mapped.reason, mapped.detail)
        key = mapped.key.encode() if mapped.key else None
        detail = mapped.detail
        if len(raw) > DEAD_LETTER_VALUE_BYTES:
            detail = f"{detail} (value cut to its first {DEAD_LETTER_VALUE_BYTES} of {len(raw)} bytes)"
            raw = raw[:DEAD_LETTER_VALUE_BYTES]
        letter = make_dead_letter(
            Rejected(mapped.reason, detail),
            topic=DEAD_LETTER_SOURCE,
            partition=None,
            offset=None,
            key=key,
            value=raw,
            timestamp_ms=None,
            now=self.clocks.wall(),
        )
        await self._deliver([(self.settings.topic_deadletter, key, encode_dead_letter(letter))], kind, stop)
        self.seen.add(digest)
        self.metrics.message(kind, "dead_lettered")

    async def _deliver(self, records: Sequence[KafkaRecord], kind: str, stop: asyncio.Event) -> None:
        """Send until the broker confirms; the frame is held (the socket not read) meanwhile."""
        transient = _transient_errors()
        while True:
            try:
                await self.sink.send(records)
            except transient as exc:
                self.metrics.publish_retried()
                delay = self.publish_backoff.next_delay()
                log.error(
                    "borderconnect: publishing a %s message failed (%s); retrying in %.1f s",
                    kind,
                    _said(exc),
                    delay,
                )
                await self._pause(delay, stop)
                if stop.is_set():
                    log.error("borderconnect: stopped with a %s message unpublished", kind)
                    raise Stopped from exc
            else:
                self.publish_backoff.reset()
                return


async def pause(clocks: Clocks, seconds: float, stop: asyncio.Event) -> None:
    """The injected sleep, cut short by `stop`."""
    sleeper = asyncio.ensure_future(clocks.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _frame(message: aiohttp.WSMessage) -> tuple[str | None, bytes] | None:
    """(text or None if not UTF-8, raw bytes) of a data frame; None when the connection ended."""
    if message.type is aiohttp.WSMsgType.TEXT:
        text: str = message.data
        return text, text.encode("utf-8", "surrogatepass")
    if message.type is aiohttp.WSMsgType.BINARY:
        raw: bytes = message.data
        try:
            return raw.decode("utf-8"), raw
        except UnicodeDecodeError:
            return None, raw
    return None


def _closed(ws: aiohttp.ClientWebSocketResponse) -> str:
    code = ws.close_code
    error = ws.exception()
    return f"close code {code}" + (f", {_said(error)}" if error is not None else "")


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def start_sink(sink: Sink, backoff: Backoff, clocks: Clocks, stop: asyncio.Event) -> bool:
    """Start the sink, waiting out an unreachable broker; False if stopped first."""
    transient = _transient_errors()
    while not stop.is_set():
        try:
            await sink.start()
        except transient as exc:
            delay = backoff.next_delay()
            log.error("borderconnect: Kafka is not reachable (%s); retrying in %.1f s", _said(exc), delay)
            await pause(clocks, delay, stop)
        else:
            backoff.reset()
            return True
    return False


async def run_borderconnect(
    settings: Settings,
    *,
    stop: asyncio.Event,
    metrics: ConnectorMetrics | None = None,
    sink: Sink | None = None,
    backoff: Backoff | None = None,
    clocks: Clocks | None = None,
    handshake_timeout_s: float = 30.0,
    heartbeat_s: float = 30.0,
    stable_after_s: float = 60.0,
) -> None:
    """The connector until `stop` is set (an asyncio task in any process); raises AccessDenied,
    or ValueError for settings it cannot start with. `sink` replaces the Kafka producer built
    from the settings."""
    problems = settings_problems(settings)
    if problems:
        raise ValueError("; ".join(problems))
    sink = sink or KafkaSink(settings)
    backoff = backoff or Backoff()
    clocks = clocks or Clocks()
    if not await start_sink(sink, backoff, clocks, stop):
        return
    try:
        connector = BorderConnectConnector(
            settings,
            sink,
            metrics=metrics,
            backoff=backoff,
            clocks=clocks,
            handshake_timeout_s=handshake_timeout_s,
            heartbeat_s=heartbeat_s,
            stable_after_s=stable_after_s,
        )
        await connector.run(stop)
    finally:
        await sink.stop()
