"""`/holdwatch`: parsing, and answers against a real local HTTP server playing the status API.

The canned API serves the real response models of schemas/api.py (`model_dump_json`) and its
error shape; the answers go through the real `Responder` to the local Slack server's
`response_url`, so what is checked is what Slack would receive.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from alerting.notify.clock import ManualClock
from alerting.notify.commands import Command, open_scope, parse, render_help
from alerting.notify.handover import Handovers
from alerting.notify.ledger import AlertRecord, MemoryLedger, Ownership
from alerting.notify.routing import Shift
from alerting.notify.slack import SlackWebGateway, make_web_client
from schemas.alerts import ReasonDetail
from schemas.api import AlertLifecycleView, ApiError, LoadPage, LoadStatus, ReadinessCheck
from schemas.brokers import BrokerContactView
from streams.notifier.commands import SlashCommands, StatusApi
from streams.notifier.interactions import Responder
from tests.fixtures.slack import SlackTestServer, make_alert, slash_command_payload

AS_OF = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)  # 14:00 EST
TOKEN = "api-t0ken"
USER = "U0DISPATCH1"

# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status 8000ABC123", Command("status", ("8000ABC123",))),
        ("  STATUS   LD-48213 ", Command("status", ("LD-48213",))),
        ("check 123456789rm0001", Command("check", ("123456789RM0001",))),
        ("check 123456789RM0001 lkcs", Command("check", ("123456789RM0001", "LKCS"))),
        ("open", Command("open")),
        ("open 0453", Command("open", ("0453",))),
        ("open east", Command("open", ("east",))),
        ("mine", Command("mine")),
        ("handover", Command("handover")),
        ("help", Command("help")),
        ("", Command("help")),
    ],
)
def test_each_verb_parses(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("status", "`status` needs a CCN or a load reference"),
        ("status A B", "`status` takes one CCN or load reference"),
        ("check", "`check` needs the importer's business number"),
        ("check 12345", "`12345` is not a business number (9 digits, RM, 4 digits: 123456789RM0001)"),
        ("check 123456789RM0001 LKCS more", "`check` takes the importer's business number and, optionally"),
        ("open 0453 east", "`open` takes one port code or team name"),
        ("mine please", "`mine` takes nothing after it"),
        ("stauts 8000ABC123", "there is no `stauts` command"),
    ],
)
def test_bad_input_is_help_saying_why(text: str, reason: str) -> None:
    command = parse(text)
    assert command.verb == "help" and command.reason is not None and command.reason.startswith(reason)


def test_slack_entities_are_read_back_and_open_tells_a_port_from_a_team() -> None:
    assert parse("status A&amp;B").args == ("A&B",)
    assert open_scope(parse("open 0453")) == {"port": "0453"}
    assert open_scope(parse("open east")) == {"team": "east"}
    assert open_scope(parse("open")) == {}


def test_help_lists_every_command_with_an_example() -> None:
    message = render_help("there is no `<!channel>` command")
    text = message.blocks[0]["text"]["text"]
    for example in ("status LD-48213", "check 123456789RM0001 LKCS", "open 0453", "mine", "handover", "help"):
        assert f"`/holdwatch {example}`" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


# --- a canned status API ----------------------------------------------------------------------------


def reason(code: str, severity: str, summary: str, action: str, call: str | None = None) -> ReasonDetail:
    return ReasonDetail.model_validate(
        {"code": code, "severity": severity, "summary": summary, "action": action, "call": call}
    )


def load_status(ccn: str, load_ref: str, eta_min: float | None, **extra: Any) -> LoadStatus:
    values: dict[str, Any] = {
        "ccn": ccn,
        "phase": "open",
        "as_of": AS_OF,
        "load_ref": load_ref,
        "port_of_entry": "0453",
        "port_name": "Windsor - Ambassador Bridge, ON",
        "port_tz": "America/Toronto",
        "eta": None if eta_min is None else AS_OF + timedelta(minutes=eta_min),
        "minutes_to_eta": eta_min,
        "importer_bn": "123456789RM0001",
        "importer_name": "Maple Imports Ltd",
        "broker_code": "ACME",
        "broker_name": "Acme Customs",
        "dispatch_team": "east",
    }
    values.update(extra)
    return LoadStatus.model_validate(values)


CRITICAL = reason(
    "carm_not_delegated",
    "critical",
    "Broker not delegated in CARM",
    "Ask the importer to delegate Acme Customs in the CARM portal.",
    "Importer Jo Tremblay, +1 514 555 0199",
)
WARNING = reason("pars_missing", "warning", "No PARS on file", "Ask the broker to file the PARS now.")
LOADS = {
    "8000LATE": load_status(
        "8000LATE",
        "LD-LATE",
        35,
        severity="critical",
        reasons=[CRITICAL, WARNING],
        alert=AlertLifecycleView(
            alert_id="A-LATE", seq=3, severity="critical", first_raised_at=AS_OF - timedelta(hours=1)
        ),
        broker_contact=BrokerContactView(
            code="ACME",
            name="Acme Customs",
            tz="America/Toronto",
            call="Call Acme Customs (ACME), 24 h line +1 519 555 0100",
            office_note="office closed until 07:00 EST: use the 24 h line",
        ),
    ),
    "8000SOON": load_status("8000SOON", "LD-SOON", -10, severity="warning", reasons=[WARNING]),
    "8000FINE": load_status("8000FINE", "LD-FINE", 90),
    "8000GONE": load_status(
        "8000GONE", "LD-GONE", -200, phase="released", released_at=AS_OF - timedelta(hours=3)
    ),
}
CHECK = ReadinessCheck(
    as_of=AS_OF,
    importer_bn="123456789RM0001",
    broker_code="LKCS",
    release_mode="rpp",
    ready=False,
    severity="critical",
    reasons=[CRITICAL],
    importer_name="Maple Imports Ltd",
    carm_record_at=AS_OF - timedelta(hours=5),
    carm_record_age_hours=5.0,
)


def error(status: int, code: str, detail: str) -> web.Response:
    body = ApiError.model_validate({"error": code, "detail": detail}).model_dump_json(exclude_none=True)
    return web.Response(status=status, text=body, content_type="application/json")


def ok(model: LoadStatus | LoadPage | ReadinessCheck) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


@dataclass
class CannedApi:
    """The worker's status API routes, answering from `LOADS`; records what it was asked."""

    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    slow: bool = False
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/loads/{ccn}", self._load)
        app.router.add_get("/v1/loads", self._loads)
        app.router.add_get("/v1/importers/{bn}/readiness", self._readiness)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self.hang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.asked.append((request.path, dict(request.query)))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized", "a bearer token is required")
        if self.slow:
            await self.hang.wait()  # answers only once the test is over
        response: web.StreamResponse = await handler(request)
        return response

    async def _load(self, request: web.Request) -> web.Response:
        ccn = request.match_info["ccn"]
        if ccn in LOADS:
            return ok(LOADS[ccn])
        return error(404, "not_found", f"no load with CCN {ccn} (nor any event for it) is known")

    async def _loads(self, request: web.Request) -> web.Response:
        q = request.query
        found = [
            s
            for s in LOADS.values()
            if (q.get("open") != "true" or s.phase == "open")
            and ("load_ref" not in q or s.load_ref == q["load_ref"])
            and ("port" not in q or s.port_of_entry == q["port"])
            and ("team" not in q or s.dispatch_team == q["team"])
        ]
        found.sort(key=lambda s: (s.minutes_to_eta is None, s.minutes_to_eta or 0.0))
        limit = int(q.get("limit", "100"))
        return ok(LoadPage(as_of=AS_OF, total=len(found), offset=0, limit=limit, items=found[:limit]))

    async def _readiness(self, request: web.Request) -> web.Response:
        return ok(CHECK.model_copy(update={"broker_code": request.query.get("broker")}))


