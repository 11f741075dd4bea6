"""The live pipeline on the real broker: replay = back-test, scale-out, crash recovery, CARM fix,
dead letters. Each test has its own topics and consumer group."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from schemas.alerts import AlertEvent
from schemas.decode import topic_kinds
from schemas.eventlog import LogWriter
from streams.backtest import run_backtest
from streams.settings import Settings
from tests.enginekit import accepted, carm, reported, rns
from tests.integration.pipeline_harness import Namespace, stop

pytestmark = pytest.mark.integration


def _simulate(ns: Namespace, loads: int, seed: int) -> Path:
    path = ns.tmp / f"sim-{loads}-{seed}.jsonl"
    env = ns.env
    result = ns.run(
        "simulate", "--loads", str(loads), "--seed", str(seed), "--out", str(path), "--no-midway-fixes"
    )
    assert result.returncode == 0, result.stderr
    assert env["HOLDWATCH_TOPIC_CARM"] in path.read_text()[:1000]  # the namespace's topics
    return path


def _backtest(ns: Namespace, log: Path) -> list[AlertEvent]:
    buffer = io.StringIO()
    kinds = topic_kinds(ns.topics["emanifest"], ns.topics["rns"], ns.topics["carm"])
    run_backtest([log], buffer, Settings().thresholds(), kinds)
    return [AlertEvent.model_validate_json(line) for line in buffer.getvalue().splitlines()]


def _replay(ns: Namespace, log: Path, *extra: str) -> None:
    result = ns.run("replay", str(log), *extra, timeout=600)
    assert result.returncode == 0, result.stderr + "\n" + ns.log_tail()


def _comparable(alerts: list[AlertEvent]) -> dict[str, list[tuple[object, ...]]]:
    """Each load's alert events in order, lifecycle id and step included: a Kafka partition keeps
    one load's records in order, so the pipeline must give every load the back-test's sequence."""
    per_load: dict[str, list[tuple[object, ...]]] = {}
    for a in alerts:
        per_load.setdefault(a.ccn, []).append((a.alert_id, a.seq, *a.comparable()))
    return per_load


@pytest.fixture
def ns(kafka_bootstrap: str, tmp_path: Path) -> Namespace:
    namespace = Namespace(kafka_bootstrap, tmp_path)
    created = namespace.run("topics", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    return namespace


def test_replay_into_a_fresh_pipeline_equals_the_backtest(ns: Namespace) -> None:
    log = _simulate(ns, 5000, seed=11)
    expected = _backtest(ns, log)
    with ns.worker("w1"):
        ns.wait_ready()
        _replay(ns, log)
        actual = ns.wait_for_alerts(len(expected))
    assert _comparable(actual) == _comparable(expected)
    letters = ns.dead_letters()
    assert letters and all(letter["reason"] and letter["source_topic"] for letter in letters)


def test_two_workers_split_the_partitions_and_produce_what_one_produces(ns: Namespace) -> None:
    log = _simulate(ns, 1500, seed=12)
    expected = _backtest(ns, log)
    with ns.worker("a"), ns.worker("b"):
        ns.wait_ready(2)
        _replay(ns, log)
        actual = ns.wait_for_alerts(len(expected))
    assert _comparable(actual) == _comparable(expected)
    logs = [log_path.read_text(errors="replace") for log_path in ns.logs]
    assert all("records" in text for text in logs)


def test_a_worker_killed_mid_replay_recovers_and_loses_no_alert(ns: Namespace) -> None:
    log = _simulate(ns, 3000, seed=13)
    expected = _backtest(ns, log)
    worker = ns.start_worker("crash")
    try:
        ns.wait_ready()
        replay = ns.run("replay", str(log), "--speed", "max", timeout=600)
        assert replay.returncode == 0, replay.stderr
        time.sleep(1.0)  # let it get going, then pull the plug
        stop(worker, kill=True)
        worker = ns.start_worker("crash")  # same state directory: RocksDB + changelog recovery
        actual = ns.wait_for_alerts(len(expected), timeout=300)
    finally:
        stop(worker)
    distinct: dict[str, AlertEvent] = {}
    for alert in actual:  # a re-sent step keeps the place of its first copy
        distinct.setdefault(alert.event_id, alert)
    assert _comparable(list(distinct.values())) == _comparable(expected)
    # A repeated alert event is the same lifecycle step: consumers can drop it by event_id.
    for alert in ns.alerts():
        assert distinct[alert.event_id].comparable() == alert.comparable()


def test_a_carm_fix_published_mid_flight_resolves_the_open_alert(ns: Namespace) -> None:
    log = ns.tmp / "fix.jsonl"
    broken = carm(-60, rpp=False)
    fixed = carm(30)
    with LogWriter(log) as out:
        for topic, key, event in [
            (ns.topics["carm"], broken.importer_bn, broken),
            (ns.topics["emanifest"], "ABCD100", reported(0)),
            (ns.topics["emanifest"], "ABCD100", accepted(3)),
            (ns.topics["rns"], "ABCD100", rns(20, 9)),
        ]:
            out.write(topic, key, event.model_dump(mode="json"), int(event.occurred_at.timestamp() * 1000))
    fix_log = ns.tmp / "fix2.jsonl"
    with LogWriter(fix_log) as out:
        out.write(ns.topics["carm"], fixed.importer_bn, fixed.model_dump(mode="json"))
    with ns.worker("w1"):
        ns.wait_ready()
        _replay(ns, log)
        raised = ns.wait_for_alerts(1)
        assert [(a.action, a.reasons) for a in raised] == [("raised", ["CARM_NO_RPP"])]
        _replay(ns, fix_log, "--no-carm-barrier")
        alerts = sorted(ns.wait_for_alerts(2), key=lambda a: a.seq)
    assert [(a.action, a.outcome) for a in alerts] == [("raised", None), ("resolved", "cleared")]
    assert alerts[1].trigger == "carm"


def test_malformed_records_land_in_the_dead_letter_topic_with_reasons(ns: Namespace) -> None:
    log = ns.tmp / "bad.jsonl"
    with LogWriter(log) as out:
        out.write(ns.topics["emanifest"], "ABCD100", {"event_type": "cargo_accepted"})
        out.write(ns.topics["rns"], "OTHERKEY1", rns(1, 9).model_dump(mode="json"))
        bad_carm = {**carm().model_dump(mode="json"), "ccp_registered": "yes"}
        out.write(ns.topics["carm"], "123456789RM0001", bad_carm)
        out.write(
            ns.topics["emanifest"], "ABCD100", {**accepted(2).model_dump(mode="json"), "event_type": "zz"}
        )
    with ns.worker("w1"):
        ns.wait_ready()
        _replay(ns, log, "--no-carm-barrier")
        deadline = time.monotonic() + 60
        letters = ns.dead_letters()
        while len(letters) < 4 and time.monotonic() < deadline:
            time.sleep(1)
            letters = ns.dead_letters()
    reasons = Counter(letter["reason"] for letter in letters)
    assert reasons == Counter(
        {"missing_field": 1, "key_mismatch": 1, "wrong_type": 1, "unknown_event_type": 1}
    ), letters


def test_with_the_wall_clock_a_deadline_fires_within_seconds_of_its_instant(ns: Namespace) -> None:
    from datetime import UTC, datetime, timedelta

    from kafka import KafkaProducer

    ns.env["HOLDWATCH_RULE_PARS_WARNING_MIN"] = "1"  # PARS window opens 1 min before the ETA
    ns.env["HOLDWATCH_RULE_PARS_CRITICAL_MIN"] = "0.25"  # the other deadlines come later
    ns.env["HOLDWATCH_RULE_EMANIFEST_DEADLINE_MIN"] = "0.25"
    now = datetime.now(UTC).replace(microsecond=0)
    eta = now + timedelta(seconds=68)  # ...so the deadline is about 8 s from now
    snapshot = carm(-60, last_login=now - timedelta(days=1))
    load = reported(0).model_dump(mode="json") | {"occurred_at": now.isoformat(), "eta": eta.isoformat()}
    accept = accepted(0).model_dump(mode="json") | {"occurred_at": now.isoformat()}
    with ns.worker("wall", "--clock", "wall"):
        ns.wait_ready()
        producer = KafkaProducer(bootstrap_servers=ns.bootstrap)
        producer.send(
            ns.topics["carm"], key=snapshot.importer_bn.encode(), value=snapshot.model_dump_json().encode()
        )
        producer.flush()
        time.sleep(2.0)  # live traffic has no barrier: let the snapshot reach the partitions
        producer.send(ns.topics["emanifest"], key=b"ABCD100", value=json.dumps(load).encode())
        producer.send(ns.topics["emanifest"], key=b"ABCD100", value=json.dumps(accept).encode())
        producer.flush()
        producer.close()
        alerts = ns.wait_for_alerts(1, timeout=60, settle=1.0)
        seen_at = datetime.now(UTC)
    [alert] = [a for a in alerts if a.seq == 1]
    assert (alert.action, alert.reasons, alert.trigger) == ("raised", ["PARS_NOT_MATCHED"], "deadline")
    assert alert.at == eta - timedelta(minutes=1)  # stamped with the deadline's own instant
    assert seen_at - alert.at < timedelta(seconds=15)  # fired within seconds, not at the next event
