"""The worker's status API and dispatch board, on Faust's own web server (docs/status-api.md).

Split like the rest of the worker: `LocalStatus` answers from this worker's partitions (no
Faust), `StatusApi` turns a request (route, path parameters, query, headers) into a response
(status, content type, body) and fans a list out to the other workers (injected), and
`register_web` is the thin Faust glue: one page per route, `app.table_route`-style routing of
a CCN to the worker that owns its partition, request metrics. The answers come from
`alerting.engine.status` (the same rules as the alerts); the models are `schemas.api`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlencode

from kafka.partitioner.default import murmur2
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from alerting.engine.config import Thresholds
from alerting.engine.state import ShipmentState
from alerting.engine.status import LoadFilter, load_status, page_of, readiness_check
from schemas.api import (
    ApiError,
    ErrorCode,
    Health,
    LoadPage,
    LoadQuery,
    LoadStatus,
    Readiness,
    ReadinessQuery,
)
from schemas.brokers import BrokerDirectory
from schemas.carm import CarmSnapshot
from schemas.common import Ccn, ImporterBn
from schemas.ports import PORTS, Port
from streams.worker.ownership import with_owner

log = logging.getLogger("holdwatch.web")

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """A response, before any web framework sees it."""

    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


Response = Reply
_CCN: TypeAdapter[str] = TypeAdapter(Ccn)
_BN: TypeAdapter[str] = TypeAdapter(ImporterBn)


class Runner(Protocol):
    shipments: Mapping[str, ShipmentState]
    carm: Mapping[str, CarmSnapshot]
    clock: datetime | None


@dataclass(frozen=True, slots=True)
class ReadinessFacts:
    """What /readyz needs from the worker, measured by the shell."""

    partitions: int
    recovered: bool
    lag_records: int | None
    idle_seconds: float | None


class LocalStatus:
    """Answers from the partitions this worker owns (`runners`: partition → its runner), naming
    ports and brokers from the reference data the shell loaded (`ports`, `brokers`)."""

    def __init__(
        self,
        runners: Callable[[], Mapping[int, Runner]],
        thresholds: Thresholds,
        partitions: int,
        *,
        event_clock: bool,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        ports: Mapping[str, Port] = PORTS,
        brokers: BrokerDirectory | None = None,
        ownership: Callable[[str], dict[str, Any] | None] = lambda ccn: None,
    ) -> None:
        """`ownership(ccn)`: who owns the load's open alert (the worker's fold of holdwatch.actions)."""
        self._ownership = ownership
        self._runners = runners
        self._ports, self._brokers = ports, brokers
        self._thresholds = thresholds
        self._partitions = partitions
        self._event_clock = event_clock
        self._wall = wall

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

    def now(self) -> datetime:
        """The worker's clock: the wall clock live; with `--clock event`, the stream's (as it stood)."""
        if self._event_clock:
            clocks = [r.clock for r in self._runners().values() if r.clock is not None]
            if clocks:
                return max(clocks)
        return self._wall()

    def partition_of(self, ccn: str) -> int:
        """Kafka's default partitioner on the key, as the producers and the tables use it."""
        return int(murmur2(ccn.encode()) & 0x7FFFFFFF) % self._partitions

    def owns(self, ccn: str) -> bool:
        return self.partition_of(ccn) in self._runners()

    def load(self, ccn: str, now: datetime) -> LoadStatus | None:
        runner = self._runners().get(self.partition_of(ccn))
        s = runner.shipments.get(ccn) if runner is not None else None
        if runner is None or s is None:
            return None
        carm = runner.carm.get(s.importer_bn) if s.importer_bn else None
        status = load_status(s, carm, now, self._thresholds, ports=self._ports, brokers=self._brokers)
        return with_owner(status, self._ownership(ccn)) if status.alert is not None else status

    def loads(self, query: LoadQuery, now: datetime) -> list[LoadStatus]:
        wanted = LoadFilter(
            open_only=query.open,
            port=query.port,
            team=query.team,
            eta_within=timedelta(hours=query.eta_within_h) if query.eta_within_h else None,
            severity=query.severity,
            at_risk_only=query.at_risk,
        )
        found = []
        for runner in self._runners().values():
            for s in list(runner.shipments.values()):
                if query.load_ref is not None and s.load_ref != query.load_ref:
                    continue
                carm = runner.carm.get(s.importer_bn) if s.importer_bn else None
                status = load_status(s, carm, now, self._thresholds, ports=self._ports, brokers=self._brokers)
                if wanted.matches(status):
                    found.append(with_owner(status, self._ownership(s.ccn)) if status.alert else status)
        return found

    def carm_record(self, bn: str) -> CarmSnapshot | None:
        """Every shipment partition holds a copy of every CARM record: any local one answers."""
        for runner in self._runners().values():
            return runner.carm.get(bn)
        return None