def owned_record(alert_id: str, ccn: str, *, owner: str | None, channel_id: str = "C0EAST") -> AlertRecord:
    ownership = Ownership()
    if owner is not None:
        ownership = Ownership(
            owner=owner,
            owner_name="sam" if owner == USER else "ana",
            owned_at=(AS_OF - timedelta(minutes=58)).timestamp(),
            snoozed_until=(AS_OF + timedelta(minutes=30)).timestamp(),
            snoozed_by=owner,
        )
    alert = make_alert(alert_id, 2, "updated", "critical", ccn=ccn, load_ref=f"LD-{alert_id[2:]}", eta=AS_OF)
    return AlertRecord(
        alert_id=alert_id, channel="#east", channel_id=channel_id, latest=alert, ts="1.1", ownership=ownership
    )


RECORDS = [
    owned_record("A-LATE", "8000LATE", owner=USER),
    owned_record("A-SOON", "8000SOON", owner=None),
    owned_record("A-OTHER", "8000OTHR", owner="U0ANA"),
    AlertRecord(
        alert_id="A-WEST",
        channel="#west",
        channel_id="C0WEST",
        latest=make_alert("A-WEST", ccn="8000WEST", eta=AS_OF),
        ownership=Ownership(owner=USER, owner_name="sam", owned_at=AS_OF.timestamp()),
    ),
]


