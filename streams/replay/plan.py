"""The replay plan, pure: log lines in, actions out (publish, tick, barrier, skip), and the pacer.

Kafka keeps order only inside one topic-partition, while the back-test applies a log in
file order across topics. The plan stamps each record with its position in the log (`hw-seq`,
schemas/envelope.py), ticks every partition of the CCN-keyed topics and, before any shipment
event, waits until the pipeline has consumed the log's leading CARM snapshots (the barrier:
a snapshot must not be overtaken by the shipments it judges). Records are published
without a Kafka timestamp (the producer stamps the wall time, so the topics' retention
counts from the replay) and with the log's timestamp in `hw-log-ts`. Tested without a broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from schemas.decode import Decoded, TopicKind, decode_parsed, topic_kinds
from schemas.envelope import SEQ_HEADER, TICK_HEADER, Tick, log_ts_headers
from schemas.eventlog import BadLine, LogRecord, read_log

if TYPE_CHECKING:  # not imported at run time: the replay's reader process starts faster without it
    from streams.settings import Settings

EPOCH: Final = datetime.fromtimestamp(0, tz=UTC)
"""The engine's time before any event (alerting.engine.ingest.EPOCH, the tombstone rule's clock;
a test keeps them equal). Not imported from there: the engine is a fifth of a second to import,
and the replay's reader process starts with this module."""
DEFAULT_TICK_EVERY: Final = 500
UNKNOWN_TOPIC: Final = "unknown_topic"
TICK_VALUE_HEADERS: Final = [(TICK_HEADER, b"1")]


# --------------------------------------------------------------------------------------
# Functional core: log lines -> actions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayTopics:
    """The three input topics (Settings.topic_*). Ticks go to the CCN-keyed two only."""

    emanifest: str
    rns: str
    carm: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplayTopics:
        return cls(settings.topic_emanifest, settings.topic_rns, settings.topic_carm)

    def kinds(self) -> dict[str, TopicKind]:
        """Topic name -> kind; raises ValueError if two names are the same."""
        return topic_kinds(self.emanifest, self.rns, self.carm)

    @property
    def ticked(self) -> tuple[str, str]:
        return (self.emanifest, self.rns)


@dataclass(frozen=True, slots=True)
class Publish:
    """Send one log record (its Kafka timestamp is left to the producer: the replay's wall time)."""

    topic: str
    key: bytes | None
    value: bytes | None
    log_ts_ms: int
    """The record's timestamp in the log (header `hw-log-ts`), the pipeline's event time for it."""
    seq: int
    source: str  # "file:line", for messages
    event_time: datetime | None = None  # the replay clock after this record, if it moved it
    line: int = 0  # its line in the concatenated logs: where `--from-line` resumes if it is lost

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(SEQ_HEADER, str(self.seq).encode("ascii")), *log_ts_headers(self.log_ts_ms)]


@dataclass(frozen=True, slots=True)
class TickAll:
    """Send `tick` to every partition of each of `topics`."""

    topics: tuple[str, ...]
    tick: Tick


@dataclass(frozen=True, slots=True)
class Barrier:
    """Flush, then wait until the pipeline has consumed the `records` CARM records sent so far."""

    topic: str
    records: int


@dataclass(frozen=True, slots=True)
class Skip:
    """A log line that is not published: unreadable, or not for an input topic."""

    source: str
    reason: str
    detail: str


Action: TypeAlias = Publish | TickAll | Barrier | Skip


def _aware_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def epoch_ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def _from_epoch_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def value_bytes(value: Any) -> bytes | None:
    """The value as compact JSON, as the log holds it; None stays a tombstone.

    Strings with lone surrogates (legal JSON escapes, not encodable as UTF-8) fall back to
    ASCII escapes, so the bytes are still the same JSON value and nothing crashes.
    """
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def key_bytes(key: str | None) -> bytes | None:
    # surrogatepass: a broken key is published as broken bytes; the pipeline dead-letters it.
    return None if key is None else key.encode("utf-8", errors="surrogatepass")


