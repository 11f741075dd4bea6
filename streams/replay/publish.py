"""`holdwatch replay`'s shell: sends the plan's actions (streams/replay/plan.py) through a
`Sender`, paces them (`--speed`), waits at the CARM barrier and reports progress.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol, TypeAlias

from schemas.envelope import Tick
from streams.kafka.config import admin_client
from streams.replay.plan import (
    DEFAULT_TICK_EVERY,
    TICK_VALUE_HEADERS,
    UNKNOWN_TOPIC,
    Action,
    Barrier,
    Pacer,
    ReplayTopics,
    Skip,
    TickAll,
    gap_tick_time,
)
from streams.replay.reader import Wire, batches

# --------------------------------------------------------------------------------------
# Shell: sending, barrier, progress
# --------------------------------------------------------------------------------------


class ReplayError(RuntimeError):
    """The replay could not publish (delivery failure, missing topic).

    `resume_line`: for a delivery failure, the first line of the concatenated logs that may be
    missing from the topics (every earlier one was acknowledged): `--from-line` resumes there.
    """

    def __init__(self, message: str, *, resume_line: int | None = None) -> None:
        super().__init__(message)
        self.resume_line = resume_line


class Sender(Protocol):
    """What the replay needs from a Kafka producer."""

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int | None,
        partition: int | None = None,
        line: int = 0,
    ) -> None:
        """Queue one record; `line` (in the concatenated logs) is named if it is not delivered."""

    def partitions(self, topic: str) -> list[int]: ...

    def flush(self) -> None:
        """Wait for every sent record; raise ReplayError if any failed."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BarrierOutcome:
    passed: bool
    waited_s: float
    detail: str


BarrierWait: TypeAlias = Callable[[Barrier], BarrierOutcome]


@dataclass(frozen=True, slots=True)
class WallClock:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    speed: float | None = None  # None = as fast as possible
    tick_every: int = DEFAULT_TICK_EVERY
    carm_barrier: bool = True
    progress_every_s: float = 2.0
    max_sleep_s: float = 60.0
    gap_tick_every_s: float = 1.0
    skip_messages_per_reason: int = 20


@dataclass
class ReplayReport:
    records: int = 0
    ticks: int = 0  # ticks (each one sent to every partition of the ticked topics)
    tick_messages: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    barrier: str = "none"  # none | passed | timed out | off
    first_event: datetime | None = None
    end: datetime | None = None  # the event time of the final tick
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
        lines = [
            f"replay {'INTERRUPTED' if self.interrupted else 'done'}: {self.records:,} records in "
            f"{self.seconds:,.1f} s ({self.rate:,.0f}/s)",
            f"  ticks: {self.ticks:,} ({self.tick_messages:,} messages), final tick at "
            f"{self.end.isoformat() if self.end else '-'}",
            f"  event time: {self.first_event.isoformat() if self.first_event else '-'} .. "
            f"{self.end.isoformat() if self.end else '-'}",
            f"  skipped lines: {skipped:,}" + (f" ({by_reason})" if by_reason else ""),
            f"  CARM barrier: {self.barrier}",
        ]
        if self.records == 0 and self.skipped[UNKNOWN_TOPIC]:
            lines.append("  hint: no line matched an input topic; check HOLDWATCH_TOPIC_EMANIFEST/_RNS/_CARM")
        return "\n".join(lines)


def _no_barrier(barrier: Barrier) -> BarrierOutcome:
    return BarrierOutcome(True, 0.0, "not checked")


