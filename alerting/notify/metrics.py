"""What the notifier reports; the shell maps it to Prometheus (nothing imported here)."""

from __future__ import annotations

from collections import Counter
from typing import Protocol


class NotifyMetrics(Protocol):
    def slack_call(self, method: str, outcome: str) -> None: ...
    def rate_limited(self) -> None: ...
    def retried(self) -> None: ...
    def delivery_latency(self, seconds: float, traffic: str = "live") -> None: ...
    def end_to_end(self, seconds: float, traffic: str) -> None: ...
    def permanent_error(self, error: str) -> None: ...
    def duplicate_dropped(self) -> None: ...
    def storm_grouped(self) -> None: ...
    def skipped(self, reason: str) -> None: ...
    def pending(self, count: int) -> None: ...
    def action(self, kind: str, outcome: str) -> None: ...
    def acknowledged_after(self, seconds: float) -> None: ...
    def paged(self, level: int) -> None: ...


class NullMetrics:
    """Default: measure nothing."""

    def slack_call(self, method: str, outcome: str) -> None:
        pass

    def rate_limited(self) -> None:
        pass

    def retried(self) -> None:
        pass

    def delivery_latency(self, seconds: float, traffic: str = "live") -> None:
        pass

    def end_to_end(self, seconds: float, traffic: str) -> None:
        pass

    def permanent_error(self, error: str) -> None:
        pass

    def duplicate_dropped(self) -> None:
        pass

    def storm_grouped(self) -> None:
        pass

    def skipped(self, reason: str) -> None:
        pass

    def pending(self, count: int) -> None:
        pass

    def action(self, kind: str, outcome: str) -> None:
        pass

    def acknowledged_after(self, seconds: float) -> None:
        pass

    def paged(self, level: int) -> None:
        pass


class CountingMetrics:
    """In-memory counts and latencies, for tests and benchmarks."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.end_to_end_latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.pending_now = 0
        self.actions: Counter[tuple[str, str]] = Counter()
        self.ack_latencies: list[float] = []
        self.pages: Counter[int] = Counter()

    def slack_call(self, method: str, outcome: str) -> None:
        self.calls[(method, outcome)] += 1

    def rate_limited(self) -> None:
        self.counts["rate_limited"] += 1

    def retried(self) -> None:
        self.counts["retried"] += 1

    def delivery_latency(self, seconds: float, traffic: str = "live") -> None:
        self.latencies.append(seconds)

    def end_to_end(self, seconds: float, traffic: str) -> None:
        self.end_to_end_latencies.append(seconds)

    def permanent_error(self, error: str) -> None:
        self.errors[error] += 1

    def duplicate_dropped(self) -> None:
        self.counts["duplicate_dropped"] += 1

    def storm_grouped(self) -> None:
        self.counts["storm_grouped"] += 1

    def skipped(self, reason: str) -> None:
        self.counts[f"skipped:{reason}"] += 1

    def pending(self, count: int) -> None:
        self.pending_now = count

    def action(self, kind: str, outcome: str) -> None:
        self.actions[(kind, outcome)] += 1

    def acknowledged_after(self, seconds: float) -> None:
        self.ack_latencies.append(seconds)

    def paged(self, level: int) -> None:
        self.pages[level] += 1