@dataclass(slots=True)
class ReplayPlanner:
    """Turns log lines, in replay order, into actions. Pure: no I/O, no clock.

    The replay clock follows the back-test's: the latest `occurred_at` of a record the
    pipeline would accept (a CARM tombstone counts with its log timestamp). Records that
    will be dead-lettered are published but do not move it, so ticks never claim an event
    time that the back-test never reaches.
    """

    topics: ReplayTopics
    tick_every: int = DEFAULT_TICK_EVERY
    carm_barrier: bool = True
    seq_base: int = 0
    """Seqs of this replay are seq_base + 1, 2, ...: a later replay into the same topics must use a
    larger base, so the pipeline never takes its records for stragglers of the previous one."""
    from_line: int = 1
    """Publish from this line of the concatenated logs on (`--from-line`); earlier lines are read
    for the replay clock only, so timestamps and ticks are those of the whole replay."""
    last_seq: int = 0
    published: int = 0
    clock: datetime | None = None
    ticks: int = 0
    _kinds: dict[str, TopicKind] = field(default_factory=dict)
    _carm_prefix: int = 0
    _past_prefix: bool = False
    _file: str | None = None
    _file_offset: int = 0  # lines of the earlier files (up to the last line read_log returned)
    _line: int = 0  # the current line in the concatenated logs

    def __post_init__(self) -> None:
        if self.tick_every < 1:
            raise ValueError(f"tick_every must be >= 1, got {self.tick_every}")
        self._kinds = self.topics.kinds()
        self.last_seq = max(self.last_seq, self.seq_base)

    def feed(self, source: str, item: LogRecord | BadLine) -> list[Action]:
        """The actions for one log line (`source` names its file)."""
        if source != self._file:
            self._file, self._file_offset = source, self._line
        self._line = self._file_offset + item.line
        if self._line < self.from_line:
            self._read_only(item)
            return []
        if isinstance(item, BadLine):
            return [Skip(f"{source}:{item.line}", item.reason, item.detail)]
        kind = self._kinds.get(item.topic)
        if kind is None:
            detail = (
                f"line {item.line}: topic {item.topic!r} is not an input topic "
                f"({self.topics.emanifest}, {self.topics.rns}, {self.topics.carm})"
            )
            return [Skip(f"{source}:{item.line}", UNKNOWN_TOPIC, detail)]
        actions: list[Action] = []
        if not self._past_prefix:
            if kind is TopicKind.CARM:
                self._carm_prefix += 1
            else:
                self._past_prefix = True
                if self.carm_barrier and self._carm_prefix:
                    actions.append(Barrier(self.topics.carm, self._carm_prefix))
        moved_to = self._advance(kind, item)
        self.last_seq += 1
        self.published += 1
        actions.append(
            Publish(
                topic=item.topic,
                key=key_bytes(item.key),
                value=value_bytes(item.value),
                log_ts_ms=self._log_ts_ms(item),
                seq=self.last_seq,
                source=f"{source}:{item.line}",
                event_time=moved_to,
                line=self._line,
            )
        )
        if self.published % self.tick_every == 0:
            actions.append(self.tick())
        return actions

    def tick(self, *, final: bool = False) -> TickAll:
        """A tick for everything published so far, at the replay clock."""
        self.ticks += 1
        return TickAll(self.topics.ticked, Tick(self.last_seq + 1, self.clock or EPOCH, final))

    def finish(self) -> list[Action]:
        """The final tick: every partition reaches the log's last event time."""
        return [self.tick(final=True)]

    def _read_only(self, item: LogRecord | BadLine) -> None:
        """A line before `from_line`: it moves the clock and ends the CARM prefix, as if published."""
        kind = None if isinstance(item, BadLine) else self._kinds.get(item.topic)
        if kind is None or isinstance(item, BadLine):
            return
        if kind is not TopicKind.CARM:
            self._past_prefix = True
        self._advance(kind, item)

    def _advance(self, kind: TopicKind, item: LogRecord) -> datetime | None:
        """Move the clock to this record's event time if the pipeline would accept it and it is later."""
        when = self._event_time(kind, item)
        if when is None or (self.clock is not None and when <= self.clock):
            return None
        self.clock = when
        return when

    def _event_time(self, kind: TopicKind, item: LogRecord) -> datetime | None:
        """The time the back-test evaluates this record at; None if it is dead-lettered or has none."""
        value = item.value
        if value is None:  # a tombstone: its log timestamp, if the pipeline accepts it
            if item.timestamp is None or not isinstance(decode_parsed(kind, item.key, None), Decoded):
                return None
            return _from_epoch_ms(item.timestamp)
        if not isinstance(value, dict):
            return None
        candidate = _aware_time(value.get("occurred_at"))
        if candidate is not None and self.clock is not None and candidate <= self.clock:
            return None  # cannot move the clock, valid or not: spare the decode
        decoded = decode_parsed(kind, item.key, value)
        if not isinstance(decoded, Decoded) or decoded.event is None:
            return None
        return decoded.event.occurred_at

    def _log_ts_ms(self, item: LogRecord) -> int:
        """The log's timestamp, else the value's occurred_at, else the replay clock so far.

        Never the wall clock: the pipeline takes a tombstone's time from this (`hw-log-ts`)
        and the back-test takes the clock so far (the epoch before any event), and "now" would
        jump a historical replay's clock to today and fire every deadline at once.
        """
        if item.timestamp is not None:
            return item.timestamp
        if isinstance(item.value, dict):
            occurred = _aware_time(item.value.get("occurred_at"))
            if occurred is not None and occurred >= EPOCH:
                return epoch_ms(occurred)
        return epoch_ms(self.clock or EPOCH)


