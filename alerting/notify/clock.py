"""Time for the notifier, injected so tests and benchmarks can run it faster than real time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: pacing, backoff, storm windows."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch: to search Slack history for a post that may have landed."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Return when `event` is set or `timeout` clock-seconds have passed."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class ScaledClock:
    """Clock time runs `speed` times faster than real time (a 30 s outage in 0.3 s at speed 100)."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def wall(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), None if timeout is None else timeout / self.speed)


class ManualClock:
    """A clock that moves only when told: for step-by-step simulations."""

    def __init__(self, start: float = 0.0, wall_origin: float = 1_763_900_000.0) -> None:
        self.t = start
        self._wall_origin = wall_origin

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self._wall_origin + self.t

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, t)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        await asyncio.sleep(0)
