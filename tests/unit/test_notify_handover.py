"""Shift handover: DST-correct instants, the message, and `Handovers.run` against the local Slack server.

Time is a manual clock whose `wait` blocks until the test moves it (`SteppingClock`): after
`advance`, the run loop has done everything due by then and sleeps again, so no test waits for
real time or hopes a task got its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from pydantic import SecretStr

from alerting.notify.clock import ManualClock
from alerting.notify.gateway import Posted
from alerting.notify.handover import (
    HANDOVER_PREFIX,
    Handovers,
    handover_key,
    latest_instant,
    next_instant,
    open_records,
    render_handover,
    shift_instants,
)
from alerting.notify.ledger import AlertRecord, MemoryLedger, Ownership
from alerting.notify.render import MAX_BLOCKS, MAX_FALLBACK_TEXT, MAX_SECTION_TEXT, SlackMessage
from alerting.notify.routing import Shift
from alerting.notify.slack import SlackWebGateway, make_web_client
from schemas.alerts import ReasonDetail
from schemas.ports import PORTS
from tests.fixtures.slack import SlackTestServer, make_alert

TORONTO = ZoneInfo("America/Toronto")
EAST = Shift("east", "#east", (time(6), time(14), time(22)), "America/Toronto")
WEST = Shift("west", "#west", (time(7), time(15)), "America/Vancouver")
START = datetime(2026, 11, 23, 13, 50, tzinfo=TORONTO)  # a Monday, EST (UTC-5)
SHIFT_14 = datetime(2026, 11, 23, 14, 0, tzinfo=TORONTO)
PORT_0453 = f"{PORTS['0453'].name} (0453)"


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def at_t(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def t_of(at: datetime) -> float:
    return (at - START).total_seconds()


# --- instants ------------------------------------------------------------------------------------


def test_spring_forward_moves_a_skipped_time_to_the_next_valid_minute() -> None:
    shift = Shift("east", "#east", (time(1, 30), time(2, 30), time(3, 0), time(14)), "America/Toronto")
    got = shift_instants(
        shift, datetime(2026, 3, 7, 12, tzinfo=TORONTO), datetime(2026, 3, 8, 23, tzinfo=TORONTO)
    )
    assert [i.astimezone(UTC) for i in got] == [
        utc(2026, 3, 7, 19),  # 14:00 EST
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 7),  # 02:30 does not exist: 03:00 EDT, and 03:00 itself is the same instant
        utc(2026, 3, 8, 18),  # 14:00 EDT: an hour earlier in UTC than the day before
    ]
    assert [f"{i:%H:%M %Z}" for i in got] == ["14:00 EST", "01:30 EST", "03:00 EDT", "14:00 EDT"]


def test_fall_back_takes_the_first_of_a_repeated_time_once() -> None:
    shift = Shift("east", "#east", (time(1, 30), time(6), time(22)), "America/Toronto")
    got = shift_instants(
        shift, datetime(2026, 10, 31, 23, tzinfo=TORONTO), datetime(2026, 11, 1, 23, tzinfo=TORONTO)
    )
    assert [i.astimezone(UTC) for i in got] == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first 01:30 (not 06:30 UTC, the second)
        utc(2026, 11, 1, 11),  # 06:00 EST
        utc(2026, 11, 2, 3),  # 22:00 EST
    ]


def test_instants_are_in_start_end_and_latest_next_bracket_now() -> None:
    got = shift_instants(EAST, SHIFT_14, SHIFT_14 + timedelta(hours=16))
    assert got == [
        SHIFT_14 + timedelta(hours=8),
        SHIFT_14 + timedelta(hours=16),
    ]  # start excluded, end included
    assert latest_instant(EAST, SHIFT_14) == SHIFT_14
    assert latest_instant(EAST, SHIFT_14 - timedelta(seconds=1)) == SHIFT_14 - timedelta(hours=8)
    assert next_instant(EAST, SHIFT_14) == SHIFT_14 + timedelta(hours=8)
    assert next_instant(EAST, SHIFT_14.astimezone(UTC) - timedelta(minutes=1)) == SHIFT_14
    with pytest.raises(ValueError, match="aware"):
        latest_instant(EAST, datetime(2026, 11, 23, 14))  # noqa: DTZ001 - the naive input refused


def test_next_instant_across_the_dst_night() -> None:
    """22:00 EDT on Saturday to 06:00 EST on Sunday is nine hours, not eight."""
    saturday = datetime(2026, 10, 31, 22, tzinfo=TORONTO)
    sunday = next_instant(EAST, saturday)
    assert sunday == datetime(2026, 11, 1, 6, tzinfo=TORONTO)
    assert sunday.astimezone(UTC) - saturday.astimezone(UTC) == timedelta(hours=9)


# --- the message -----------------------------------------------------------------------------------


def detail(code: str, severity: str, summary: str) -> ReasonDetail:
    return ReasonDetail(code=code, severity=severity, summary=summary, action="Call the broker.")  # type: ignore[arg-type]


def record(
    alert_id: str,
    *,
    channel: str = "#east",
    eta: datetime,
    owner: tuple[str, str, datetime] | None = None,
    action: str = "raised",
    severity: str | None = "warning",
    **facts: Any,
) -> AlertRecord:
    alert = make_alert(alert_id, 1 if action == "raised" else 2, action, severity, eta=eta, **facts)
    ownership = Ownership()
    if owner is not None:
        ownership = Ownership(owner=owner[0], owner_name=owner[1], owned_at=owner[2].timestamp())
    return AlertRecord(alert_id=alert_id, channel=channel, latest=alert, ownership=ownership, ts="1.000001")


def east_records() -> list[AlertRecord]:
    two_reasons = [
        detail("pars_missing", "warning", "No PARS on file"),
        detail("carm_not_delegated", "critical", "Broker not delegated in CARM"),
    ]
    return [
        record(
            "LATE",
            eta=SHIFT_14 + timedelta(minutes=35),
            owner=("U0SAM", "sam", SHIFT_14 - timedelta(minutes=58)),
        ),
        record(
            "SOON",
            eta=SHIFT_14 - timedelta(minutes=10),
            severity="critical",
            reasons=["carm_not_delegated", "pars_missing"],
            details=two_reasons,
        ),
        record("DONE", eta=SHIFT_14, action="resolved", severity=None, outcome="released"),
        AlertRecord(alert_id="QUIET", channel="#east", latest=make_alert("QUIET", eta=SHIFT_14), silent=True),
        record("WEST", channel="#west", eta=SHIFT_14),
        AlertRecord(alert_id="NOETA", channel="#east", latest=make_alert("NOETA", eta=None)),
    ]


def texts(message: SlackMessage) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b.get("type") == "section"]


def test_open_records_are_the_channels_open_shown_lifecycles() -> None:
    records = east_records()
    assert [r.alert_id for r in open_records(records, "#east")] == ["LATE", "SOON", "NOETA"]
    records[0].channel_id = "C0EAST"
    assert [r.alert_id for r in open_records(records, "C0EAST")] == ["LATE"]
    assert [r.alert_id for r in open_records(records, "west")] == ["WEST"]


def test_handover_lists_soonest_first_with_owner_names_and_flags_the_unowned() -> None:
    message = render_handover(
        open_records(east_records(), "#east"), at=SHIFT_14, shift_label="14:00 America/Toronto"
    )
    head, soon, late, no_eta = texts(message)
    assert head == "*Shift handover 14:00 America/Toronto — 3 open loads (2 unowned)*"
    assert soon.startswith(f":rotating_light: *LD-SOON* · CCN 8000SOON · {PORT_0453} · 10 min past ETA\n")
    assert "10 min past ETA" in soon and "*unowned*" in soon
    assert "Broker not delegated in CARM" in soon  # the critical reason first, though listed second
    assert "owned by sam since 13:02" in late and "35 min left" in late and "*unowned*" not in late
    assert "<@" not in json.dumps(message.blocks) and "U0SAM" not in json.dumps(message.blocks)  # no ping
    assert "ETA unknown" in no_eta
    assert message.text.startswith("Shift handover 14:00 America/Toronto — 3 open loads (2 unowned)\n")
    assert "UNOWNED" in message.text and "owned by sam" in message.text


def test_a_snooze_still_running_is_shown() -> None:
    snoozed = record("Z1", eta=SHIFT_14 + timedelta(hours=3))
    snoozed.ownership = Ownership(
        snoozed_until=(SHIFT_14 + timedelta(minutes=30)).timestamp(), snoozed_by="U1"
    )
    over = record("Z2", eta=SHIFT_14 + timedelta(hours=4))
    over.ownership = Ownership(snoozed_until=(SHIFT_14 - timedelta(minutes=1)).timestamp())
    _, first, second = texts(
        render_handover([snoozed, over], at=SHIFT_14, shift_label="14:00 America/Toronto")
    )
    assert "3 h 00 min left" in first and "*unowned* · snoozed until 14:30" in first
    assert "snoozed" not in second


def test_no_open_loads_says_so() -> None:
    message = render_handover([], at=SHIFT_14, shift_label="14:00 America/Toronto")
    assert texts(message) == ["*Shift handover 14:00 America/Toronto — no open loads*"]
    assert message.text == "Shift handover 14:00 America/Toronto — no open loads"


def test_data_is_escaped_and_cannot_ping() -> None:
    nasty = record(
        "X1",
        eta=SHIFT_14,
        owner=("U0X", "<!channel> & co", SHIFT_14),
        load_ref="<@U123>",
        details=[detail("pars_missing", "warning", "@here <http://evil|click>")],
    )
    message = render_handover([nasty], at=SHIFT_14, shift_label="14:00 America/Toronto")
    blob = json.dumps(message.blocks, ensure_ascii=False) + message.text
    assert "<!channel>" not in blob and "<@U123>" not in blob and "<http" not in blob
    assert "&lt;!channel&gt; &amp; co" in blob and "@\u2060here" in blob


def test_a_long_handover_stays_within_block_kit_limits_and_counts_the_rest() -> None:
    many = [
        record(
            f"L{i:03d}", eta=SHIFT_14 + timedelta(minutes=i), owner=("U1", "ana", SHIFT_14) if i % 3 else None
        )
        for i in range(120)
    ]
    message = render_handover(many, at=SHIFT_14, shift_label="14:00 America/Toronto")
    assert len(message.blocks) <= MAX_BLOCKS
    assert all(len(t) <= MAX_SECTION_TEXT for t in texts(message))
    assert len(message.text) <= MAX_FALLBACK_TEXT
    shown = sum(1 for t in texts(message) if "CCN" in t)
    hidden = 120 - shown
    unowned_hidden = sum(1 for i in range(shown, 120) if i % 3 == 0)
    assert texts(message)[-1] == f"…and {hidden} more open loads ({unowned_hidden} unowned)"
    assert texts(message)[0] == "*Shift handover 14:00 America/Toronto — 120 open loads (40 unowned)*"
    assert "*LD-L000*" in texts(message)[1]  # soonest first
    assert "more open loads" in message.text.splitlines()[-1]


# --- the scheduler against the local Slack server ---------------------------------------------------


class SteppingClock(ManualClock):
    """A ManualClock whose `wait` returns only once the test moved time past its timeout (or `stop`)."""

    def __init__(self, wall_origin: float) -> None:
        super().__init__(0.0, wall_origin)
        self._moved = asyncio.Event()
        self.waiting = asyncio.Event()

    def advance_to(self, t: float) -> None:
        super().advance_to(t)
        self.waiting.clear()
        self._moved.set()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        deadline = None if timeout is None else self.t + timeout
        while not event.is_set() and (deadline is None or self.t < deadline):
            self._moved.clear()
            self.waiting.set()
            waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._moved.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        self.waiting.clear()

    async def idle(self) -> None:
        """Until the run loop sleeps again: everything due by now is done."""
        await asyncio.wait_for(self.waiting.wait(), 10)


class FailingLedger(MemoryLedger):
    """Refuses its `fail_at`-th durable write (a broker refusing the record: the process stops)."""

    def __init__(self, entries: Any = None, *, fail_at: int) -> None:
        super().__init__(entries)
        self.fail_at = fail_at
        self.durable_writes = 0

    async def put_durable(self, key: str, entry: Any) -> None:
        self.durable_writes += 1
        if self.durable_writes == self.fail_at:
            raise RuntimeError("ledger write refused")
        await super().put_durable(key, entry)


@dataclass
class Rig:
    slack: SlackTestServer
    clock: SteppingClock = field(default_factory=lambda: SteppingClock(START.timestamp()))
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    records: list[AlertRecord] = field(default_factory=east_records)
    shifts: tuple[Shift, ...] = (EAST, WEST)
    handovers: Handovers | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def gateway(self) -> SlackWebGateway:
        return SlackWebGateway(make_web_client(SecretStr("xoxb-test"), self.slack.base_url))

    async def start(self) -> Handovers:
        """A notifier process starting: only what the ledger made durable is known."""
        self.handovers = Handovers(self.shifts, lambda: self.records, self.gateway(), self.ledger, self.clock)
        self.handovers.restore(self.ledger.durable)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.handovers.run(self.stop))
        await self.clock.idle()
        return self.handovers

    async def halt(self) -> None:
        self.stop.set()
        assert self.task is not None
        with contextlib.suppress(RuntimeError):
            await asyncio.wait_for(self.task, 10)

    async def restart(self, *, at: float) -> Handovers:
        await self.halt()
        self.ledger = MemoryLedger(self.ledger.durable)
        self.clock.advance_to(at)  # the process was down meanwhile
        return await self.start()

    async def advance(self, t: float) -> None:
        self.clock.advance_to(t)
        await self.clock.idle()

    def posts(self, channel: str) -> list[str]:
        return [m.metadata["event_payload"]["key"] for m in self.slack.top_level(channel) if m.metadata]


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    async with SlackTestServer() as slack:
        rig = Rig(slack)
        yield rig
        if rig.task is not None and not rig.task.done():
            await rig.halt()


def key(channel: str, at: datetime) -> str:
    return handover_key(channel, at)


async def test_one_message_per_channel_per_shift_change(rig: Rig) -> None:
    await rig.start()
    assert rig.posts("#east") == [] and rig.posts("#west") == []  # 06:00 is hours old: not posted at start
    await rig.advance(t_of(SHIFT_14) - 1)
    assert rig.posts("#east") == []
    await rig.advance(t_of(SHIFT_14))
    assert rig.posts("#east") == [key("#east", SHIFT_14)] and rig.posts("#west") == []
    await rig.advance(t_of(SHIFT_14) + 3600)
    west_15 = datetime(2026, 11, 23, 15, tzinfo=ZoneInfo("America/Vancouver"))
    await rig.advance(t_of(west_15))
    assert rig.posts("#west") == [key("#west", west_15)]
    await rig.advance(t_of(SHIFT_14 + timedelta(hours=8)) + 5)
    assert rig.posts("#east") == [key("#east", SHIFT_14), key("#east", SHIFT_14 + timedelta(hours=8))]
    assert len(rig.slack.calls("chat.postMessage")) == 3  # nothing else, no retries
    assert rig.ledger.durable[HANDOVER_PREFIX + "#west"] == {
        "kind": "handover",
        "channel": "#west",
        "last": west_15.timestamp(),
        "intent": None,
    }


async def test_the_message_lists_the_channels_open_loads(rig: Rig) -> None:
    await rig.start()
    await rig.advance(t_of(SHIFT_14))
    [east] = rig.slack.top_level("#east")
    blob = json.dumps(east.blocks)
    assert "Shift handover 14:00 America/Toronto — 3 open loads (2 unowned)" in east.text
    for alert_id in ("LATE", "SOON", "NOETA"):
        assert f"LD-{alert_id}" in blob
    for absent in ("LD-DONE", "LD-QUIET", "LD-WEST"):  # resolved, never shown, another channel
        assert absent not in blob
    assert "owned by sam since 13:02" in blob and "*unowned*" in blob
    west_15 = datetime(2026, 11, 23, 15, tzinfo=ZoneInfo("America/Vancouver"))
    await rig.advance(t_of(west_15))
    [west] = rig.slack.top_level("#west")
    assert "Shift handover 15:00 America/Vancouver — 1 open load (1 unowned)" in west.text


async def test_a_restart_never_posts_the_same_shift_twice(rig: Rig) -> None:
    await rig.start()
    await rig.advance(t_of(SHIFT_14))
    await rig.restart(at=t_of(SHIFT_14) + 300)  # within the grace: but it was posted already
    assert rig.posts("#east") == [key("#east", SHIFT_14)]
    await rig.advance(t_of(SHIFT_14 + timedelta(hours=8)))
    assert len(rig.posts("#east")) == 2


async def test_a_shift_missed_while_down_is_posted_within_the_grace(rig: Rig) -> None:
    await rig.start()
    await rig.restart(at=t_of(SHIFT_14) + 600)  # down from 13:50 to 14:10
    assert rig.posts("#east") == [key("#east", SHIFT_14)]
    assert "14:00 America/Toronto" in rig.slack.top_level("#east")[0].text


async def test_a_shift_missed_by_more_than_the_grace_is_skipped(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.start()
    with caplog.at_level(logging.INFO, logger="holdwatch.notify"):
        await rig.restart(at=t_of(SHIFT_14) + 901)
    assert rig.posts("#east") == []
    assert any("no handover for" in r.getMessage() and "#east" in r.getMessage() for r in caplog.records)
    await rig.advance(t_of(SHIFT_14 + timedelta(hours=8)))
    assert rig.posts("#east") == [key("#east", SHIFT_14 + timedelta(hours=8))]  # the next one is


async def test_slack_failures_are_retried_with_backoff(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await rig.start()
    rig.slack.fail("server_error", times=2, methods={"chat.postMessage"})
    with caplog.at_level(logging.WARNING, logger="holdwatch.notify"):
        await rig.advance(t_of(SHIFT_14))
        assert rig.posts("#east") == []
        await rig.advance(t_of(SHIFT_14) + 2)  # first backoff: 2 s
        assert rig.posts("#east") == []
        await rig.advance(t_of(SHIFT_14) + 2 + 8)  # then 8 s
    assert rig.posts("#east") == [key("#east", SHIFT_14)]
    assert sum("retrying in" in r.getMessage() for r in caplog.records) == 2


async def test_a_lost_answer_is_looked_up_not_posted_again(rig: Rig) -> None:
    await rig.start()
    rig.slack.fail("drop_after", times=1, methods={"chat.postMessage"})  # lands, the answer is lost
    await rig.advance(t_of(SHIFT_14))
    await rig.advance(t_of(SHIFT_14) + 2)
    assert rig.posts("#east") == [key("#east", SHIFT_14)]
    assert len(rig.slack.calls("chat.postMessage", outcome=None)) == 1
    assert rig.slack.calls("conversations.history")
    assert rig.ledger.durable[HANDOVER_PREFIX + "#east"]["last"] == SHIFT_14.timestamp()


async def test_after_a_few_failures_the_shift_is_skipped_and_run_goes_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.start()
    rig.slack.fail("channel_not_found", methods={"chat.postMessage"})
    with caplog.at_level(logging.ERROR, logger="holdwatch.notify"):
        for t in (0, 2, 10, 42, 42 + 120):
            await rig.advance(t_of(SHIFT_14) + t)
    assert len(rig.slack.calls("chat.postMessage", outcome="channel_not_found")) == 4
    assert any("not posted after 4 attempts" in r.getMessage() for r in caplog.records)
    assert rig.task is not None and not rig.task.done()
    rig.slack.clear_failures()
    await rig.advance(t_of(SHIFT_14 + timedelta(hours=8)))
    assert rig.posts("#east") == [key("#east", SHIFT_14 + timedelta(hours=8))]


async def test_a_crash_between_post_and_ledger_write_does_not_post_twice(rig: Rig) -> None:
    rig.ledger = FailingLedger(fail_at=2)  # the intent is written, the post lands, "done" is refused
    await rig.start()
    rig.clock.advance_to(t_of(SHIFT_14))
    assert rig.task is not None
    with pytest.raises(RuntimeError, match="ledger write refused"):
        await asyncio.wait_for(rig.task, 10)  # a ledger failure stops the process, as in the delivery core
    assert rig.posts("#east") == [key("#east", SHIFT_14)]
    assert rig.ledger.durable[HANDOVER_PREFIX + "#east"]["intent"] == SHIFT_14.timestamp()
    await rig.restart(at=t_of(SHIFT_14) + 120)
    assert rig.posts("#east") == [key("#east", SHIFT_14)]  # found by its metadata key
    assert rig.ledger.durable[HANDOVER_PREFIX + "#east"]["last"] == SHIFT_14.timestamp()


async def test_two_teams_sharing_a_channel_get_one_message(rig: Rig) -> None:
    rig.shifts = (EAST, Shift("default", "#east", (time(14),), "America/Toronto"))
    await rig.start()
    await rig.advance(t_of(SHIFT_14))
    assert rig.posts("#east") == [key("#east", SHIFT_14)]


async def test_post_now_answers_without_posting(rig: Rig) -> None:
    handovers = await rig.start()
    rig.records[0].channel_id = "C0EAST"
    message = await handovers.post_now("C0EAST", at=SHIFT_14.astimezone(UTC))
    assert message.text.startswith("Shift handover as of 14:00 America/Toronto — 3 open loads (2 unowned)")
    assert rig.slack.calls("chat.postMessage") == []
    assert await handovers.shift_for("C0EAST") == EAST
    assert await handovers.shift_for("C0NOWHERE") is None


class SignallingGateway:
    """The real gateway, plus an event set on each post (for the plain ManualClock, which never blocks)."""

    def __init__(self, inner: SlackWebGateway) -> None:
        self.inner = inner
        self.posted = asyncio.Event()

    async def post(self, channel: str, message: SlackMessage, *, key: str, **kw: Any) -> Posted:
        posted = await self.inner.post(channel, message, key=key, **kw)
        self.posted.set()
        return posted

    async def update(self, channel_id: str, ts: str, message: SlackMessage) -> None:
        await self.inner.update(channel_id, ts, message)

    async def find(
        self, channel_id: str, key: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        return await self.inner.find(channel_id, key, oldest=oldest, thread_ts=thread_ts)

    async def channel_id(self, channel: str) -> str | None:
        return await self.inner.channel_id(channel)


async def test_run_with_the_plain_manual_clock(rig: Rig) -> None:
    clock = ManualClock(0.0, START.timestamp())
    gateway = SignallingGateway(rig.gateway())
    records: Iterable[AlertRecord] = rig.records
    handovers = Handovers((EAST,), lambda: records, gateway, rig.ledger, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(handovers.run(stop))
    clock.advance_to(t_of(SHIFT_14))
    await asyncio.wait_for(gateway.posted.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert rig.posts("#east") == [key("#east", SHIFT_14)]
