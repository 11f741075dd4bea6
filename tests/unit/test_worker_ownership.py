"""The worker's view of who owns a load: folded from holdwatch.actions, shown for its lifecycle only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.actions import DispatchAction
from schemas.api import AlertLifecycleView, LoadStatus
from streams.worker.ownership import decode, encode, fold, with_owner

AT = datetime(2026, 11, 23, 14, 2, tzinfo=UTC)


def action(kind: str, alert_id: str = "C1:1", **kw: object) -> DispatchAction:
    return DispatchAction.model_validate(
        {"action_id": f"{kind}-{alert_id}", "kind": kind, "alert_id": alert_id, "ccn": "C1",
         "user_id": "U1", "user_name": "sam", "at": AT, **kw},
        strict=False,
    )  # fmt: skip


def status(alert_id: str = "C1:1") -> LoadStatus:
    alert = AlertLifecycleView(alert_id=alert_id, seq=2, severity="critical", first_raised_at=AT)
    return LoadStatus.model_validate(
        {"ccn": "C1", "phase": "open", "as_of": AT, "alert": alert}, strict=False
    )


def test_acknowledge_snooze_release_fold_into_the_view_and_survive_encoding() -> None:
    view = fold(None, action("acknowledge"))
    view = fold(view, action("snooze", snooze="1h", snooze_until=AT + timedelta(hours=1)))
    view = decode(encode(view))
    shown = with_owner(status(), view).alert
    assert shown is not None
    assert (shown.owner_id, shown.owner_name, shown.owned_since) == ("U1", "sam", AT)
    assert shown.snoozed_until == AT + timedelta(hours=1)
    released = with_owner(status(), fold(view, action("release"))).alert
    assert released is not None and released.owner_id is None
    assert fold(view, action("release")) == fold(fold(view, action("release")), action("release"))


def test_a_view_of_another_lifecycle_is_not_shown() -> None:
    view = fold(None, action("acknowledge", alert_id="C1:1"))
    assert with_owner(status("C1:5"), view).alert == status("C1:5").alert
    assert fold(view, action("snooze", alert_id="C1:5", snooze_until=AT)).get("owner_id") is None
    assert decode(b"not json") is None
