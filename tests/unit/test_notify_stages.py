"""The notify stages on their own: the pure planner (record + alert -> action) and the per-channel
scheduler (pacing, Retry-After, backoff, permanent retry) on a manual clock."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from alerting.engine.rules import is_escalation
from alerting.notify.clock import ManualClock
from alerting.notify.ledger import AlertRecord
from alerting.notify.planner import (
    EDIT,
    POST,
    NextCall,
    Timers,
    is_duplicate,
    next_call,
    plan_first,
    plan_next,
    skip_reason,
)
from alerting.notify.policy import DeliveryPolicy
from alerting.notify.retention import Retention
from alerting.notify.scheduler import Scheduler
from tests.fixtures.slack import make_alert

POLICY = DeliveryPolicy(edit_delay_s=15, warning_hold_s=0)
HOLDING = DeliveryPolicy(warning_hold_s=600)


def shown(alert_id: str = "A1", seq: int = 1, **changes: object) -> AlertRecord:
    """A lifecycle whose message (showing `seq`) is on Slack."""
    rec = AlertRecord(
        alert_id, "#dispatch", make_alert(alert_id, seq), ts="1.0", channel_id="C1", shown_seq=seq
    )
    for name, value in changes.items():
        setattr(rec, name, value)
    return rec


# --- planner -----------------------------------------------------------------------------------


def test_first_event_is_posted_at_once_grouped_in_a_storm_or_silent_if_already_over() -> None:
    assert plan_first(make_alert("A1"), in_storm=False, now=5, policy=POLICY).timers == Timers()
    assert plan_first(make_alert("A1"), in_storm=True, now=5, policy=POLICY).join_digest
    over = plan_first(
        make_alert("A1", 3, "resolved", outcome="cleared"), in_storm=False, now=5, policy=POLICY
    )
    assert over.silent and not over.join_digest


def test_a_warning_is_held_back_but_a_critical_is_not() -> None:
    assert plan_first(make_alert("A1"), in_storm=False, now=5, policy=HOLDING).timers.post_due == 605
    critical = plan_first(make_alert("A1", severity="critical"), in_storm=False, now=5, policy=HOLDING)
    assert critical.timers.post_due is None


def test_a_held_warning_that_clears_goes_silent_and_one_that_escalates_posts_now() -> None:
    rec = AlertRecord("A1", "#dispatch", make_alert("A1"))
    held = Timers(post_due=605)
    cleared = plan_next(rec, make_alert("A1", 2, "resolved", outcome="cleared"), held, now=60, policy=HOLDING)
    assert cleared.silent and cleared.timers.post_due is None and cleared.owe is None
    escalated = make_alert("A1", 2, "updated", "critical", previous_severity="warning")
    assert plan_next(rec, escalated, held, now=60, policy=HOLDING).timers.post_due == 60
    still = plan_next(rec, make_alert("A1", 2, "updated"), held, now=60, policy=HOLDING)
    assert still.timers == held and not still.silent


def test_updates_of_a_shown_message_are_batched_within_the_edit_delay() -> None:
    first = plan_next(shown(), make_alert("A1", 2, "updated"), Timers(), now=100, policy=POLICY)
    assert first.timers.edit_due == 115 and first.owe is None
    later = plan_next(shown(), make_alert("A1", 3, "updated"), first.timers, now=110, policy=POLICY)
    assert later.timers.edit_due == 115  # the first pending update sets the batch's due time


def test_escalation_and_resolution_are_edited_at_once_and_owe_a_thread_reply() -> None:
    escalated = make_alert("A1", 2, "updated", "critical", previous_severity="warning")
    plan = plan_next(shown(), escalated, Timers(edit_due=115), now=100, policy=POLICY)
    assert plan.owe == "escalation:2" and plan.timers.edit_due == 100
    released = plan_next(
        shown(), make_alert("A1", 3, "resolved", outcome="released"), Timers(), now=7, policy=POLICY
    )
    assert released.owe == "resolution:3" and released.timers.edit_due == 7


def test_no_reply_is_owed_for_a_message_not_on_slack_or_an_unconfigured_outcome() -> None:
    unposted = AlertRecord("A1", "#dispatch", make_alert("A1"))
    escalated = make_alert("A1", 2, "updated", "critical", previous_severity="warning")
    assert plan_next(unposted, escalated, Timers(), now=0, policy=POLICY).owe is None
    maybe_posted = AlertRecord("A1", "#dispatch", make_alert("A1"), intent=POST)
    assert plan_next(maybe_posted, escalated, Timers(), now=0, policy=POLICY).owe == "escalation:2"
    only_released = DeliveryPolicy(resolution_reply_outcomes=frozenset({"released"}))
    cleared = make_alert("A1", 2, "resolved", outcome="cleared")
    assert plan_next(shown(), cleared, Timers(), now=0, policy=only_released).owe is None


def test_an_expired_lifecycle_is_edited_at_once_but_owes_no_reply() -> None:
    """Expired (no news long past the ETA) is quiet by default: the message changes, nobody is pinged."""
    expired = make_alert("A1", 3, "resolved", outcome="expired")
    plan = plan_next(shown(), expired, Timers(edit_due=115), now=100, policy=DeliveryPolicy())
    assert plan.owe is None and plan.timers.edit_due == 100 and not plan.silent
    assert "expired" not in DeliveryPolicy().resolution_reply_outcomes
    loud = DeliveryPolicy(resolution_reply_outcomes=frozenset({"expired"}))
    assert plan_next(shown(), expired, Timers(), now=0, policy=loud).owe == "resolution:3"
    unposted = AlertRecord("A1", "#dispatch", make_alert("A1"))
    assert plan_next(unposted, expired, Timers(), now=0, policy=POLICY).silent  # never shown


def test_a_lifecycle_over_before_anything_reached_slack_goes_silent() -> None:
    unposted = AlertRecord("A1", "#dispatch", make_alert("A1", 2, "updated"))
    cleared = make_alert("A1", 3, "resolved", outcome="released")
    plan = plan_next(unposted, cleared, Timers(edit_due=20), now=10, policy=POLICY)
    assert plan.silent and plan.owe is None and plan.timers == Timers()
    maybe_posted = AlertRecord("A1", "#dispatch", make_alert("A1"), intent=POST)
    assert not plan_next(maybe_posted, cleared, Timers(), now=10, policy=POLICY).silent


def test_next_call_never_posts_a_message_first_showing_resolved() -> None:
    over = AlertRecord("A1", "#dispatch", make_alert("A1", 3, "resolved", outcome="released"))
    assert next_call(over, Timers()) is None
    over.intent = POST  # an earlier post may have landed: look for it (the executor adopts or drops)
    assert next_call(over, Timers()) == NextCall(POST, -math.inf)


def test_replayed_traffic_is_skipped_unless_the_policy_opts_in() -> None:
    assert skip_reason("replay", POLICY) == "replayed"
    assert skip_reason("replay", DeliveryPolicy(include_replayed=True)) is None
    assert skip_reason("live", POLICY) is None


def test_a_digest_member_only_refreshes_its_digest() -> None:
    rec = shown(digest="digest:#dispatch:1", ts=None)
    plan = plan_next(rec, make_alert("A1", 2, "resolved", outcome="released"), Timers(), now=0, policy=POLICY)
    assert plan.refresh_digest and plan.owe is None and not plan.silent


def test_escalation_is_warning_to_critical_only() -> None:
    warning = make_alert("A1")
    assert is_escalation(make_alert("A1", 2, "updated", "critical", previous_severity="warning"), warning)
    assert is_escalation(make_alert("A1", 2, "updated", "critical"), warning)  # inferred from the previous
    assert not is_escalation(
        make_alert("A1", 2, "updated", "critical", previous_severity="critical"), warning
    )
    assert not is_escalation(make_alert("A1", 2, "updated", "warning"), warning)
    assert not is_escalation(make_alert("A1", 2, "raised", "critical"), warning)


def test_stale_and_repeated_events_are_duplicates() -> None:
    rec = shown(seq=3)
    rec.latest = make_alert("A1", 3)
    assert is_duplicate(rec, make_alert("A1", 3)) and is_duplicate(rec, make_alert("A1", 2))
    assert not is_duplicate(rec, make_alert("A1", 4)) and not is_duplicate(None, make_alert("A1", 1))


def test_next_call_posts_then_escalates_then_edits_then_replies() -> None:
    unposted = AlertRecord("A1", "#dispatch", make_alert("A1"))
    assert next_call(unposted, Timers(post_due=600)) == NextCall(POST, 600)
    assert next_call(unposted, Timers()) == NextCall(POST, -math.inf)
    rec = shown(owed=["resolution:4", "escalation:3"])
    rec.latest = make_alert("A1", 4, "resolved", outcome="released")
    assert next_call(rec, Timers(edit_due=50)) == NextCall("escalation:3", -math.inf)
    rec.owed = ["resolution:4"]
    assert next_call(rec, Timers(edit_due=50)) == NextCall(EDIT, 50)
    rec.shown_seq = 4
    assert next_call(rec, Timers()) == NextCall("resolution:4", -math.inf)
    rec.owed = []
    assert next_call(rec, Timers()) is None
    assert next_call(shown(silent=True), Timers()) is None
    assert next_call(shown(digest="digest:#dispatch:1"), Timers()) is None


# --- scheduler ---------------------------------------------------------------------------------


def scheduler(clock: ManualClock, **policy: float) -> Scheduler:
    return Scheduler(DeliveryPolicy(**policy), clock, random.Random(7))  # type: ignore[arg-type]


def test_due_times_and_pacing() -> None:
    clock = ManualClock()
    sched = scheduler(clock, min_interval_s=1.0)
    assert sched.wake_time("#a") is None and sched.next_due() is None
    sched.mark("#a", "A1", 5)
    sched.mark("#a", "A1", 9)  # a later due time does not postpone the earlier one
    sched.mark("#b", "B1", 3)
    assert sched.wake_time("#a") == 5 and sched.next_due() == (3, "#b")
    assert sched.due_key("#a") is None  # not due yet
    clock.advance_to(5)
    assert sched.due_key("#a") == "A1"
    sched.mark("#a", "A2", 0)
    assert sched.succeeded("#a", sent=True) is None
    assert sched.wake_time("#a") == 6 and sched.due_key("#a") is None  # one call per second
    sched.succeeded("#a", sent=False)  # a step that made no call does not pace
    clock.advance_to(6)
    assert sched.due_key("#a") == "A2"  # the earliest due key first
    sched.settle("#a", "A2")
    sched.settle("#a", "A1")
    assert sched.wake_time("#a") is None and sched.pending_keys() == ["B1"]


def test_retry_after_blocks_the_channel_for_exactly_that_long() -> None:
    clock = ManualClock(start=10)
    sched = scheduler(clock, min_interval_s=1.0)
    sched.mark("#a", "A1", 0)
    sched.mark("#b", "B1", 0)
    assert sched.rate_limited("#a", 7.0) == 7.0
    assert sched.wake_time("#a") == 17 and sched.wake_time("#b") == 0  # other channels keep flowing
    assert sched.rate_limited("#a", None) == 1.0  # no header: wait the pace, at least a second


def test_transient_failures_back_off_exponentially_with_jitter_up_to_the_max() -> None:
    clock = ManualClock()
    sched = scheduler(clock, backoff_initial_s=1.0, backoff_max_s=10.0)
    sched.mark("#a", "A1", 0)
    delays = [sched.transient("#a") for _ in range(6)]
    for n, delay in enumerate(delays):
        ceiling = min(10.0, 2.0**n)
        assert 0.75 * ceiling <= delay <= ceiling
    assert sched.wake_time("#a") == delays[-1]
    sched.succeeded("#a", sent=True)
    assert 0.75 <= sched.transient("#a") <= 1.0  # a success resets the backoff


def test_a_permanent_error_retries_the_channel_periodically_until_it_works() -> None:
    clock = ManualClock(start=100)
    sched = scheduler(clock, permanent_retry_s=60.0)
    sched.mark("#a", "A1", 0)
    sched.permanent("#a", "channel_not_found")
    assert sched.wake_time("#a") == 160 and sched.channels["#a"].error == "channel_not_found"
    clock.advance_to(160)
    assert sched.due_key("#a") == "A1"
    assert sched.succeeded("#a", sent=True) == "channel_not_found"  # reported as recovered
    assert sched.channels["#a"].error is None


def test_storms_are_counted_per_channel_within_the_window() -> None:
    clock = ManualClock()
    sched = scheduler(clock, storm_threshold=2, storm_window_s=60.0)
    assert [sched.in_storm("#a") for _ in range(3)] == [False, False, True]
    assert not sched.in_storm("#b")
    clock.advance_to(61)
    assert not sched.in_storm("#a")  # the window has passed


def test_a_raised_alert_outside_a_storm_closes_the_channels_digest() -> None:
    clock = ManualClock()
    sched = scheduler(clock, storm_threshold=1, storm_window_s=60.0)
    assert [sched.in_storm("#a") for _ in range(2)] == [False, True]
    sched.channels["#a"].open_digest = "digest:#a:1"
    assert sched.in_storm("#a") and sched.channels["#a"].open_digest == "digest:#a:1"  # still on
    clock.advance_to(61)
    assert not sched.in_storm("#a")
    assert sched.channels["#a"].open_digest is None  # the next storm opens a new digest


# --- retention ---------------------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def test_retention_hands_out_lifecycles_resolved_more_than_the_retention_before_the_clock() -> None:
    keep = Retention(timedelta(hours=72), timedelta(hours=1))
    assert not keep.pass_due() and keep.take_due() == set()  # no event yet: no clock
    keep.observe(T0)
    keep.closed("A1", T0)
    keep.closed("A2", T0 + timedelta(hours=5))
    assert keep.pass_due()  # the first pass comes with the first event
    assert keep.take_due() == set()
    keep.observe(T0 + timedelta(minutes=59))
    assert not keep.pass_due()  # the clock moved less than the interval since the last pass
    keep.observe(T0 + timedelta(hours=72))
    assert keep.pass_due() and keep.take_due() == set()  # exactly the retention: not more
    keep.observe(T0 + timedelta(hours=73))
    assert keep.take_due() == {"A1"}
    keep.wait({"A1"})  # Slack still owes it something: asked again at the next pass
    keep.observe(T0 + timedelta(hours=70))  # an older event does not move the clock back
    assert keep.clock == T0 + timedelta(hours=73) and not keep.pass_due()
    keep.observe(T0 + timedelta(hours=78))
    assert keep.take_due() == {"A1", "A2"} and len(keep) == 0
