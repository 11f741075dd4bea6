"""Replay's delivery guarantee without a broker: a fake kafka-python producer whose futures stall
(a broker restart), succeed late, or fail; and `--from-line` resuming in the plan."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from streams.replay.plan import Publish, TickAll, plan_replay
from streams.replay.publish import (
    KafkaPythonSender,
    ReplayError,
    ReplayOptions,
    producer_timeouts,
    run_replay,
)
from tests.unit.test_replay_plan import BN, TOPICS, FakeWall, carm, numbered, rec, shipment


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeFuture:
    """Done after `wait_s` seconds of the fake clock, then succeeded or failed with `error`."""

    def __init__(self, clock: FakeClock, wait_s: float, error: BaseException | None) -> None:
        self._clock, self._done_at, self._error = clock, clock.now + wait_s, error

    @property
    def is_done(self) -> bool:
        return self._clock.now >= self._done_at

    @property
    def exception(self) -> BaseException | None:
        return self._error if self.is_done else None

    def failed(self) -> bool:
        return self.is_done and self._error is not None

    def get(self, timeout: float | None = None) -> object:
        if not self.is_done:
            step = timeout if timeout is not None else self._done_at - self._clock.now
            self._clock.now = min(self._done_at, self._clock.now + step)
            if not self.is_done:
                raise KafkaTimeoutError("timeout")
        if self._error is not None:
            raise self._error
        return "metadata"


class FakeProducer:
    """Futures as `outcome(n)` (0-based send number) says: (seconds to acknowledge, error or None)."""

    def __init__(self, clock: FakeClock, outcome: Any) -> None:
        self.clock, self.outcome, self.sent = clock, outcome, 0

    def send(self, topic: str, **_: Any) -> FakeFuture:
        wait_s, error = self.outcome(self.sent)
        self.sent += 1
        if isinstance(error, KafkaTimeoutError) and wait_s < 0:
            raise error  # send() itself gave up (no metadata within max_block_ms)
        return FakeFuture(self.clock, wait_s, error)

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def close(self, timeout: float | None = None) -> None:
        pass


def sender_for(outcome: Any, messages: list[str], **kwargs: Any) -> KafkaPythonSender:
    clock = FakeClock()
    return KafkaPythonSender(FakeProducer(clock, outcome), say=messages.append, monotonic=clock, **kwargs)


def log(n: int) -> list[tuple[str, Any]]:
    """A CARM snapshot, then n shipment events a minute apart (lines 1..n+1)."""
    events = [rec("em", f"ABCD{i:07d}", shipment(1 + i)) for i in range(n)]
    return numbered([rec("carm", BN, carm(0)), *events])


def replay_with(sender: KafkaPythonSender, items: list[tuple[str, Any]], **kwargs: Any) -> Any:
    actions = plan_replay(items, TOPICS, tick_every=4, carm_barrier=False, **kwargs)
    options = ReplayOptions(tick_every=4)
    return run_replay(actions, TOPICS, options, sender, wall=FakeWall(), say=lambda _: None)


def test_an_outage_that_ends_within_the_broker_timeout_delivers_everything_and_is_shown() -> None:
    messages: list[str] = []
    # records 3..5 wait 40 s for their acknowledgement (the broker restarts), then succeed
    sender = sender_for(lambda n: (40.0, None) if 3 <= n <= 5 else (0.0, None), messages, broker_timeout_s=60)
    report = replay_with(sender, log(10))
    assert report.records == 11 and sender.ledger.failed == 0
    assert any("broker unreachable since" in m and "retrying" in m for m in messages)


def test_records_not_acknowledged_end_the_replay_naming_how_many_and_the_line_to_resume_from() -> None:
    messages: list[str] = []
    lost = NotLeaderForPartitionError("gave up after the delivery timeout")
    # sends 0..4 are line 1..4 plus a tick; lines 5 and 6 (sends 5, 6) fail after retrying
    sender = sender_for(lambda n: (2.0, lost) if n in (5, 6) else (0.0, None), messages)
    with pytest.raises(ReplayError) as caught:
        replay_with(sender, log(10))
    assert caught.value.resume_line == 5
    text = str(caught.value)
    assert "2 record(s) were not acknowledged" in text and "--from-line 5" in text
    assert "NotLeaderForPartitionError" in text


def test_a_send_that_cannot_get_metadata_is_a_failure_at_its_line() -> None:
    sender = sender_for(lambda n: (-1.0, KafkaTimeoutError("no metadata")) if n == 2 else (0.0, None), [])
    with pytest.raises(ReplayError) as caught:
        replay_with(sender, log(5))
    assert caught.value.resume_line == 3 and "1 record(s)" in str(caught.value)


def test_an_acknowledgement_that_never_comes_fails_after_the_broker_timeout() -> None:
    sender = sender_for(lambda n: (10_000.0, None) if n == 1 else (0.0, None), [], broker_timeout_s=5)
    with pytest.raises(ReplayError) as caught:
        replay_with(sender, log(3))
    assert caught.value.resume_line == 2


def test_producer_timeouts_follow_the_broker_timeout_and_satisfy_kafka_python() -> None:
    for seconds in (1.0, 5.0, 300.0):
        t = producer_timeouts(seconds)
        assert t["delivery_timeout_ms"] >= max(seconds * 1000, t["request_timeout_ms"] + 20)
        assert t["max_block_ms"] == int(seconds * 1000)


def test_from_line_publishes_the_rest_with_the_clock_and_lines_of_the_whole_replay() -> None:
    items = log(10) + [("b.jsonl", item) for _, item in log(2)]  # a second file: lines 12..14
    whole = list(plan_replay(items, TOPICS, tick_every=100, carm_barrier=True))
    resumed = list(plan_replay(items, TOPICS, tick_every=100, carm_barrier=True, from_line=5))
    sent = [a for a in resumed if isinstance(a, Publish)]
    assert [a.line for a in sent] == list(range(5, 15))
    expected = [a for a in whole if isinstance(a, Publish)][4:]
    assert [(a.key, a.value, a.source) for a in sent] == [(a.key, a.value, a.source) for a in expected]
    assert sent[0].source == "a.jsonl:5" and sent[-3].source == "b.jsonl:1"
    assert not any(type(a).__name__ == "Barrier" for a in resumed)  # the CARM prefix was earlier
    final = [a for a in resumed if isinstance(a, TickAll)][-1]
    assert final.tick.time == [a for a in whole if isinstance(a, TickAll)][-1].tick.time
