"""The back-test: event logs → the same decode and the same engine, on the log's own clock.

Writes the alert events as JSON Lines and summarises what a carrier needs to tune
thresholds: alerts by rule and severity, lead time before arrival, recall on the
loads that were really held, and noise on the loads that went through cleanly.

`run_backtest(..., jobs=N)` splits the work by CCN across N processes and gives the
output of one process, byte for byte (docs/benchmarks.md, "Back-test --jobs"):

- every job reads every line; a line goes to the job its CCN hashes to (crc32 of the
  upper-cased key: stable across processes, unlike `hash()`), a CARM line to every job
  (each applies it to its own loads), and a line no engine sees (bad, unknown topic) to
  job 0, so it is counted once;
- the clock is shared by all loads: a deadline fires at the first record later than it,
  whichever CCN that record is for. So a job also moves its clock on another job's record
  when that record is later than its next pending deadline or forgetting (most are not:
  reading the record's `occurred_at` off the raw line settles it; the rare rest is
  decoded), and every job finishes at the global end;
- the alert events of one line are ordered by (deadline instant, CCN) for the deadlines
  the line's time fired, then by CCN for the rest: the runner's own order, so the jobs'
  files merge into the one-process file (`jobs=1` writes in the same order);
- what one process decides from state another job holds cannot be reproduced: a duplicate
  (the owner alone knows its ids) that crossed another job's deadline, a CARM tombstone
  without a timestamp (it takes the clock's time), a line whose parsed key or topic is not
  the one it was routed by. Those are detected, and the run is redone in one process.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, Any, Final, TypeAlias

from alerting.engine.config import Thresholds
from alerting.engine.ingest import ingest
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState
from schemas.alerts import AlertEvent
from schemas.carm import CarmSnapshot
from schemas.decode import Decoded, Rejected, TopicKind, decode, decode_parsed, unknown_topic
from schemas.eventlog import MAX_LINE_BYTES, BadLine, _lines, _open_binary, parse_line

ProgressFn = Callable[[int, float], None]
Classified: TypeAlias = Decoded | Rejected | BadLine | None
"""What a line is: an event, a dead letter, a bad line, or None for a blank line."""

ALL: Final = -1
"""The route of a CARM line: every job applies it."""
_MIN_TIME: Final = datetime.min.replace(tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass
class JobStats:
    """One process of a run: what it did and the memory it peaked at."""

    index: int
    records: int
    alert_events: int
    shipments: int
    peak_rss_mib: float
    seconds: float
    cpu_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.index,
            "records": self.records,
            "alert_events": self.alert_events,
            "shipments": self.shipments,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


@dataclass
class BacktestReport:
    records: int = 0
    events: int = 0
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    alert_actions: Counter[str] = field(default_factory=Counter)
    alert_severities: Counter[str] = field(default_factory=Counter)
    rule_events: Counter[str] = field(default_factory=Counter)
    rule_loads: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    shipments: int = 0
    never_reported: int = 0
    forgotten: int = 0
    """States removed by retention during the run (counted in the statistics when removed)."""
    alerted_loads: int = 0
    lead_minutes: list[float] = field(default_factory=list)
    held_loads: int = 0
    held_alerted_before: int = 0
    clean_loads: int = 0
    clean_alerted: int = 0
    first_event: datetime | None = None
    end: datetime | None = None
    seconds: float = 0.0
    grace_minutes: float = 30.0
    jobs: list[JobStats] = field(default_factory=list)
    """The processes of the run (not in `as_dict`: the statistics do not depend on them)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "events": self.events,
            "duplicates": self.duplicates,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "shipments": self.shipments,
            "never_reported": self.never_reported,
            "forgotten_by_retention": self.forgotten,
            "alert_events": dict(sorted(self.alert_actions.items())),
            "alert_events_by_severity": dict(sorted(self.alert_severities.items())),
            "alert_events_by_rule": dict(sorted(self.rule_events.items())),
            "loads_by_rule": dict(sorted(self.rule_loads.items())),
            "resolved_outcomes": dict(sorted(self.outcomes.items())),
            "alerted_loads": self.alerted_loads,
            "lead_time_minutes": {
                "median": self.lead_median,
                "p10": self.lead_p10,
                "n": len(self.lead_minutes),
            },
            "held_loads": self.held_loads,
            "held_alerted_before_arrival": self.held_alerted_before,
            "recall": self.recall,
            "clean_loads": self.clean_loads,
            "clean_loads_alerted": self.clean_alerted,
            "noise": self.noise,
            "first_event": self.first_event.isoformat() if self.first_event else None,
            "end": self.end.isoformat() if self.end else None,
            "seconds": round(self.seconds, 3),
        }

    @property
    def lead_median(self) -> float | None:
        return round(statistics.median(self.lead_minutes), 1) if self.lead_minutes else None

    @property
    def lead_p10(self) -> float | None:
        if not self.lead_minutes:
            return None
        ordered = sorted(self.lead_minutes)
        return round(ordered[int(0.1 * (len(ordered) - 1))], 1)

    @property
    def recall(self) -> float | None:
        return round(self.held_alerted_before / self.held_loads, 3) if self.held_loads else None

    @property
    def noise(self) -> float | None:
        return round(self.clean_alerted / self.alerted_loads, 3) if self.alerted_loads else None


