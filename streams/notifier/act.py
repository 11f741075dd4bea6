"""Dispatch acting in Slack, the shell side: a click → who may act → an event on holdwatch.actions.

`Interactions` is the `InteractionSink` both transports hand clicks and slash commands to (after
Slack was acknowledged). A click on Acknowledge / Snooze / Release is answered at once, only to
the user who clicked, when it cannot be taken (the alert is already resolved, no longer tracked,
or the user may not act); otherwise it becomes a `DispatchAction` on topic holdwatch.actions (key:
CCN, acks=all). The notifier's consumer applies it to the lifecycle like an alert event, once per
action id, with the ledger flushed before the offset is committed: so a click survives a crash
between the acknowledgement to Slack and the message update, and a click Slack delivers twice
(or a producer retry) changes nothing the second time.

Who may act (`ChannelAuthorizer`): members of the alert's channel (`conversations.members`) or of
the configured user groups (`usergroups.users.list`), cached for a few minutes. When Slack cannot
say (a missing scope), the answer is no, and the log says which scope to add.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from alerting.notify.actions import Click, parse_click, to_action
from alerting.notify.clock import Clock
from alerting.notify.ledger import AlertRecord
from alerting.notify.metrics import NotifyMetrics
from schemas.actions import DispatchAction

log = logging.getLogger("holdwatch.notifier.act")

Respond = Callable[..., Awaitable[bool]]
REFUSAL = (
    "Only members of this alert's channel (or of the dispatch user groups) may acknowledge, "
    "snooze or release it. Ask to be added to the channel."
)


class Authorizer(Protocol):
    async def may_act(self, user_id: str, channel_id: str | None) -> bool: ...


class AnyoneMayAct:
    """No restriction (tests, a workspace that wants it): every Slack user who sees the message."""

    async def may_act(self, user_id: str, channel_id: str | None) -> bool:
        return True


class ChannelAuthorizer:
    """Members of the alert's channel, or of configured user groups, may act; cached `ttl_s`."""

    def __init__(
        self, client: AsyncWebClient, groups: Iterable[str], clock: Clock, *, ttl_s: float = 300.0
    ) -> None:
        self.client, self.groups, self.clock, self.ttl_s = client, tuple(groups), clock, ttl_s
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def may_act(self, user_id: str, channel_id: str | None) -> bool:
        if channel_id is not None and user_id in await self._members("conversations.members", channel_id):
            return True
        for group in self.groups:
            if user_id in await self._members("usergroups.users.list", group):
                return True
        return False

    async def _members(self, method: str, ident: str) -> frozenset[str]:
        key = f"{method}:{ident}"
        cached = self._cache.get(key)
        now = self.clock.now()
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            members = await self._fetch(method, ident)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            scope = "channels:read, groups:read" if method.startswith("conversations") else "usergroups:read"
            log.error(
                "cannot tell who may act (%s %s: %s): refusing; the bot needs %s", method, ident, error, scope
            )
            return frozenset()
        except OSError as exc:  # Slack unreachable: refuse now, ask again next time
            log.warning("cannot tell who may act (%s %s: %r): refusing this time", method, ident, exc)
            return frozenset()
        self._cache[key] = (now, members)
        return members

    async def _fetch(self, method: str, ident: str) -> frozenset[str]:
        if method == "usergroups.users.list":
            data = await self.client.api_call(method, http_verb="GET", params={"usergroup": ident})
            return frozenset(str(u) for u in data.get("users") or [])
        members: set[str] = set()
        cursor = ""
        for _ in range(100):  # 100 pages of 1000 members
            params: dict[str, Any] = {"channel": ident, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            data = await self.client.api_call(method, http_verb="GET", params=params)
            members.update(str(u) for u in data.get("members") or [])
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor:
                break
        return frozenset(members)


class Interactions:
    """The sink both transports feed: clicks become actions, slash commands go to `commands`."""

    def __init__(
        self,
        records: Callable[[str], AlertRecord | None],
        publish: Callable[[DispatchAction], Awaitable[None]],
        authorizer: Authorizer,
        respond: Respond,
        metrics: NotifyMetrics,
        *,
        commands: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        source: Literal["socket_mode", "http"] = "socket_mode",
    ) -> None:
        self.records, self.publish, self.authorizer = records, publish, authorizer
        self.respond, self.metrics, self.commands, self.source = respond, metrics, commands, source

    async def handle(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "slash_commands":
            if self.commands is not None:
                await self.commands(payload)
            return
        if kind == "interactive" and payload.get("type") == "block_actions":
            await self.click(payload)

    async def click(self, payload: dict[str, Any]) -> None:
        click = parse_click(payload)
        if isinstance(click, str):
            if any(str(a.get("action_id", "")).startswith("hw_") for a in payload.get("actions") or []):
                log.warning("unreadable holdwatch click: %s", click)
                self.metrics.action("unknown", "invalid")
            return
        rec = self.records(click.alert_id)
        if rec is None and click.ccn:
            await self._route(click)
            return
        refusal = await self._refusal(click, rec)
        if refusal is not None:
            outcome, text = refusal
            self.metrics.action(click.kind, outcome)
            log.info("action %s by %s (%s) on alert %s: %s", click.kind, click.user_name, click.user_id,
                     click.alert_id, outcome)  # fmt: skip
            await self._answer(click, text)
            return
        assert rec is not None
        await self.publish(to_action(click, rec.latest, source=self.source))

    async def _route(self, click: Click) -> None:
        """Another notifier holds the alert (Slack spreads Socket Mode envelopes over connections):
        publish for it, keyed by the button's CCN; it applies the action or counts why not."""
        if not await self.authorizer.may_act(click.user_id, click.channel_id):
            self.metrics.action(click.kind, "refused")
            await self._answer(click, REFUSAL)
            return
        log.info(
            "alert %s is not held here: action %s routed by CCN %s", click.alert_id, click.kind, click.ccn
        )
        await self.publish(to_action(click, None, source=self.source))

    async def _refusal(self, click: Click, rec: AlertRecord | None) -> tuple[str, str] | None:
        if rec is None:
            return "unknown_alert", "holdwatch no longer tracks this alert (it ended long ago)."
        if rec.latest.action == "resolved":
            load = rec.latest.load_ref or rec.latest.ccn
            return "resolved", f"Load {load} is already resolved: nothing to acknowledge or snooze."
        if not await self.authorizer.may_act(click.user_id, rec.channel_id or click.channel_id):
            return "refused", REFUSAL
        return None

    async def _answer(self, click: Click, text: str) -> None:
        if click.response_url:
            await self.respond(click.response_url, text=text, ephemeral=True)
