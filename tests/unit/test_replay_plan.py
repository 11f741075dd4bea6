"""`holdwatch replay` without a broker: the plan (seq, ticks, barrier, timestamps, skips),
pacing, the shell against a fake producer, and the barrier wait."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.engine.config import Thresholds
from alerting.engine.ingest import EPOCH
from devtools.simulate import SimulationConfig, write_simulation
from schemas.envelope import LOG_TS_HEADER, SEQ_HEADER, TICK_HEADER, Tick
from schemas.eventlog import BadLine, LogRecord, LogWriter
from streams.backtest import run_backtest
from streams.cli.replay import parse_speed
from streams.replay.plan import (
    Action,
    Barrier,
    Pacer,
    Publish,
    ReplayTopics,
    Skip,
    TickAll,
    gap_tick_time,
    log_items,
    plan_replay,
    value_bytes,
)
from streams.replay.publish import (
    BarrierOutcome,
    ReplayOptions,
    WallClock,
    run_replay,
    wait_for_group,
)

TOPICS = ReplayTopics("em", "rns", "carm")
BN = "123456789RM0001"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def ms(minutes: float) -> int:
    return int((at(minutes) - EPOCH) / timedelta(milliseconds=1))


def shipment(minutes: float, ccn: str = "ABCD1234567", n: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"e-{ccn}-{minutes}-{n}",
        "event_type": "cargo_accepted",
        "occurred_at": iso(minutes),
        "schema_version": 1,
        "ccn": ccn,
    }


def rns(minutes: float, ccn: str = "ABCD1234567") -> dict[str, Any]:
    return {
        "event_id": f"r-{ccn}-{minutes}",
        "event_type": "rns_status",
        "occurred_at": iso(minutes),
        "schema_version": 1,
        "ccn": ccn,
        "processing_indicator": 9,
    }


def carm(minutes: float, bn: str = BN) -> dict[str, Any]:
    return {
        "event_id": f"c-{bn}-{minutes}",
        "event_type": "carm_snapshot",
        "occurred_at": iso(minutes),
        "schema_version": 1,
        "importer_bn": bn,
        "legal_name": "Acme Imports Ltd.",
        "ccp_registered": True,
        "rm_account_linked": True,
        "delegations": [],
        "rpp_enrolled": True,
        "security": {"kind": "surety", "amount_cad": 10000},
        "highest_monthly_duties_taxes_cad": 1000,
        "last_portal_login_at": None,
    }


def rec(topic: str, key: str | None, value: Any, timestamp: int | None = None) -> LogRecord:
    return LogRecord(topic, key, value, timestamp)


def numbered(records: Iterable[LogRecord | BadLine], source: str = "a.jsonl") -> list[tuple[str, Any]]:
    """Give records their line numbers, as read_log would."""
    out: list[tuple[str, Any]] = []
    for n, item in enumerate(records, start=1):
        if isinstance(item, LogRecord):
            item = LogRecord(item.topic, item.key, item.value, item.timestamp, n)
        out.append((source, item))
    return out


def plan(records: Iterable[LogRecord | BadLine], **kwargs: Any) -> list[Action]:
    return list(plan_replay(numbered(records), TOPICS, **kwargs))


def publishes(actions: list[Action]) -> list[Publish]:
    return [a for a in actions if isinstance(a, Publish)]


def ticks(actions: list[Action]) -> list[TickAll]:
    return [a for a in actions if isinstance(a, TickAll)]


# --- seq numbering -----------------------------------------------------------------------


def test_seq_counts_published_records_across_files_and_skips_do_not_take_a_number() -> None:
    first = numbered([rec("em", "ABCD1234567", shipment(1)), BadLine(2, "not_json", "line 2: x", "{")], "a")
    second = numbered(
        [rec("other", "k", {}), rec("rns", "ABCD1234567", rns(2)), rec("em", "X", shipment(3))], "b"
    )
    actions = list(plan_replay([*first, *second], TOPICS))
    sent = publishes(actions)
    assert [p.seq for p in sent] == [1, 2, 3]
    assert [p.source for p in sent] == ["a:1", "b:2", "b:3"]
    assert sent[1].headers == [(SEQ_HEADER, b"2"), (LOG_TS_HEADER, str(ms(2)).encode())]


def test_values_are_compact_json_as_in_the_log_and_malformed_ones_are_published_too() -> None:
    value = {"b": [1, 2.5, None], "a": "é", "nested": {"x": True}}
    sent = publishes(plan([rec("em", "K1", value), rec("rns", "K2", "not an object"), rec("carm", BN, None)]))
    assert sent[0].value == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(sent[0].value or b"") == value
    assert sent[0].key == b"K1"
    assert sent[1].value == b'"not an object"'
    assert sent[2].value is None  # a tombstone stays a tombstone
    assert value_bytes({"s": "\ud800"}) == b'{"s":"\\ud800"}'  # a lone surrogate: still the same JSON


# --- ticks -------------------------------------------------------------------------------


def test_ticks_every_n_records_carry_the_next_seq_and_go_to_the_ccn_topics_only() -> None:
    records = [rec("em" if i % 2 else "rns", "ABCD1234567", shipment(i, n=i)) for i in range(7)]
    actions = plan(records, tick_every=3)
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Publish"] * 3 + ["TickAll"] + ["Publish"] * 3 + ["TickAll", "Publish", "TickAll"]
    found = ticks(actions)
    assert [t.tick.seq for t in found] == [4, 7, 8]
    assert [t.tick.final for t in found] == [False, False, True]
    assert all(t.topics == ("em", "rns") for t in found)


def test_tick_time_is_the_latest_valid_event_time_and_malformed_records_do_not_move_it() -> None:
    late_but_malformed = {**shipment(500), "event_type": "no_such_type"}
    records = [
        rec("em", "ABCD1234567", shipment(10)),
        rec("em", "ABCD1234567", late_but_malformed),
        rec("rns", "ABCD1234567", rns(5)),  # out of order: earlier than the clock
    ]
    actions = plan(records, tick_every=2)
    assert [t.tick.time for t in ticks(actions)] == [at(10), at(10)]
    sent = publishes(actions)
    assert [p.event_time for p in sent] == [at(10), None, None]


def test_the_final_tick_carries_the_logs_last_event_time_even_if_the_last_record_is_earlier() -> None:
    records = [rec("em", "ABCD1234567", shipment(30)), rec("em", "ABCD1234567", shipment(20, n=1))]
    final = ticks(plan(records))[-1]
    assert final.tick == Tick(3, at(30), final=True)


def test_a_log_without_valid_events_still_ends_with_a_final_tick_at_the_epoch() -> None:
    actions = plan([rec("em", "K", "garbage")])
    assert ticks(actions)[-1].tick == Tick(2, EPOCH, final=True)


def test_a_carm_tombstone_moves_the_clock_by_its_log_timestamp_when_its_key_is_valid() -> None:
    actions = plan(
        [
            rec("carm", BN, None, timestamp=ms(40)),
            rec("carm", "not-a-bn", None, timestamp=ms(90)),
            rec("em", "ABCD1234567", None, timestamp=ms(95)),  # tombstone on a shipment topic
        ],
        carm_barrier=False,
    )
    assert ticks(actions)[-1].tick.time == at(40)


def test_final_tick_time_equals_the_backtest_end_on_a_simulated_log(tmp_path: Path) -> None:
    log = tmp_path / "sim.jsonl"
    config = SimulationConfig(
        loads=40, seed=3, hours=2, malformed_rate=0.05, duplicate_rate=0.02,
        topic_emanifest="em", topic_rns="rns", topic_carm="carm",
    )  # fmt: skip
    write_simulation(config, log)
    report = run_backtest([log], StringIO(), Thresholds(), TOPICS.kinds())
    actions = list(plan_replay(log_items([log]), TOPICS))
    final = ticks(actions)[-1].tick
    assert final.final
    assert report.end is not None and final.time == report.end
    assert final.seq == len(publishes(actions)) + 1


# --- timestamps --------------------------------------------------------------------------


def test_log_timestamp_is_the_line_timestamp_else_occurred_at_else_the_clock_so_far() -> None:
    naive = {**shipment(7), "occurred_at": "2026-03-02T12:07:00"}
    sent = publishes(
        plan(
            [
                rec("carm", BN, None),  # nothing known yet: the epoch, never "now"
                rec("em", "ABCD1234567", shipment(5), timestamp=ms(99)),
                rec("em", "ABCD1234567", shipment(6, n=1)),
                rec("em", "ABCD1234567", naive),
                rec("em", "ABCD1234567", "garbage"),
            ],
            carm_barrier=False,
        )
    )
    assert [p.log_ts_ms for p in sent] == [0, ms(99), ms(6), ms(6), ms(6)]
    assert [dict(p.headers)[LOG_TS_HEADER] for p in sent] == [
        str(t).encode() for t in (0, ms(99), ms(6), ms(6), ms(6))
    ]


# --- CARM barrier --------------------------------------------------------------------------


def test_the_barrier_comes_after_the_leading_carm_records_just_before_the_first_shipment_event() -> None:
    actions = plan(
        [
            rec("carm", BN, carm(0)),
            BadLine(2, "not_json", "line 2: not JSON", "{"),  # skipped lines do not end the prefix
            rec("carm", "223456789RM0001", carm(0, "223456789RM0001")),
            rec("em", "ABCD1234567", shipment(1)),
            rec("carm", BN, carm(2)),
            rec("rns", "ABCD1234567", rns(3)),
        ]
    )
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Publish", "Skip", "Publish", "Barrier", "Publish", "Publish", "Publish", "TickAll"]
    assert actions[3] == Barrier("carm", 2)


def test_no_barrier_without_leading_carm_records_or_when_switched_off() -> None:
    assert not any(
        isinstance(a, Barrier) for a in plan([rec("em", "A", shipment(1)), rec("carm", BN, carm(2))])
    )
    off = plan([rec("carm", BN, carm(0)), rec("em", "A", shipment(1))], carm_barrier=False)
    assert not any(isinstance(a, Barrier) for a in off)
    only_carm = plan([rec("carm", BN, carm(0))])
    assert not any(isinstance(a, Barrier) for a in only_carm)


# --- skips ---------------------------------------------------------------------------------


def test_bad_lines_and_unknown_topics_are_skipped_with_file_and_line() -> None:
    actions = plan([BadLine(1, "not_json", "line 1: not JSON (x)", "{"), rec("alerts", "K", {})])
    assert actions[:2] == [
        Skip("a.jsonl:1", "not_json", "line 1: not JSON (x)"),
        Skip("a.jsonl:2", "unknown_topic", "line 2: topic 'alerts' is not an input topic (em, rns, carm)"),
    ]
    assert publishes(actions) == []


def test_reads_a_gzipped_log_end_to_end(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl.gz"
    with LogWriter(log) as writer:
        writer.write("em", "ABCD1234567", shipment(1))
        writer.write_raw_line("{broken")
        writer.write("rns", "ABCD1234567", rns(2), timestamp=ms(3))
    actions = list(plan_replay(log_items([log]), TOPICS))
    assert [(p.seq, p.source, p.log_ts_ms) for p in publishes(actions)] == [
        (1, f"{log}:1", ms(1)),
        (2, f"{log}:3", ms(3)),
    ]
    assert [a.source for a in actions if isinstance(a, Skip)] == [f"{log}:2"]


def test_input_topics_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        list(plan_replay([], ReplayTopics("a", "a", "c"), tick_every=1))


# --- pacing --------------------------------------------------------------------------------


def test_pacer_maps_event_time_to_wall_time_and_cuts_long_gaps() -> None:
    pacer = Pacer(speed=60.0, max_sleep_s=30.0)  # one event minute per wall second
    assert pacer.delay(at(0), now=100.0) == (0.0, False)
    assert pacer.delay(at(2), now=100.5) == (1.5, False)
    assert pacer.delay(at(1), now=103.0) == (0.0, False)  # behind schedule: no negative sleep
    assert pacer.delay(at(600), now=103.0) == (30.0, True)  # a 10 h gap: cut, re-anchored
    assert pacer.delay(at(601), now=133.0) == (1.0, False)
    assert pacer.event_time_at(133.5) == at(600.5)


def test_gap_ticks_stay_between_the_clock_and_the_next_record() -> None:
    assert gap_tick_time(at(5), at(7), at(10)) == at(7)
    assert gap_tick_time(at(5), at(3), at(10)) == at(5)
    assert gap_tick_time(at(5), at(12), at(10)) == at(10) - timedelta(milliseconds=1)
    assert gap_tick_time(None, None, at(10)) == EPOCH


@pytest.mark.parametrize(
    ("text", "speed"), [("max", None), ("realtime", 1.0), ("60", 60.0), ("0.5", 0.5), ("10x", 10.0)]
)
def test_parse_speed(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "fast", "inf", "nan"])
def test_parse_speed_rejects_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_speed(text)


# --- the shell against a fake producer -------------------------------------------------------


class FakeSender:
    def __init__(self, partitions: int = 3) -> None:
        self.sent: list[dict[str, Any]] = []
        self.flushes = 0
        self._partitions = partitions

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int | None,
        partition: int | None = None,
        line: int = 0,
    ) -> None:
        self.sent.append(
            {
                "topic": topic,
                "key": key,
                "value": value,
                "headers": headers,
                "ts": timestamp_ms,
                "partition": partition,
            }
        )

    def partitions(self, topic: str) -> list[int]:
        return list(range(self._partitions))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


class FakeWall:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_shell_sends_ticks_to_every_partition_and_flushes_before_the_barrier() -> None:
    sender, wall = FakeSender(partitions=3), FakeWall()
    messages: list[str] = []
    barrier_flushes: list[int] = []

    def wait(barrier: Barrier) -> BarrierOutcome:
        barrier_flushes.append(sender.flushes)
        return BarrierOutcome(True, 0.0, "ok")

    actions = plan(
        [rec("carm", BN, carm(0)), rec("em", "ABCD1234567", shipment(1)), BadLine(3, "not_json", "x", "")]
    )
    report = run_replay(
        actions, TOPICS, ReplayOptions(), sender, wait_barrier=wait,
        wall=WallClock(wall.monotonic, wall.sleep), say=messages.append,
    )  # fmt: skip
    assert barrier_flushes == [1]  # the CARM record was flushed before waiting
    tick_msgs = [m for m in sender.sent if m["headers"] == [(TICK_HEADER, b"1")]]
    assert sorted((m["topic"], m["partition"]) for m in tick_msgs) == [
        ("em", 0), ("em", 1), ("em", 2), ("rns", 0), ("rns", 1), ("rns", 2),
    ]  # fmt: skip
    assert all(m["key"] is None and Tick.from_bytes(m["value"]) == Tick(3, at(1), True) for m in tick_msgs)
    assert all(m["ts"] is None for m in tick_msgs)  # the producer's wall time: retention counts from now
    assert (report.records, report.ticks, report.tick_messages) == (2, 1, 6)
    assert report.skipped == {"not_json": 1} and report.end == at(1)
    assert report.barrier.startswith("passed")
    assert any("a.jsonl:3: skipped (not_json)" in m for m in messages)


def test_shell_leaves_the_kafka_timestamp_to_the_producer_and_sends_the_log_one_in_a_header() -> None:
    """Retention counts from the replay, not from the log's (possibly weeks old) timestamps."""
    sender = FakeSender(partitions=1)
    old = rec("em", "ABCD1234567", shipment(1), timestamp=ms(-60 * 24 * 30))
    run_replay(
        plan([old, rec("rns", "ABCD1234567", rns(2))]), TOPICS, ReplayOptions(), sender, say=lambda _: None
    )
    records = [m for m in sender.sent if m["key"] is not None]
    assert [m["ts"] for m in sender.sent] == [None] * len(sender.sent)
    assert [dict(m["headers"])[LOG_TS_HEADER] for m in records] == [
        str(ms(-60 * 24 * 30)).encode(),
        str(ms(2)).encode(),
    ]