_Undecided: TypeAlias = tuple[datetime, datetime | None, datetime, bool]
"""A forgotten load whose hold depends on the end: (arrival + grace, alerted, arrived, released)."""


class Backtest:
    """Feeds decoded records to an EventTimeRunner and collects alert events and statistics."""

    def __init__(
        self,
        thresholds: Thresholds,
        topic_kinds: dict[str, TopicKind],
        sink: Callable[[AlertEvent], None],
    ) -> None:
        self.runner = EventTimeRunner(thresholds, on_forget=self._account)
        self.thresholds = thresholds
        self.topic_kinds = topic_kinds
        self.sink = sink
        self.report = BacktestReport(
            grace_minutes=thresholds.release_grace_after_arrival / timedelta(minutes=1)
        )
        self._undecided: list[_Undecided] = []

    def _emit(self, alerts: list[AlertEvent]) -> None:
        report = self.report
        for alert in alerts:
            report.alert_actions[alert.action] += 1
            if alert.severity is not None:
                report.alert_severities[alert.severity] += 1
            for code in alert.reasons:
                report.rule_events[code] += 1
            if alert.outcome is not None:
                report.outcomes[alert.outcome] += 1
            self.sink(alert)

    def feed_record(self, topic: str, key: str | None, value: Any, timestamp_ms: int | None) -> None:
        report = self.report
        report.records += 1
        kind = self.topic_kinds.get(topic)
        if kind is None:
            report.dead_letters["unknown_topic"] += 1
            return
        result = decode_parsed(kind, key, value)
        if isinstance(result, Rejected):
            report.dead_letters[str(result.reason)] += 1
            return
        self.feed(result, timestamp_ms)

    def feed(self, decoded: Decoded, timestamp_ms: int | None, *, account: bool = True) -> bool:
        """Apply one record; True if the runner had seen it. `account`: count it in the report
        (a CARM record is applied by every job of a run and counted by one)."""
        done = ingest(self.runner, decoded, timestamp_ms)
        if account:
            report = self.report
            if done.duplicate:
                report.duplicates += 1
            else:
                report.events += 1
                event = decoded.event
                if event is not None and report.first_event is None:
                    report.first_event = event.occurred_at
        if done.alerts:
            self._emit(done.alerts)
        return done.duplicate

    def finish(self, until: datetime | None) -> BacktestReport:
        self._emit(self.runner.finish(until))
        self.report.end = self.runner.clock
        self.report.forgotten = self.runner.forgotten
        self._load_statistics()
        return self.report

    def _load_statistics(self) -> None:
        """The loads still in the state at the end (retention already accounted for the rest)."""
        for s in self.runner.states():
            self._account(s)
        end = self.runner.clock
        for deadline, alerted, arrived, released in self._undecided:
            held = end is not None and end >= deadline
            self._count_hold(deadline if held else None, alerted, arrived, released)
        self._undecided.clear()

    def _account(self, s: ShipmentState) -> None:
        """Count one load in the statistics: at the end, or when retention forgets it."""
        report = self.report
        if not s.known:
            report.never_reported += 1
            return
        report.shipments += 1
        alerted = s.ever_alerted_at
        if alerted is not None:
            report.alerted_loads += 1
            target = s.arrived_at or s.eta
            if target is not None:
                report.lead_minutes.append((target - alerted) / timedelta(minutes=1))
        if s.closed == "cancelled":
            return
        grace = self.thresholds.release_grace_after_arrival
        released = s.closed == "released"
        if s.held_at is None and s.arrived_at is not None and s.released_at is None:
            # Held if still not released `grace` after arrival at the end of the run: decided
            # then, so a load forgotten on the way counts as if remembered (and no job's clock
            # of the moment matters).
            self._undecided.append((s.arrived_at + grace, alerted, s.arrived_at, released))
            return
        self._count_hold(_hold_instant(s, grace), alerted, s.arrived_at, released)

    def _count_hold(
        self, hold_at: datetime | None, alerted: datetime | None, arrived: datetime | None, released: bool
    ) -> None:
        report = self.report
        if hold_at is not None:
            report.held_loads += 1
            before = arrived or hold_at
            if alerted is not None and alerted < before:
                report.held_alerted_before += 1
        elif released:
            report.clean_loads += 1
            if alerted is not None:
                report.clean_alerted += 1


