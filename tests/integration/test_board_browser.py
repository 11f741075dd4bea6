"""The status API and the dispatch board, end to end: a real worker, a real broker, real Chromium.

A live worker (wall clock) gets a load whose importer is not enrolled in RPP: critical. The
API answers for it (by CCN and by load reference), the pre-pickup check says what is missing,
and the board, open in headless Chromium, shows its row red. A fixed CARM record published
mid-test turns the row green without a reload. A screenshot is kept in the test's tmp dir
(and under $HOLDWATCH_TEST_ARTIFACTS when set).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.enginekit import BN, BROKER, accepted, carm, reported, rns
from tests.integration.pipeline_harness import Namespace, stop

pytestmark = pytest.mark.integration

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _get(url: str, token: str | None = "board-token") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def _now_events(ccn: str, now: datetime, *, rpp: bool) -> dict[str, list[tuple[str, Any]]]:
    """A load due in 3 h, accepted and linked: only its importer's CARM record can be wrong."""

    def shifted(model: Any, **update: Any) -> Any:
        return model.model_copy(update={"occurred_at": now, **update})

    record = shifted(carm(rpp=rpp), event_id=f"carm-{rpp}-{now.timestamp()}", last_portal_login_at=now)
    events = [
        shifted(reported(0, ccn=ccn), eta=now + timedelta(hours=3), event_id=f"{ccn}-r"),
        shifted(accepted(1, ccn=ccn), event_id=f"{ccn}-a"),
        shifted(rns(2, 9, ccn=ccn), event_id=f"{ccn}-9"),
    ]
    return {"carm": [(BN, record)], "emanifest": [(ccn, e) for e in events[:2]], "rns": [(ccn, events[2])]}


def _publish(ns: Namespace, batches: dict[str, list[tuple[str, Any]]]) -> None:
    producer = KafkaProducer(bootstrap_servers=ns.bootstrap, acks="all")
    try:
        for topic in ("carm", "emanifest", "rns"):
            for key, model in batches.get(topic, []):
                producer.send(ns.topics[topic], key=key.encode(), value=model.model_dump_json().encode())
            producer.flush()
    finally:
        producer.close()


@pytest.fixture
def api_worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Namespace, str]]:
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=3)
    port = _free_port()
    ns.env.update(
        {
            "HOLDWATCH_WEB_PORT": str(port),
            "HOLDWATCH_WEB_TOKENS": '["board-token"]',
            "HOLDWATCH_WEB_BIND": "127.0.0.1",
        }
    )
    assert ns.run("topics", "create").returncode == 0
    worker = ns.start_worker("web", "--clock", "wall")
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(base + "/readyz", None)[0] == 200, 120, "the worker's /readyz:\n" + ns.log_tail())
        yield ns, base
    finally:
        stop(worker)


def test_the_api_answers_and_refuses_bad_input(api_worker: tuple[Namespace, str]) -> None:
    ns, base = api_worker
    now = datetime.now(UTC)
    _publish(ns, _now_events("WEBT100", now, rpp=False))
    _, body = _wait(
        lambda: (r := _get(base + "/v1/loads/WEBT100"))[0] == 200 and r[1].get("severity") and r,
        60,
        "the load in the API",
    )
    assert body["severity"] == "critical" and [r["code"] for r in body["reasons"]] == ["CARM_NO_RPP"]
    assert body["alert"]["alert_id"] == "WEBT100:1"
    assert _get(base + "/v1/loads/WEBT100", token=None)[0] == 401
    assert _get(base + "/v1/loads/WEBT100", token="wrong")[0] == 401
    assert _get(base + "/v1/loads/NOSUCH1")[0] == 404
    assert _get(base + "/v1/loads/bad!ccn")[0] == 400
    assert _get(base + "/v1/loads?eta_within=3")[0] == 400  # a typo is refused, not ignored
    listed = _get(base + "/v1/loads?eta_within_h=4&severity=critical")[1]
    assert [item["ccn"] for item in listed["items"]] == ["WEBT100"]
    by_ref = _get(base + "/v1/loads?load_ref=LOAD-WEBT100&open=false")[1]
    assert [item["ccn"] for item in by_ref["items"]] == ["WEBT100"]
    check = _get(base + f"/v1/importers/{BN}/readiness?broker={BROKER}")[1]
    assert check["ready"] is False and [r["code"] for r in check["reasons"]] == ["CARM_NO_RPP"]
    assert (
        _get(base + f"/v1/importers/{BN}/readiness?broker={BROKER}&release_mode=prepaid")[1]["ready"] is True
    )
    cli = ns.run("status", "LOAD-WEBT100")
    assert cli.returncode == 1 and "AT RISK (critical)" in cli.stdout, cli.stderr
    ns.env["HOLDWATCH_WEB_URL"] = base
    ns.env["HOLDWATCH_WEB_TOKENS"] = '["board-token"]'
    check_cli = ns.run("check", BN, "--broker", BROKER, "--json")
    assert check_cli.returncode == 1 and json.loads(check_cli.stdout)["reasons"][0]["code"] == "CARM_NO_RPP"
    metrics_ok = _get(base + "/healthz", None)
    assert metrics_ok == (200, {"status": "ok"})


