"""Faults proven on the real broker (issue 11, item 6): after each, the alert topic equals the
back-test (distinct by event_id), every lifecycle has at most one Slack message showing its final
state, and the dead-letter topic holds only what the log's malformed records produce.

The scenarios live in tests/integration/fault_scenarios.py, shared with bench/bench_faults.py
(the same steps at a larger size, with figures in docs/reliability.md). (b), the broker killed
mid-replay, is tests/integration/test_worker_broker_restart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.alerts import AlertEvent
from tests.fixtures.slack import StoredMessage, make_alert
from tests.integration import fault_scenarios as fs

pytestmark = pytest.mark.integration

LOADS = 300  # about 350 alert events in 120 lifecycles: every path taken, a few seconds of work
OUTAGE_S = fs.outage_seconds(20.0)
"""Slack is down 20 s here, not the 60 s of the issue (the bench's default): the notifier's backoff
(1 s doubling, jittered) has made its last try by then, so 60 s adds only waiting.
HOLDWATCH_FAULT_OUTAGE_S=60 runs the test at full length."""


def test_a_worker_and_its_notifier_killed_mid_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = fs.worker_killed_mid_replay(
        kafka_bootstrap,
        tmp_path,
        loads=LOADS,
        session_timeout_s=10,  # the broker drops the killed member in 10 s, not Faust's 60
    )
    at_kill = result.evidence["at kill"]
    assert 0 < at_kill["alert events on the topic"] < result.expected_events, result.explain()
    assert result.topic is not None and result.topic.ok, result.explain()
    assert result.slack.ok and not result.slack.timed_out, result.explain()
    assert result.slack.shown > 0
    assert result.dead_letters is not None and result.dead_letters.ok, result.explain()
    assert sum(result.dead_letters.expected.values()) > 0  # the log has malformed records


def test_c_notifier_killed_after_a_post_landed_posts_it_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = fs.notifier_killed_after_post(kafka_bootstrap, tmp_path, loads=LOADS)
    evidence = result.evidence
    assert evidence["held post landed"] == 1, result.explain()  # on Slack; the notifier never heard
    assert evidence["answer held for s before the kill"] < 10  # before slack-sdk's timeout (10 s)
    assert evidence["history lookups after restart"] >= 1, result.explain()  # it looked, found, adopted
    assert evidence["its messages at the end"] == 1, result.explain()
    assert result.slack.ok and not result.slack.timed_out, result.explain()


def test_d_slack_down_then_rate_limited_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    result = fs.slack_down_then_rate_limited(kafka_bootstrap, tmp_path, loads=LOADS, outage_s=OUTAGE_S)
    evidence = result.evidence
    during = evidence["calls during the outage"]
    assert during.get("ok", 0) == 0, result.explain()  # Slack was down throughout
    assert {"server_error", "drop", "drop_after"} <= during.keys(), result.explain()
    assert evidence["429s answered"] == 5, result.explain()
    assert evidence["alert events published during the outage"] > 0
    assert result.slack.ok and not result.slack.timed_out, result.explain()


def _message(
    alert_id: str, shown: AlertEvent, *, thread_ts: str | None = None, key: str | None = None
) -> StoredMessage:
    text, blocks = fs.expected_content(shown)
    metadata = {"event_type": "holdwatch_alert", "event_payload": {"key": key or alert_id}}
    return StoredMessage("C1", "1.000001", text, blocks, thread_ts=thread_ts, metadata=metadata)


def test_the_slack_verdict_can_fail() -> None:
    """No broker: the checks above see a doubled, a stale and a missing message, and a missing reply."""
    raised = make_alert("L1", 1, "raised", "warning")
    escalated = make_alert("L1", 2, "updated", "critical", previous_severity="warning")
    resolved = make_alert("L2", 2, "resolved", None, outcome="released")
    finals = {"L1": escalated, "L2": resolved, "L3": make_alert("L3", 2, "resolved", None, outcome="cleared")}
    reply = _message("L2", resolved, thread_ts="1.000001", key="L2:resolution:2")
    good = [_message("L1", escalated), _message("L2", resolved), reply]
    verdict = fs.slack_verdict(good, finals)
    assert verdict.ok and (verdict.shown, verdict.silent) == (2, 1)  # L3: over before it was shown

    assert fs.slack_verdict([*good, _message("L1", escalated)], finals).doubled == {"L1": 2}
    assert fs.slack_verdict([_message("L1", raised), *good[1:]], finals).stale == ["L1"]
    assert fs.slack_verdict(good[1:], finals).missing == ["L1"]
    assert fs.slack_verdict(good[:2], finals).missing_replies == ["L2"]
    assert fs.slack_verdict([*good, reply], finals).doubled_replies == {"L2:resolution:2": 2}