def _hold_instant(s: ShipmentState, grace: timedelta) -> datetime | None:
    """When a released or examined load was really held: examination, or released late."""
    if s.held_at is not None:
        return s.held_at
    if s.arrived_at is None or s.released_at is None:
        return None
    deadline = s.arrived_at + grace
    return deadline if s.released_at > deadline else None


# --- reading lines -----------------------------------------------------------------------
_BLOCK: Final = 1 << 20


def _file_lines(path: Path) -> Iterator[bytes | BadLine]:
    """The lines of a log as `read_log` splits them, one item per line number: its bytes, or a
    bad line for one too large or for a file unreadable from there on."""
    number = 0
    with _open_binary(path) as handle:
        try:
            lines = _lines(handle) if path.suffix == ".gz" else _plain_lines(handle)
            for number, raw in enumerate(lines, start=1):
                if raw is None:
                    detail = f"line {number}: longer than {MAX_LINE_BYTES} bytes"
                    yield BadLine(number, "too_large", detail, "")
                else:
                    yield raw
        except (OSError, EOFError, zlib.error) as exc:
            line = number + 1
            detail = f"line {line}: the file cannot be read from here on ({exc})"
            yield BadLine(line, "unreadable", detail, "")


def _plain_lines(handle: Any) -> Iterator[bytes | None]:
    """`_lines` for a plain file (None for a line longer than MAX_LINE_BYTES), read a MiB at a
    time and split in C: every job reads every line, so this is on the hot path. Lines keep no
    newline. (Not for .gz: `_lines` keeps the lines before a damaged block readable.)"""
    rest, too_long = b"", False
    while block := handle.read(_BLOCK):
        parts = block.split(b"\n")
        if len(parts) == 1:  # no newline in the block: the line goes on
            if not too_long:
                rest += block
                too_long = len(rest) > MAX_LINE_BYTES
                rest = b"" if too_long else rest
            continue
        head, *middle, tail = parts
        line = rest + head
        yield None if too_long or len(line) > MAX_LINE_BYTES else line
        yield from middle  # shorter than a block, so never too long
        rest, too_long = tail, False
    if too_long or rest:
        yield None if too_long or len(rest) > MAX_LINE_BYTES else rest


_OCCURRED: Final = b'"occurred_at"'
_Located: TypeAlias = tuple[bytes, bytes | None, int]
"""A line as LogWriter writes one: (topic, key, where the value starts)."""
_PREFIX: Final = re.compile(rb'\{"topic":"([^"\\]*)","key":(?:"([^"\\]*)"|null),"value":')
_STAMP: Final = re.compile(rb',"timestamp":(0|[1-9][0-9]*)\}\n?')
"""How LogWriter ends a line with a timestamp (a JSON integer: no sign, no leading zero)."""


def _locate(raw: bytes) -> _Located | None:
    """(topic, key, where the value starts) of a line that starts as LogWriter writes one, else
    None; without parsing it. A key or topic with a backslash (an escape) is left to the slow
    path (no configured topic has one)."""
    return _located(_PREFIX.match(raw))


def _located(match: re.Match[bytes] | None) -> _Located | None:
    return None if match is None else (match[1], match[2], match.end())


def _value(raw: bytes, at: int) -> tuple[bytes, int | None] | None:
    """(value bytes, timestamp) of a located line that ends as LogWriter writes one, else None.

    No backslash (so no escape can make the bytes differ from the parsed text). The value is
    the bytes from `at` to the timestamp or the closing brace; that it is one JSON value is
    left to the decoder, which rejects anything else.
    """
    if raw.find(b"\\", at) >= 0:
        return None
    stamp = raw.rfind(b',"timestamp":', at)
    if stamp >= 0:
        found = _STAMP.fullmatch(raw, stamp)
        if found is not None:
            return raw[at:stamp], int(found[1])
    end = len(raw) - 1 if raw.endswith(b"\n") else len(raw)
    return (raw[at : end - 1], None) if raw.startswith(b"}", end - 1) else None


def _occurred_hint(raw: bytes) -> bytes | None:
    """`YYYY-MM-DDTHH:MM:SS` of the line's only `occurred_at` if it is written `...Z` (whole
    seconds, UTC), else None. If the line is a valid event, this is its time to the second
    (no escape can spell the key otherwise, and there is no other to win as the last)."""
    at = raw.find(_OCCURRED)
    if at < 0 or raw.find(_OCCURRED, at + 13) >= 0 or raw.find(b"\\") >= 0 or len(raw) < at + 36:
        return None
    # :"YYYY-MM-DDTHH:MM:SSZ" byte by byte (indexing is the cheapest check in Python).
    if raw[at + 34] != 0x5A or raw[at + 25] != 0x54 or raw[at + 35] != 0x22 or raw[at + 13] != 0x3A:
        return None
    return raw[at + 15 : at + 34] if raw[at + 14] == 0x22 else None