@pytest.mark.skipif(
    CHROMEDRIVER is None or CHROMIUM is None, reason="needs Debian's chromium and chromium-driver"
)
def test_the_board_turns_a_row_green_when_the_carm_fix_arrives(
    api_worker: tuple[Namespace, str], tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ns, base = api_worker
    now = datetime.now(UTC)
    _publish(ns, _now_events("WEBT200", now, rpp=False))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(base + "/")
        assert "open /?token=" in driver.page_source  # no token yet: told how to get in
        driver.get(base + "/?token=board-token")  # sets the cookie, back to the board
        driver.get_log("browser")  # drop the expected 401 of the tokenless visit

        def row_property(name: str) -> str | None:
            # Read in one script: the board may re-render the row between a find and a read.
            found = driver.execute_script(
                "const row = document.querySelector('tr.load[data-ccn=\"WEBT200\"]');"
                f"return row ? row.{name} : null;"
            )
            return found if isinstance(found, str) else None

        def row_severity() -> str | None:
            return row_property("dataset.severity")

        _wait(lambda: row_severity() == "critical", 30, "the critical row on the board")
        row_text = row_property("innerText") or ""
        assert "RPP" in row_text or "Release Prior to Payment" in row_text
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN)  # keyboard: rows take focus
        assert driver.switch_to.active_element.get_attribute("data-ccn") is not None
        marker = driver.execute_script("document.body.dataset.loadedOnce = 'yes'; return 1")
        assert marker == 1
        _publish(ns, {"carm": _now_events("WEBT200", datetime.now(UTC), rpp=True)["carm"]})
        _wait(lambda: row_severity() == "ok", 20, "the row to turn green after the CARM fix")
        assert driver.execute_script("return document.body.dataset.loadedOnce") == "yes"  # no reload
        screenshot = tmp_path / "board.png"
        driver.save_screenshot(str(screenshot))
        artifacts = os.environ.get("HOLDWATCH_TEST_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, Path(artifacts) / "board.png")
        assert screenshot.stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_two_workers_answer_for_every_load_routed_and_fanned_out(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A CCN asked of the worker that does not own it is routed to its owner; a list merges both."""
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=4)
    ns.env.update({"HOLDWATCH_WEB_TOKENS": '["board-token"]', "HOLDWATCH_WEB_BIND": "127.0.0.1"})
    assert ns.run("topics", "create").returncode == 0
    ports = [_free_port(), _free_port()]
    workers = []
    for n, port in enumerate(ports):
        ns.env["HOLDWATCH_WEB_PORT"] = str(port)
        workers.append(ns.start_worker(f"w{n}", "--clock", "wall"))
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:

        def both_own_partitions() -> bool:
            answers = [_get(base + "/readyz", None) for base in bases]
            return all(status == 200 for status, _ in answers) and all(
                0 < body.get("partitions", 0) < 4 for _, body in answers
            )

        _wait(both_own_partitions, 150, "two ready workers sharing the partitions:\n" + ns.log_tail())
        now = datetime.now(UTC)
        ccns = [f"ROUTE{n}00" for n in range(8)]
        batches: dict[str, list[tuple[str, Any]]] = {"carm": [], "emanifest": [], "rns": []}
        for ccn in ccns:
            for topic, items in _now_events(ccn, now, rpp=False).items():
                batches[topic] += items if topic != "carm" else items[:1]
        _publish(ns, batches)
        for ccn in ccns:
            for base in bases:
                _wait(lambda b=base, c=ccn: _get(f"{b}/v1/loads/{c}")[0] == 200, 60, f"{ccn} from {base}")
        for base in bases:
            listed = _get(base + "/v1/loads?limit=100")[1]
            assert sorted(item["ccn"] for item in listed["items"]) == ccns
    finally:
        for worker in workers:
            stop(worker)
