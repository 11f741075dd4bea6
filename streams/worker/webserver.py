"""The status API's Faust glue: one page per route on the worker's Faust web server.

`register_web` wires `web.StatusApi` into a Faust app it is handed (duck-typed: this module does
not import Faust, only streams/worker/app.py does). A CCN owned by another worker is routed to
it with Faust's table router (`app.router.route_req`, what `app.table_route` does); a list asks
every worker that owns shipment partitions (`app.router.table_metadata`) and merges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.settings import Settings
from streams.worker.telemetry import WebMetrics
from streams.worker.web import LocalStatus, ReadinessFacts, Reply, StatusApi

log = logging.getLogger("holdwatch.web")

SHIPMENTS_TABLE = "shipments"
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "asset", "board"})  # the board checks its own cookie


@dataclass(frozen=True, slots=True)
class Routed:
    """The owning worker's response to a routed request, handed back as it is."""

    response: Any


Handler = Callable[..., Awaitable[Reply | Routed]]


def web_bind_address(settings: Settings) -> str:
    """Secure by default: with no token configured, only this machine can ask."""
    return settings.web_bind if settings.web_tokens else "127.0.0.1"


def register_web(
    app: Any,
    settings: Settings,
    local: LocalStatus,
    readiness: Callable[[], ReadinessFacts],
    metrics: WebMetrics,
    same_node: type[Exception],
) -> StatusApi:
    """`same_node`: Faust's `SameNode`, raised when routing finds the key is ours after all."""

    async def peers() -> list[str]:
        me = str(app.conf.canonical_url).rstrip("/")
        try:
            hosts = app.router.table_metadata(SHIPMENTS_TABLE)
        except KeyError:
            return []
        return sorted(str(url).rstrip("/") for url in hosts if str(url).rstrip("/") != me)

    async def fetch(url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        async with app.http_client.get(url, headers=dict(headers)) as response:
            return int(response.status), await response.read()

    api = StatusApi(
        local,
        tokens=settings.web_tokens,
        peers=peers,
        fetch=fetch,
        readiness=readiness,
        max_idle_s=settings.ready_max_idle_s,
    )

    async def load(view: Any, request: Any, ccn: str) -> Reply | Routed:
        answered = api.load(ccn)
        if answered is not None:
            return answered
        return await _routed(app, view, request, ccn, same_node)

    async def loads(view: Any, request: Any) -> Reply:
        return await api.loads(dict(request.query), request.headers)

    async def local_loads(view: Any, request: Any) -> Reply:
        return api.local_loads(dict(request.query))

    async def readiness_check(view: Any, request: Any, bn: str) -> Reply:
        return api.readiness(bn, dict(request.query))

    async def board(view: Any, request: Any) -> Reply:
        allowed = api.authorized(request.headers, request.cookies)
        return api.board(dict(request.query), allowed, settings.board_hours)

    async def asset(view: Any, request: Any, name: str) -> Reply:
        return api.asset(name)

    async def healthz(view: Any, request: Any) -> Reply:
        return api.healthz()

    async def readyz(view: Any, request: Any) -> Reply:
        return api.readyz()

    pages: list[tuple[str, str, Handler]] = [
        ("/v1/loads/{ccn}", "load", load),
        ("/v1/loads", "loads", loads),
        ("/v1/local/loads", "local_loads", local_loads),
        ("/v1/importers/{bn}/readiness", "readiness", readiness_check),
        ("/healthz", "healthz", healthz),
        ("/readyz", "readyz", readyz),
        ("/", "board", board),
        ("/{name:board\\.(?:js|css)}", "asset", asset),
    ]
    for path, route, handler in pages:
        app.page(path, name=f"holdwatch_{route}")(_view(api, metrics, route, handler))
    return api


def _view(api: StatusApi, metrics: WebMetrics, route: str, handler: Handler) -> Callable[..., Awaitable[Any]]:
    """A Faust page handler: auth, errors as JSON (never a crash), metrics."""

    async def get(view: Any, request: Any, **params: str) -> Any:
        started = time.perf_counter()
        reply: Reply | Routed
        if route not in PUBLIC_ROUTES and not api.authorized(request.headers, request.cookies):
            reply = _unauthorized()
        else:
            try:
                reply = await handler(view, request, **params)
            except Exception:
                log.exception("status API %s failed", route)
                reply = Reply(
                    500, "application/json", b'{"error":"internal_error","detail":"see the worker log"}'
                )
        if isinstance(reply, Routed):
            metrics.observe(route, int(getattr(reply.response, "status", 200)), started)
            return reply.response
        metrics.observe(route, reply.status, started)
        # aiohttp takes the charset apart from the type; our text is UTF-8 and says so in the page.
        content_type = reply.content_type.split(";", 1)[0]
        return view.bytes(
            reply.body, content_type=content_type, status=reply.status, headers=dict(reply.headers)
        )

    get.__name__ = f"holdwatch_{route}"
    return get


def _unauthorized() -> Reply:
    body = b'{"error":"unauthorized","detail":"send Authorization: Bearer <one of HOLDWATCH_WEB_TOKENS>"}'
    return Reply(401, "application/json", body, {"WWW-Authenticate": "Bearer"})


async def _routed(app: Any, view: Any, request: Any, ccn: str, same_node: type[Exception]) -> Reply | Routed:
    """Ask the worker that owns the CCN's partition."""
    try:
        return Routed(await app.router.route_req(SHIPMENTS_TABLE, ccn.encode(), view.web, request))
    except same_node:
        return Reply(503, "application/json", b'{"error":"not_ready","detail":"partition not assigned yet"}')
    except Exception:
        log.warning("routing %s to its owner failed", ccn, exc_info=True)
        detail = (
            b'{"error":"unavailable","detail":"the worker that owns this load did not answer; try again"}'
        )
        return Reply(503, "application/json", detail)