def _owner(key: bytes, jobs: int) -> int:
    """The job of a CCN: crc32 of the key upper-cased as the decoder compares it (an accepted
    key is ASCII; bytes.upper() leaves any other byte alone, the same in every job)."""
    return zlib.crc32(key.upper()) % jobs


class _NeedsOneProcess(Exception):
    """The jobs cannot reproduce one process for this log (see the module docstring)."""


def _sort_key(alert: AlertEvent, n: int) -> str:
    """An alert event's place among its line's: deadlines by (instant, CCN), then the rest by
    CCN; `n` (its emission order) keeps one CCN's steps in order. Fixed width, so it sorts as
    text: the jobs' files merge by it."""
    if alert.trigger == "deadline":
        return f"0{(alert.at - _MIN_TIME) // _MICROSECOND:020d}{alert.ccn} {n:08d}"
    return f"1{0:020d}{alert.ccn} {n:08d}"


# --- one job ---------------------------------------------------------------------------------
class _Job:
    """One process's share of a run: its CCNs' lines, every CARM line, and the shared clock.

    `index`/`count`: this job and how many there are; with one job every line is its own.
    `write(line, alerts)` receives each line's alert events in file order.
    """

    def __init__(
        self,
        thresholds: Thresholds,
        kinds: dict[str, TopicKind],
        write: Callable[[int, list[tuple[str, AlertEvent]]], None],
        *,
        index: int = 0,
        count: int = 1,
        skipped: Callable[[str], None] | None = None,
    ) -> None:
        self.index, self.count = index, count
        self.kinds = kinds
        self.kinds_b = {topic.encode(): kind for topic, kind in kinds.items()}
        self.write = write
        self.skipped = skipped
        self.alerts: list[AlertEvent] = []
        self.backtest = Backtest(thresholds, kinds, self.alerts.append)
        self.runner = self.backtest.runner
        self.rule_ccns: defaultdict[str, set[str]] = defaultdict(set)
        self.lines = 0
        self.first_line: int | None = None
        """Line index of this job's `report.first_event`."""
        self.duplicates: list[int] = []
        """Lines of this job's CCNs the runner had seen (they moved no clock)."""
        self.crossed: list[int] = []
        """Lines of other jobs on which this job moved its clock (assumed not duplicates)."""
        self._due: datetime | None = None
        """This job's next deadline or forgetting (if not `_due_stale`), and as text to the second."""
        self._due_text = b""
        self._due_stale = True

    # --- classification ---------------------------------------------------------------
    def classify(
        self, raw: bytes, number: int, located: _Located | None
    ) -> tuple[Classified, int | None, bool]:
        """A line → what `read_log` + `decode_parsed` make of it, its timestamp, and whether it
        took the fast path (then its topic and key are the located ones: its route is right).

        Fast path: a LogWriter line whose value decodes from its bytes (`decode`, the live
        pipeline's path: one parse instead of two). Anything else — a dead letter, a bad line,
        another shape — takes the slow path, so every reason and detail is the usual one.
        """
        if located is not None:
            kind = self.kinds_b.get(located[0])
            parts = None if kind is None else _value(raw, located[2])
            if parts is not None:
                assert kind is not None
                result = decode(kind, located[1], parts[0])
                if type(result) is Decoded:
                    return result, parts[1], True
        return (*self._slow(raw, number), False)

    def _slow(self, raw: bytes, number: int) -> tuple[Classified, int | None]:
        """Exactly `read_log` (UTF-8, strip, `parse_line`) and then `decode_parsed`."""
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            excerpt = raw.decode("utf-8", "replace")[:200]
            return BadLine(number, "not_utf8", f"line {number}: not UTF-8 ({exc})", excerpt), None
        if not text:
            return None, None
        item = parse_line(text, number)
        if isinstance(item, BadLine):
            return item, None
        kind = self.kinds.get(item.topic)
        if kind is None:
            return unknown_topic(item.topic), None
        return decode_parsed(kind, item.key, item.value), item.timestamp

    def route(self, raw: bytes, number: int, located: _Located | None) -> int:
        """The job of a line (ALL for CARM). Bad lines and lines no engine applies go to job 0."""
        if located is not None:
            kind = self.kinds_b.get(located[0])
            if kind is TopicKind.CARM:
                return ALL
            if kind is not None and located[1] is not None:
                return _owner(located[1], self.count)
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return 0
        item = parse_line(text, number) if text else None
        if item is None or isinstance(item, BadLine):
            return 0
        kind = self.kinds.get(item.topic)
        if kind is TopicKind.CARM:
            return ALL
        return 0 if kind is None or item.key is None else _owner(item.key.encode(), self.count)

    def _route_of(self, decoded: Decoded) -> int:
        """The job a decoded record belongs to: what its route must have been."""
        event = decoded.event
        if event is None or isinstance(event, CarmSnapshot):
            return ALL
        return _owner(decoded.key.encode(), self.count)

    # --- lines ------------------------------------------------------------------------------
    def read(self, logs: list[Path], tick: Callable[[int], None] | None = None) -> None:
        """Apply every line of the logs that concerns this job; `tick(lines)` every 4,096 lines."""
        index = -1
        for path in logs:
            if self.count == 1:
                index = self._read_all(path, index, tick)
            else:
                index = self._read_share(path, index, tick)
        self.lines = index + 1

    def _read_all(self, path: Path, index: int, tick: Callable[[int], None] | None) -> int:
        """One job: every line is its own. Returns the index of the file's last line."""
        for number, raw in enumerate(_file_lines(path), start=1):
            index += 1
            if isinstance(raw, BadLine):
                self._account_line(raw, path)
            else:
                self.apply(index, path, number, raw, 0, _locate(raw))
            if tick is not None and index & 4095 == 0:
                tick(index)
        return index

    def _read_share(self, path: Path, index: int, tick: Callable[[int], None] | None) -> int:
        """Several jobs: apply this job's lines and the CARM ones; of the others' lines read only
        the time, as cheaply as possible (every job reads every line: this loop is the cost of
        splitting, so `_locate`, `_owner` and the clock check are inlined)."""
        me, count, kinds_b, carm = self.index, self.count, self.kinds_b, TopicKind.CARM
        match, crc32, hint_of = _PREFIX.match, zlib.crc32, _occurred_hint
        for number, raw in enumerate(_file_lines(path), start=1):
            index += 1
            if tick is not None and index & 4095 == 0:
                tick(index)
            if isinstance(raw, BadLine):
                if me == 0:
                    self._account_line(raw, path)
                continue
            found = match(raw)
            key = kind = None
            if found is not None:
                key, kind = found[2], kinds_b.get(found[1])
            if kind is None or key is None:
                route = self.route(raw, number, _located(found))
            elif kind is carm:
                route = ALL
            else:
                route = crc32(key.upper()) % count  # _owner, inlined
            if route in (me, ALL):
                self.apply(index, path, number, raw, route, _located(found))
                self._due_stale = True
                continue
            if self._due_stale:
                self._refresh_due()
            if self._due is not None:
                hint = hint_of(raw)
                if hint is None or hint > self._due_text:
                    self.cross(index, number, raw, route, _located(found), self._due)
        return index

    def _refresh_due(self) -> None:
        """This job's next deadline or forgetting: a record later than it changes state here, an
        earlier one only moves the clock. Reads the runner's heaps (the engine has no public
        peek); popping their stale tops is what the runner would do too."""
        runner = self.runner
        due = removal = None
        heap, live = runner._heap, runner._scheduled
        while heap and live.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the runner would skip it too
        if heap:
            due = heap[0][0]
        heap, live = runner._removal_heap, runner._removals
        while heap and live.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            removal = heap[0][0]
        if due is None or (removal is not None and removal < due):
            due = removal
        if due is not None and due is not self._due:
            self._due_text = due.astimezone(UTC).isoformat().encode()[:19]
        self._due, self._due_stale = due, False

    def apply(
        self, index: int, path: Path, number: int, raw: bytes, route: int, located: _Located | None
    ) -> None:
        """A line of this job's (or a CARM line, `route` ALL, counted by job 0 only)."""
        result, stamp, fast = self.classify(raw, number, located)
        account = route != ALL or self.index == 0
        if type(result) is not Decoded:
            if account:
                self._account_line(result, path)
            return
        if self.count > 1 and not fast:
            self._check_route(result, stamp, route)
        report = self.backtest.report
        if account:
            report.records += 1
        first = report.first_event
        if self.backtest.feed(result, stamp, account=account) and route != ALL:
            self.duplicates.append(index)
        if first is None and report.first_event is not None:
            self.first_line = index
        if self.alerts:
            self._flush(index)

    def _account_line(self, result: Classified, path: Path) -> None:
        """A line no engine applies: a dead letter or a bad line (None: blank, not a record)."""
        if result is None:
            return
        report = self.backtest.report
        report.records += 1
        if isinstance(result, BadLine):
            report.dead_letters[result.reason] += 1
            if self.skipped is not None:
                self.skipped(f"{path}:{result.line}: skipped: {result.detail}")
        elif isinstance(result, Rejected):
            report.dead_letters[str(result.reason)] += 1

    def _check_route(self, decoded: Decoded, stamp: int | None, route: int) -> None:
        if self._route_of(decoded) != route:
            raise _NeedsOneProcess("a line's parsed key or topic differs from the one it was routed by")
        if decoded.event is None and stamp is None:
            raise _NeedsOneProcess("a CARM tombstone without a timestamp takes its time from the clock")

    def cross(
        self, index: int, number: int, raw: bytes, route: int, located: _Located | None, due: datetime
    ) -> None:
        """Another job's line, perhaps later than this job's next deadline `due`: if it is a valid
        event, move the clock to its time (firing what is due before it), as one process would."""
        result, _, fast = self.classify(raw, number, located)
        if type(result) is not Decoded:
            return
        if not fast and self._route_of(result) != route:
            raise _NeedsOneProcess("a line's parsed key or topic differs from the one it was routed by")
        event = result.event
        assert event is not None  # a shipment event: CARM lines are every job's
        if event.occurred_at > due:
            self.crossed.append(index)
            self.backtest._emit(self.runner.advance(event.occurred_at))
            self._due_stale = True
            if self.alerts:
                self._flush(index)

    def _flush(self, index: int) -> None:
        """Hand the line's alert events on in file order: the deadlines its time fired by
        (instant, CCN), as the runner's heap fires them, then the rest by CCN. The sort key is
        also what the jobs' files are merged by (one job with one event needs none)."""
        alerts, rule_ccns = self.alerts, self.rule_ccns
        for alert in alerts:
            for code in alert.reasons:
                rule_ccns[code].add(alert.ccn)
        if self.count == 1 and len(alerts) == 1:
            keyed = [("", alerts[0])]
        else:
            keyed = [(_sort_key(alert, n), alert) for n, alert in enumerate(alerts)]
            if len(keyed) > 1:
                keyed.sort(key=lambda item: item[0])
        alerts.clear()
        self.write(index, keyed)

    def finish(self, until: datetime | None) -> BacktestReport:
        report = self.backtest.finish(until)
        if self.alerts:
            self._flush(self.lines)
        report.rule_loads = Counter({code: len(ccns) for code, ccns in self.rule_ccns.items()})
        return report