class _Replay:
    """One run of the shell; kept as a class so that the loop reads top-down."""

    def __init__(
        self,
        topics: ReplayTopics,
        options: ReplayOptions,
        sender: Sender,
        wait_barrier: BarrierWait,
        wall: WallClock,
        say: Callable[[str], None],
    ) -> None:
        self.topics = topics
        self.options = options
        self.sender = sender
        self.wait_barrier = wait_barrier
        self.wall = wall
        self.say = say
        self.report = ReplayReport(barrier="on" if options.carm_barrier else "off")
        self.pacer = Pacer(options.speed, options.max_sleep_s) if options.speed else None
        self.partitions = {topic: self._partitions(topic) for topic in topics.ticked}
        self.record_partitions = {**self.partitions, topics.carm: self.sender.partitions(topics.carm)}
        self.clock: datetime | None = None
        self.next_line = 1  # the line after the last record sent: where a lost tick resumes
        self.started = wall.monotonic()
        self.next_progress = self.started + options.progress_every_s

    def _partitions(self, topic: str) -> list[int]:
        found = self.sender.partitions(topic)
        if not found:
            raise ReplayError(f"topic {topic} does not exist (run `holdwatch topics create`)")
        return found

    def run(self, actions: Iterable[Action]) -> ReplayReport:
        try:
            with batches(actions, self.record_partitions) as stream:
                for batch in stream:
                    for item in batch:
                        if isinstance(item, tuple):
                            self.publish(item)
                        else:
                            self.apply(item)
            self.sender.flush()
        except KeyboardInterrupt:
            self.report.interrupted = True
        finally:
            self.report.seconds = self.wall.monotonic() - self.started
        if self.report.barrier == "on":
            self.report.barrier = "not needed (no CARM record before a shipment event)"
        return self.report

    def apply(self, action: TickAll | Barrier | Skip) -> None:
        if isinstance(action, TickAll):
            self.send_tick(action)
        elif isinstance(action, Barrier):
            self.barrier(action)
        else:
            self.skip(action)

    def skip(self, action: Skip) -> None:
        count = self.report.skipped[action.reason] = self.report.skipped[action.reason] + 1
        limit = self.options.skip_messages_per_reason
        if count <= limit:
            self.say(f"{action.source}: skipped ({action.reason}): {action.detail}")
        if count == limit:
            self.say(f"replay: further {action.reason} lines are counted, not shown")

    def publish(self, record: Wire) -> None:
        topic, key, value, headers, partition, line, event_time, seq, source = record
        if self.pacer is not None and event_time is not None:
            self.pace(event_time, seq, source, line)
        self.sender.send(
            topic,
            key=key,
            value=value,
            headers=headers,
            timestamp_ms=None,  # the producer's wall time: retention counts from the replay
            partition=partition,  # None: the producer's partitioner (the reader may have run it)
            line=line,
        )
        self.next_line = line + 1
        report = self.report
        report.records += 1
        if event_time is not None:
            self.clock = event_time
            if report.first_event is None:
                report.first_event = event_time
        if report.records & 63 == 0:
            self.maybe_progress()

    def pace(self, event_time: datetime, seq: int, source: str, line: int) -> None:
        assert self.pacer is not None
        wall = self.wall
        wait, cut = self.pacer.delay(event_time, wall.monotonic())
        if cut:
            gap = event_time - (self.clock or event_time)
            self.say(
                f"replay: {gap} of event time without records before {source}; "
                f"waiting {self.options.max_sleep_s:g} s instead"
            )
        if wait < self.options.gap_tick_every_s:
            if wait > 0:
                wall.sleep(wait)
            return
        # A long wait: tick meanwhile, so that the pipeline releases what it holds and its
        # event clock keeps moving (deadlines fire in paced event time, not at the next record).
        deadline = wall.monotonic() + wait
        while (remaining := deadline - wall.monotonic()) > 0:
            when = gap_tick_time(self.clock, self.pacer.event_time_at(wall.monotonic()), event_time)
            self.send_tick(TickAll(self.topics.ticked, Tick(seq, when)), line=line)
            self.maybe_progress()
            wall.sleep(min(self.options.gap_tick_every_s, remaining))

    def send_tick(self, action: TickAll, *, line: int | None = None) -> None:
        """A tick to every partition; its event time is in its value, its Kafka timestamp the wall time."""
        value = action.tick.to_bytes()
        for topic in action.topics:
            for partition in self.partitions.get(topic) or self._partitions(topic):
                self.sender.send(
                    topic,
                    key=None,
                    value=value,
                    headers=TICK_VALUE_HEADERS,
                    timestamp_ms=None,
                    partition=partition,
                    line=self.next_line if line is None else line,
                )
                self.report.tick_messages += 1
        self.report.ticks += 1
        if action.tick.final:
            self.report.end = action.tick.time

    def barrier(self, action: Barrier) -> None:
        self.sender.flush()
        self.say(
            f"replay: {action.records:,} CARM records published; waiting for the pipeline to consume "
            f"them before the shipment events (--no-carm-barrier skips this)"
        )
        outcome = self.wait_barrier(action)
        self.report.barrier = (
            f"passed after {outcome.waited_s:.1f} s" if outcome.passed else f"TIMED OUT: {outcome.detail}"
        )

    def maybe_progress(self) -> None:
        now = self.wall.monotonic()
        if now < self.next_progress:
            return
        self.next_progress = now + self.options.progress_every_s
        elapsed = now - self.started
        rate = self.report.records / elapsed if elapsed > 0 else 0.0
        clock = self.clock.isoformat() if self.clock else "-"
        self.say(
            f"replay: {self.report.records:,} records, {rate:,.0f}/s, event time {clock}, "
            f"{elapsed:,.0f} s elapsed"
        )


