"""Topic `holdwatch.actions` (key: ccn): what dispatch did about an alert in Slack.

One record per accepted click or command (acknowledge = take ownership, snooze, release). The
notifier that owns the alert's partition applies each `action_id` once (Slack may deliver the
same click twice; the producer may retry), so the topic is safe to re-read from the start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import WireModel

ActionKind = Literal["acknowledge", "snooze", "release"]
SnoozeChoice = Literal["30m", "1h", "eta-30m"]
ActionSource = Literal["socket_mode", "http", "command"]


class DispatchAction(WireModel):
    schema_version: Literal[1] = 1
    action_id: str = Field(
        min_length=1,
        description="identifies one click: `<channel>/<message ts>/<action>/<action ts>`; applied once",
    )
    kind: ActionKind
    alert_id: str = Field(min_length=1, description="the alert lifecycle acted on")
    ccn: str = Field(min_length=1, description="the record key: the alert's partition")
    user_id: str = Field(min_length=1, description="Slack user id of who acted")
    user_name: str | None = None
    channel_id: str | None = Field(default=None, description="the channel of the alert's message")
    at: AwareDatetime = Field(description="when the user acted (Slack's action_ts, UTC)")
    snooze: SnoozeChoice | None = Field(default=None, description="only on snooze: what was chosen")
    snooze_until: AwareDatetime | None = Field(default=None, description="only on snooze: when it ends")
    source: ActionSource = "socket_mode"