# --- running -----------------------------------------------------------------------------------
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextmanager
def _few_collections() -> Iterator[None]:
    """No cyclic GC during the run. The run builds millions of long-lived objects (states, events,
    alert events) and next to no cycles, so the collector's passes over them find nothing and
    cost several per cent (more as the state grows); the next collection after it frees the few."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_backtest(
    logs: list[Path],
    out: IO[str],
    thresholds: Thresholds,
    topic_kinds: dict[str, TopicKind],
    *,
    until: datetime | None = None,
    progress: ProgressFn | None = None,
    progress_every_s: float = 2.0,
    jobs: int = 1,
) -> BacktestReport:
    """Run the engine over the logs, alert events to `out`; `jobs` > 1 splits the CCNs across
    that many processes for the same output (or redoes the run in one, see the module docstring)."""
    started = time.perf_counter()
    run = _Run(logs, thresholds, topic_kinds, until, progress, progress_every_s)
    report: BacktestReport | None = None
    if jobs > 1:
        try:
            report = _run_jobs(run, out, jobs)
        except _NeedsOneProcess as exc:
            print(
                f"backtest: {jobs} jobs cannot reproduce one process here ({exc}); running in one",
                file=sys.stderr,
                flush=True,
            )
    if report is None:
        with _few_collections():
            report = _run_single(run, out)
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class _Run:
    """What one run is about, whether in one process or in several."""

    logs: list[Path]
    thresholds: Thresholds
    kinds: dict[str, TopicKind]
    until: datetime | None
    progress: ProgressFn | None
    progress_every_s: float

    def ticker(self, started: float) -> Callable[[int], None] | None:
        return _ticker(self.progress, self.progress_every_s, started)


def _ticker(progress: ProgressFn | None, every_s: float, started: float) -> Callable[[int], None] | None:
    if progress is None:
        return None
    next_at = started + every_s

    def tick(lines: int) -> None:
        nonlocal next_at
        now = time.perf_counter()
        if lines and now >= next_at:
            progress(lines, now - started)
            next_at = now + every_s

    return tick


def _run_single(run: _Run, out: IO[str]) -> BacktestReport:
    def write(index: int, keyed: list[tuple[str, AlertEvent]]) -> None:
        for _, alert in keyed:
            out.write(alert.model_dump_json(exclude_none=True))
            out.write("\n")

    started, cpu = time.perf_counter(), time.process_time()
    job = _Job(run.thresholds, run.kinds, write, skipped=lambda text: print(text, file=sys.stderr))
    job.read(run.logs, run.ticker(started))
    report = job.finish(run.until)
    report.jobs = [_job_stats(0, report, started, cpu)]
    return report


def _job_stats(index: int, report: BacktestReport, started: float, cpu: float) -> JobStats:
    alerts = sum(report.alert_actions.values())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return JobStats(index, report.records, alerts, report.shipments, _peak_rss_mib(), seconds, cpu)


# --- several processes ----------------------------------------------------------------------
@dataclass(frozen=True)
class _JobSpec:
    logs: list[Path]
    thresholds: Thresholds
    kinds: dict[str, TopicKind]
    index: int
    count: int
    alerts: Path
    """Where the job writes its alert events, each line `<sort key>\\t<JSON>`, in key order."""


def _context() -> Any:
    """fork where it is safe, i.e. no other thread (a child would inherit the locks it holds):
    the children start at once, sharing the decoders already built. Else forkserver (the
    children fork from a server that imported this module), and spawn where neither exists."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["streams.backtest"])
        return context
    return multiprocessing.get_context("spawn")


