"""Who owns an open load, as the status API shows it: the worker's fold of holdwatch.actions.

The notifier decides and applies dispatch's actions (alerting/notify/actions.py: once per action
id, ending snoozes, escalations); the worker only needs the answer to "who has this load?" for
`GET /v1/loads/{ccn}` and the board, from the same topic (key CCN, co-partitioned with the
loads). Folding the same action twice gives the same view, so redelivery changes nothing. A view
belongs to one alert lifecycle: the status API shows it only while that lifecycle is the open one.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.actions import DispatchAction
from schemas.api import AlertLifecycleView, LoadStatus


def fold(view: dict[str, Any] | None, action: DispatchAction) -> dict[str, Any]:
    """The load's ownership after `action` (a new lifecycle starts from nobody)."""
    if view is None or view.get("alert_id") != action.alert_id:
        view = {"alert_id": action.alert_id}
    view = dict(view)
    if action.kind == "acknowledge":
        view.update(owner_id=action.user_id, owner_name=action.user_name, owned_since=action.at.isoformat())
    elif action.kind == "release":
        view.update(owner_id=None, owner_name=None, owned_since=None)
    elif action.snooze_until is not None:
        view["snoozed_until"] = action.snooze_until.isoformat()
    return view


def encode(view: dict[str, Any]) -> bytes:
    return json.dumps(view, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def with_owner(status: LoadStatus, view: dict[str, Any] | None) -> LoadStatus:
    """`status` with its open lifecycle's owner and snooze, when the view is of that lifecycle."""
    alert = status.alert
    if alert is None or view is None or view.get("alert_id") != alert.alert_id:
        return status
    shown = AlertLifecycleView.model_validate(
        {
            **alert.model_dump(mode="json"),
            "owner_id": view.get("owner_id"),
            "owner_name": view.get("owner_name"),
            "owned_since": view.get("owned_since"),
            "snoozed_until": view.get("snoozed_until"),
        },
        strict=False,  # the view holds ISO strings, as the wire does
    )
    return status.model_copy(update={"alert": shown})
