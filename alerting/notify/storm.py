"""Storm control: when one channel gets more than `threshold` new alerts within `window_s`, the
next ones are grouped into a single digest message, kept up to date, instead of one message each.

A broker's system outage or a port closure raises dozens of alerts at once; a digest keeps the
channel readable and within Slack's 1 message/s per channel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alerting.notify.render import (
    EXPIRED,
    EXPIRED_EMOJI,
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    RESOLVED_EMOJI,
    SEVERITY_EMOJI,
    SlackMessage,
    escape,
    fit,
    port_info,
    port_label,
)
from schemas.alerts import AlertEvent


@dataclass
class StormDetector:
    """Sliding count of raised alerts per channel; a storm lasts while the count exceeds the threshold."""

    threshold: int
    window_s: float
    _raised: dict[str, deque[float]] = field(default_factory=dict)

    def observe_raised(self, channel: str, now: float) -> bool:
        """Count one raised alert; True if it falls inside a storm (more than threshold in window)."""
        times = self._raised.setdefault(channel, deque())
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return len(times) > self.threshold


def _row(alert: AlertEvent) -> str:
    load = escape(alert.load_ref or alert.ccn)
    port = escape(port_label(port_info(alert.port_of_entry)))
    if alert.action == "resolved" and alert.outcome == EXPIRED:
        return f"{EXPIRED_EMOJI} ~{load}~ · CCN {escape(alert.ccn)} · {port} · expired: no news, not released"
    if alert.action == "resolved":
        outcome = escape(alert.outcome or "resolved")
        return f"{RESOLVED_EMOJI} ~{load}~ · CCN {escape(alert.ccn)} · {port} · {outcome}"
    emoji = SEVERITY_EMOJI.get(alert.severity or "warning", ":warning:")
    top = alert.details[0].summary if alert.details else (alert.reasons[0] if alert.reasons else "")
    return f"{emoji} *{load}* · CCN {escape(alert.ccn)} · {port} · {escape(top)}"


def _marker(alert: AlertEvent) -> str:
    if alert.action == "resolved":
        return "EXPIRED" if alert.outcome == EXPIRED else "RESOLVED"
    return (alert.severity or "warning").upper()


def render_digest(members: Sequence[AlertEvent], *, mention: str | None = None) -> SlackMessage:
    """One message for a storm: counts, then one line per load (active first), within Block Kit limits."""
    active = [a for a in members if a.action != "resolved"]
    critical = sum(1 for a in active if a.severity == "critical")
    head = (
        f":cyclone: *Alert storm: {len(members)} loads at risk at once* "
        f"({len(active)} active, {critical} critical, {len(members) - len(active)} resolved)"
    )
    if mention and critical:
        head += f" {mention}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    ordered = sorted(
        members, key=lambda a: (a.action == "resolved", a.severity != "critical", a.first_raised_at)
    )
    rows = [_row(a) for a in ordered]
    chunk: list[str] = []
    size = 0
    shown = 0
    for row in rows:
        if len(blocks) >= MAX_BLOCKS - 2:
            break
        if chunk and size + len(row) + 1 > MAX_SECTION_TEXT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk, size = [], 0
            if len(blocks) >= MAX_BLOCKS - 2:
                break
        row = fit(row, MAX_SECTION_TEXT)
        chunk.append(row)
        size += len(row) + 1
        shown += 1
    if chunk and len(blocks) < MAX_BLOCKS - 1:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    else:
        shown -= len(chunk)
    if shown < len(rows):
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {len(rows) - shown} more"}]}
        )
    text = f"Alert storm: {len(members)} loads at risk ({len(active)} active, {critical} critical)"
    if mention and critical:
        text = f"{mention} {text}"
    plain_rows = [
        f"  {_marker(a):<9} {a.load_ref or a.ccn}  CCN {a.ccn}  {port_label(port_info(a.port_of_entry))}"
        for a in ordered
    ]
    return SlackMessage(text=text, blocks=tuple(blocks), plain="\n".join([text, *plain_rows]))