def run_replay(
    actions: Iterable[Action],
    topics: ReplayTopics,
    options: ReplayOptions,
    sender: Sender,
    *,
    wait_barrier: BarrierWait = _no_barrier,
    wall: WallClock | None = None,
    say: Callable[[str], None] = print,
) -> ReplayReport:
    """Send the planned actions; returns the report (interrupted=True after Ctrl-C).

    Raises ReplayError when a record cannot be delivered or a topic is missing.
    """
    return _Replay(topics, options, sender, wait_barrier, wall or WallClock(), say).run(actions)


# --------------------------------------------------------------------------------------
# The CARM barrier against a real consumer group
# --------------------------------------------------------------------------------------


def barrier_lag(end: dict[int, int], committed: dict[int, int]) -> int:
    """Records of the topic the group has not committed yet (0 = the barrier is passed).

    An empty partition (end offset 0) needs no commit.
    """
    return sum(max(0, offset - committed.get(partition, 0)) for partition, offset in end.items())


def wait_for_group(
    end_offsets: dict[int, int],
    fetch_committed: Callable[[], dict[int, int]],
    *,
    group_id: str,
    topic: str,
    timeout_s: float,
    wall: WallClock | None = None,
    say: Callable[[str], None] = print,
    poll_s: float = 0.5,
    progress_every_s: float = 5.0,
) -> BarrierOutcome:
    """Poll the group's committed offsets until they reach `end_offsets` or time runs out.

    `fetch_committed` returns {partition: committed offset} (absent = nothing committed); it may
    raise while the group coordinator is loading: that counts as "not yet".
    """
    wall = wall or WallClock()
    started = wall.monotonic()
    next_progress = started + progress_every_s
    total = sum(end_offsets.values())
    committed: dict[int, int] = {}
    last_error = ""
    while True:
        try:
            committed = fetch_committed()
            last_error = ""
        except Exception as exc:  # noqa: BLE001 - the coordinator may be loading; keep polling
            last_error = f"{type(exc).__name__}: {exc}"
        lag = barrier_lag(end_offsets, committed)
        now = wall.monotonic()
        waited = now - started
        if lag == 0:
            return BarrierOutcome(True, waited, f"group {group_id} consumed {topic}")
        if waited >= timeout_s:
            if not committed:
                detail = (
                    f"consumer group {group_id!r} has committed no offsets on {topic} after {timeout_s:g} s: "
                    "the pipeline may not be running (start `holdwatch worker`). Continuing without the "
                    "barrier: shipment events may overtake the CARM snapshots, so the alerts are not "
                    "guaranteed to equal the back-test's."
                )
            else:
                detail = (
                    f"consumer group {group_id!r} is still {lag:,} of {total:,} records behind on {topic} "
                    f"after {timeout_s:g} s. Continuing: shipment events may overtake the CARM snapshots, "
                    "so the alerts are not guaranteed to equal the back-test's."
                )
            if last_error:
                detail += f" (last error: {last_error})"
            say(f"WARNING: {detail}")
            return BarrierOutcome(False, waited, detail)
        if now >= next_progress:
            next_progress = now + progress_every_s
            state = "no commits yet" if not committed else f"{total - lag:,}/{total:,} records committed"
            say(f"replay: waiting for consumer group {group_id!r} on {topic}: {state}, {waited:.0f} s")
        wall.sleep(poll_s)


# --------------------------------------------------------------------------------------
# kafka-python adapters
# --------------------------------------------------------------------------------------

PRODUCER_TUNING: Final[dict[str, Any]] = {
    "acks": "all",
    "enable_idempotence": True,  # keeps per-partition order across retries: ticks rely on it
    "linger_ms": 100,  # ~1,200 records per produce request at full speed (20 ms: ~300): 10 % less CPU
    "batch_size": 512 * 1024,
    "compression_type": None,  # lz4/zstd need extra packages; no gain on a local broker
    "allow_auto_create_topics": False,  # topics come from ensure_topics, with the right partitions
}
MAX_IN_FLIGHT_RECORDS: Final = 20_000
"""kafka-python 3 has no buffer_memory bound: replay waits for the oldest record beyond this."""


CRC32C_CHECK: Final = (b"123456789", 0xE3069283)
"""CRC-32C's standard check value: a compiled implementation must give it."""


