"""The back-test: event logs → the same decode and the same engine, on the log's own clock.

Writes the alert events as JSON Lines and summarises what a carrier needs to tune
thresholds: alerts by rule and severity, lead time before arrival, recall on the
loads that were really held, and noise on the loads that went through cleanly.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from alerting.engine.config import Thresholds
from alerting.engine.ingest import ingest
from alerting.engine.runner import EventTimeRunner
from alerting.engine.state import ShipmentState
from schemas.alerts import AlertEvent
from schemas.decode import Decoded, Rejected, TopicKind, decode_parsed
from schemas.eventlog import BadLine, read_log

ProgressFn = Callable[[int, float], None]


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

    def feed(self, decoded: Decoded, timestamp_ms: int | None) -> None:
        report = self.report
        done = ingest(self.runner, decoded, timestamp_ms)
        if done.duplicate:
            report.duplicates += 1
        else:
            report.events += 1
            event = decoded.event
            if event is not None and report.first_event is None:
                report.first_event = event.occurred_at
        if done.alerts:
            self._emit(done.alerts)

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
        hold_at = _hold_instant(s, self.thresholds.release_grace_after_arrival, self.runner.clock)
        if hold_at is not None:
            report.held_loads += 1
            before = s.arrived_at or hold_at
            if alerted is not None and alerted < before:
                report.held_alerted_before += 1
        elif s.closed == "released":
            report.clean_loads += 1
            if alerted is not None:
                report.clean_alerted += 1


def _hold_instant(s: ShipmentState, grace: timedelta, end: datetime | None) -> datetime | None:
    """When the load was really held: examination, or still not released `grace` after arrival."""
    if s.held_at is not None:
        return s.held_at
    if s.arrived_at is None:
        return None
    deadline = s.arrived_at + grace
    if s.released_at is not None:
        return deadline if s.released_at > deadline else None
    return deadline if end is not None and end >= deadline else None


def run_backtest(
    logs: list[Path],
    out: IO[str],
    thresholds: Thresholds,
    topic_kinds: dict[str, TopicKind],
    *,
    until: datetime | None = None,
    progress: ProgressFn | None = None,
    progress_every_s: float = 2.0,
) -> BacktestReport:
    loads_by_rule: dict[str, set[str]] = {}

    def write(alert: AlertEvent) -> None:
        for code in alert.reasons:
            loads_by_rule.setdefault(code, set()).add(alert.ccn)
        out.write(alert.model_dump_json(exclude_none=True))
        out.write("\n")

    backtest = Backtest(thresholds, topic_kinds, write)
    started = time.perf_counter()
    next_progress = started + progress_every_s
    for path in logs:
        for item in read_log(path):
            if isinstance(item, BadLine):
                backtest.report.records += 1
                backtest.report.dead_letters[item.reason] += 1
                print(f"{path}:{item.line}: skipped: {item.detail}", file=sys.stderr)
                continue
            backtest.feed_record(item.topic, item.key, item.value, item.timestamp)
            if progress is not None and backtest.report.records % 4096 == 0:
                now = time.perf_counter()
                if now >= next_progress:
                    progress(backtest.report.records, now - started)
                    next_progress = now + progress_every_s
    report = backtest.finish(until)
    report.rule_loads = Counter({code: len(ccns) for code, ccns in loads_by_rule.items()})
    report.seconds = time.perf_counter() - started
    return report


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
    return "\n".join(lines)
