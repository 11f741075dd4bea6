"""`holdwatch connect borderconnect` against a local BorderConnect stand-in and the real broker.

The stand-in accepts the handshake, sends every message type, malformed frames, then cuts the
connection mid-stream; on the reconnect it re-sends what it sent last (as a server that lost track
of what the client got would) and goes on. The topics must then hold exactly the expected events,
once each, keyed by CCN, and the dead-letter topic each bad frame once with its raw text.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from schemas.deadletter import DeadLetter
from schemas.decode import Decoded, TopicKind, decode
from streams.kafka.admin import ensure_topics
from streams.settings import Settings
from tests.fixtures.borderconnect import (
    Action,
    Drop,
    Send,
    SendBytes,
    StandInThread,
    aci_notice,
    aci_response,
    rns_shipment,
    system_alert,
)
from tests.integration.pipeline_harness import HOLDWATCH, ROOT, Namespace

A, B, C = "ABCD1000001", "ABCD1000002", "ABCD1000003"
MATCHED_A = aci_notice("MATCHED", A, "2026-11-03 08:10:00")
NOT_MATCHED_B = aci_notice("NOT_MATCHED", B, "2026-11-03 08:11:00")
GARBAGE = '{"data": "ACI_NOTICE", "type": '
BINARY = b"\xff\xfe\x00garbage"
UNKNOWN_NOTICE = aci_notice("PARKED_IN_YARD", A, "2026-11-03 08:12:00")
UNKNOWN_TYPE = json.dumps({"data": "ACI_MANIFEST_STATUS", "tripNumber": "ABCD20261103"})

FIRST_CONNECTION: list[Action] = [
    Send(aci_response("ACCEPT", A, "2026-11-03 08:00:00")),
    Send(aci_response("REJECT", B, "2026-11-03 08:01:00", errors=[("156", "consignee", "Address missing")])),
    Send(MATCHED_A),
    Send(NOT_MATCHED_B),
    Send(GARBAGE),
    SendBytes(BINARY),
    Send(UNKNOWN_NOTICE),
    Send(UNKNOWN_TYPE),
    Send(system_alert("maintenance window tonight")),
    Drop(),
]
SECOND_CONNECTION: list[Action] = [
    Send(MATCHED_A),  # re-sent after the drop
    Send(NOT_MATCHED_B),
    Send(GARBAGE),
    Send(aci_notice("ARRIVAL_REPORTED", None, "2026-11-03 09:30:00", references=[A, C], trip="ABCD20261103")),
    Send(rns_shipment(A, "4", "2026-11-03 09:40:00", transaction="11111111111111", office="0427")),
    Send(rns_shipment(C, "5", "2026-11-03 09:41:00", transaction="22222222222222", office="0427")),
]
FRAMES = len(FIRST_CONNECTION) - 1 + len(SECOND_CONNECTION) + 2  # + the two handshake answers

EXPECTED_EMANIFEST = Counter(
    [
        (A, "cargo_accepted", None),
        (B, "cargo_rejected", "156 consignee: Address missing"),
        (A, "notice", "matched"),
        (B, "notice", "not_matched"),
        (A, "notice", "reported"),
        (C, "notice", "reported"),
    ]
)
EXPECTED_RNS = Counter([(A, "rns_status", 4), (C, "rns_status", 5)])
EXPECTED_DEAD = Counter(
    [
        ("not_json", GARBAGE.encode()),
        ("not_utf8", BINARY),
        ("unknown_event_type", UNKNOWN_NOTICE.encode()),
        ("unknown_event_type", UNKNOWN_TYPE.encode()),
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` → value from the connector's /metrics (empty while it is not up yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def handled(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("holdwatch_borderconnect_messages_total{"))


def wait_until(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} not reached in {timeout:.0f} s; log:\n{log.read_text(errors='replace')}"
            )
        time.sleep(0.2)


def event_summary(kind: TopicKind, record: Any) -> tuple[str, str, object]:
    decoded = decode(kind, record.key, record.value)
    assert isinstance(decoded, Decoded), decoded  # the worker accepts every event, key = body's CCN
    event: Any = decoded.event
    detail = {
        "cargo_rejected": getattr(event, "reason", None),
        "notice": getattr(event, "notice", None),
        "rns_status": getattr(event, "processing_indicator", None),
    }.get(event.event_type)
    return decoded.key, event.event_type, detail


def test_borderconnect_messages_reach_the_topics_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=2)
    settings = Settings(kafka_bootstrap=kafka_bootstrap, partitions=2).model_copy(
        update={f"topic_{name}": topic for name, topic in ns.topics.items()}
    )
    ensure_topics(settings)
    metrics_port = free_port()
    log = tmp_path / "borderconnect.log"
    with StandInThread([FIRST_CONNECTION, SECOND_CONNECTION]) as server:
        env = {
            **ns.env,
            "HOLDWATCH_PARTITIONS": "2",
            "HOLDWATCH_METRICS_PORT": str(metrics_port),
            "HOLDWATCH_BORDERCONNECT_URL": server.url,
            "HOLDWATCH_BORDERCONNECT_API_KEY": server.api_key,
            "HOLDWATCH_FEED_LOCAL_TZ": "America/Toronto",
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*HOLDWATCH, "connect", "borderconnect", "--loglevel", "debug"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_until(
                    lambda: handled(scrape(metrics_port)) >= FRAMES, 120, f"{FRAMES} frames handled", log
                )
                samples = scrape(metrics_port)
                assert samples["holdwatch_borderconnect_connected"] == 1
                assert server.connections == 2
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                exit_code = process.wait(timeout=30)
    assert exit_code == 0, log.read_text(errors="replace")
    assert handled(samples) == FRAMES
    outcome = {
        key.split("outcome=")[1].split('"')[1] + "/" + key.split("type=")[1].split('"')[1]: value
        for key, value in samples.items()
        if key.startswith("holdwatch_borderconnect_messages_total{") and value
    }
    assert outcome == {
        "published/ACI_RESPONSE": 2,
        "published/ACI_NOTICE": 3,
        "duplicate/ACI_NOTICE": 2,
        "published/RNS_SHIPMENT": 2,
        "dead_lettered/ACI_NOTICE": 1,
        "dead_lettered/other": 3,
        "duplicate/other": 1,
        "ignored/SYSTEM_ALERT": 1,
        "ignored/API_RESPONSE": 2,
    }

    emanifest = ns.read_topic("emanifest")
    rns = ns.read_topic("rns")
    assert Counter(event_summary(TopicKind.EMANIFEST, r) for r in emanifest) == EXPECTED_EMANIFEST
    assert Counter(event_summary(TopicKind.RNS, r) for r in rns) == EXPECTED_RNS
    ids = [json.loads(r.value)["event_id"] for r in emanifest + rns]
    assert len(ids) == len(set(ids)) == 8
    # every record of one CCN is in one partition (the key is the CCN)
    partitions: dict[bytes, set[int]] = {}
    for record in emanifest:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(found) == 1 for found in partitions.values())

    letters = [DeadLetter.model_validate_json(r.value) for r in ns.read_topic("deadletter")]
    assert Counter((letter.reason.value, base64.b64decode(letter.value_b64 or "")) for letter in letters) == (
        EXPECTED_DEAD
    )
    assert {letter.source_topic for letter in letters} == {"borderconnect"}
    assert all(letter.detail for letter in letters)

    text = log.read_text(errors="replace")
    assert server.api_key not in text
    assert "connected to" in text and "reconnecting in" in text
