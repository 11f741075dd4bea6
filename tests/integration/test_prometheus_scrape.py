"""A real Prometheus (Debian's `prometheus` package) scrapes holdwatch metrics, loads our rules,
and every query of both Grafana dashboards returns data.

By default the targets are two small HTTP servers, one per process — the worker's registry
(`WorkerMetrics`) and a standalone notifier's (`NotifierMetrics`) — that a thread keeps feeding
with sample observations (every metric, every label the panels use). To check a
real pipeline instead, e.g. during a replay, point the jobs at it:

    HOLDWATCH_SCRAPE_WORKER=127.0.0.1:9108 HOLDWATCH_SCRAPE_NOTIFIER=127.0.0.1:9109 \\
        .venv/bin/pytest tests/integration/test_prometheus_scrape.py

A replay produces only traffic="replay", so with an external target the live-latency queries
(and the SLO recording rules built on them) are reported but not required to return data.

`test_dashboards_on_a_real_worker_during_a_replay` does that on its own: a real worker (test
broker) replaying a simulated log, scraped by a real Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from streams.notifier.telemetry import NotifierMetrics
from streams.worker.telemetry import WEB_ROUTES, WorkerMetrics
from tests.unit.test_deploy_static import DASHBOARDS, RULES_FILE, load_dashboard, panel_queries, selectors

SCRAPE_INTERVAL_S = 1
READY_TIMEOUT_S = 30.0
DATA_TIMEOUT_S = 40.0
REPLAY_SPEED = 2000  # x real time
REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = (
    "the prometheus server is not on PATH. Install it: "
    "apt-get update && apt-get install -y --no-install-recommends prometheus (`make install` does it)"
)


# --- the sample target -----------------------------------------------------------------------------


def feed(metrics: WorkerMetrics, notifier: NotifierMetrics, step: int) -> None:
    """One round of plausible observations; called repeatedly so every rate is above zero."""
    notifier.permanent_error("channel_not_found")
    notifier.storm_grouped()
    notifier.duplicate_dropped()
    for topic, event_type in (
        ("emanifest", "cargo_reported"),
        ("rns", "rns_message"),
        ("carm", "carm_snapshot"),
    ):
        metrics.events_consumed.labels(topic, event_type).inc(5)
    metrics.dead_letters.labels("not_json").inc()
    metrics.dead_letters.labels("internal_error").inc(step % 2)
    metrics.alert_events.labels("raised", "warning", "0453").inc()
    metrics.alert_events.labels("updated", "critical", "0453").inc()
    metrics.alert_events.labels("resolved", "none", "0410").inc()
    metrics.alert_rules.labels("PARS_NOT_MATCHED", "warning").inc()
    metrics.alert_rules.labels("EMANIFEST_NOT_ACCEPTED", "critical").inc()
    metrics.set_open_alerts({("0453", "warning"): 3 + step % 4, ("0410", "critical"): 1})
    for traffic in ("live", "replay"):
        metrics.alert_lead_time.labels("warning", traffic).observe(3600 + 600 * (step % 5))
    for traffic in ("live", "replay"):
        for seconds in (0.08, 0.4, 0.9, 1.5):
            metrics.event_to_alert.labels(traffic).observe(seconds * 30)
            metrics.kafka_to_alert.labels(traffic).observe(seconds)
            notifier.delivery_latency(seconds * 4, traffic)
            notifier.end_to_end(seconds * 20, traffic)
    notifier.slack_calls.labels("chat.postMessage", "ok").inc(3)
    notifier.slack_calls.labels("chat.update", "ok").inc()
    notifier.slack_calls.labels("chat.postMessage", "transient").inc(step % 2)
    notifier.rate_limited()
    notifier.retried()
    notifier.pending(step % 3)
    for topic, lag in (("emanifest", 40), ("rns", 12), ("carm", 0)):
        metrics.consumer_lag.labels(topic).set(lag + step % 5)
    metrics.last_input.set_to_current_time()
    metrics.shipments.set(120 + step)
    metrics.importers.set(40)
    metrics.pending_deadlines.set(200 + step)
    metrics.held_for_order.set(step % 3)
    for route in WEB_ROUTES:  # the status API and board: every route asked once per round
        metrics.web.observe(route, 200, time.perf_counter() - 0.004 * (1 + step % 3))


@contextlib.contextmanager
def sample_targets() -> Iterator[tuple[str, str]]:
    """host:port of a worker's and of a standalone notifier's registry (`worker --no-notifier`
    and `notifier`, as docker-compose runs them), both kept changing."""
    worker_registry, notifier_registry = CollectorRegistry(), CollectorRegistry()
    metrics = WorkerMetrics(worker_registry)
    notifier = NotifierMetrics(notifier_registry)
    servers = [
        start_http_server(0, addr="127.0.0.1", registry=registry)
        for registry in (worker_registry, notifier_registry)
    ]
    stop = threading.Event()

    def keep_feeding() -> None:
        step = 0
        while not stop.is_set():
            feed(metrics, notifier, step)
            step += 1
            stop.wait(0.2)

    feeder = threading.Thread(target=keep_feeding, name="metrics-feeder", daemon=True)
    feeder.start()
    try:
        worker, notifier_target = (f"127.0.0.1:{server.server_port}" for server, _ in servers)
        yield worker, notifier_target
    finally:
        stop.set()
        feeder.join(timeout=5)
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


# --- the Prometheus server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Prometheus:
    url: str
    external: bool
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.load(response)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


def scrape_config(worker: str, notifier: str) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {"job_name": "holdwatch-worker", "static_configs": [{"targets": [worker]}]},
            {"job_name": "holdwatch-notifier", "static_configs": [{"targets": [notifier]}]},
        ],
    }


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"prometheus exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"prometheus not ready after {READY_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def running_prometheus(workdir: Path, *, worker: str, notifier: str, external: bool) -> Iterator[Prometheus]:
    """A Prometheus server on a free port scraping the two jobs every second; always stopped."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(INSTALL_HINT)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(worker, notifier)), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(process, url, log)
        yield Prometheus(url, external=external, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    worker = os.environ.get("HOLDWATCH_SCRAPE_WORKER", "").strip()
    notifier = os.environ.get("HOLDWATCH_SCRAPE_NOTIFIER", "").strip()
    with contextlib.ExitStack() as stack:
        if not worker or not notifier:
            sample_worker, sample_notifier = stack.enter_context(sample_targets())
            worker, notifier = worker or sample_worker, notifier or sample_notifier
        external = bool(os.environ.get("HOLDWATCH_SCRAPE_WORKER"))
        yield stack.enter_context(
            running_prometheus(workdir, worker=worker, notifier=notifier, external=external)
        )


# --- the checks --------------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {title}", expr)
        for path in DASHBOARDS
        for title, expr in panel_queries(load_dashboard(path))
    ]


