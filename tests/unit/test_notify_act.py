"""A click in the shell: refused, answered, published for the notifier that holds the alert."""

from __future__ import annotations

from typing import Any

from alerting.notify.ledger import AlertRecord
from alerting.notify.metrics import CountingMetrics
from alerting.notify.render import action_elements
from schemas.actions import DispatchAction
from streams.notifier.act import AnyoneMayAct, Interactions
from tests.fixtures.slack import ALERT_T0, StoredMessage, block_actions_payload, make_alert


class Nobody:
    async def may_act(self, user_id: str, channel_id: str | None) -> bool:
        return False


def clicked(action_id: str, *, selected: str | None = None) -> dict[str, Any]:
    alert = make_alert("A1", 1, "raised", "critical")
    blocks = [
        {
            "type": "actions",
            "block_id": "hw_dispatch",
            "elements": action_elements("A1", _nobody(), alert.ccn),
        }
    ]
    message = StoredMessage(channel="C0DISPATCH", ts="1.000001", text="t", blocks=blocks)
    return block_actions_payload(
        message=message,
        action_id=action_id,
        selected=selected,
        response_url="https://r/1",
        action_ts=f"{ALERT_T0.timestamp():.6f}",  # the alert's own time: its ETA is 90 min ahead
    )


def _nobody() -> Any:
    from alerting.notify.ledger import Ownership

    return Ownership()


class Rig:
    def __init__(self, records: dict[str, AlertRecord], authorizer: Any = None) -> None:
        self.published: list[DispatchAction] = []
        self.answers: list[dict[str, Any]] = []
        self.metrics = CountingMetrics()

        async def publish(action: DispatchAction) -> None:
            self.published.append(action)

        async def respond(url: str, **kw: Any) -> bool:
            self.answers.append({"url": url, **kw})
            return True

        self.sink = Interactions(records.get, publish, authorizer or AnyoneMayAct(), respond, self.metrics)


async def test_a_click_on_an_alert_held_here_is_published_with_its_snooze_end() -> None:
    alert = make_alert("A1", 1, "raised", "critical", eta_in_min=120)
    rig = Rig({"A1": AlertRecord("A1", "#dispatch", alert, ts="1.000001")})
    await rig.sink.handle("interactive", clicked("hw_snooze", selected=f"eta-30m|A1|{alert.ccn}"))
    (action,) = rig.published
    assert (action.kind, action.alert_id, action.ccn, action.snooze) == ("snooze", "A1", alert.ccn, "eta-30m")
    assert action.snooze_until is not None and alert.eta is not None
    assert action.snooze_until.timestamp() == alert.eta.timestamp() - 1800


async def test_a_click_on_an_alert_another_notifier_holds_is_routed_by_its_ccn() -> None:
    rig = Rig({})
    await rig.sink.handle("interactive", clicked("hw_ack"))
    (action,) = rig.published
    assert action.alert_id == "A1" and action.ccn == make_alert("A1").ccn and rig.answers == []


async def test_refused_and_resolved_clicks_are_answered_to_the_clicker_only() -> None:
    resolved = make_alert("A1", 2, "resolved", None, outcome="released")
    rig = Rig({"A1": AlertRecord("A1", "#dispatch", resolved, ts="1.0")})
    await rig.sink.handle("interactive", clicked("hw_ack"))
    assert rig.published == [] and "already resolved" in rig.answers[0]["text"]
    assert rig.answers[0]["ephemeral"] is True
    refused = Rig({"A1": AlertRecord("A1", "#dispatch", make_alert("A1"), ts="1.0")}, Nobody())
    await refused.sink.handle("interactive", clicked("hw_ack"))
    assert refused.published == [] and "Only members" in refused.answers[0]["text"]
    assert refused.metrics.actions[("acknowledge", "refused")] == 1