def test_paced_replay_sleeps_in_event_time_and_ticks_during_long_waits() -> None:
    sender, wall = FakeSender(partitions=1), FakeWall()
    records = [rec("em", "ABCD1234567", shipment(0)), rec("rns", "ABCD1234567", rns(3))]
    run_replay(
        plan(records), TOPICS, ReplayOptions(speed=60.0), sender,
        wall=WallClock(wall.monotonic, wall.sleep), say=lambda _: None,
    )  # fmt: skip
    assert sum(wall.sleeps) == pytest.approx(3.0)  # 3 event minutes at 60x
    gap = [Tick.from_bytes(m["value"]) for m in sender.sent if m["partition"] is not None][:-2]
    assert gap and all(t.seq == 2 and not t.final for t in gap)  # nothing before record 2 is pending
    assert all(at(0) <= t.time < at(3) for t in gap)
    assert [t.time for t in gap] == sorted(t.time for t in gap)


# --- the barrier wait ----------------------------------------------------------------------


def test_barrier_passes_once_the_group_has_committed_up_to_the_end_offsets() -> None:
    wall = FakeWall()
    answers: list[dict[int, int] | Exception] = [
        RuntimeError("coordinator loading"),
        {},
        {0: 2},
        {0: 5, 1: 0},
    ]

    def fetch() -> dict[int, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    outcome = wait_for_group(
        {0: 5, 1: 0}, fetch, group_id="g", topic="carm", timeout_s=60,
        wall=WallClock(wall.monotonic, wall.sleep), say=lambda _: None,
    )  # fmt: skip
    assert outcome.passed and outcome.waited_s == pytest.approx(1.5)


def test_barrier_times_out_with_a_warning_when_no_group_commits() -> None:
    wall = FakeWall()
    said: list[str] = []
    outcome = wait_for_group(
        {0: 5}, dict, group_id="holdwatch", topic="carm", timeout_s=3,
        wall=WallClock(wall.monotonic, wall.sleep), say=said.append,
    )  # fmt: skip
    assert not outcome.passed and outcome.waited_s >= 3
    assert "pipeline may not be running" in said[-1] and said[-1].startswith("WARNING")


def test_missing_log_files_are_an_error_before_any_kafka_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli.main import build_parser
    from streams.settings import Settings

    args = build_parser().parse_args(["replay", str(tmp_path / "nope.jsonl")])
    assert args.func(args, Settings(kafka_bootstrap="127.0.0.1:1")) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_later_replay_numbers_its_records_above_every_earlier_one() -> None:
    from streams.replay.plan import seq_base_now

    records = [rec(TOPICS.emanifest, "ABCD1234567", shipment(minutes, n=minutes)) for minutes in (1, 2, 3)]
    first_base, second_base = seq_base_now(1_000_000_000_000), seq_base_now(1_000_000_001_000)
    first = plan(records, seq_base=first_base)
    second = plan(records, seq_base=second_base)
    assert [a.seq - first_base for a in publishes(first)] == [1, 2, 3]
    first_final = ticks(first)[-1].tick.seq
    assert min(a.seq for a in publishes(second)) > first_final


_LINES = st.one_of(
    st.tuples(st.sampled_from(["em", "rns", "carm", "other"]), st.integers(0, 600), st.booleans()),
    st.just("bad"),
)


@given(st.lists(_LINES, max_size=60), st.integers(1, 7), st.booleans())
def test_plan_invariants_hold_for_any_log(lines: list[Any], tick_every: int, barrier: bool) -> None:
    records: list[LogRecord | BadLine] = []
    for line in lines:
        if line == "bad":
            records.append(BadLine(0, "not_json", "x", ""))
            continue
        topic, minute, valid = line
        value = {"em": shipment, "rns": rns, "carm": carm, "other": shipment}[topic](minute)
        records.append(rec(topic, BN if topic == "carm" else "ABCD1234567", value if valid else "junk"))
    actions = plan(records, tick_every=tick_every, carm_barrier=barrier)

    published = 0
    last_tick_time = EPOCH
    seen_other = False
    for i, action in enumerate(actions):
        if isinstance(action, Publish):
            published += 1
            assert action.seq == published
            seen_other = seen_other or action.topic != "carm"
        elif isinstance(action, TickAll):
            assert action.tick.seq == published + 1
            assert action.tick.time >= last_tick_time
            last_tick_time = action.tick.time
            assert action.tick.final == (i == len(actions) - 1)
        elif isinstance(action, Barrier):
            assert barrier and not seen_other and action.records == published
            nxt = actions[i + 1]
            assert isinstance(nxt, Publish) and nxt.topic != "carm"
    regular = [a.tick.seq for a in ticks(actions) if not a.tick.final]
    assert regular == [k * tick_every + 1 for k in range(1, published // tick_every + 1)]
    valid = [at(m) for topic, m, ok in (ln for ln in lines if ln != "bad") if ok and topic != "other"]
    assert ticks(actions)[-1].tick.time == max(valid, default=EPOCH)