def _job_main(spec: _JobSpec, conn: Connection, lines_read: Any) -> None:
    """A job's process: its share of the lines, then (told the global end) its statistics.

    It ends with `os._exit`: the parent has all it needs, and freeing the job's millions of
    objects one by one (or collecting them) would only hold up the end of the run.
    """
    started = time.perf_counter()
    gc.disable()  # as in _few_collections, for the life of the process
    kept: object = None
    try:
        kept = _job_body(spec, conn, lines_read, started)
    except _NeedsOneProcess as exc:
        conn.send(("fallback", str(exc)))
    except Exception:  # noqa: BLE001 - sent to the parent, which raises it
        conn.send(("error", traceback.format_exc()))
    conn.close()
    del kept
    os._exit(0)


def _job_body(spec: _JobSpec, conn: Connection, lines_read: Any, started: float) -> _Job | None:
    skipped: list[str] = []

    def tick(lines: int) -> None:
        lines_read[spec.index] = lines
        if skipped:
            conn.send(("skipped", skipped[:]))
            skipped.clear()

    with spec.alerts.open("w", encoding="utf-8") as handle:

        def write(index: int, keyed: list[tuple[str, AlertEvent]]) -> None:
            for key, alert in keyed:
                handle.write(f"{index:012d}{key}\t")
                handle.write(alert.model_dump_json(exclude_none=True))
                handle.write("\n")

        job = _Job(
            spec.thresholds, spec.kinds, write, index=spec.index, count=spec.count, skipped=skipped.append
        )
        job.read(spec.logs, tick)
        tick(job.lines)
        conn.send(("lines", job.runner.clock, job.duplicates, job.crossed))
        reply = conn.recv()
        if reply[0] != "finish":
            return job
        report = job.finish(reply[1])
    conn.send(("done", report, job.first_line, _job_stats(spec.index, report, started, 0.0)))
    return job


