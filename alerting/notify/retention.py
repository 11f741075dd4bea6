"""Retention of the notifier's ledger, in event time: when a resolved lifecycle may be forgotten.

Pure bookkeeping, no I/O: the delivery core tells it every accepted alert event (`observe`) and
every resolution (`closed`); `take_due` hands out, at most once per `interval` of event time, the
lifecycles resolved more than `retention` before the clock. The clock is the newest `at` among
accepted alert events, never wall time, so a replay of history forgets exactly what live did.
Whether a due lifecycle's Slack work is finished (nothing owed, no intent) is the caller's call;
the ones it keeps are handed out again at the next pass (`wait`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class Retention:
    retention: timedelta
    interval: timedelta
    clock: datetime | None = None  # the newest `at` among accepted alert events
    _last_pass: datetime | None = None
    _closed: list[tuple[datetime, str]] = field(default_factory=list)  # heap: (resolved at, key)
    _waiting: set[str] = field(default_factory=set)  # due, but Slack still owed something

    def observe(self, at: datetime) -> None:
        """An accepted alert event: the clock moves to its `at` if that is newer."""
        if self.clock is None or at > self.clock:
            self.clock = at

    def closed(self, key: str, at: datetime) -> None:
        """Lifecycle `key` resolved at `at` (a key may be recorded more than once: checked when due)."""
        heapq.heappush(self._closed, (at, key))

    @property
    def horizon(self) -> datetime | None:
        """Lifecycles resolved before this instant are due (None: no event seen yet)."""
        return None if self.clock is None else self.clock - self.retention

    def pass_due(self) -> bool:
        """The clock moved by `interval` since the last pass (or there was none)."""
        if self.clock is None:
            return False
        return self._last_pass is None or self.clock - self._last_pass >= self.interval

    def take_due(self) -> set[str]:
        """Start a pass: the keys resolved before the horizon, and those kept at earlier passes."""
        horizon = self.horizon
        due, self._waiting = self._waiting, set()
        if horizon is None:
            return due
        self._last_pass = self.clock
        while self._closed and self._closed[0][0] < horizon:
            due.add(heapq.heappop(self._closed)[1])
        return due

    def wait(self, keys: Iterable[str]) -> None:
        """Due keys whose Slack work is not finished: handed out again at the next pass."""
        self._waiting.update(keys)

    def __len__(self) -> int:
        """Entries held (for tests: bounded by the lifecycles resolved within the retention)."""
        return len(self._closed) + len(self._waiting)