def seq_base_now(now_ns: int) -> int:
    """A seq base above every seq of an earlier replay: microseconds since the epoch x 10^9
    (room for 10^9 records per replay, and replays start at least a microsecond apart)."""
    return (now_ns // 1000) * 1_000_000_000


@dataclass(frozen=True, slots=True)
class LogItems:
    """Every line of every log, in order, with the file it came from (streaming, when iterated).

    A value rather than a generator, so that a child process can be given it and read the
    files itself (streams/replay/reader.py).
    """

    paths: tuple[Path, ...]

    def __iter__(self) -> Iterator[tuple[str, LogRecord | BadLine]]:
        for path in self.paths:
            name = str(path)
            for item in read_log(path):
                yield name, item


def log_items(paths: Iterable[Path]) -> LogItems:
    return LogItems(tuple(paths))


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """The whole replay as actions, computed while it is iterated (see `plan_replay`).

    A recipe (the items and the planner's settings): over `LogItems` it can be run in another
    process, which is how `run_replay` keeps reading and planning off the producer's GIL.
    """

    items: Iterable[tuple[str, LogRecord | BadLine]]
    topics: ReplayTopics
    tick_every: int = DEFAULT_TICK_EVERY
    carm_barrier: bool = True
    seq_base: int = 0
    from_line: int = 1

    def __iter__(self) -> Iterator[Action]:
        planner = ReplayPlanner(
            self.topics,
            tick_every=self.tick_every,
            carm_barrier=self.carm_barrier,
            seq_base=self.seq_base,
            from_line=self.from_line,
        )
        for source, item in self.items:
            yield from planner.feed(source, item)
        yield from planner.finish()


def plan_replay(
    items: Iterable[tuple[str, LogRecord | BadLine]],
    topics: ReplayTopics,
    *,
    tick_every: int = DEFAULT_TICK_EVERY,
    carm_barrier: bool = True,
    seq_base: int = 0,
    from_line: int = 1,
) -> ReplayPlan:
    """The whole replay as actions (from `from_line` of the concatenated logs), ending with the final tick."""
    return ReplayPlan(items, topics, tick_every, carm_barrier, seq_base, from_line)


# --------------------------------------------------------------------------------------
# Pacing (--speed)
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Pacer:
    """Maps event time to wall time at `speed`× real time, anchored at the first record.

    Anchored (not record-to-record) so that per-record overhead does not accumulate. A gap
    longer than `max_sleep_s` of wall time is cut to `max_sleep_s` and the anchor moves:
    replaying a log with a quiet night at realtime speed should not stall for hours.
    """

    speed: float
    max_sleep_s: float = 60.0
    _anchor: tuple[float, datetime] | None = None

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")

    def delay(self, event_time: datetime, now: float) -> tuple[float, bool]:
        """Seconds to wait before publishing a record at `event_time`; True if the gap was cut."""
        if self._anchor is None:
            self._anchor = (now, event_time)
            return 0.0, False
        wall0, event0 = self._anchor
        due = wall0 + (event_time - event0).total_seconds() / self.speed
        wait = due - now
        if wait > self.max_sleep_s:
            self._anchor = (now + self.max_sleep_s, event_time)
            return self.max_sleep_s, True
        return max(0.0, wait), False

    def event_time_at(self, now: float) -> datetime | None:
        """The event time that wall instant `now` stands for (None before the first record)."""
        if self._anchor is None:
            return None
        wall0, event0 = self._anchor
        return event0 + timedelta(seconds=(now - wall0) * self.speed)


def gap_tick_time(clock: datetime | None, paced: datetime | None, next_time: datetime) -> datetime:
    """Tick time while waiting for the next record: the paced event time, but never earlier
    than the clock and always before the next record (the back-test fires deadlines before
    that record only if they are strictly earlier than it)."""
    floor = clock or EPOCH
    ceiling = next_time - timedelta(milliseconds=1)
    when = paced if paced is not None else floor
    return max(floor, min(when, ceiling))
