"""`holdwatch replay`'s shell: sends the plan's actions (streams/replay/plan.py) through a
`Sender`, paces them (`--speed`), waits at the CARM barrier and reports progress.
"""

from __future__ import annotations

import contextlib
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
    Publish,
    ReplayTopics,
    Skip,
    TickAll,
    epoch_ms,
    gap_tick_time,
)

# --------------------------------------------------------------------------------------
# Shell: sending, barrier, progress
# --------------------------------------------------------------------------------------


class ReplayError(RuntimeError):
    """The replay could not publish (delivery failure, missing topic)."""


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
    ) -> None: ...

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
        self.clock: datetime | None = None
        self.started = wall.monotonic()
        self.next_progress = self.started + options.progress_every_s

    def _partitions(self, topic: str) -> list[int]:
        found = self.sender.partitions(topic)
        if not found:
            raise ReplayError(f"topic {topic} does not exist (run `holdwatch topics create`)")
        return found

    def run(self, actions: Iterable[Action]) -> ReplayReport:
        try:
            for action in actions:
                self.apply(action)
            self.sender.flush()
        except KeyboardInterrupt:
            self.report.interrupted = True
        finally:
            self.report.seconds = self.wall.monotonic() - self.started
        if self.report.barrier == "on":
            self.report.barrier = "not needed (no CARM record before a shipment event)"
        return self.report

    def apply(self, action: Action) -> None:
        if isinstance(action, Publish):
            self.publish(action)
        elif isinstance(action, TickAll):
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

    def publish(self, action: Publish) -> None:
        if self.pacer is not None and action.event_time is not None:
            self.pace(action)
        self.sender.send(
            action.topic,
            key=action.key,
            value=action.value,
            headers=action.headers,
            timestamp_ms=action.timestamp_ms,
        )
        report = self.report
        report.records += 1
        if action.event_time is not None:
            self.clock = action.event_time
            if report.first_event is None:
                report.first_event = action.event_time
        if report.records & 63 == 0:
            self.maybe_progress()

    def pace(self, action: Publish) -> None:
        assert self.pacer is not None and action.event_time is not None
        wall = self.wall
        wait, cut = self.pacer.delay(action.event_time, wall.monotonic())
        if cut:
            gap = action.event_time - (self.clock or action.event_time)
            self.say(
                f"replay: {gap} of event time without records before {action.source}; "
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
            when = gap_tick_time(self.clock, self.pacer.event_time_at(wall.monotonic()), action.event_time)
            self.send_tick(TickAll(self.topics.ticked, Tick(action.seq, when)))
            self.maybe_progress()
            wall.sleep(min(self.options.gap_tick_every_s, remaining))

    def send_tick(self, action: TickAll) -> None:
        value = action.tick.to_bytes()
        timestamp_ms = epoch_ms(action.tick.time)
        for topic in action.topics:
            for partition in self.partitions.get(topic) or self._partitions(topic):
                self.sender.send(
                    topic,
                    key=None,
                    value=value,
                    headers=TICK_VALUE_HEADERS,
                    timestamp_ms=timestamp_ms,
                    partition=partition,
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
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "compression_type": None,  # lz4/zstd need extra packages; no gain on a local broker
    "allow_auto_create_topics": False,  # topics come from ensure_topics, with the right partitions
}
MAX_IN_FLIGHT_RECORDS: Final = 20_000
"""kafka-python 3 has no buffer_memory bound: replay waits for the oldest record beyond this."""


class KafkaPythonSender:
    """`Sender` over kafka-python's KafkaProducer.

    Keeps the futures of the last `max_in_flight` records: waiting on the oldest one bounds
    memory (constant, whatever the log's size), and a failed delivery is seen when its future
    leaves the window or at flush.
    """

    def __init__(self, producer: Any, *, max_in_flight: int = MAX_IN_FLIGHT_RECORDS) -> None:
        self._producer = producer
        self._window: deque[Any] = deque()
        self._max_in_flight = max_in_flight
        self.failed = 0
        self.first_error: BaseException | None = None

    @classmethod
    def create(cls, config: dict[str, Any]) -> KafkaPythonSender:
        from kafka import KafkaProducer

        return cls(KafkaProducer(client_id="holdwatch-replay", **PRODUCER_TUNING, **config))

    def _settle(self, future: Any, timeout_s: float | None) -> None:
        if not future.is_done:
            with contextlib.suppress(Exception):  # recorded just below, raised as a ReplayError
                future.get(timeout=timeout_s)
        if future.failed():
            self.failed += 1
            if self.first_error is None:
                self.first_error = future.exception

    def _check(self) -> None:
        if self.first_error is not None:
            raise ReplayError(
                f"{self.failed:,} record(s) could not be delivered; first error: "
                f"{type(self.first_error).__name__}: {self.first_error}"
            )

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int | None,
        partition: int | None = None,
    ) -> None:
        window = self._window
        window.append(
            self._producer.send(
                topic, value=value, key=key, headers=headers, partition=partition, timestamp_ms=timestamp_ms
            )
        )
        if len(window) > self._max_in_flight:
            self._settle(window.popleft(), None)
            self._check()

    def partitions(self, topic: str) -> list[int]:
        return sorted(self._producer.partitions_for(topic) or ())

    def flush(self) -> None:
        self._producer.flush()
        while self._window:
            self._settle(self._window.popleft(), None)
        self._check()

    def close(self) -> None:
        self._producer.close(timeout=10)


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
