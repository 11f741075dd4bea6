"""The delivery core against the local Slack server, through the real AsyncWebClient.

Time is a manual clock shared by the notifier and the server, so outages, Retry-After and pacing
are exact and no test waits for real time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from alerting.notify.clock import ManualClock
from alerting.notify.delivery import Delivery, DeliveryPolicy, Origin, run_simulated
from alerting.notify.ledger import AlertRecord, MemoryLedger
from alerting.notify.metrics import CountingMetrics
from alerting.notify.routing import Routing, RoutingError, routing_from_mapping
from alerting.notify.slack import SlackWebGateway, make_web_client
from schemas.alerts import AlertEvent
from tests.fixtures.slack import ALERT_T0, SlackTestServer, make_alert


@dataclass
class Rig:
    slack: SlackTestServer
    clock: ManualClock
    ledger: MemoryLedger
    metrics: CountingMetrics
    delivery: Delivery

    def restart(self, policy: DeliveryPolicy | None = None) -> Delivery:
        """A new notifier process: only what the ledger made durable survives."""
        self.ledger = MemoryLedger(self.ledger.durable)
        self.delivery = new_delivery(
            self.slack, self.clock, self.ledger, self.metrics, policy or self.delivery.policy
        )
        self.delivery.restore(self.ledger.durable)
        return self.delivery

    async def feed(self, *alerts: AlertEvent, gap: float = 0.0) -> None:
        for alert in alerts:
            await run_simulated(self.delivery, self.clock, self.clock.now() + gap)
            await self.delivery.accept(alert)
        await self.ledger.flush()

    async def history(self, *alerts: AlertEvent) -> None:
        """Accept events as read from the topic's history: all of them before any Slack call."""
        for alert in alerts:
            await self.delivery.accept(alert)
        await self.ledger.flush()

    async def settle(self, seconds: float = 600.0) -> None:
        await run_simulated(self.delivery, self.clock, self.clock.now() + seconds)


ROUTING = Routing(default="#dispatch", teams={"east": "#east", "west": "#west"})


def new_delivery(
    slack: SlackTestServer,
    clock: ManualClock,
    ledger: MemoryLedger,
    metrics: CountingMetrics,
    policy: DeliveryPolicy,
    routing: Routing = ROUTING,
) -> Delivery:
    gateway = SlackWebGateway(make_web_client(SecretStr("xoxb-test"), slack.base_url))
    return Delivery(gateway, ledger, routing, policy=policy, clock=clock, metrics=metrics)


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock()
    async with SlackTestServer(clock=clock.now) as slack:
        ledger, metrics = MemoryLedger(), CountingMetrics()
        policy = DeliveryPolicy(
            edit_delay_s=10, storm_threshold=5, storm_window_s=60, critical_mention="S0CRIT"
        )
        yield Rig(slack, clock, ledger, metrics, new_delivery(slack, clock, ledger, metrics, policy))


def lifecycle(alert_id: str, *, team: str | None = None) -> list[AlertEvent]:
    return [
        make_alert(alert_id, 1, "raised", "warning", team=team),
        make_alert(
            alert_id, 2, "updated", "warning", team=team, reasons=["pars_missing", "carm_not_delegated"]
        ),
        make_alert(alert_id, 3, "updated", "critical", previous_severity="warning", team=team),
        make_alert(alert_id, 4, "resolved", None, outcome="released", team=team),
    ]


def parents(slack: SlackTestServer, channel: str = "#dispatch") -> list[str]:
    """Keys of the lifecycle messages (not digests) at the top of a channel."""
    keys = [m.metadata["event_payload"]["key"] for m in slack.top_level(channel) if m.metadata]
    return [k for k in keys if ":" not in k]


async def test_one_message_per_lifecycle_updated_in_place_with_thread_replies(rig: Rig) -> None:
    await rig.feed(*lifecycle("A1"), gap=30)
    await rig.settle()
    [parent] = rig.slack.top_level("#dispatch")
    assert len(rig.slack.calls("chat.postMessage")) == 3  # the message, the escalation, the resolution
    updates = rig.slack.calls("chat.update")
    assert updates and all(u.body["ts"] == parent.ts for u in updates)
    assert "Resolved" in parent.text and "released" in parent.text  # final state, edited in place
    escalation, resolution = rig.slack.replies("#dispatch", parent.ts)
    assert "CRITICAL" in escalation.text and "<!subteam^S0CRIT>" in escalation.text
    assert not escalation.reply_broadcast
    # Quiet by default: the edit and the thread reply, no second ping to the whole channel.
    assert not resolution.reply_broadcast and "released" in resolution.text