Peers = Callable[[], Awaitable[list[str]]]
"""The base URLs of the other workers that own shipment partitions."""
Fetch = Callable[[str, Mapping[str, str]], Awaitable[tuple[int, bytes]]]
"""GET a URL with headers → (status, body)."""


def _json(status: int, model: BaseModel) -> Response:
    return Reply(status, JSON, model.model_dump_json(exclude_none=True).encode())


def _error(status: int, error: ErrorCode, detail: str, parameter: str | None = None) -> Response:
    return _json(status, ApiError(error=error, detail=detail, parameter=parameter))


def _query_error(exc: ValidationError) -> Response:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or None
    message = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
    return _error(400, "bad_request", f"{where}: {message}" if where else message, where)


class StatusApi:
    """Request → response for every route; Faust-free, so tests call it directly."""

    def __init__(
        self,
        local: LocalStatus,
        *,
        tokens: Iterable[SecretStr] = (),
        peers: Peers | None = None,
        fetch: Fetch | None = None,
        readiness: Callable[[], ReadinessFacts] | None = None,
        max_idle_s: float = 120.0,
    ) -> None:
        self.local = local
        self._tokens = [t.get_secret_value().encode() for t in tokens]
        self._peers = peers
        self._fetch = fetch
        self._readiness = readiness
        self._max_idle_s = max_idle_s

    # --- auth ----------------------------------------------------------------------
    def authorized(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """A bearer token (or the board's cookie) matching one of the configured tokens; no token
        configured: everyone (the server then listens on 127.0.0.1 only)."""
        if not self._tokens:
            return True
        auth = headers.get("Authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else cookies.get("hw_token", "")
        return any(hmac.compare_digest(given.encode(), token) for token in self._tokens)

    # --- routes ----------------------------------------------------------------------
    def load(self, ccn_or_ref: str) -> Response | None:
        """One load by CCN, answered here; None when another worker owns it (route it there)."""
        try:
            ccn = _CCN.validate_python(ccn_or_ref)
        except ValidationError:
            detail = f"not a CCN: {ccn_or_ref!r} (5–25 letters, digits or -)"
            return _error(400, "bad_request", detail, "ccn")
        if not self.local.owns(ccn):
            return None
        now = self.local.now()
        status = self.local.load(ccn, now)
        if status is None:
            return _error(404, "not_found", f"no load with CCN {ccn} (nor any event for it) is known")
        return _json(200, status)

    async def loads(self, query_params: Mapping[str, str], headers: Mapping[str, str]) -> Response:
        """Every partition's matches, merged, sorted by time to ETA, one page."""
        query = self._parse_query(query_params)
        if isinstance(query, Reply):
            return query
        now = self.local.now()
        found = self.local.loads(query, now)
        for peer in await self._peers() if self._peers is not None else []:
            peer_loads = await self._peer_loads(peer, query_params, headers)
            if peer_loads is None:
                return _error(503, "unavailable", f"the worker at {peer} did not answer; try again")
            found += peer_loads
        return _json(200, page_of(found, now, query.offset, query.limit))

    def local_loads(self, query_params: Mapping[str, str]) -> Response:
        """This worker's matches only, unpaged (what a peer's fan-out asks for)."""
        query = self._parse_query(query_params)
        if isinstance(query, Reply):
            return query
        now = self.local.now()
        found = self.local.loads(query, now)
        page = LoadPage(as_of=now, total=len(found), offset=0, limit=max(1, len(found)), items=found)
        return _json(200, page)

    def readiness(self, bn: str, query_params: Mapping[str, str]) -> Response:
        try:
            importer = _BN.validate_python(bn)
        except ValidationError:
            detail = f"not a business number: {bn!r} (9 digits, RM, 4 digits: 123456789RM0001)"
            return _error(400, "bad_request", detail, "bn")
        try:
            query = ReadinessQuery.model_validate(dict(query_params))
        except ValidationError as exc:
            return _query_error(exc)
        now = self.local.now()
        carm = self.local.carm_record(importer)
        broker = query.broker.upper() if query.broker else None
        check = readiness_check(importer, carm, broker, query.release_mode, now, self.local.thresholds)
        return _json(200, check)

    def board(self, query_params: Mapping[str, str], authorized: bool, board_hours: float) -> Response:
        """The board page; `/?token=T` stores the token in a cookie (a wall screen has no headers)."""
        token = query_params.get("token")
        if token is not None:
            cookie = f"hw_token={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"
            return Reply(303, "text/plain", b"see /", {"Location": "/", "Set-Cookie": cookie})
        if not authorized:
            text = b"holdwatch: open /?token=YOUR_TOKEN once on this screen (HOLDWATCH_WEB_TOKENS)."
            return Reply(401, "text/plain; charset=utf-8", text)
        asset = board_asset("index.html")
        assert asset is not None
        hours = f"{board_hours:g}".encode()
        return Reply(200, asset[0], asset[1].replace(b"{{BOARD_HOURS}}", hours))

    def asset(self, name: str) -> Response:
        found = board_asset(name)
        if found is None:
            return _error(404, "not_found", f"no such file: {name}")
        return Reply(200, found[0], found[1], {"Cache-Control": "no-cache"})

    def healthz(self) -> Response:
        return _json(200, Health())

    def readyz(self) -> Response:
        measured = self._readiness() if self._readiness is not None else ReadinessFacts(0, False, None, None)
        caught_up = measured.lag_records == 0 or (
            measured.idle_seconds is not None and measured.idle_seconds <= self._max_idle_s
        )
        problems = [
            text
            for failed, text in (
                (measured.partitions == 0, "no shipment partition assigned yet"),
                (not measured.recovered, "tables still recovering from their changelogs"),
                (not caught_up, f"{measured.lag_records} input records behind"),
            )
            if failed
        ]
        body = Readiness(
            ready=not problems,
            partitions=measured.partitions,
            recovered=measured.recovered,
            lag_records=measured.lag_records,
            idle_seconds=round(measured.idle_seconds, 1) if measured.idle_seconds is not None else None,
            detail="; ".join(problems) or "ready",
        )
        return _json(200 if body.ready else 503, body)

    # --- helpers ------------------------------------------------------------------
    def _parse_query(self, query_params: Mapping[str, str]) -> LoadQuery | Response:
        try:
            return LoadQuery.model_validate(dict(query_params))
        except ValidationError as exc:
            return _query_error(exc)

    async def _peer_loads(
        self, peer: str, query_params: Mapping[str, str], headers: Mapping[str, str]
    ) -> list[LoadStatus] | None:
        if self._fetch is None:
            return []
        url = f"{peer.rstrip('/')}/v1/local/loads?{urlencode(dict(query_params))}"
        forwarded = {"Authorization": headers["Authorization"]} if "Authorization" in headers else {}
        try:
            status, body = await self._fetch(url, forwarded)
        except Exception:
            log.warning("fan-out to %s failed", peer, exc_info=True)
            return None
        if status != 200:
            return None
        return list(LoadPage.model_validate_json(body).items)


def board_asset(name: str) -> tuple[str, bytes] | None:
    """The board's files, served by holdwatch itself (no CDN, no build step)."""
    types = {"index.html": "text/html", "board.js": "text/javascript", "board.css": "text/css"}
    if name not in types:
        return None
    data = resources.files("streams.worker").joinpath("board", name).read_bytes()
    return f"{types[name]}; charset=utf-8", data


__all__ = ["LocalStatus", "ReadinessFacts", "StatusApi", "board_asset"]
