"""The broker SIGKILLed and restarted on the same port while a worker consumes a replay (issue 11,
items 3 and 6b): afterwards the alert topic holds exactly the back-test's alert events (distinct by
event_id: retries and re-deliveries may repeat one), and no dead letter.

The worker either rides the outage out (its producer retries for PRODUCER_DELIVERY_TIMEOUT_S), or,
if a send cannot be confirmed or Faust gives up on the broker, it stops with exit code 1 having
acked nothing unconfirmed. That is the documented behaviour (docs/reliability.md): a supervisor
restarts it, and it consumes the unacked records again. This test is that supervisor: a worker
that exited with code 1 is started again on the same state directory, at most a few times. (A
brand-new app id on a brand-new broker can also stop once at its first table write: Faust
creates the changelog topics at start and may not see one in its metadata yet.)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.broker import LocalBroker, free_port
from devtools.simulate import SimulationConfig, write_simulation
from schemas.alerts import AlertEvent
from streams.settings import Settings
from tests.integration.pipeline_harness import Namespace, backtest, comparable, first_copies, stop

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="the local broker needs Java and Maven",
)

SPEED = "4000"  # about 29 h of event time in about 26 s of replay
MAX_RESTARTS = 3


class Supervised:
    """The worker process, started again (same state directory) whenever it exits with code 1."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.restarts = 0
        self.process = ns.start_worker("w1")

    def check(self) -> None:
        code = self.process.poll()
        if code is None:
            return
        assert code == 1, f"the worker exited with {code}, not a deliberate stop\n{self.ns.log_tail()}"
        assert self.restarts < MAX_RESTARTS, "the worker keeps stopping\n" + self.ns.log_tail()
        self.restarts += 1
        self.process = self.ns.start_worker("w1")

    def stop(self) -> None:
        stop(self.process)


def wait_until(
    condition: str, check: Callable[[], bool], worker: Supervised, timeout: float, *, every: float = 0.5
) -> None:
    """Poll `check()` until it holds (the worker supervised meanwhile), or fail naming `condition`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check()
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for: {condition}\n" + worker.ns.log_tail())


def alerts_settled(ns: Namespace, worker: Supervised, expected: int, timeout: float) -> list[AlertEvent]:
    """The distinct alert events once `expected` are there and nothing new came for 3 s; the worker
    is restarted meanwhile if it stopped."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        worker.check()
        distinct = first_copies(ns.alerts())
        if len(distinct) != last_count:
            last_count, last_change = len(distinct), time.monotonic()
        if len(distinct) >= expected and time.monotonic() - last_change >= 3.0:
            return distinct
        time.sleep(1.0)
    raise AssertionError(f"{last_count} of {expected} alert events\n" + ns.log_tail())


def replay_to_the_end(ns: Namespace, log: Path, replay: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the replay; if the outage outlasted its --broker-timeout it names the line to resume
    from (exit 1, docs/replay.md): resume there, as an operator would."""
    replay.wait(timeout=timeout)
    if replay.returncode == 1:
        found = re.search(r"--from-line (\d+)", ns.log_tail(200))
        assert found, ns.log_tail()
        resumed = ns.run("replay", str(log), "--from-line", found.group(1), "--no-carm-barrier")
        assert resumed.returncode == 0, resumed.stderr
    else:
        assert replay.returncode == 0, ns.log_tail()


def test_a_broker_restart_under_a_running_worker_loses_no_alert_and_dead_letters_nothing(
    tmp_path: Path,
) -> None:
    broker = LocalBroker(tmp_path / "kafka", home=Settings().home, port=free_port())
    broker.start()
    ns = Namespace(broker.bootstrap, tmp_path)
    worker: Supervised | None = None
    try:
        created = ns.run("topics", "create")
        assert created.returncode == 0, created.stdout + created.stderr
        log = tmp_path / "log.jsonl"
        config = SimulationConfig(
            loads=600, seed=21, hours=12, malformed_rate=0.0, midway_fixes=False,
            topic_emanifest=ns.topics["emanifest"],
            topic_rns=ns.topics["rns"], topic_carm=ns.topics["carm"],
        )  # fmt: skip
        write_simulation(config, log)
        expected = backtest(ns, log)
        assert len(expected) > 100

        worker = Supervised(ns)
        ns.wait_ready()
        replay = ns.start_command("replay", "replay", str(log), "--speed", SPEED, "--broker-timeout", "120")
        # Mid-way: the worker has published a part of the alerts, and the replay is still going.
        quarter = len(expected) // 4
        wait_until("a quarter of the alerts", lambda: len(first_copies(ns.alerts())) >= quarter, worker, 90)
        restarts_before = worker.restarts
        assert replay.poll() is None, "the replay ended before the broker was killed"
        assert broker.pid is not None
        os.killpg(broker.pid, signal.SIGKILL)
        broker.stop()  # reaps the killed JVM
        broker.start()  # same data dir, same port (requested_port)

        replay_to_the_end(ns, log, replay, timeout=240)
        actual = alerts_settled(ns, worker, len(expected), timeout=180)
        assert comparable(actual) == comparable(expected)
        assert ns.dead_letters() == []
        print(
            f"worker restarts: {restarts_before} before the outage, {worker.restarts - restarts_before} after"
        )
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