async def test_duplicates_and_stale_events_are_dropped(rig: Rig) -> None:
    first, second, *_ = lifecycle("A1")
    await rig.feed(first, first, second, first, second, gap=30)
    await rig.settle()
    assert len(rig.slack.calls("chat.postMessage")) == 1
    assert len(rig.slack.calls("chat.update")) == 1
    assert rig.metrics.counts["duplicate_dropped"] == 3


async def test_updates_within_the_edit_delay_become_one_edit(rig: Rig) -> None:
    await rig.feed(make_alert("A1", 1))
    await rig.settle(5)
    await rig.feed(*(make_alert("A1", seq, "updated", eta_in_min=90 + seq) for seq in range(2, 7)), gap=1)
    await rig.settle()
    [update] = rig.slack.calls("chat.update")
    assert "10:36 EST" in json.dumps(update.body["blocks"])  # the newest state (seq 6: ETA T0+96 min)


async def test_a_30_second_outage_loses_nothing_and_posts_nothing_twice(rig: Rig) -> None:
    lifecycles = [lifecycle(f"B{i}", team="east" if i % 2 else None) for i in range(4)]
    await rig.feed(*(events[0] for events in lifecycles))
    await rig.settle(10)
    # 30 s of trouble: 500s, then dropped connections, then calls that land but whose answers are lost
    rig.slack.fail("server_error", seconds=10, methods={"chat.postMessage", "chat.update"})
    rig.slack.fail("drop", seconds=20)
    rig.slack.fail("drop_after", seconds=30)
    rest = sorted((e for events in lifecycles for e in events[1:]), key=lambda e: (e.seq, e.alert_id))
    await rig.feed(*rest, gap=2)
    await rig.settle(900)
    assert rig.metrics.counts["retried"] > 0
    assert any(r.outcome == "drop_after" for r in rig.slack.requests)
    for channel in ("#dispatch", "#east"):
        keys = [m.metadata["event_payload"]["key"] for m in rig.slack.top_level(channel) if m.metadata]
        assert len(keys) == len(set(keys)) == 2, f"a lifecycle was lost or posted twice in {channel}"
        for message in rig.slack.top_level(channel):
            assert "Resolved" in message.text
            replies = rig.slack.replies(channel, message.ts)
            reply_keys = [r.metadata["event_payload"]["key"] for r in replies if r.metadata]
            assert len(reply_keys) == len(set(reply_keys)) == 2  # escalation + resolution, once each
    assert rig.delivery.pending_count() == 0


async def test_retry_after_is_honoured_and_the_pace_holds(rig: Rig) -> None:
    rig.slack.fail("ratelimit", times=1, retry_after=7)
    await rig.feed(*(make_alert(f"P{i}") for i in range(4)), make_alert("W1", team="west"))
    await rig.settle()
    posts = rig.slack.calls("chat.postMessage", outcome=None)
    dispatch_times = [r.at for r in posts if r.body["channel"] == "#dispatch"]
    assert posts[0].outcome == "ratelimit"
    assert dispatch_times[1] - dispatch_times[0] >= 7
    gaps = [b - a for a, b in itertools.pairwise(dispatch_times)]
    assert all(g >= 1.0 for g in gaps), gaps
    assert len(dispatch_times) == 5  # 1 refused + 4 posts
    west = [r.at for r in posts if r.body["channel"] == "#west" and r.outcome == "ok"]
    assert west and west[0] < dispatch_times[-1]  # another channel is not held up by this one
    assert rig.metrics.counts["rate_limited"] == 1


