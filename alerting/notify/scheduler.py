"""Scheduler: per Slack channel, which key is due when, and how failures push the channel back.

Each channel keeps its own pace (one call per `min_interval_s`), honours a 429's Retry-After,
backs off exponentially (with jitter) after 5xx and dropped connections, and retries every
`permanent_retry_s` after a permanent error, so one broken channel never holds up another.
Storm grouping is decided here too (`StormDetector`, per channel). Time is the injected clock's
monotonic `now()`; nothing here calls Slack or the ledger.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from alerting.notify.clock import Clock
from alerting.notify.policy import DeliveryPolicy
from alerting.notify.storm import StormDetector


@dataclass
class ChannelState:
    name: str
    dirty: dict[str, float] = field(default_factory=dict)  # key -> when its next call is due
    next_send_at: float = 0.0
    blocked_until: float = 0.0
    failures: int = 0
    error: str | None = None
    channel_id: str | None = None
    open_digest: str | None = None
    kick: asyncio.Event = field(default_factory=asyncio.Event)


class Scheduler:
    def __init__(self, policy: DeliveryPolicy, clock: Clock, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng or random.Random()
        self.storms = StormDetector(policy.storm_threshold, policy.storm_window_s)
        self.channels: dict[str, ChannelState] = {}
        self.changed = asyncio.Event()  # a channel was added: the runner starts a worker for it

    def channel(self, name: str) -> ChannelState:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = ChannelState(name)
            self.changed.set()
        return ch

    # --- due times -----------------------------------------------------------------------------

    def mark(self, channel: str, key: str, due: float) -> None:
        """`key` needs a call no later than `due` (an earlier due time stays)."""
        ch = self.channel(channel)
        ch.dirty[key] = min(ch.dirty.get(key, math.inf), due)
        ch.kick.set()

    def set_due(self, channel: str, key: str, due: float) -> None:
        ch = self.channel(channel)
        ch.dirty[key] = due
        ch.kick.set()

    def settle(self, channel: str, key: str) -> None:
        """`key` owes nothing more."""
        ch = self.channels.get(channel)
        if ch is not None:
            ch.dirty.pop(key, None)

    def is_pending(self, channel: str, key: str) -> bool:
        """`key` has a call due (or in flight: a key leaves `dirty` only once its step is done)."""
        ch = self.channels.get(channel)
        return ch is not None and key in ch.dirty

    def pending_count(self) -> int:
        return sum(len(ch.dirty) for ch in self.channels.values())

    def pending_keys(self) -> list[str]:
        return [k for ch in self.channels.values() for k in ch.dirty]

    def wake_time(self, channel: str) -> float | None:
        """When the channel next has something to do (None: nothing pending)."""
        ch = self.channels.get(channel)
        if ch is None or not ch.dirty:
            return None
        return max(min(ch.dirty.values()), ch.next_send_at, ch.blocked_until)

    def next_due(self) -> tuple[float, str] | None:
        """The earliest (wake time, channel) over all channels."""
        best: tuple[float, str] | None = None
        for name in self.channels:
            wake = self.wake_time(name)
            if wake is not None and (best is None or wake < best[0]):
                best = (wake, name)
        return best

    def due_key(self, channel: str) -> str | None:
        """The key whose call may be made now in `channel` (None: paced, blocked or nothing due)."""
        ch = self.channels.get(channel)
        now = self.clock.now()
        if ch is None or not ch.dirty or now < max(ch.next_send_at, ch.blocked_until):
            return None
        key, due = min(ch.dirty.items(), key=lambda kv: kv[1])
        return key if due <= now else None

    # --- storms --------------------------------------------------------------------------------

    def in_storm(self, channel: str) -> bool:
        """Count one newly raised alert in `channel`; True if it is to be grouped into a digest.

        A raised alert outside a storm ends the channel's storm: its digest is closed (kept up to
        date, never joined again) and the next storm opens a new one."""
        storm = self.storms.observe_raised(channel, self.clock.now())
        if not storm:
            self.channel(channel).open_digest = None
        return storm

    # --- outcomes ------------------------------------------------------------------------------

    def succeeded(self, channel: str, *, sent: bool) -> str | None:
        """A step worked: pace the next call if it reached Slack; returns the error it recovered from."""
        ch = self.channel(channel)
        recovered, ch.error, ch.failures = ch.error, None, 0
        if sent:
            ch.next_send_at = self.clock.now() + self.policy.min_interval_s
        return recovered

    def rate_limited(self, channel: str, retry_after: float | None) -> float:
        """A 429: wait Retry-After (or the pace) before the channel's next call; returns the wait."""
        wait = retry_after if retry_after is not None else max(1.0, self.policy.min_interval_s)
        self.channel(channel).blocked_until = self.clock.now() + wait
        return wait

    def transient(self, channel: str) -> float:
        """A 5xx or a dropped connection: back off exponentially with jitter; returns the delay."""
        ch = self.channel(channel)
        ch.failures += 1
        delay: float = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** (ch.failures - 1))
        delay *= 0.75 + 0.25 * self.rng.random()
        ch.blocked_until = self.clock.now() + delay
        return delay

    def permanent(self, channel: str, error: str) -> None:
        """A configuration problem: retry the channel every `permanent_retry_s` until it is fixed."""
        ch = self.channel(channel)
        ch.error = error
        ch.blocked_until = self.clock.now() + self.policy.permanent_retry_s

    def crashed(self, channel: str) -> None:
        """An unexpected error: keep the channel away for the longest backoff."""
        self.channel(channel).blocked_until = self.clock.now() + self.policy.backoff_max_s
