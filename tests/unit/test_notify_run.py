"""The real-time shell of the delivery core (`Delivery.run`) and the console sink."""

from __future__ import annotations

import asyncio
import io
import itertools

from pydantic import SecretStr

from alerting.notify.clock import ScaledClock
from alerting.notify.console import ConsoleGateway
from alerting.notify.delivery import Delivery, DeliveryPolicy, Origin
from alerting.notify.ledger import MemoryLedger
from alerting.notify.metrics import CountingMetrics
from alerting.notify.routing import Routing
from alerting.notify.slack import SlackWebGateway, make_web_client
from tests.fixtures.slack import SlackTestServer, StoredMessage, make_alert


async def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_run_delivers_through_an_outage_at_100x_speed() -> None:
    clock = ScaledClock(speed=100)  # a 30 s outage takes 0.3 s
    async with SlackTestServer(clock=clock.now) as slack:
        gateway = SlackWebGateway(make_web_client(SecretStr("xoxb-test"), slack.base_url))
        metrics = CountingMetrics()
        delivery = Delivery(
            gateway,
            MemoryLedger(),
            Routing(default="#dispatch", teams={"east": "#east"}),
            policy=DeliveryPolicy(edit_delay_s=5),
            clock=clock,
            metrics=metrics,
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(delivery.run(stop))
        slack.fail("server_error", seconds=30)
        for i in range(6):
            await delivery.accept(make_alert(f"O{i}", team="east" if i % 2 else None))
        # O0 escalates once its message is on Slack (after the outage): a thread reply is owed
        await wait_until(lambda: "O0" in keys(slack.top_level("#dispatch")))
        await delivery.accept(make_alert("O0", 2, "updated", "critical", previous_severity="warning"))
        await wait_until(lambda: delivery.pending_count() == 0)
        stop.set()
        await asyncio.wait_for(runner, 10)
        assert len(slack.top_level("#dispatch")) == 3 and len(slack.top_level("#east")) == 3
        failed = [r.at for r in slack.requests if r.outcome == "server_error"]
        assert len(failed) >= 6, "each channel retries, backing off, through the whole outage"
        # Backoff with jitter: the last retry inside the 30 s outage lands anywhere after ~14 s.
        assert 10 < max(failed) - min(failed) < 31
        assert min(r.at for r in slack.calls("chat.postMessage")) >= 30  # nothing lands during it
        for channel in ("#dispatch", "#east"):
            times = [r.at for r in slack.calls("chat.postMessage") if r.body["channel"] == channel]
            assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
        [o0] = [m for m in slack.top_level("#dispatch") if keys([m]) == ["O0"]]
        assert "CRITICAL" in o0.text  # edited to the escalated state
        [escalation] = slack.replies("#dispatch", o0.ts)
        assert keys([escalation]) == ["O0:escalation:2"]
        assert "CRITICAL" in escalation.text and not escalation.reply_broadcast
        assert metrics.latencies and metrics.counts["retried"] > 0


def keys(messages: list[StoredMessage]) -> list[str]:
    """The keys our messages carry as metadata."""
    return [m.metadata["event_payload"]["key"] for m in messages if m.metadata]


def console_delivery(out: io.StringIO, *, include_replayed: bool = False) -> Delivery:
    policy = DeliveryPolicy(min_interval_s=0, include_replayed=include_replayed)
    return Delivery(ConsoleGateway(out), MemoryLedger(), Routing(default="#dispatch"), policy=policy)


async def drain(delivery: Delivery) -> None:
    """Make every call due now (the console has no pacing)."""
    while (due := delivery.next_due()) is not None:
        await delivery.step(due[1])


async def test_console_sink_prints_the_same_lifecycle() -> None:
    out = io.StringIO()
    delivery = console_delivery(out)
    await delivery.accept(make_alert("K1"))
    await drain(delivery)  # shown while open: the later steps edit it and reply in its thread
    await delivery.accept(make_alert("K1", 2, "updated", "critical", previous_severity="warning"))
    await delivery.accept(make_alert("K1", 3, "resolved", outcome="cleared"))
    await drain(delivery)
    text = out.getvalue()
    assert text.count("new message in #dispatch [") == 1
    assert "Windsor" in text and "LD-K1" in text and "Resolved: load LD-K1 cleared" in text


async def test_console_sink_makes_the_same_first_start_decisions() -> None:
    """History read before anything was shown: only what is still open is printed, once."""
    out = io.StringIO()
    delivery = console_delivery(out)
    await delivery.accept(make_alert("K1"))
    await delivery.accept(make_alert("K1", 2, "updated", "critical", previous_severity="warning"))
    await delivery.accept(make_alert("K1", 3, "resolved", outcome="cleared"))
    await delivery.accept(make_alert("K2"))
    await delivery.accept(make_alert("K2", 2, "updated", "critical", previous_severity="warning"))
    await delivery.accept(make_alert("K3"), origin=Origin(traffic="replay"))
    await drain(delivery)
    text = out.getvalue()
    assert text.count("new message in #dispatch [") == 1 and "updated" not in text
    assert "LD-K2" in text and "CRITICAL" in text and "reply to" not in text
    assert "LD-K1" not in text and "LD-K3" not in text and "Resolved" not in text
    replaying = io.StringIO()
    opted_in = console_delivery(replaying, include_replayed=True)
    await opted_in.accept(make_alert("K3"), origin=Origin(traffic="replay"))
    await drain(opted_in)
    assert "LD-K3" in replaying.getvalue()


async def test_console_sink_shows_an_expiry_as_a_quiet_edit() -> None:
    out = io.StringIO()
    delivery = console_delivery(out)
    await delivery.accept(make_alert("K4"))
    await drain(delivery)
    await delivery.accept(make_alert("K4", 2, "resolved", outcome="expired"))
    await drain(delivery)
    text = out.getvalue()
    assert text.count("new message in #dispatch [") == 1 and "reply to" not in text
    assert "updated\n[EXPIRED] Expired: no news of load LD-K4" in text and "Resolved" not in text
