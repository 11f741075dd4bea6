"""`/holdwatch` for the notifier: ask the worker's status API and answer the one who typed it.

The transport (Socket Mode or HTTP, streams/notifier/interactions.py) acks within 3 s and hands
the payload to `SlashCommands.handle`, which answers through the payload's `response_url` as soon
as the work is done (ephemeral). `StatusApi` has a short timeout (2.5 s) so an answer comes in
seconds even when the API is down — then it says so, in words. Parsing and wording are pure
(alerting/notify/commands.py); the owners and snoozes come from the notifier's own lifecycles.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from alerting.notify.clock import Clock
from alerting.notify.commands import (
    COMMAND,
    OPEN_LIMIT,
    ApiProblem,
    Command,
    lifecycle_for,
    open_scope,
    ownership_by_ccn,
    parse,
    render_check,
    render_handover_fallback,
    render_help,
    render_mine,
    render_open,
    render_problem,
    render_status,
    with_note,
)
from alerting.notify.handover import Handovers
from alerting.notify.ledger import AlertRecord
from alerting.notify.render import DEFAULT_REFERENCE, Reference, SlackMessage
from schemas.api import LoadPage, LoadStatus, ReadinessCheck

log = logging.getLogger("holdwatch.notifier")

M = TypeVar("M", bound=BaseModel)
Respond = Callable[..., Awaitable[bool]]
"""`respond(response_url, *, text, blocks, ephemeral) -> bool`: sent (True) or not."""


class StatusApi:
    """The worker's status API (docs/status-api.md), answering parsed models or an `ApiProblem`."""

    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = 2.5) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token  # a secret: sent as a bearer token, never logged
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StatusApi:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # made lazily: it needs the running loop
            headers = {"Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)
        return self._session

    async def _get(self, path: str, params: Mapping[str, str], model: type[M]) -> M | ApiProblem:
        url = self.base_url + path
        try:
            async with self._client().get(url, params=dict(params)) as response:
                status, body = response.status, await response.read()
        except TimeoutError:
            return ApiProblem(None, f"no answer from {self.base_url} within {self.timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            why = "connection refused" if refused else exc.os_error.strerror or str(exc)
            return ApiProblem(None, f"cannot connect to {self.base_url} ({why})")
        except (aiohttp.ClientError, OSError) as exc:
            return ApiProblem(None, f"{type(exc).__name__} from {self.base_url}")
        if status != 200:
            return _problem(status, body)
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            log.warning("status API answered %s with an unexpected body: %s", path, exc)
            return ApiProblem(None, f"unexpected answer from {self.base_url} (is it a holdwatch worker?)")

    async def load(self, ccn: str) -> LoadStatus | ApiProblem:
        """`GET /v1/loads/{ccn}`."""
        return await self._get("/v1/loads/" + urllib.parse.quote(ccn, safe=""), {}, LoadStatus)

    async def find_load(self, key: str) -> LoadStatus | ApiProblem:
        """By CCN first; unknown (or not shaped like a CCN), by load reference, every phase."""
        found = await self.load(key)
        if not isinstance(found, ApiProblem) or found.status not in (400, 404):
            return found
        page = await self.loads({"load_ref": key, "open": "false", "limit": "1"})
        if isinstance(page, ApiProblem):
            return page if page.status is None or page.status >= 500 else found
        if page.items:
            return page.items[0]
        return ApiProblem(404, f"no load with CCN or load reference {key!r}", "not_found")

    async def loads(self, params: Mapping[str, str]) -> LoadPage | ApiProblem:
        """`GET /v1/loads?...` (the API refuses unknown parameters)."""
        return await self._get("/v1/loads", params, LoadPage)

    async def open_loads(
        self, *, port: str | None = None, team: str | None = None, limit: int = OPEN_LIMIT
    ) -> LoadPage | ApiProblem:
        """`GET /v1/loads?open=true&port=|team=`: soonest ETA first."""
        params = {"open": "true", "limit": str(limit)}
        params.update({k: v for k, v in (("port", port), ("team", team)) if v})
        return await self.loads(params)

    async def readiness(self, bn: str, broker: str | None = None) -> ReadinessCheck | ApiProblem:
        """`GET /v1/importers/{bn}/readiness?broker=`: the pre-pickup check."""
        path = f"/v1/importers/{urllib.parse.quote(bn, safe='')}/readiness"
        return await self._get(path, {"broker": broker} if broker else {}, ReadinessCheck)


def _problem(status: int, body: bytes) -> ApiProblem:
    """The API's error body `{"error", "detail"}`, or the start of whatever else came back."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        error = data.get("error")
        return ApiProblem(status, data["detail"], error if isinstance(error, str) else None)
    return ApiProblem(status, f"HTTP {status}: {body[:200].decode(errors='replace')}")


class SlashCommands:
    """Answers `/holdwatch …` ephemerally; never raises (a failure is answered in words)."""

    def __init__(
        self,
        api: StatusApi,
        records: Callable[[], Iterable[AlertRecord]],
        handovers: Handovers | None,
        respond: Respond,
        clock: Clock,
        reference: Reference = DEFAULT_REFERENCE,
    ) -> None:
        self.api = api
        self.records = records
        self.handovers = handovers
        self.respond = respond
        self.clock = clock
        self.reference = reference

    async def handle(self, payload: Mapping[str, str]) -> None:
        """Work out the answer, then send it at once through the payload's `response_url`."""
        url = payload.get("response_url")
        if not url:
            log.warning("slash command without a response_url: cannot answer %r", payload.get("text"))
            return
        command = parse(payload.get("text", ""))
        try:
            answer = await self.answer(command, payload)
        except Exception:  # a bug must not leave the user without an answer
            log.exception("answering %s %s failed", payload.get("command", COMMAND), command.verb)
            answer = render_problem(ApiProblem(None, "the notifier failed to answer (see its log)"), asked="")
        sent = await self.respond(url, text=answer.text, blocks=list(answer.blocks), ephemeral=True)
        if not sent:
            log.warning(
                "could not answer %s %s to %s",
                payload.get("command", COMMAND),
                command.verb,
                payload.get("user_id"),
            )

    async def answer(self, command: Command, payload: Mapping[str, str]) -> SlackMessage:
        """The answer to one parsed command (what `handle` sends)."""
        now = datetime.fromtimestamp(self.clock.wall(), UTC)
        if command.verb == "status":
            return await self._status(command.args[0], now)
        if command.verb == "check":
            broker = command.args[1] if len(command.args) > 1 else None
            check = await self.api.readiness(command.args[0], broker)
            if isinstance(check, ApiProblem):
                return render_problem(check, asked=f"check {command.args[0]}", load=False)
            return render_check(check)
        if command.verb == "open":
            return await self._open(command, now)
        if command.verb == "mine":
            return render_mine(
                self.records(), user_id=payload.get("user_id", ""), now=now, reference=self.reference
            )
        if command.verb == "handover":
            return await self._handover(payload.get("channel_id", ""), now)
        return render_help(command.reason, command=payload.get("command") or COMMAND)

    async def _status(self, key: str, now: datetime) -> SlackMessage:
        load = await self.api.find_load(key)
        if isinstance(load, ApiProblem):
            return render_problem(load, asked=key)
        return render_status(load, lifecycle_for(load, self.records()), now=now)

    async def _open(self, command: Command, now: datetime) -> SlackMessage:
        scope = open_scope(command)
        page = await self.api.open_loads(port=scope.get("port"), team=scope.get("team"))
        if isinstance(page, ApiProblem):
            return render_problem(page, asked=" ".join(["open", *command.args]), load=False)
        return render_open(page, ownership_by_ccn(self.records()), scope=scope, now=now)

    async def _handover(self, channel: str, now: datetime) -> SlackMessage:
        if self.handovers is None:
            return render_handover_fallback(self.records(), channel, now=now, reference=self.reference)
        message = await self.handovers.post_now(channel, at=now)
        if await self.handovers.shift_for(channel) is None:
            return with_note(
                message, "No shift handover is scheduled for this channel (routing file, [shifts])."
            )
        return message
