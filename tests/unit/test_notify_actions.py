"""Dispatch acting on alerts, through the delivery core, the real AsyncWebClient and the local Slack
server: ownership shown in the message and its thread, applied once per click, on-call pages of
unowned criticals at exact instants of a manual clock (no test waits for real time)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from alerting.notify.actions import decide, page_due, parse_click, snooze_until, watch
from alerting.notify.clock import ManualClock
from alerting.notify.delivery import Delivery, DeliveryPolicy, Origin, run_simulated
from alerting.notify.ledger import AlertRecord, MemoryLedger, Ownership
from alerting.notify.metrics import CountingMetrics
from alerting.notify.routing import OnCall, Routing
from alerting.notify.slack import SlackWebGateway, make_web_client
from schemas.actions import DispatchAction
from schemas.alerts import AlertEvent, ReasonDetail
from tests.fixtures.slack import ALERT_T0, SlackTestServer, StoredMessage, block_actions_payload, make_alert

POLICY = DeliveryPolicy(min_interval_s=0.0, edit_delay_s=1.0, interactive=True, escalate_after_s=600.0)
ROUTING = Routing(default="#dispatch", oncall=OnCall(default="S0ONCALL"), escalation_channel="#escalations")
CLICKS = itertools.count(1)


@dataclass
class Rig:
    slack: SlackTestServer
    clock: ManualClock
    ledger: MemoryLedger
    metrics: CountingMetrics
    delivery: Delivery

    def new(self, policy: DeliveryPolicy = POLICY, routing: Routing = ROUTING) -> Delivery:
        gateway = SlackWebGateway(make_web_client(SecretStr("xoxb-test"), self.slack.base_url))
        return Delivery(gateway, self.ledger, routing, policy=policy, clock=self.clock, metrics=self.metrics)

    def restart(self) -> None:
        self.ledger = MemoryLedger(self.ledger.durable)
        self.delivery = self.new(self.delivery.policy)
        self.delivery.restore(self.ledger.durable)

    async def until(self, t: float) -> None:
        await run_simulated(self.delivery, self.clock, t)
        await self.ledger.flush()

    async def accept(self, alert: AlertEvent, origin: Origin | None = None) -> None:
        await self.delivery.accept(alert, origin=origin)
        await self.ledger.flush()

    async def act(
        self, kind: str, alert_id: str = "A1", *, user: str = "U1", name: str = "sam", **kw: Any
    ) -> str:
        action = DispatchAction(
            action_id=kw.pop("action_id", f"click-{next(CLICKS)}"),
            kind=kind,  # type: ignore[arg-type]
            alert_id=alert_id,
            ccn=self.delivery.alerts[alert_id].latest.ccn if alert_id in self.delivery.alerts else "X",
            user_id=user,
            user_name=name,
            at=datetime.fromtimestamp(self.clock.wall(), UTC),
            **kw,
        )
        outcome = await self.delivery.accept_action(action)
        await self.ledger.flush()
        return outcome

    def message(self) -> StoredMessage:
        (message,) = self.slack.top_level("#dispatch")
        return message

    def replies(self) -> list[str]:
        return [m.text for m in self.slack.replies("#dispatch", self.message().ts)]

    def pages(self) -> list[float]:
        """When each on-call page reached Slack (in the alert's thread), on the shared clock."""
        return [
            r.at
            for r in self.slack.calls("chat.postMessage")
            if r.body.get("thread_ts") and "Unacknowledged CRITICAL" in str(r.body.get("text"))
        ]

    def page_texts(self) -> list[str]:
        return [
            str(r.body.get("text"))
            for r in self.slack.calls("chat.postMessage")
            if r.body.get("thread_ts") and "Unacknowledged CRITICAL" in str(r.body.get("text"))
        ]


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock(wall_origin=ALERT_T0.timestamp())
    async with SlackTestServer(clock=clock.now) as slack:
        r = Rig(slack, clock, MemoryLedger(), CountingMetrics(), None)  # type: ignore[arg-type]
        r.delivery = r.new()
        yield r


def critical(seq: int = 1, action: str = "raised", **kw: Any) -> AlertEvent:
    return make_alert("A1", seq, action, "critical", at=ALERT_T0 + timedelta(seconds=seq), **kw)


def blocks_text(message: StoredMessage) -> str:
    return str(message.blocks)


async def test_acknowledge_shows_the_owner_and_stops_the_escalation(rig: Rig) -> None:
    await rig.accept(critical())
    await rig.until(1)
    assert "Acknowledge" in blocks_text(rig.message())
    assert "Unowned" in blocks_text(rig.message())
    rig.clock.advance_to(60)
    assert await rig.act("acknowledge", action_id="click-A") == "applied"
    await rig.until(2000)
    shown = blocks_text(rig.message())
    assert "Owned by *sam* since 09:01 EST" in shown and "Take over" in shown and "Release" in shown
    assert any("sam acknowledged at 09:01 EST" in text for text in rig.replies())
    assert rig.pages() == []  # owned: never escalated
    assert await rig.act("acknowledge", action_id="click-A") == "duplicate"  # Slack delivered it twice
    await rig.until(2100)
    assert sum("acknowledged" in text for text in rig.replies()) == 1
    assert rig.metrics.actions[("acknowledge", "applied")] == 1
    assert rig.metrics.actions[("acknowledge", "duplicate")] == 1
    assert rig.metrics.ack_latencies == [60.0]  # first raised 14:00:00 UTC, acknowledged 14:01:00


async def test_an_unowned_critical_is_paged_at_the_right_instants(rig: Rig) -> None:
    await rig.accept(critical())
    await rig.until(599.9)
    assert rig.pages() == []
    await rig.until(600)
    assert rig.pages() == [600]
    (text,) = rig.page_texts()
    assert "<!subteam^S0ONCALL>" in text
    assert [m.reply_broadcast for m in rig.slack.replies("#dispatch", rig.message().ts)] == [True]
    (elsewhere,) = rig.slack.top_level("#escalations")
    assert "Act in #dispatch" in str(elsewhere.blocks)
    # The second page at ETA - 30 min (ETA 15:30, so 15:00 = t 3600), and no third.
    await rig.until(3599)
    assert len(rig.pages()) == 1
    await rig.until(7200)
    assert rig.pages() == [600, 3600]
    assert rig.metrics.pages == {1: 1, 2: 1}


async def test_a_snooze_delays_the_page_and_a_new_critical_reason_ends_it(rig: Rig) -> None:
    await rig.accept(critical())
    await rig.until(100)
    until = datetime.fromtimestamp(rig.clock.wall() + 3600, UTC)
    assert await rig.act("snooze", snooze="1h", snooze_until=until) == "applied"
    await rig.until(1000)
    assert rig.pages() == []  # would have been at 600
    assert "snoozed until 10:01 EST" in blocks_text(rig.message())
    new_reason = ReasonDetail(code="carm_not_registered", severity="critical", summary="s", action="a")
    details = [*critical().details, new_reason]
    await rig.accept(critical(2, "updated", reasons=["pars_missing", "carm_not_registered"], details=details))
    await rig.until(1001)
    assert any("Snooze ended" in text for text in rig.replies())
    assert rig.pages() == [1000]  # at once: unowned since 0, more than 600 s ago


async def test_release_makes_it_unowned_and_escalation_counts_again_from_then(rig: Rig) -> None:
    await rig.accept(critical())
    rig.clock.advance_to(60)
    await rig.act("acknowledge")
    rig.clock.advance_to(300)
    assert await rig.act("release", user="U2", name="kim") == "applied"
    await rig.until(899)
    assert rig.pages() == []
    await rig.until(900)
    assert len(rig.pages()) == 1
    assert any("kim released ownership" in text and "(was sam)" in text for text in rig.replies())
    assert "Unowned" in blocks_text(rig.message())


async def test_actions_on_a_resolved_lifecycle_change_nothing(rig: Rig) -> None:
    await rig.accept(critical())
    await rig.until(1)
    await rig.accept(critical(2, "resolved", outcome="released"))
    await rig.until(10)
    assert await rig.act("acknowledge") == "resolved"
    assert await rig.act("acknowledge", alert_id="nope") == "unknown_alert"
    await rig.until(2000)
    assert rig.pages() == []
    assert "Acknowledge" not in blocks_text(rig.message())  # the final message has no buttons


async def test_owner_survives_a_restart_and_is_mentioned_in_the_resolution(rig: Rig) -> None:
    await rig.accept(critical())
    rig.clock.advance_to(30)
    await rig.act("acknowledge")
    await rig.until(40)
    rig.restart()
    assert rig.delivery.alerts["A1"].ownership.owner == "U1"
    await rig.until(2000)
    assert rig.pages() == []
    await rig.accept(critical(2, "resolved", outcome="released"))
    await rig.until(2100)
    assert rig.replies()[-1].startswith("<@U1>")
    assert len(rig.slack.top_level("#dispatch")) == 1


async def test_replayed_traffic_is_never_paged(rig: Rig) -> None:
    rig.delivery = rig.new(DeliveryPolicy(min_interval_s=0.0, interactive=True, include_replayed=True))
    await rig.accept(critical(), origin=Origin(traffic="replay"))
    await rig.until(5000)
    assert rig.pages() == [] and rig.message() is not None


async def test_read_only_messages_without_a_transport(rig: Rig) -> None:
    rig.delivery = rig.new(DeliveryPolicy(min_interval_s=0.0))
    await rig.accept(critical())
    await rig.until(5000)
    assert "Acknowledge" not in blocks_text(rig.message()) and rig.pages() == []


# --- the pure parts ---------------------------------------------------------------------------


def test_a_click_payload_becomes_a_click_with_a_stable_id() -> None:
    stored = StoredMessage(channel="C1", ts="1.000001", text="t", blocks=[])
    payload = block_actions_payload(
        message=stored, action_id="hw_snooze", selected="eta-30m|A1", action_ts="1795442460.5"
    )
    click = parse_click(payload)
    assert not isinstance(click, str)
    assert (click.kind, click.alert_id, click.snooze) == ("snooze", "A1", "eta-30m")
    assert click.action_id == parse_click(payload).action_id  # type: ignore[union-attr]
    assert click.at == datetime.fromtimestamp(1795442460.5, UTC)
    other = block_actions_payload(message=stored, action_id="something_else", value="x")
    assert isinstance(parse_click(other), str)


def test_snooze_choices() -> None:
    alert = critical()  # ETA 15:30
    at = ALERT_T0
    assert snooze_until("30m", alert, at) == at + timedelta(minutes=30)
    assert snooze_until("1h", alert, at) == at + timedelta(hours=1)
    assert snooze_until("eta-30m", alert, at) == ALERT_T0 + timedelta(minutes=60)
    late = at + timedelta(minutes=75)  # past ETA - 30 min: the shortest snooze instead
    assert snooze_until("eta-30m", alert, late) == late + timedelta(minutes=30)


def test_turning_critical_starts_the_watch_and_warning_stops_it() -> None:
    warning = make_alert("A1", 1, "raised", "warning")
    own, ended = watch(Ownership(), None, warning, now=5.0)
    assert own.watch_from is None and not ended
    own, ended = watch(own, warning, critical(2, "updated"), now=7.0)
    assert own.watch_from == 7.0 and not ended
    own, _ = watch(own, critical(2, "updated"), critical(3, "updated"), now=9.0)
    assert own.watch_from == 7.0  # still the same critical stretch


def test_no_second_page_when_the_first_came_too_close_to_the_eta() -> None:
    rec = AlertRecord("A1", "#d", critical(), ts="1.0")
    eta = rec.latest.eta
    assert eta is not None
    rec.ownership = Ownership(watch_from=eta.timestamp() - 900, pages=1, paged_at=eta.timestamp() - 300)
    assert page_due(rec, escalate_after_s=600, second_before_eta_s=1800) is None
    rec.ownership = Ownership(watch_from=0.0, pages=0)
    assert page_due(rec, escalate_after_s=600, second_before_eta_s=1800) == (1, 600.0)


@pytest.mark.parametrize("kind", ["acknowledge", "release", "snooze"])
def test_the_same_action_id_is_applied_once(kind: str) -> None:
    action = DispatchAction(
        action_id="x",
        kind=kind,
        alert_id="A1",
        ccn="C",
        user_id="U1",
        at=ALERT_T0,  # type: ignore[arg-type]
    )
    first = decide(Ownership(owner="U9"), critical(), action, fmt=lambda at: at.isoformat())
    assert first.outcome == "applied"
    assert decide(first.ownership, critical(), action, fmt=str).outcome == "duplicate"