@dataclass
class Rig:
    slack: SlackTestServer
    api: CannedApi
    client: StatusApi
    commands: SlashCommands

    async def ask(self, text: str, *, channel_id: str = "C0EAST", user_id: str = USER) -> dict[str, Any]:
        """Type the command; the one answer that reached the response_url (its JSON body)."""
        url = self.slack.response_url()
        payload = slash_command_payload(text, channel_id=channel_id, user_id=user_id, response_url=url)
        await self.commands.handle(payload)
        [answer] = [r.body for r in self.slack.responses if r.url.endswith(url.rsplit("/", 1)[1])]
        assert answer["response_type"] == "ephemeral"
        return answer


def blob(answer: dict[str, Any]) -> str:
    return json.dumps(answer.get("blocks", []), ensure_ascii=False) + "\n" + str(answer["text"])


def build(slack: SlackTestServer, client: StatusApi, *, handovers: bool = True) -> SlashCommands:
    clock = ManualClock(0.0, AS_OF.timestamp())
    shift = Shift("east", "#east", (time(6), time(14), time(22)), "America/Toronto")
    gateway = SlackWebGateway(make_web_client(SecretStr("xoxb-test"), slack.base_url))
    schedule = Handovers((shift,), lambda: RECORDS, gateway, MemoryLedger(), clock) if handovers else None
    return SlashCommands(client, lambda: RECORDS, schedule, Responder().respond, clock)


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    api = CannedApi()
    await api.start()
    async with SlackTestServer() as slack, StatusApi(api.base_url, TOKEN) as client:
        yield Rig(slack, api, client, build(slack, client))
    await api.stop()


# --- answers ------------------------------------------------------------------------------------------


async def test_status_by_ccn_explains_the_risk_and_who_owns_it(rig: Rig) -> None:
    answer = await rig.ask("status 8000LATE")
    text = blob(answer)
    assert (
        answer["blocks"][0]["text"]["text"]
        == ":rotating_light: *CRITICAL: load LD-LATE at risk of a border hold*"
    )
    assert "Mon 23 Nov 14:35 EST (35 min left)" in text  # ETA in the port's zone, with the countdown
    assert "Broker not delegated in CARM" in text and "*Do:* Ask the importer to delegate" in text
    assert "*Call:* Importer Jo Tremblay, +1 514 555 0199" in text
    assert "Call Acme Customs (ACME), 24 h line" in text and "office closed until 07:00 EST" in text
    assert "owned by sam since 13:02 EST" in text and "snoozed until 14:30 EST" in text
    assert "<@" not in text  # named, not mentioned
    assert answer["text"].startswith("CRITICAL: load LD-LATE at risk of a border hold · CCN 8000LATE")
    assert rig.api.asked == [("/v1/loads/8000LATE", {})]


async def test_status_by_load_ref_searches_every_phase(rig: Rig) -> None:
    answer = await rig.ask("status LD-SOON")
    assert "WARNING: load LD-SOON at risk" in answer["text"] and "10 min past ETA" in answer["text"]
    assert ":raising_hand: *Unowned*: nobody has taken it" in blob(answer)
    assert rig.api.asked[-1] == ("/v1/loads", {"load_ref": "LD-SOON", "open": "false", "limit": "1"})
    gone = await rig.ask("status LD-GONE")
    assert "Load LD-GONE released by CBSA" in gone["text"] and "Unowned" not in blob(gone)


async def test_status_of_an_unknown_load_says_so_plainly(rig: Rig) -> None:
    answer = await rig.ask("status 8000NOPE")
    assert answer["text"] == (
        ":warning: holdwatch knows no load with CCN or load reference `8000NOPE`: check the number"
    )
    assert [path for path, _ in rig.api.asked] == ["/v1/loads/8000NOPE", "/v1/loads"]