def _run_jobs(run: _Run, out: IO[str], jobs: int) -> BacktestReport:
    context = _context()
    sys.stdout.flush()  # a forked child must not write the parent's buffered output again
    sys.stderr.flush()
    lines_read = context.Array("q", jobs, lock=False)
    with tempfile.TemporaryDirectory(prefix="holdwatch-backtest-") as tmp:
        paths = [Path(tmp) / f"alerts-{k}.txt" for k in range(jobs)]
        processes, conns = [], []
        for k in range(jobs):
            parent_end, child_end = context.Pipe()
            spec = _JobSpec(run.logs, run.thresholds, run.kinds, k, jobs, paths[k])
            process = context.Process(
                target=_job_main, args=(spec, child_end, lines_read), name=f"backtest-job-{k}", daemon=True
            )
            process.start()
            child_end.close()
            processes.append(process)
            conns.append(parent_end)
        try:
            tick = run.ticker(time.perf_counter())
            ended = _gather(conns, "lines", lambda: tick(min(lines_read)) if tick else None)
            end = _global_end(ended, run.until)
            for conn in conns:
                conn.send(("finish", end))
            done = _gather(conns, "done", lambda: None)
            _merge_alerts(paths, out)
        except BaseException:
            for process in processes:
                process.terminate()
            raise
        finally:
            for process in processes:
                process.join()
    return _merge_reports([m[1] for m in done], [m[2] for m in done], [m[3] for m in done])


