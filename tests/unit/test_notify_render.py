"""Block Kit rendering: content dispatch needs, Slack limits, and no mrkdwn injection."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from alerting.notify.render import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    alert_card,
    card_to_console,
    escape,
    fit,
    render_alert,
    render_escalation,
    render_resolution,
    subteam_mention,
)
from alerting.notify.storm import render_digest
from schemas.alerts import ReasonDetail
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
