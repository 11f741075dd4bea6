"""The status API's request handling (streams/worker/web.py), without Faust or a broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from pydantic import SecretStr

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from schemas.api import LoadPage
from streams.worker.web import LocalStatus, ReadinessFacts, StatusApi, board_asset
from tests.enginekit import BN, accepted, at, carm, reported

PARTITIONS = 3


def _local(*ccns: str, only: set[int] | None = None, now: float = 100) -> LocalStatus:
    runners: dict[int, EventTimeRunner] = {p: EventTimeRunner(Thresholds()) for p in range(PARTITIONS)}
    probe = LocalStatus(lambda: runners, Thresholds(), PARTITIONS, event_clock=False)
    record = carm(rpp=False)
    for runner in runners.values():
        runner.on_carm(BN, record, record.occurred_at)
    for n, ccn in enumerate(ccns):
        runner = runners[probe.partition_of(ccn)]
        runner.on_shipment_event(reported(0, ccn=ccn, eta=300 + 60 * n))
        runner.on_shipment_event(accepted(1, ccn=ccn))
    owned = {p: r for p, r in runners.items() if only is None or p in only}
    return LocalStatus(lambda: owned, Thresholds(), PARTITIONS, event_clock=False, wall=lambda: at(now))


def _body(reply: object) -> dict[str, object]:
    return json.loads(reply.body)  # type: ignore[attr-defined, no-any-return]


def test_a_load_by_ccn_with_its_reasons_explained() -> None:
    api = StatusApi(_local("ABCD100"))
    reply = api.load("abcd100")  # CCNs are upper-cased, as on input
    assert reply is not None and reply.status == 200
    body = _body(reply)
    assert body["ccn"] == "ABCD100" and body["severity"] == "critical"
    assert [r["code"] for r in body["reasons"]] == ["CARM_NO_RPP"]  # type: ignore[index, union-attr]


def test_bad_and_unknown_ccns_get_a_clear_4xx() -> None:
    api = StatusApi(_local("ABCD100"))
    bad = api.load("no!")
    assert bad is not None and bad.status == 400 and _body(bad)["parameter"] == "ccn"
    unknown = next(c for c in ("ZZZZ1", "ZZZZ2", "ZZZZ3") if api.local.owns(c))
    missing = api.load(unknown)
    assert missing is not None and missing.status == 404 and "no load" in str(_body(missing)["detail"])


def test_a_ccn_owned_by_another_worker_is_left_to_routing() -> None:
    local = _local("ABCD100", only={0})
    other = next(c for c in (f"ABCD{n}" for n in range(100, 200)) if local.partition_of(c) != 0)
    assert StatusApi(local).load(other) is None


def test_a_list_rejects_unknown_and_malformed_parameters() -> None:
    api = StatusApi(_local("ABCD100"))
    typo = asyncio.run(api.loads({"eta_withn_h": "4"}, {}))
    assert typo.status == 400 and "unknown parameter" in str(_body(typo)["detail"])
    bad_port = asyncio.run(api.loads({"port": "Windsor"}, {}))
    assert bad_port.status == 400 and _body(bad_port)["parameter"] == "port"


def test_a_list_merges_the_other_workers_answers_sorted_by_eta() -> None:
    mine = _local("ABCD100", "ABCD101", "ABCD102", "ABCD103", only={0})
    theirs = _local("ABCD100", "ABCD101", "ABCD102", "ABCD103", only={1, 2})
    peer_api = StatusApi(theirs)
    seen: list[Mapping[str, str]] = []

    async def peers() -> list[str]:
        return ["http://peer:6066"]

    async def fetch(url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        seen.append(headers)
        query = dict(part.split("=") for part in url.split("?", 1)[1].split("&") if part)
        reply = peer_api.local_loads(query)
        return reply.status, reply.body

    api = StatusApi(mine, peers=peers, fetch=fetch)
    reply = asyncio.run(api.loads({"limit": "3"}, {"Authorization": "Bearer t"}))
    page = LoadPage.model_validate_json(reply.body)
    assert [s.ccn for s in page.items] == ["ABCD100", "ABCD101", "ABCD102"]
    assert (page.total, page.next_offset) == (4, 3)
    assert seen == [{"Authorization": "Bearer t"}]  # the caller's token goes along


def test_a_peer_that_does_not_answer_is_a_503_not_a_partial_list() -> None:
    async def peers() -> list[str]:
        return ["http://gone:6066"]

    async def fetch(url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        raise OSError("connection refused")

    reply = asyncio.run(StatusApi(_local("ABCD100"), peers=peers, fetch=fetch).loads({}, {}))
    assert reply.status == 503


def test_tokens_are_required_when_configured() -> None:
    api = StatusApi(_local(), tokens=[SecretStr("s3cret")])
    assert api.authorized({"Authorization": "Bearer s3cret"}, {})
    assert api.authorized({}, {"hw_token": "s3cret"})
    assert not api.authorized({"Authorization": "Bearer nope"}, {})
    assert not api.authorized({}, {})
    assert StatusApi(_local()).authorized({}, {})  # no token: loopback only, open


def test_the_readiness_check_validates_its_input() -> None:
    api = StatusApi(_local())
    assert api.readiness("12345", {}).status == 400
    assert api.readiness(BN, {"release_mode": "cash"}).status == 400
    ok = api.readiness(BN, {"broker": "lkcs", "release_mode": "prepaid"})
    assert ok.status == 200 and _body(ok)["broker_code"] == "LKCS"
    unknown = _body(api.readiness("999999999RM0001", {"broker": "LKCS"}))
    assert [r["code"] for r in unknown["reasons"]] == ["CARM_IMPORTER_UNKNOWN"]  # type: ignore[index, union-attr]


def test_readyz_says_what_is_missing() -> None:
    facts = {"now": ReadinessFacts(partitions=0, recovered=False, lag_records=50, idle_seconds=500.0)}
    api = StatusApi(_local(), readiness=lambda: facts["now"], max_idle_s=60)
    reply = api.readyz()
    assert reply.status == 503
    assert "no shipment partition" in str(_body(reply)["detail"])
    facts["now"] = ReadinessFacts(partitions=2, recovered=True, lag_records=0, idle_seconds=500.0)
    assert api.readyz().status == 200
    facts["now"] = ReadinessFacts(partitions=2, recovered=True, lag_records=50, idle_seconds=5.0)
    assert api.readyz().status == 200  # behind, but consuming: catching up within the limit


def test_the_board_page_and_its_token_cookie() -> None:
    api = StatusApi(_local(), tokens=[SecretStr("s3cret")])
    assert api.board({}, authorized=False, board_hours=6).status == 401
    redirect = api.board({"token": "s3cret"}, authorized=False, board_hours=6)
    assert redirect.status == 303 and redirect.headers["Set-Cookie"].startswith("hw_token=s3cret;")
    page = api.board({}, authorized=True, board_hours=4)
    assert page.status == 200 and b'content="4"' in page.body and b"{{" not in page.body
    assert board_asset("board.js") is not None and board_asset("../settings.py") is None


def test_the_event_clock_answers_as_the_stream_stood() -> None:
    runner = EventTimeRunner(Thresholds())
    runner.on_shipment_event(reported(0))
    runner.advance(at(250))
    local = LocalStatus(lambda: {0: runner}, Thresholds(), 1, event_clock=True, wall=lambda: at(10_000))
    assert local.now() == at(250)