def _gather(conns: list[Connection], expected: str, idle: Callable[[], None]) -> list[tuple[Any, ...]]:
    """Each job's next `expected` message, in job order; bad lines printed as they come."""
    results: dict[int, tuple[Any, ...]] = {}
    pending = {conn: k for k, conn in enumerate(conns)}
    while pending:
        for ready in wait(list(pending), timeout=0.5):
            assert isinstance(ready, Connection)
            k = pending[ready]
            try:
                message = ready.recv()
            except EOFError:
                raise RuntimeError(f"backtest job {k} ended without a result") from None
            if message[0] == "skipped":
                print("\n".join(message[1]), file=sys.stderr)
            elif message[0] == "fallback":
                raise _NeedsOneProcess(message[1])
            elif message[0] == "error":
                raise RuntimeError(f"backtest job {k} failed:\n{message[1]}")
            else:
                results[k] = message
                del pending[ready]
        idle()
    return [results[k] for k in range(len(conns))]


def _global_end(ended: list[tuple[Any, ...]], until: datetime | None) -> datetime | None:
    """The end of one process's run: its clock (the latest of the jobs') or `until` if later.

    Checks first that no job moved its clock on a line another job found to be a duplicate
    (one process moves no clock on a duplicate)."""
    duplicates = {index for message in ended for index in message[2]}
    if any(index in duplicates for message in ended for index in message[3]):
        raise _NeedsOneProcess("a duplicate record crossed another job's deadline")
    clocks = [message[1] for message in ended if message[1] is not None]
    end = max(clocks) if clocks else None
    if until is not None and (end is None or until > end):
        end = until
    return end


def _merge_alerts(paths: list[Path], out: IO[str]) -> None:
    """The jobs' alert events in one file: their sort keys are unique, so merging orders them."""
    handles = [path.open(encoding="utf-8") for path in paths]
    try:
        for line in heapq.merge(*handles):
            out.write(line[line.index("\t") + 1 :])
    finally:
        for handle in handles:
            handle.close()


_FIRST_OR_LAST: Final = frozenset({"first_event", "end", "seconds", "grace_minutes", "jobs"})


def _merge_reports(
    reports: list[BacktestReport], first_lines: list[int | None], stats: list[JobStats]
) -> BacktestReport:
    """The jobs' statistics as one process counts them: counts added, samples pooled."""
    merged = BacktestReport(grace_minutes=reports[0].grace_minutes, end=reports[0].end, jobs=stats)
    for f in fields(BacktestReport):
        if f.name in _FIRST_OR_LAST:
            continue
        total = getattr(merged, f.name)
        for report in reports:
            value = getattr(report, f.name)
            if isinstance(total, Counter | list):
                total += value
            else:
                setattr(merged, f.name, getattr(merged, f.name) + value)
    firsts = [(line, r.first_event) for line, r in zip(first_lines, reports, strict=True) if line is not None]
    merged.first_event = min(firsts, key=lambda item: item[0])[1] if firsts else None
    return merged


def format_summary(report: BacktestReport) -> str:
    d = report.as_dict()
    rate = report.records / report.seconds if report.seconds else 0.0
    lines = [
        f"records {report.records:,} ({rate:,.0f}/s)  events {report.events:,}  "
        f"duplicates {report.duplicates:,}  dead letters {sum(report.dead_letters.values()):,}",
        f"event time {d['first_event']} → {d['end']}",
        f"shipments {report.shipments:,}  (+{report.never_reported:,} CCNs never reported; "
        f"{report.forgotten:,} forgotten by retention on the way)",
        "alert events: "
        + ", ".join(f"{k} {v:,}" for k, v in d["alert_events"].items())
        + "  |  by severity: "
        + ", ".join(f"{k} {v:,}" for k, v in d["alert_events_by_severity"].items()),
        "resolved: " + ", ".join(f"{k} {v:,}" for k, v in d["resolved_outcomes"].items()),
        "rules (loads / alert events):",
    ]
    for code in sorted(report.rule_loads, key=lambda c: -report.rule_loads[c]):
        lines.append(f"  {code:<28} {report.rule_loads[code]:>8,} {report.rule_events[code]:>10,}")
    lines += [
        f"alerted loads {report.alerted_loads:,}; lead time before arrival/ETA: "
        f"median {report.lead_median} min, p10 {report.lead_p10} min",
        f"held loads {report.held_loads:,} (examination, or not released "
        f"{report.grace_minutes:g} min after arrival); alerted before arrival "
        f"{report.held_alerted_before:,}  recall {report.recall}",
        f"clean loads {report.clean_loads:,}; alerted anyway {report.clean_alerted:,}  "
        f"noise {report.noise} (share of alerted loads that went through cleanly)",
    ]
    if report.dead_letters:
        lines.append(
            "dead letters: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.dead_letters.items()))
        )
    if report.jobs:
        lines.append(
            f"jobs {len(report.jobs)}: "
            + "; ".join(
                f"job {j.index} {j.records:,} records, {j.alert_events:,} alert events, "
                f"{j.cpu_seconds:,.1f} s CPU, peak RSS {j.peak_rss_mib:,.0f} MiB"
                for j in report.jobs
            )
        )
    return "\n".join(lines)