def live_only(expr: str) -> bool:
    return 'traffic="live"' in expr or "holdwatch:slo_errors:" in expr


def needs_a_dispatcher(expr: str) -> bool:
    """Quantiles of what only a dispatcher's click produces (time to acknowledge): NaN until someone
    acknowledges, which nobody does here; the family's series exist from the start (test_deploy_static)."""
    return "holdwatch_slack_time_to_acknowledge_seconds" in expr


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_both_jobs_are_scraped(prometheus: Prometheus) -> None:
    deadline = time.monotonic() + DATA_TIMEOUT_S
    up: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        up = prometheus.query('up{job=~"holdwatch-.*"} == 1')
        if len(up) == 2:
            break
        time.sleep(SCRAPE_INTERVAL_S)
    assert sorted(series["metric"]["job"] for series in up) == ["holdwatch-notifier", "holdwatch-worker"]


def test_our_rules_load_and_evaluate(prometheus: Prometheus) -> None:
    groups = prometheus.get("/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    expected = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    names = {rule.get("alert") or rule.get("record") for group in expected for rule in group["rules"]}
    assert loaded == names
    time.sleep(3 * SCRAPE_INTERVAL_S)
    groups = prometheus.get("/api/v1/rules")["data"]["groups"]
    broken = {
        rule["name"]: rule.get("lastError")
        for group in groups
        for rule in group["rules"]
        if rule["health"] == "err"
    }
    assert broken == {}


def panels_without_data(
    prometheus: Prometheus,
    queries: list[tuple[str, str]],
    *,
    optional: Callable[[str], bool],
    timeout_s: float = DATA_TIMEOUT_S,
) -> dict[str, Any]:
    """Poll until every required query has shown a finite value once (or time runs out); return
    the required ones that never did. Optional queries still without data are printed."""
    pending = dict(enumerate(queries))
    answers: dict[int, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for index, (_, expr) in list(pending.items()):
            answers[index] = prometheus.query(expr)
            if has_finite_value(answers[index]):
                del pending[index]
        required = [index for index, (_, expr) in pending.items() if not optional(expr)]
        if not required or time.monotonic() > deadline:
            break
        time.sleep(SCRAPE_INTERVAL_S)
    for index, (where, expr) in list(pending.items()):
        if optional(expr):
            print(f"no data, accepted: {where}")
            del pending[index]
    return {where: {"expr": expr, "answer": answers.get(index)} for index, (where, expr) in pending.items()}


def test_every_dashboard_query_returns_data(prometheus: Prometheus) -> None:
    queries = dashboard_queries()
    assert len(queries) > 20
    missing = panels_without_data(
        prometheus,
        queries,
        optional=lambda expr: needs_a_dispatcher(expr) or (prometheus.external and live_only(expr)),
    )
    assert missing == {}, f"panels without data after {DATA_TIMEOUT_S} s (prometheus log: {prometheus.log})"


def test_a_query_for_a_missing_metric_returns_nothing(prometheus: Prometheus) -> None:
    """The data check above must be able to fail: an unknown series gives an empty answer."""
    assert prometheus.query("sum(rate(holdwatch_no_such_metric_total[1m]))") == []
    assert not has_finite_value(prometheus.query("holdwatch_no_such_gauge"))


# --- a real pipeline during a replay -----------------------------------------------------------------

NOTIFIER_ONLY = ("holdwatch_slack_", "holdwatch_alert_to_slack_", "holdwatch_end_to_end_")


def api_only(expr: str) -> bool:
    """Status API panels: a replay run asks the API nothing (the harness turns it off)."""
    return "holdwatch_http_" in expr


def notifier_only(expr: str) -> bool:
    names = [name for name, _ in selectors(expr)]
    return bool(names) and all(name.startswith(NOTIFIER_ONLY) for name in names)


def scalar(prometheus: Prometheus, expr: str) -> float:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def test_dashboards_on_a_real_worker_during_a_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`holdwatch worker --clock event` replaying a simulated log, scraped by Prometheus: every panel
    fed by the worker has data; live latency stays empty (replayed traffic is kept apart) and the
    Slack panels need a notifier, which this test does not run."""
    from tests.integration.pipeline_harness import HOLDWATCH, Namespace, stop

    ns = Namespace(kafka_bootstrap, tmp_path)
    created = ns.run("topics", "create")
    assert created.returncode == 0, created.stderr
    log = tmp_path / "history.jsonl"
    simulated = ns.run(
        "simulate",
        "--loads",
        "300",
        "--seed",
        "5",
        "--hours",
        "6",
        "--malformed-rate",
        "0.01",
        "--out",
        str(log),
    )
    assert simulated.returncode == 0, simulated.stderr
    metrics_port = free_port()
    ns.env["HOLDWATCH_METRICS_PORT"] = str(metrics_port)
    nobody = f"127.0.0.1:{free_port()}"  # the notifier job: nothing listens there
    with (
        running_prometheus(
            tmp_path / "prometheus", worker=f"127.0.0.1:{metrics_port}", notifier=nobody, external=True
        ) as prometheus,
        ns.worker("w1", "--metrics-addr", "127.0.0.1"),
    ):
        ns.wait_ready()
        # Paced (about 12 s for the 6 simulated hours) so that Prometheus sees the counters grow
        # over several scrapes; the panels are checked while the replay runs.
        with (tmp_path / "replay.log").open("wb") as replay_log:
            replay = subprocess.Popen(
                [*HOLDWATCH, "replay", "--speed", str(REPLAY_SPEED), str(log)],
                env=ns.env, cwd=REPO, stdout=replay_log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            missing = panels_without_data(
                prometheus,
                dashboard_queries(),
                optional=lambda expr: (
                    live_only(expr) or notifier_only(expr) or api_only(expr) or needs_a_dispatcher(expr)
                ),
                timeout_s=120,
            )
            assert replay.wait(timeout=300) == 0, (tmp_path / "replay.log").read_text(errors="replace")
        finally:
            stop(replay)
        replayed = scalar(prometheus, 'sum(holdwatch_kafka_to_alert_seconds_count{traffic="replay"})')
        live = scalar(prometheus, 'sum(holdwatch_kafka_to_alert_seconds_count{traffic="live"})')
        live_events = scalar(prometheus, 'sum(holdwatch_event_to_alert_seconds_count{traffic="live"})')
    assert missing == {}, ns.log_tail()
    assert replayed > 0
    assert live == 0, "replayed records were counted as live traffic"
    # Replayed CARM changes keep their hw-seq through the broadcast: nothing replayed counts as live.
    assert live_events == 0, f"{live_events:.0f} replayed alert events counted as live"
