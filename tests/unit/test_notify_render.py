"""Block Kit rendering: content dispatch needs, Slack limits, and no mrkdwn injection."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest

from alerting.notify.console import ConsoleGateway
from alerting.notify.delivery import Delivery, DeliveryPolicy
from alerting.notify.ledger import MemoryLedger
from alerting.notify.render import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    Reference,
    alert_card,
    card_to_console,
    escape,
    fit,
    render_alert,
    render_escalation,
    render_resolution,
    subteam_mention,
)
from alerting.notify.routing import Routing
from alerting.notify.storm import render_digest
from schemas.alerts import ReasonDetail
from schemas.brokers import BrokerContact, BrokerDirectory
from tests.fixtures.slack import ALERT_T0, make_alert


def all_texts(blocks: Any) -> list[str]:
    """Every mrkdwn/plain text string inside a block structure."""
    out: list[str] = []
    if isinstance(blocks, dict):
        for key, value in blocks.items():
            if key == "text" and isinstance(value, str):
                out.append(value)
            else:
                out.extend(all_texts(value))
    elif isinstance(blocks, list | tuple):
        for item in blocks:
            out.extend(all_texts(item))
    return out


INJECTIONS = ["<!channel>", "<@U123>", "<http://evil.example|click here>", "&lt;!here&gt;", "<!subteam^S999>"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_data_cannot_ping_mention_or_link(payload: str) -> None:
    alert = make_alert(
        load_ref=f"LD {payload}",
        importer_name=f"Imp {payload}",
        broker_name=f"Brk {payload}",
        details=[ReasonDetail(code="x", severity="warning", summary=payload, action=payload, call=payload)],
        reasons=["x"],
    )
    for message in (render_alert(alert), render_escalation(alert), render_digest([alert])):
        for text in [message.text, *all_texts(message.blocks)]:
            assert "<!" not in text and "<@" not in text and "<http" not in text
            # an escaped entity in the data stays visible as text, never becomes a live '<'
            assert "&lt;!here" not in text or "&amp;lt;!here" in text


def test_escape_neutralises_each_construct() -> None:
    assert escape("<!channel>") == "&lt;!channel&gt;"
    assert escape("<@U123>") == "&lt;@U123&gt;"
    assert escape("<http://x|y>") == "&lt;http://x|y&gt;"
    assert escape("&lt;") == "&amp;lt;"
    assert "@channel" not in escape("hey @channel and @here")


def test_configured_mention_only_on_critical() -> None:
    mention = subteam_mention("S0123ABC")
    assert mention == "<!subteam^S0123ABC>"
    assert subteam_mention("S01 <!channel>") is None
    critical = render_alert(make_alert(severity="critical"), mention=mention)
    warning = render_alert(make_alert(severity="warning"), mention=mention)
    assert mention in critical.text and mention in json.dumps(critical.blocks)
    assert mention not in warning.text and mention not in json.dumps(warning.blocks)


def test_card_shows_what_dispatch_needs_in_port_local_time() -> None:
    alert = make_alert(port="0453", eta_in_min=90, seq=1)  # at = T0 + 1 min, ETA = T0 + 90 min
    text = json.dumps(render_alert(alert).blocks)
    assert "LD-A1" in text and alert.ccn in text
    assert "Windsor" in text and "(0453)" in text
    assert "10:30 EST" in text  # 15:30 UTC in Toronto in November
    assert "89 min left" in text
    assert "Maple Imports Ltd" in text and "Acme Customs (ACME)" in text
    assert "First raised Mon 23 Nov 09:00 EST" in text
    assert "*Do:*" in text and "*Call:*" in text
    assert ":warning:" in text


def test_unknown_port_shows_the_code_in_utc() -> None:
    text = json.dumps(render_alert(make_alert(port="9999")).blocks)
    assert "9999" in text and "UTC" in text


def test_resolved_message_says_outcome_and_lists_no_reasons() -> None:
    alert = make_alert(seq=4, action="resolved", outcome="released")
    card = alert_card(alert)
    assert card.resolved and not card.reasons
    assert "released" in render_alert(alert).text
    assert "released" in render_resolution(alert).text


def test_limits_hold_for_huge_inputs() -> None:
    long = "A&B<" * 2000
    details = [
        ReasonDetail(code=f"r{i:03d}", severity="critical", summary=long, action=long, call=long)
        for i in range(120)
    ]
    alert = make_alert(
        severity="critical", reasons=[d.code for d in details], details=details, load_ref="L" * 200
    )
    message = render_alert(alert)
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        text = block.get("text", {}).get("text", "")
        assert len(text) <= MAX_SECTION_TEXT
        assert not re.search(r"&[a-z]{0,3}…", text), "an entity was cut in half"
        for f in block.get("fields", []):
            assert len(f["text"]) <= 2000
    assert "more reasons" in json.dumps(message.blocks)
    digest = render_digest([make_alert(f"S{i}", load_ref=long[:300]) for i in range(400)])
    assert len(digest.blocks) <= MAX_BLOCKS and "more" in json.dumps(digest.blocks[-1])


def test_fit_never_splits_an_entity() -> None:
    escaped = escape("x" * 9 + "&")  # ends with '&amp;'
    assert fit(escaped, 12) == "x" * 9 + "…"
    assert fit("short", 10) == "short"


def test_console_text_carries_the_same_content_unescaped() -> None:
    alert = make_alert(load_ref="LD <7>")
    text = card_to_console(alert_card(alert))
    assert "LD <7>" in text and "Windsor" in text and "do:" in text and "call:" in text


def test_expired_is_worded_apart_from_a_release() -> None:
    """The engine closed the load for lack of news: not good news, and never called a release."""
    day_past_eta = ALERT_T0 + timedelta(minutes=90, hours=24)
    alert = make_alert(seq=3, action="resolved", outcome="expired", at=day_past_eta)
    card = alert_card(alert)
    assert card.resolved and card.expired and not card.reasons
    message = render_alert(alert)
    blocks = json.dumps(message.blocks)
    assert message.text.startswith(
        "Expired: no news of load LD-A1 long past its ETA, closed without a release"
    )
    assert ":hourglass:" in blocks and ":white_check_mark:" not in blocks
    assert "released" not in message.text and "Resolved" not in message.text
    assert "stopped watching this load" in blocks and "No active reasons" not in blocks
    assert "24 h 00 min past ETA" in blocks  # the ETA fact says how long ago it was
    console = card_to_console(card)
    assert console.startswith("[EXPIRED] Expired: no news of load LD-A1") and "stopped watching" in console
    assert render_resolution(alert).text.startswith(":hourglass: Expired")
    no_eta = alert_card(make_alert(seq=3, action="resolved", outcome="expired", eta=None))
    assert no_eta.title == "Expired: no news of load LD-A1, closed without a release"
    released = alert_card(make_alert(seq=3, action="resolved", outcome="released"))
    assert not released.expired and released.note == "" and released.title.startswith("Resolved")


def test_an_expired_member_of_a_storm_digest_says_so() -> None:
    digest = render_digest(
        [make_alert("S1"), make_alert("S2", 2, "resolved", outcome="expired", load_ref="LD-S2")]
    )
    rows = json.dumps(digest.blocks)
    assert ":hourglass: ~LD-S2~" in rows and "expired: no news, not released" in rows
    assert "EXPIRED" in digest.plain and "RESOLVED" not in digest.plain


# --- the broker directory and the vehicle --------------------------------------------------------

ACME = BrokerContact(
    code="ACME",
    name="Acme Customs Brokers",
    phone_24h="+1-519-555-0134",
    phone="+1-519-555-0100",
    hours="Mon-Fri 07:00-19:00",
    tz="America/Toronto",
)
DIRECTORY = Reference(brokers=BrokerDirectory.of([ACME]))
CALL = "Call Acme Customs Brokers (ACME), 24 h line +1-519-555-0134, office +1-519-555-0100"
CLOSED = "Office closed until 07:00 EST: use the 24 h line"
BEFORE_OPENING = ALERT_T0 - timedelta(hours=4)  # Mon 23 Nov 05:00 EST


def test_the_message_says_whom_to_call_with_the_number() -> None:
    message = render_alert(make_alert(), reference=DIRECTORY)  # Mon 09:01 EST: the office is open
    texts = all_texts(message.blocks)
    assert f":telephone_receiver: *{CALL}*" in texts  # its own section, right after the facts
    assert message.blocks[2]["text"]["text"].startswith(":telephone_receiver:")
    assert CALL in message.text  # the notification text too
    assert "Office closed" not in json.dumps(message.blocks)
    console = message.plain
    assert f"\n  {CALL}\n" in console and "Office closed" not in console
    assert CALL not in render_alert(make_alert()).text  # no directory: the message as before


def test_a_closed_office_is_flagged_at_the_time_of_the_alert() -> None:
    message = render_alert(make_alert(at=BEFORE_OPENING), reference=DIRECTORY)
    call_block = message.blocks[2]["text"]["text"]
    assert call_block == f":telephone_receiver: *{CALL}*\n:crescent_moon: {CLOSED}"
    assert f"  {CALL}\n  {CLOSED}\n" in message.plain
    saturday = make_alert(at=ALERT_T0 + timedelta(days=5))
    weekend = render_alert(saturday, reference=DIRECTORY)
    assert "Office closed until Mon 07:00 EST: use the 24 h line" in json.dumps(weekend.blocks)
    escalated = make_alert(seq=2, action="updated", severity="critical", at=BEFORE_OPENING)
    reply = render_escalation(escalated, reference=DIRECTORY)
    assert CLOSED in json.dumps(reply.blocks) and CALL in reply.plain


def test_the_call_line_shows_while_at_risk_or_expired_not_once_released() -> None:
    released = render_alert(make_alert(seq=3, action="resolved", outcome="released"), reference=DIRECTORY)
    assert CALL not in json.dumps(released.blocks) and CALL not in released.plain
    expired = make_alert(seq=3, action="resolved", outcome="expired", at=BEFORE_OPENING)
    shown = render_alert(expired, reference=DIRECTORY)
    assert CALL in json.dumps(shown.blocks) and CLOSED in shown.plain  # the truck may still be there


def test_a_broker_missing_from_the_directory_is_said() -> None:
    alert = make_alert(broker_code="ZZZZ", broker_name="Unknown Brokers")
    card = alert_card(alert, DIRECTORY)
    assert card.call == "No number on file for broker ZZZZ: add it to the broker directory"
    assert alert_card(alert).call == ""  # no directory configured: nothing to say
    assert alert_card(make_alert(broker_code=None), DIRECTORY).call == ""


@pytest.mark.parametrize("payload", INJECTIONS)
def test_directory_data_cannot_ping_either(payload: str) -> None:
    hostile = ACME.model_copy(update={"name": f"Acme {payload}", "phone_24h": payload})
    message = render_alert(
        make_alert(at=BEFORE_OPENING), reference=Reference(brokers=BrokerDirectory.of([hostile]))
    )
    for text in [message.text, *all_texts(message.blocks)]:
        assert "<!" not in text and "<@" not in text and "<http" not in text


def test_truck_trailer_and_driver_are_shown_when_known() -> None:
    alert = make_alert(
        truck_number="T-4471",
        trailer_number="TR-88213",
        driver_name="Sam Okafor",
        driver_phone="+1 226 555 0142",
    )
    message = render_alert(alert)
    fields = [f["text"] for f in message.blocks[1]["fields"]]
    assert "*Truck*\nT-4471 · trailer TR-88213" in fields
    assert "*Driver*\nSam Okafor, +1 226 555 0142" in fields
    assert "  Truck:     T-4471 · trailer TR-88213\n" in message.plain
    assert "  Driver:    Sam Okafor, +1 226 555 0142\n" in message.plain
    trailer_only = alert_card(make_alert(trailer_number="TR-1", driver_phone="+1 226 555 0142")).facts
    assert ("Trailer", "TR-1") in trailer_only and ("Driver", "+1 226 555 0142") in trailer_only
    assert not {"Truck", "Trailer", "Driver"} & {label for label, _ in alert_card(make_alert()).facts}
    full = make_alert(team="east", truck_number="T-1", driver_name="Sam", reasons=["a", "b"])
    assert len(render_alert(full, reference=DIRECTORY).blocks[1]["fields"]) == 9  # within Slack's 10


async def test_the_console_sink_prints_the_number_and_the_closed_office() -> None:
    out = io.StringIO()
    delivery = Delivery(
        ConsoleGateway(out),
        MemoryLedger(),
        Routing(default="#dispatch"),
        policy=DeliveryPolicy(min_interval_s=0),
        reference=DIRECTORY,
    )
    await delivery.accept(
        make_alert("K1", at=BEFORE_OPENING, truck_number="T-4471", driver_name="Sam Okafor")
    )
    while (due := delivery.next_due()) is not None:
        await delivery.step(due[1])
    text = out.getvalue()
    assert "new message in #dispatch [" in text
    assert f"  {CALL}\n  {CLOSED}\n" in text
    assert "Truck:     T-4471" in text and "Driver:    Sam Okafor" in text