async def test_permanent_error_keeps_the_alert_pending_until_fixed_across_a_restart(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.slack.missing_channels.add("#east")
    with caplog.at_level(logging.ERROR, logger="holdwatch.notify"):
        await rig.feed(make_alert("E1", team="east"), make_alert("D1"))
        await rig.settle(200)
    assert len(rig.slack.top_level("#dispatch")) == 1  # other channels keep flowing
    assert rig.delivery.pending_keys() == ["E1"]
    assert rig.metrics.errors["channel_not_found"] >= 2  # retried periodically, counted each time
    assert any("E1" in r.getMessage() and "channel_not_found" in r.getMessage() for r in caplog.records)
    await rig.feed(make_alert("E1", 2, "updated", team="east", reasons=["pars_missing", "late_eta"]))
    rig.restart()
    assert rig.delivery.pending_keys() == ["E1"]
    rig.slack.missing_channels.clear()  # someone invites the bot / fixes the routing
    await rig.settle(200)
    [east] = rig.slack.top_level("#east")
    assert "late eta" in json.dumps(east.blocks)  # posted once, with the newest state
    assert rig.delivery.pending_count() == 0


async def test_restart_and_replay_post_nothing_twice(rig: Rig) -> None:
    events = lifecycle("R1") + lifecycle("R2")
    await rig.feed(*events[:3], gap=20)
    await rig.settle(30)
    before = len(rig.slack.calls())
    rig.restart()
    await rig.feed(*events, gap=20)  # a replay from the start of the topic
    await rig.settle()
    assert len(parents(rig.slack)) == 2
    assert len(rig.slack.calls("chat.postMessage")) == 6  # 2 messages + 2 escalations + 2 resolutions
    assert len(rig.slack.calls()) > before


async def test_a_post_whose_answer_was_lost_is_found_after_a_crash(rig: Rig) -> None:
    rig.slack.fail("drop_after", times=1)
    await rig.feed(make_alert("C1"))
    await run_simulated(rig.delivery, rig.clock, rig.clock.now())  # the post lands, the answer is lost
    assert len(rig.slack.top_level("#dispatch")) == 1
    rig.restart()  # crash: only the intent was durable
    await rig.feed(make_alert("C1", 2, "updated", reasons=["late_eta"]))
    await rig.settle()
    [message] = rig.slack.top_level("#dispatch")
    assert "late eta" in json.dumps(message.blocks)
    assert rig.slack.calls("conversations.history")


async def test_a_deleted_message_is_posted_again(rig: Rig) -> None:
    await rig.feed(make_alert("G1"))
    await rig.settle(5)
    rig.slack.messages.clear()  # someone deleted it
    await rig.feed(make_alert("G1", 2, "updated", "critical", previous_severity="warning"))
    await rig.settle()
    [message] = rig.slack.top_level("#dispatch")
    assert "CRITICAL" in message.text


async def test_storm_groups_alerts_into_one_digest_kept_updated(rig: Rig) -> None:
    storm = [make_alert(f"S{i:02d}") for i in range(20)]
    await rig.feed(*storm, gap=1)
    await rig.settle(30)
    await rig.feed(*(make_alert(f"S{i:02d}", 2, "resolved", outcome="released") for i in range(8, 12)))
    await rig.settle()
    top = rig.slack.top_level("#dispatch")
    assert len(top) == 6  # 5 individual alerts (the threshold) + 1 digest for the other 15
    [digest] = [m for m in top if m.metadata and m.metadata["event_payload"]["key"].startswith("digest:")]
    assert "20" not in digest.text and "15 loads" in digest.text and "4 resolved" in json.dumps(digest.blocks)
    assert digest.edits  # updated in place
    assert len(rig.slack.calls()) < len(storm) + 4  # fewer calls than one per event
    assert rig.metrics.counts["storm_grouped"] == 15


async def test_lifecycle_first_seen_resolved_posts_nothing(rig: Rig) -> None:
    await rig.feed(make_alert("Z1", 5, "resolved", outcome="cancelled"))
    await rig.settle()
    assert rig.slack.requests == []


async def test_held_warning_that_clears_is_never_posted_but_escalation_posts_at_once(rig: Rig) -> None:
    policy = DeliveryPolicy(warning_hold_s=600)
    rig.delivery = new_delivery(rig.slack, rig.clock, rig.ledger, rig.metrics, policy)
    await rig.feed(make_alert("H1"), make_alert("H2"), make_alert("H3", severity="critical"))
    await rig.settle(60)
    assert parents(rig.slack) == ["H3"]  # critical is never held
    await rig.feed(make_alert("H1", 2, "resolved", outcome="cleared"))
    await rig.feed(make_alert("H2", 2, "updated", "critical", previous_severity="warning"))
    await rig.settle(60)
    assert sorted(parents(rig.slack)) == ["H2", "H3"]
    await rig.settle(1200)
    assert sorted(parents(rig.slack)) == ["H2", "H3"]  # H1 stays unposted: it cleared while held


async def test_a_resolution_reply_only_for_configured_outcomes_broadcast_only_where_asked(
    rig: Rig,
) -> None:
    policy = DeliveryPolicy(resolution_reply_outcomes=frozenset({"released"}))
    routing = Routing(default="#dispatch", teams={"east": "#east"}, broadcast_resolutions=frozenset({"east"}))
    rig.delivery = new_delivery(rig.slack, rig.clock, rig.ledger, rig.metrics, policy, routing)
    await rig.feed(make_alert("O1"), make_alert("O2"), make_alert("E1", team="east"))
    await rig.settle(10)
    await rig.feed(
        make_alert("O1", 2, "resolved", outcome="released"),
        make_alert("O2", 2, "resolved", outcome="cleared"),
        make_alert("E1", 2, "resolved", outcome="released", team="east"),
    )
    await rig.settle()
    replies = {
        m.metadata["event_payload"]["key"]: m.reply_broadcast
        for m in rig.slack.all_messages()
        if m.metadata and ":resolution:" in m.metadata["event_payload"]["key"]
    }
    assert replies == {"O1:resolution:2": False, "E1:resolution:2": True}  # O2 cleared: edit only
    assert all("Resolved" in m.text for m in rig.slack.top_level("#dispatch"))


def test_the_routing_file_names_who_wants_resolutions_broadcast() -> None:
    routing = routing_from_mapping(
        {"teams": {"east": "#east"}, "broadcast_resolutions": ["east", "#windsor-desk"]},
        default_channel="#dispatch",
    )
    assert [routing.broadcasts_resolutions(c) for c in ("#east", "#windsor-desk", "#dispatch")] == [
        True,
        True,
        False,
    ]
    with pytest.raises(RoutingError, match="broadcast_resolutions must be a list"):
        routing_from_mapping({"broadcast_resolutions": "east"}, default_channel="#dispatch")


async def test_revoking_a_partition_mid_call_neither_crashes_nor_blocks_the_channel(rig: Rig) -> None:
    gate = asyncio.Event()
    real_post = rig.delivery.gateway.post

    async def slow_post(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await real_post(*args, **kwargs)

    rig.delivery.gateway.post = slow_post  # type: ignore[method-assign]
    await rig.delivery.accept(make_alert("V1"), partition=0)
    await rig.delivery.accept(make_alert("V2"), partition=1)
    step = asyncio.create_task(rig.delivery.step("#dispatch"))
    await asyncio.sleep(0.05)
    await rig.delivery.accept(
        make_alert("V1", 2, "updated", "critical", previous_severity="warning"), partition=0
    )
    rig.delivery.forget_partitions([0, 1])  # a rebalance while V1's post is in flight
    gate.set()
    assert await step
    await rig.settle()
    assert rig.delivery.pending_count() == 0
    assert rig.delivery.channels["#dispatch"].blocked_until == 0.0


async def test_what_reaches_slack_carries_no_live_mention_or_link(rig: Rig) -> None:
    nasty = "<!channel> <@U123> <http://evil.example|click> &lt;!here&gt; @here"
    await rig.feed(
        make_alert(
            "X1",
            severity="critical",
            load_ref=nasty,
            importer_name=nasty,
            broker_name=nasty,
            shipper_name=nasty,
        )
    )
    await rig.feed(make_alert("X1", 2, "resolved", outcome="released", load_ref=nasty))
    await rig.settle()
    bodies = [
        json.dumps(r.body) for r in rig.slack.calls("chat.postMessage") + rig.slack.calls("chat.update")
    ]
    assert len(bodies) == 3
    for body in bodies:
        live = body.replace("<!subteam^S0CRIT>", "")  # the one mention we configured
        assert "<!" not in live and "<@" not in live and "<http" not in live
        assert "&lt;!channel&gt;" in body and "&amp;lt;!here" in body
        assert '"link_names": false' in body and '"parse": "none"' in body


async def test_latencies_are_measured_from_the_kafka_timestamps_and_keep_replay_apart(rig: Rig) -> None:
    opted_in = DeliveryPolicy(include_replayed=True)  # replayed traffic reaches Slack only so
    rig.delivery = new_delivery(rig.slack, rig.clock, rig.ledger, rig.metrics, opted_in)
    answered_ms = round(rig.clock.wall() * 1000)  # the clock's wall time when Slack answers (at once)
    raised = make_alert("A9", 1, "raised", "critical")
    origin = Origin(alert_ms=answered_ms - 500, trigger_ms=answered_ms - 3_000, traffic="replay")
    await rig.delivery.accept(raised, origin=origin)
    await rig.ledger.flush()
    await rig.settle()
    assert rig.metrics.latencies == [0.5]  # alert record -> Slack acknowledged
    assert rig.metrics.end_to_end_latencies == [3.0]  # trigger record -> Slack acknowledged


# --- first start on existing history (issue 11) ---------------------------------------------------


async def test_history_resolved_before_any_post_makes_no_slack_call(rig: Rig) -> None:
    await rig.history(*lifecycle("Q1"), *lifecycle("Q2"))
    await rig.settle()
    assert rig.slack.requests == []
    assert rig.delivery.pending_count() == 0
    assert all(rec.silent for rec in rig.delivery.alerts.values())
    assert rig.metrics.latencies == []  # never shown: nothing measured, nothing left waiting


async def test_history_still_open_is_posted_once_in_its_latest_state_without_replies(rig: Rig) -> None:
    raised, updated, escalated, _ = lifecycle("Q3")
    await rig.history(raised, updated, escalated)
    await rig.settle()
    [post] = rig.slack.calls("chat.postMessage")
    assert rig.slack.calls("chat.update") == []
    [message] = rig.slack.top_level("#dispatch")
    assert "CRITICAL" in message.text  # the newest state, not the raise
    assert rig.slack.replies("#dispatch", message.ts) == []  # no thread reply for history's steps
    assert post.body["channel"] == "#dispatch"


async def test_an_open_lifecycle_is_posted_however_old_it_is(rig: Rig) -> None:
    years_ago = datetime(2020, 1, 1, tzinfo=UTC)
    await rig.history(make_alert("Q4", 1, at=years_ago), make_alert("Q4", 2, "updated", at=years_ago))
    await rig.settle()
    assert parents(rig.slack) == ["Q4"]


async def test_history_resolving_while_a_post_is_due_and_the_channel_is_down(rig: Rig) -> None:
    rig.slack.fail("server_error", seconds=30)
    await rig.feed(make_alert("Q5"), make_alert("Q6"))
    await rig.settle(5)  # the posts failed and are due again later
    await rig.feed(make_alert("Q5", 2, "resolved", outcome="released"))
    await rig.settle()
    assert parents(rig.slack) == ["Q6"]
    assert "Resolved" not in json.dumps([m.text for m in rig.slack.all_messages()])


async def test_a_lost_post_of_a_lifecycle_now_resolved_is_not_posted_again(rig: Rig) -> None:
    await rig.feed(make_alert("Q0"))
    await rig.settle(5)  # the channel (and its id) is known
    rig.slack.fail("drop", times=1)  # the post never lands, its intent stays recorded
    await rig.feed(make_alert("Q7"))
    await run_simulated(rig.delivery, rig.clock, rig.clock.now())
    rig.restart()  # the post is due again at once, but the topic is read first
    await rig.history(make_alert("Q7", 2, "resolved", outcome="cleared"))
    await rig.settle()
    assert rig.slack.calls("conversations.history")  # looked for the lost post first
    assert parents(rig.slack) == ["Q0"]
    assert rig.delivery.pending_count() == 0


async def test_a_post_that_may_have_landed_is_shown_resolved_when_history_cannot_be_read(rig: Rig) -> None:
    """Could not look (no history scope): the earlier post may be on Slack showing "at risk".
    Posting the resolved state beats leaving that message stale forever."""
    await rig.feed(make_alert("Q0"))
    await rig.settle(5)
    rig.slack.fail("drop_after", times=1)  # the post lands, its answer is lost: only the intent remains
    await rig.feed(make_alert("Q9"))
    await run_simulated(rig.delivery, rig.clock, rig.clock.now())
    rig.slack.fail("missing_scope", methods={"conversations.history"})
    rig.restart()
    await rig.history(make_alert("Q9", 2, "resolved", outcome="cleared"))
    await rig.settle()
    q9 = [m for m in rig.slack.top_level("#dispatch") if "Q9" in json.dumps(m.metadata)]
    assert len(q9) == 2  # the stale one we could not find, and one that shows the truth
    assert rig.delivery.pending_count() == 0


async def test_an_old_ledger_entry_resolved_but_never_posted_stays_unposted(rig: Rig) -> None:
    rec = AlertRecord("Q8", "#dispatch", make_alert("Q8", 2, "resolved", outcome="released"))
    rig.ledger = MemoryLedger({"Q8": rec.to_entry()})  # written before silence was decided here
    assert rig.restart().pending_count() == 0
    await rig.settle()
    assert rig.slack.requests == []


async def test_replayed_traffic_is_skipped_and_counted_unless_opted_in(rig: Rig) -> None:
    replayed = Origin(traffic="replay")
    for alert in lifecycle("Y1")[:2]:
        assert not await rig.delivery.accept(alert, origin=replayed)
    await rig.settle()
    assert rig.slack.requests == [] and "Y1" not in rig.delivery.alerts
    assert rig.metrics.counts["skipped:replayed"] == 2
    rig.delivery = new_delivery(
        rig.slack, rig.clock, rig.ledger, rig.metrics, DeliveryPolicy(include_replayed=True)
    )
    assert await rig.delivery.accept(make_alert("Y2"), origin=replayed)
    await rig.settle()
    assert parents(rig.slack) == ["Y2"]


async def test_storm_digest_lists_only_members_open_when_first_shown(rig: Rig) -> None:
    raised = [make_alert(f"T{i:02d}") for i in range(12)]  # threshold 5: T05..T11 join the digest
    gone = [make_alert(f"T{i:02d}", 2, "resolved", outcome="released") for i in (0, 6, 7)]
    await rig.history(*raised, *gone)
    await rig.settle()
    assert sorted(parents(rig.slack)) == ["T01", "T02", "T03", "T04"]  # T00 is over: not posted
    [digest] = [m for m in rig.slack.top_level("#dispatch") if m.text.startswith("Alert storm")]
    body = json.dumps(digest.blocks)
    assert "5 loads" in digest.text and "0 resolved" in body
    assert "LD-T06" not in body and "LD-T07" not in body and "LD-T11" in body
    await rig.feed(make_alert("T08", 2, "resolved", outcome="released"))  # shown open, then over
    await rig.settle()
    assert "1 resolved" in json.dumps(digest.blocks) and "~LD-T08~" in json.dumps(digest.blocks)


async def test_a_storm_digest_whose_members_are_all_over_is_never_posted(rig: Rig) -> None:
    storm = [make_alert(f"U{i}") for i in range(9)]  # U0..U4 on their own, U5..U8 in a digest
    over = [make_alert(f"U{i}", 2, "resolved", outcome="cleared") for i in range(5, 9)]
    await rig.history(*storm, *over)
    await rig.settle()
    assert sorted(parents(rig.slack)) == ["U0", "U1", "U2", "U3", "U4"]
    assert len(rig.slack.top_level("#dispatch")) == 5  # no digest at all
    assert rig.metrics.counts["storm_grouped"] == 4 and rig.delivery.pending_count() == 0


# --- expired: quietly (issue 11 item 5) -------------------------------------------------------------


async def test_an_expired_lifecycle_is_edited_in_place_without_any_thread_reply(rig: Rig) -> None:
    await rig.feed(make_alert("X2", 1, "raised", "critical"))
    await rig.settle(5)
    await rig.feed(make_alert("X2", 2, "resolved", outcome="expired", at=ALERT_T0 + timedelta(hours=26)))
    await rig.settle()
    [message] = rig.slack.top_level("#dispatch")
    assert message.text.startswith("Expired: no news of load LD-X2") and message.edits
    assert rig.slack.replies("#dispatch", message.ts) == []  # no reply, no broadcast, no ping
    assert len(rig.slack.calls("chat.postMessage")) == 1 and len(rig.slack.calls("chat.update")) == 1
    assert rig.delivery.pending_count() == 0 and rig.delivery.alerts["X2"].settled


# --- ledger retention in event time (issue 11 item 5) ------------------------------------------------

HOUR = timedelta(hours=1)


class TombstoneLedger(MemoryLedger):
    """A memory ledger that also remembers which keys were deleted."""

    def __init__(self, entries: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(entries)
        self.tombstones: list[str] = []

    async def put(self, key: str, entry: Any) -> None:
        if entry is None:
            self.tombstones.append(key)
        await super().put(key, entry)


def retention_rig(rig: Rig, entries: dict[str, dict[str, Any]] | None = None) -> TombstoneLedger:
    ledger = TombstoneLedger(entries)
    rig.ledger = ledger
    policy = DeliveryPolicy(edit_delay_s=10, storm_threshold=5, storm_window_s=60)
    rig.delivery = new_delivery(rig.slack, rig.clock, ledger, rig.metrics, policy)
    rig.delivery.restore(ledger.durable)
    return ledger


def message_of(slack: SlackTestServer, key: str) -> list[Any]:
    top = slack.top_level("#dispatch")
    return [m for m in top if m.metadata and m.metadata["event_payload"]["key"] == key]


def tick(alert_id: str, at: datetime) -> AlertEvent:
    """An unrelated open lifecycle whose event moves the notifier's event-time clock to `at`."""
    return make_alert(alert_id, 1, "raised", at=at)


def held(rig: Rig, key: str) -> bool:
    """Anything of `key` still held, in memory or in the durable ledger."""
    d = rig.delivery
    return (
        key in d.alerts
        or key in d.digests
        or key in d.records.timers
        or key in d.executor.latencies._accepted
        or key in rig.ledger.durable
        or key in d.pending_keys()
    )


async def test_a_resolved_lifecycle_leaves_the_ledger_after_the_retention_in_event_time(rig: Rig) -> None:
    ledger = retention_rig(rig)
    resolved_at = ALERT_T0 + 2 * HOUR
    await rig.feed(make_alert("L1", 1, at=ALERT_T0))
    await rig.settle(5)
    await rig.feed(make_alert("L1", 2, "resolved", outcome="released", at=resolved_at))
    await rig.settle()
    assert len(rig.slack.replies("#dispatch", rig.slack.top_level("#dispatch")[0].ts)) == 1
    await rig.settle(30 * 24 * 3600)  # a month of wall time with no event: nothing is forgotten
    assert held(rig, "L1")
    await rig.feed(tick("K1", resolved_at + 72 * HOUR))  # exactly the retention: not more
    assert held(rig, "L1") and ledger.tombstones == []
    await rig.feed(tick("K2", resolved_at + 72 * HOUR + timedelta(minutes=30)))
    assert held(rig, "L1")  # past it, but passes run once per hour of event time (batches)
    await rig.feed(tick("K3", resolved_at + 73 * HOUR))
    assert not held(rig, "L1")
    assert ledger.tombstones == ["L1"]
    assert {"K1", "K2", "K3"} <= set(ledger.durable)  # open lifecycles stay, however old
    assert rig.restart().alerts.keys() == {"K1", "K2", "K3"}  # gone for good


async def test_entries_slack_still_owes_work_are_kept_until_it_is_done(rig: Rig) -> None:
    ledger = retention_rig(rig)
    await rig.feed(make_alert("W1", 1, at=ALERT_T0))
    await rig.settle(5)
    rig.slack.fail("invalid_auth")  # the token is revoked: the resolution edit and reply wait
    await rig.feed(make_alert("W1", 2, "resolved", outcome="released", at=ALERT_T0 + HOUR))
    await rig.settle(120)
    await rig.feed(tick("K1", ALERT_T0 + 100 * HOUR))
    await rig.feed(tick("K2", ALERT_T0 + 102 * HOUR))  # two pruning passes well past the retention
    assert "W1" in rig.delivery.alerts and "W1" in ledger.durable and "W1" not in ledger.tombstones
    rig.slack.clear_failures()  # fixed: the edit and the reply go out
    await rig.settle(120)
    [message] = message_of(rig.slack, "W1")
    assert "Resolved" in message.text and len(rig.slack.replies("#dispatch", message.ts)) == 1
    assert "W1" in rig.delivery.alerts  # finished now, forgotten at the next pass only
    await rig.feed(tick("K3", ALERT_T0 + 103 * HOUR))
    assert not held(rig, "W1") and ledger.tombstones == ["W1"]


async def test_an_entry_with_a_pending_intent_is_kept(rig: Rig) -> None:
    """A reply that may have landed (intent recorded, answer lost) is looked for before forgetting."""
    rec = AlertRecord(
        "I1",
        "#dispatch",
        make_alert("I1", 2, "resolved", outcome="released", at=ALERT_T0),
        channel_id="C0DISPATCH",
        ts="1.000001",
        shown_seq=2,
        owed=["resolution:2"],
        intent="resolution:2",
        intent_at=rig.clock.wall(),
    )
    ledger = retention_rig(rig, {"I1": rec.to_entry()})
    rig.slack.fail("server_error", seconds=3600)
    await rig.feed(tick("K1", ALERT_T0 + 100 * HOUR))
    await rig.settle(60)
    await rig.feed(tick("K2", ALERT_T0 + 102 * HOUR))
    assert rig.delivery.alerts["I1"].intent == "resolution:2" and "I1" in ledger.durable
    await rig.settle(3700)  # Slack is back: the reply is looked for, then posted
    assert rig.delivery.alerts["I1"].intent is None and rig.delivery.pending_count() == 0
    await rig.feed(tick("K3", ALERT_T0 + 103 * HOUR))
    assert not held(rig, "I1") and ledger.tombstones == ["I1"]


async def test_a_late_step_of_a_forgotten_lifecycle_posts_nothing(rig: Rig) -> None:
    ledger = retention_rig(rig)
    events = lifecycle("F1")
    await rig.feed(*events, gap=20)
    await rig.settle()
    await rig.feed(tick("K1", events[-1].at + 80 * HOUR))
    assert not held(rig, "F1")
    await rig.settle()
    before = len(rig.slack.requests)
    await rig.feed(events[-1])  # the resolved step again (a redelivery, a replay)
    await rig.settle()
    assert len(rig.slack.requests) == before  # the first-start rule: over, so never shown
    assert rig.delivery.alerts["F1"].silent and rig.delivery.pending_count() == 0
    await rig.feed(tick("K2", events[-1].at + 82 * HOUR))
    assert not held(rig, "F1") and ledger.tombstones == ["F1", "F1"]


async def test_a_finished_storm_digest_leaves_the_ledger_with_its_members(rig: Rig) -> None:
    ledger = retention_rig(rig)
    storm = [make_alert(f"S{i}", 1, at=ALERT_T0) for i in range(8)]  # threshold 5: S5..S7 in a digest
    await rig.feed(*storm, gap=1)
    await rig.settle(120)
    [digest_id] = rig.delivery.digests
    await rig.feed(make_alert("N1", 1, at=ALERT_T0))  # the window has passed: the storm is over
    closed = ALERT_T0 + HOUR
    await rig.feed(*(make_alert(f"S{i}", 2, "resolved", outcome="released", at=closed) for i in range(7)))
    await rig.settle()
    await rig.feed(tick("K1", closed + 80 * HOUR))
    assert digest_id in rig.delivery.digests and "S5" in rig.delivery.alerts  # S7 is still open
    assert all(not held(rig, f"S{i}") for i in range(5))  # those with their own message are gone
    await rig.feed(make_alert("S7", 2, "resolved", outcome="cleared", at=closed + 81 * HOUR))
    await rig.settle()
    await rig.feed(tick("K2", closed + 160 * HOUR))
    assert not any(held(rig, key) for key in (digest_id, "S5", "S6", "S7"))
    assert ledger.tombstones[-4:] == [digest_id, "S5", "S6", "S7"]  # the digest first
    [digest] = message_of(rig.slack, digest_id)
    assert "3 resolved" in json.dumps(digest.blocks)  # it showed them all over before it went


async def test_a_new_storm_opens_a_new_digest(rig: Rig) -> None:
    await rig.feed(*(make_alert(f"A{i}") for i in range(7)), gap=1)
    await rig.settle(120)
    await rig.feed(make_alert("B0"))  # outside any storm
    await rig.settle(120)
    await rig.feed(*(make_alert(f"C{i}") for i in range(7)), gap=1)
    await rig.settle()
    digests = [m for m in rig.slack.top_level("#dispatch") if m.text.startswith("Alert storm")]
    assert len(digests) == 2 and len(rig.delivery.digests) == 2


async def test_memory_stays_bounded_over_months_of_event_time(rig: Rig) -> None:
    retention_rig(rig)
    for n in range(120):  # one lifecycle every 6 h of event time, each raised, shown and resolved
        at = ALERT_T0 + n * 6 * HOUR
        await rig.feed(make_alert(f"M{n}", 1, at=at))
        await rig.settle(5)
        await rig.feed(make_alert(f"M{n}", 2, "resolved", outcome="released", at=at + HOUR))
        await rig.settle(30)
    d = rig.delivery
    within = 72 // 6 + 2  # resolved within the retention, and the current one
    assert len(d.alerts) <= within and len(rig.ledger.durable) <= within
    assert len(d.records.timers) <= within and len(d.executor.latencies._accepted) <= within
    assert len(d.retention) <= within and d.pending_count() == 0
    assert len(rig.slack.top_level("#dispatch")) == 120  # all of them were shown