async def test_an_unreachable_api_is_answered_in_words(rig: Rig) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with StatusApi(dead, TOKEN) as down:
        rig.commands = build(rig.slack, down)
        answer = await rig.ask("status 8000LATE")
    assert answer["text"] == (
        f":warning: holdwatch status API unavailable: cannot connect to {dead} (connection refused)"
    )
    assert "Traceback" not in blob(answer) and TOKEN not in blob(answer)


async def test_a_hanging_api_is_cut_off_by_the_timeout(rig: Rig) -> None:
    rig.api.slow = True
    async with StatusApi(rig.api.base_url, TOKEN, timeout_s=0.2) as slow:
        rig.commands = build(rig.slack, slow)
        answer = await rig.ask("check 123456789RM0001")
    assert (
        answer["text"]
        == f":warning: holdwatch status API unavailable: no answer from {rig.api.base_url} within 0.2 s"
    )


async def test_a_refused_token_is_named(rig: Rig) -> None:
    async with StatusApi(rig.api.base_url, "wrong") as refused:
        rig.commands = build(rig.slack, refused)
        answer = await rig.ask("open")
    assert "refused the notifier's token (401): a bearer token is required" in answer["text"]


async def test_check_answers_the_pre_pickup_check(rig: Rig) -> None:
    answer = await rig.ask("check 123456789rm0001 lkcs")
    text = blob(answer)
    assert "Maple Imports Ltd with broker LKCS (RPP): NOT READY (critical)" in text
    assert "*Do:* Ask the importer to delegate Acme Customs" in text and "5 h old" in text
    assert rig.api.asked == [("/v1/importers/123456789RM0001/readiness", {"broker": "LKCS"})]


async def test_open_lists_soonest_first_with_owners(rig: Rig) -> None:
    answer = await rig.ask("open 0453")
    assert rig.api.asked == [("/v1/loads", {"open": "true", "limit": "40", "port": "0453"})]
    sections = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section"]
    head, soon, late, fine = sections
    assert head == "*Open loads of port 0453: 3 (2 at risk, 1 unowned)*"
    assert "*LD-SOON*" in soon and "*unowned*" in soon and "10 min past ETA" in soon
    assert "*LD-LATE*" in late and "owned by sam since 13:02 EST" in late and "35 min left" in late
    assert "*LD-FINE*" in fine and "not at risk" in fine
    await rig.ask("open east")
    assert rig.api.asked[-1] == ("/v1/loads", {"open": "true", "limit": "40", "team": "east"})


async def test_mine_lists_only_the_users_open_loads(rig: Rig) -> None:
    answer = await rig.ask("mine")
    text = blob(answer)
    assert answer["blocks"][0]["text"]["text"] == "*You own 2 open loads*"
    assert "LD-LATE" in text and "LD-A-WEST" in text  # whatever the channel
    assert "LD-SOON" not in text and "LD-OTHER" not in text
    nobody = await rig.ask("mine", user_id="U0NEW")
    assert nobody["text"] == "You own no open load"
    assert rig.api.asked == []  # the notifier's own lifecycles: no API call


async def test_handover_answers_the_channels_list_without_posting(rig: Rig) -> None:
    answer = await rig.ask("handover", channel_id="C0EAST")
    assert answer["text"].startswith("Shift handover as of 14:00 America/Toronto — 3 open loads (1 unowned)")
    assert "LD-A-WEST" not in blob(answer)  # another channel's
    assert rig.slack.calls("chat.postMessage") == []


async def test_handover_without_shifts_still_lists_the_channel(rig: Rig) -> None:
    rig.commands = build(rig.slack, rig.client, handovers=False)
    answer = await rig.ask("handover", channel_id="C0WEST")
    assert answer["text"].startswith("Shift handover as of 19:00 UTC — 1 open load (0 unowned)")
    assert "it needs [shifts] in the routing file" in blob(answer)


async def test_bad_input_is_answered_with_help(rig: Rig) -> None:
    answer = await rig.ask("check")
    assert answer["text"].startswith(":grey_question: `check` needs the importer's business number.")
    assert "/holdwatch status CCN|LOAD_REF" in answer["text"]
    assert rig.api.asked == []