def use_compiled_crc32c() -> bool:
    """Give kafka-python a compiled CRC-32C if it has none; True if it has one now.

    Why: kafka-python checksums every record batch it builds, and without the optional `crc32c`
    package it does so in pure Python (~7 MB/s): half of a replay's producer time. aiokafka, a
    dependency of the worker, ships a compiled one. kafka-python's record module looks the
    function up at call time, so replacing it there is enough; the result is the same checksum.
    """
    from kafka.record import default_records, util

    if util.crc32c_c is not None:  # the crc32c package is installed: kafka-python uses it already
        return True
    try:
        from aiokafka.record._crecords import crc32c_cython
    except ImportError:  # aiokafka built without its extensions: keep the pure-Python one
        return False
    data, expected = CRC32C_CHECK
    if crc32c_cython(memoryview(data)) != expected:
        return False
    default_records.calc_crc32c = crc32c_cython
    return True


DEFAULT_BROKER_TIMEOUT_S: Final = 300.0
OUTAGE_NOTICE_AFTER_S: Final = 5.0
"""An acknowledgement this late means the broker is away (a healthy local one answers in ms)."""


def producer_timeouts(broker_timeout_s: float) -> dict[str, int]:
    """kafka-python timeouts so that it retries a record for `broker_timeout_s`, then fails it.

    delivery_timeout_ms bounds the retries of a queued record, max_block_ms a send() that waits
    for metadata; kafka-python wants delivery_timeout_ms >= linger_ms + request_timeout_ms.
    """
    total_ms = max(1000, int(broker_timeout_s * 1000))
    request_ms = min(30_000, max(500, total_ms // 2))
    delivery_ms = max(total_ms, request_ms + int(PRODUCER_TUNING["linger_ms"]) + 1)
    return {"delivery_timeout_ms": delivery_ms, "request_timeout_ms": request_ms, "max_block_ms": total_ms}


@dataclass(slots=True)
class _InFlight:
    future: Any
    line: int
    sent_at: float


@dataclass(slots=True)
class DeliveryLedger:
    """What was not acknowledged: how many records, the first line and the first error."""

    failed: int = 0
    first_line: int | None = None
    first_error: BaseException | None = None

    def record(self, line: int, error: BaseException) -> None:
        self.failed += 1
        self.first_line = line if self.first_line is None else min(self.first_line, line)
        if self.first_error is None:
            self.first_error = error

    def error(self) -> ReplayError:
        assert self.first_error is not None and self.first_line is not None
        return ReplayError(
            f"{self.failed:,} record(s) were not acknowledged by the broker (first error: "
            f"{type(self.first_error).__name__}: {self.first_error}). Every line before line "
            f"{self.first_line:,} of the logs was delivered; resume with the same logs and "
            f"--from-line {self.first_line}",
            resume_line=self.first_line,
        )


class KafkaPythonSender:
    """`Sender` over kafka-python's KafkaProducer: no record is taken as sent until acknowledged.

    kafka-python retries a record on transient errors (a broker restart: connection refused,
    NOT_LEADER, ...) for `broker_timeout_s`; meanwhile an acknowledgement overdue by 5 s is
    reported as an outage. Keeps the futures of the last `max_in_flight` records (constant
    memory); the first failed one stops the replay: the rest in flight are settled, and
    ReplayError names how many failed and the first line to resume from.
    """

    def __init__(
        self,
        producer: Any,
        *,
        max_in_flight: int = MAX_IN_FLIGHT_RECORDS,
        broker_timeout_s: float = DEFAULT_BROKER_TIMEOUT_S,
        say: Callable[[str], None] = print,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._window: deque[_InFlight] = deque()
        self._max_in_flight = max_in_flight
        self._broker_timeout_s = broker_timeout_s
        self._say = say
        self._monotonic = monotonic
        self._next_notice = 0.0
        self.ledger = DeliveryLedger()

    @classmethod
    def create(
        cls, config: dict[str, Any], *, broker_timeout_s: float = DEFAULT_BROKER_TIMEOUT_S,
        say: Callable[[str], None] = print,
    ) -> KafkaPythonSender:  # fmt: skip
        from kafka import KafkaProducer

        use_compiled_crc32c()
        producer = KafkaProducer(
            client_id="holdwatch-replay", **PRODUCER_TUNING, **producer_timeouts(broker_timeout_s), **config
        )
        return cls(producer, broker_timeout_s=broker_timeout_s, say=say)

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int | None,
        partition: int | None = None,
        line: int = 0,
    ) -> None:
        now = self._monotonic()
        try:
            future = self._producer.send(
                topic, value=value, key=key, headers=headers, partition=partition, timestamp_ms=timestamp_ms
            )
        except Exception as exc:  # noqa: BLE001 - e.g. no metadata within --broker-timeout
            self.ledger.record(line, exc)
            self._stop()
        window = self._window
        window.append(_InFlight(future, line, now))
        while window and window[0].future.is_done:  # settle what is acknowledged, in order
            self._settle(window.popleft())
        if len(window) > self._max_in_flight:
            self._settle(window.popleft())
        elif window and len(window) & 255 == 0:
            self._notice_outage(window[0])
        if self.ledger.failed:
            self._stop()

    def partitions(self, topic: str) -> list[int]:
        return sorted(self._producer.partitions_for(topic) or ())

    def flush(self) -> None:
        """Wait until every record is acknowledged; ReplayError if any was not."""
        while self._window:
            self._settle(self._window.popleft())
        if self.ledger.failed:
            raise self.ledger.error()

    def close(self) -> None:
        self._producer.close(timeout=10)

    def _stop(self) -> None:
        """Settle what is in flight (to count it), then end the replay with the ledger's error."""
        self.flush()
        raise self.ledger.error()  # flush raised already unless the ledger was filled just now

    def _settle(self, entry: _InFlight) -> None:
        """Wait for one record, telling of an outage while its acknowledgement is overdue."""
        future = entry.future
        if future.is_done:  # the common case, on the hot path: nothing to wait for
            if future.failed():
                self.ledger.record(entry.line, future.exception)
            return
        from kafka.errors import KafkaTimeoutError

        give_up_at = entry.sent_at + self._broker_timeout_s + 30.0  # kafka-python gives up first
        while not future.is_done:
            try:
                future.get(timeout=1.0)
            except KafkaTimeoutError:
                if not future.is_done:
                    self._notice_outage(entry)
                    if self._monotonic() >= give_up_at:
                        self.ledger.record(entry.line, KafkaTimeoutError("no acknowledgement"))
                        return
            except Exception:  # noqa: BLE001 - a failed delivery: recorded just below
                break
        if future.failed():
            self.ledger.record(entry.line, future.exception)

    def _notice_outage(self, oldest: _InFlight) -> None:
        now = self._monotonic()
        overdue = now - oldest.sent_at
        if overdue < OUTAGE_NOTICE_AFTER_S or now < self._next_notice:
            return
        self._next_notice = now + OUTAGE_NOTICE_AFTER_S
        self._say(
            f"replay: broker unreachable since {overdue:.0f} s (no acknowledgement), retrying … "
            f"(gives up after {self._broker_timeout_s:g} s, --broker-timeout)"
        )


def kafka_barrier(
    config: dict[str, Any],
    group_id: str,
    timeout_s: float,
    *,
    then_topics: Sequence[str] = (),
    say: Callable[[str], None] = print,
    wall: WallClock | None = None,
) -> BarrierWait:
    """A barrier wait against `group_id`'s committed offsets, via kafka-python clients.

    First the CARM topic; then, in order, each of `then_topics` that exists, with its end
    offsets taken once the previous stage has passed. The pipeline re-publishes CARM records to
    an internal topic (streams/topics.py `control_topic`) that its shipment partitions read next
    to the shipment events; the CARM topic's commits alone only say that the broadcast was sent
    (Faust flushes its producer before committing), not that the shipment partitions applied it.
    """
    wall = wall or WallClock()

    def wait(barrier: Barrier) -> BarrierOutcome:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            client_id="holdwatch-replay-barrier",
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            **config,
        )
        admin = admin_client(config, client_id="holdwatch-replay-barrier")
        started = wall.monotonic()
        try:
            for stage, topic in enumerate([barrier.topic, *then_topics]):
                found = consumer.partitions_for_topic(topic)
                if not found:
                    if stage == 0:
                        raise ReplayError(f"topic {topic} does not exist")
                    continue  # no such internal topic: a pipeline without it
                partitions = [TopicPartition(topic, p) for p in sorted(found)]
                end = {tp.partition: int(offset) for tp, offset in consumer.end_offsets(partitions).items()}

                def committed(topic: str = topic, partitions: list[Any] = partitions) -> dict[int, int]:
                    offsets = admin.list_group_offsets({group_id: partitions}).get(group_id, {})
                    return {
                        tp.partition: int(meta.offset)
                        for tp, meta in offsets.items()
                        if tp.topic == topic and meta.offset is not None and meta.offset >= 0
                    }

                outcome = wait_for_group(
                    end,
                    committed,
                    group_id=group_id,
                    topic=topic,
                    timeout_s=max(0.0, timeout_s - (wall.monotonic() - started)),
                    wall=wall,
                    say=say,
                )
                if not outcome.passed:
                    return BarrierOutcome(False, wall.monotonic() - started, outcome.detail)
            return BarrierOutcome(
                True, wall.monotonic() - started, f"group {group_id} applied the CARM records"
            )
        finally:
            admin.close()
            consumer.close(autocommit=False)

    return wait
