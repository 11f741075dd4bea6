"""The status API shows who owns a load: a live worker folds holdwatch.actions (what the notifier
publishes for a click on Acknowledge / Snooze / Release) into its `ownership` table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from schemas.actions import DispatchAction
from tests.integration.pipeline_harness import Namespace
from tests.integration.test_board_browser import _get, _now_events, _publish, _wait, api_worker

pytestmark = pytest.mark.integration
__all__ = ["api_worker"]  # the fixture, used by name


def _act(ns: Namespace, action: DispatchAction) -> None:
    producer = KafkaProducer(bootstrap_servers=ns.bootstrap, acks="all")
    try:
        topic = ns.topics["alerts"].replace("alerts", "actions", 1)  # Settings.actions_topic()
        producer.send(topic, key=action.ccn.encode(), value=action.model_dump_json().encode())
        producer.flush()
    finally:
        producer.close()


def test_the_status_api_shows_the_owner_and_the_snooze(api_worker: tuple[Namespace, str]) -> None:
    ns, base = api_worker
    now = datetime.now(UTC)
    _publish(ns, _now_events("OWNT100", now, rpp=False))
    _, body = _wait(
        lambda: (r := _get(base + "/v1/loads/OWNT100"))[0] == 200 and r[1].get("alert") and r, 60, "the alert"
    )
    alert_id = body["alert"]["alert_id"]
    assert "owner_id" not in body["alert"]  # nobody yet
    at = now.replace(microsecond=0)
    common = {"alert_id": alert_id, "ccn": "OWNT100", "user_id": "U0DISPATCH1", "user_name": "sam"}
    _act(ns, DispatchAction(action_id="c1", kind="acknowledge", at=at, **common))
    until = at + timedelta(hours=1)
    _act(ns, DispatchAction(action_id="c2", kind="snooze", at=at, snooze="1h", snooze_until=until, **common))
    shown = _wait(
        lambda: (a := _get(base + "/v1/loads/OWNT100")[1].get("alert", {})).get("snoozed_until") and a,
        60,
        "the owner in the API",
    )
    assert shown["owner_name"] == "sam" and shown["owner_id"] == "U0DISPATCH1"
    assert datetime.fromisoformat(shown["owned_since"]) == at
    assert datetime.fromisoformat(shown["snoozed_until"]) == until
    listed = _get(base + "/v1/loads?open=true")[1]["items"]
    assert [item["alert"].get("owner_name") for item in listed if item["ccn"] == "OWNT100"] == ["sam"]
    # An action of another (older) lifecycle of the load is not shown as this one's.
    _act(ns, DispatchAction(action_id="c3", kind="release", at=at, **{**common, "alert_id": "OLD:1"}))
    _act(ns, DispatchAction(action_id="c4", kind="release", at=at, **common))
    _wait(lambda: "owner_id" not in _get(base + "/v1/loads/OWNT100")[1]["alert"], 60, "the release")
