"""`holdwatch demo`: the main job on its embedded defaults, end to end, in one command.

Starts the local broker unless one is configured, creates the topics, starts a worker
(event clock) and the notifier (console unless HOLDWATCH_SLACK_TOKEN is set), simulates
a day of loads, replays it at full speed, prints alerts as they happen and a summary,
and serves /metrics. Ctrl-C (or the end of the replay, unless --keep-running) stops
everything it started; nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from devtools.broker import free_port, port_free, tail
from streams.cli.main import with_local_broker
from streams.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run everything locally: broker, topics, worker, notifier, a simulated day replayed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--loads", type=int, default=1500, help="loads in the simulated day (default 1500)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--speed", default="max", help="replay speed: max, realtime or a factor (default max)"
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="keep the worker and notifier running after the replay"
    )
    parser.add_argument(
        "--workdir", type=Path, help="where to put the log and state (default HOLDWATCH_HOME/demo)"
    )
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def _holdwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "streams.cli.main", *args]


class Processes:
    """Child processes in their own process groups, stopped with SIGTERM then SIGKILL."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str], log: Path | None = None) -> None:
        out = log.open("ab") if log is not None else None
        process = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
        self.children.append((name, process))

    def check(self) -> str | None:
        for name, process in self.children:
            if process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        return None

    def stop(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                _say(f"stopping {name}")
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


class _StepFailed(Exception):
    """A demo step failed (it has said why); run() exits with `code` after stopping what it started."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def run(args: argparse.Namespace, settings: Settings) -> int:
    workdir = args.workdir or settings.home / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    started_broker = False
    processes = Processes()
    try:
        started_broker = _ensure_broker(settings, env)
        settings = with_local_broker(settings)  # started after the settings were read
        settings = _isolate_run(settings, env)
        log = workdir / f"{settings.app_id}-day.jsonl.gz"
        _simulate_day(args.loads, args.seed, log, env)
        settings = _free_metrics_port(settings, env)
        settings = _free_web_port(settings, env)
        _start_worker(processes, env, workdir, settings)
        _start_notifier(processes, env, settings)
        _replay(log, args.speed, env)
        _say("replay done; waiting for the pipeline to drain")
        _summarise(settings, env, processes)
        if args.keep_running:
            _keep_running(processes)
        return 0
    except _StepFailed as failed:
        return failed.code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    finally:
        processes.stop()
        if started_broker:
            subprocess.run(_holdwatch("broker", "stop"), env=env, check=False)


def _ensure_broker(settings: Settings, env: dict[str, str]) -> bool:
    """Start the local broker unless one is configured or running; True when this run started it."""
    from devtools.broker import read_state

    if settings.kafka_bootstrap is not None:
        return False
    state = read_state(settings.home)
    if state is not None and state.running():
        return False
    _say("starting the local Kafka broker (first run downloads its jars with mvn)")
    result = subprocess.run(_holdwatch("broker", "start"), env=env, check=False)
    if result.returncode != 0:
        _say("the local broker did not start; see the message above")
        raise _StepFailed(2)
    return True


def _isolate_run(settings: Settings, env: dict[str, str]) -> Settings:
    """Every demo run has its own topics, consumer groups and state: it is judged on its own."""
    app_id = f"holdwatch-demo-{int(time.time())}"
    env["HOLDWATCH_APP_ID"] = app_id
    names = {f"topic_{n}": f"{app_id}.{n}" for n in ("emanifest", "rns", "carm", "alerts", "deadletter")}
    env.update({f"HOLDWATCH_{key.upper()}": value for key, value in names.items()})
    topics = subprocess.run(_holdwatch("topics", "create"), env=env, check=False)
    if topics.returncode != 0:
        raise _StepFailed(2)
    return settings.model_copy(update={"app_id": app_id, **names})


def _simulate_day(loads: int, seed: int, log: Path, env: dict[str, str]) -> None:
    _say(f"simulating {loads} loads (seed {seed}) into {log}")
    args = ["simulate", "--loads", str(loads), "--seed", str(seed), "--out", str(log), "--no-midway-fixes"]
    simulated = subprocess.run(_holdwatch(*args), env=env, check=False)
    if simulated.returncode != 0:
        raise _StepFailed(2)


def _free_metrics_port(settings: Settings, env: dict[str, str]) -> Settings:
    """The configured /metrics port, or a free one when it is taken."""
    if settings.metrics_port and not port_free(settings.metrics_port, host="0.0.0.0"):
        port = free_port()
        _say(f"port {settings.metrics_port} is taken: the worker serves /metrics on {port} instead")
        env["HOLDWATCH_METRICS_PORT"] = str(port)
        return settings.model_copy(update={"metrics_port": port})
    return settings


def _free_web_port(settings: Settings, env: dict[str, str]) -> Settings:
    """The status API's port, or a free one when it is taken (another worker, another demo)."""
    if settings.web_port and not port_free(settings.web_port, host="127.0.0.1"):
        port = free_port()
        _say(f"port {settings.web_port} is taken: the board and status API use {port} instead")
        env["HOLDWATCH_WEB_PORT"] = str(port)
        return settings.model_copy(update={"web_port": port})
    return settings


def _start_worker(processes: Processes, env: dict[str, str], workdir: Path, settings: Settings) -> None:
    """Start the worker (event clock, no notifier) and wait until it says it is ready."""
    app_id = settings.app_id
    worker_log = workdir / f"{app_id}-worker.log"
    processes.start(
        "worker",
        _holdwatch("worker", "--clock", "event", "--no-notifier", "--data-dir", str(workdir / app_id)),
        env,
        worker_log,
    )
    if not _wait_ready(worker_log, processes):
        _say(f"the worker did not start; last lines of {worker_log}:")
        print(tail(worker_log, 20), file=sys.stderr)
        raise _StepFailed(1)
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    _say(f"worker ready (log: {worker_log}); metrics on {metrics_url}")
    if settings.web_port:
        _say(
            f"dispatch board on {settings.web_base_url()}/ ; ask with `holdwatch status CCN` or "
            f"`holdwatch check BN --broker CODE` (HOLDWATCH_WEB_PORT={settings.web_port})"
        )


def _start_notifier(processes: Processes, env: dict[str, str], settings: Settings) -> None:
    notifier_env = {**env, "HOLDWATCH_METRICS_PORT": "0"}
    # The demo's traffic is a replay (its own app id): shown on purpose, unlike history in production.
    command = _holdwatch("notifier", "--include-replayed", "--loglevel", "warning")
    processes.start("notifier", command, notifier_env)
    sink = "Slack" if settings.slack_token else "the console"
    _say(f"notifier started: alerts go to {sink}")


def _replay(log: Path, speed: str, env: dict[str, str]) -> None:
    replay = subprocess.run(_holdwatch("replay", str(log), "--speed", speed), env=env, check=False)
    if replay.returncode != 0:
        _say("replay failed")
        raise _StepFailed(1)


def _keep_running(processes: Processes) -> None:
    """Until Ctrl-C, or until a child exits (then say which)."""
    _say("still running: Ctrl-C stops everything")
    while processes.check() is None:
        time.sleep(1)
    _say(processes.check() or "")


def _wait_ready(log: Path, processes: Processes, timeout_s: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if processes.check() is not None:
            return False
        if log.exists() and b"Worker]: Ready" in log.read_bytes():
            return True
        time.sleep(0.5)
    return False


def _summarise(settings: Settings, env: dict[str, str], processes: Processes, settle_s: float = 8.0) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from schemas.alerts import AlertEvent
    from streams.kafka.config import kafka_python_config

    config = kafka_python_config(settings)
    consumer = KafkaConsumer(enable_auto_commit=False, **config)
    try:
        partitions = consumer.partitions_for_topic(settings.topic_alerts) or set()
        tps = [TopicPartition(settings.topic_alerts, p) for p in partitions]
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < settle_s:
            problem = processes.check()
            if problem:
                _say(problem)
                break
            time.sleep(1.0)
            count = sum(consumer.end_offsets(tps).values())
            if count != last:
                last, stable_since = count, time.monotonic()
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        actions: Counter[str] = Counter()
        rules: Counter[str] = Counter()
        app_id = env["HOLDWATCH_APP_ID"]
        seen = 0
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                for record in batch:
                    alert = AlertEvent.model_validate_json(record.value)
                    seen += 1
                    actions[alert.action] += 1
                    if alert.action == "raised":
                        rules.update(alert.reasons)
        print(f"\nholdwatch demo summary (app {app_id}): {seen:,} alert events on {settings.topic_alerts}")
        print("  alert events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(actions.items())))
        print("  raised, by reason: " + ", ".join(f"{k} {v:,}" for k, v in rules.most_common()))
    finally:
        consumer.close()
