"""Metrics per process: a standalone notifier serves only the notifier's families, a worker only
its own unless it runs its notifier, and the notifier's `NotifyMetrics` adapter moves the series
the dashboards read."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerting.notify.gateway import CALL_OUTCOMES, PERMANENT_ERRORS, SLACK_METHODS
from alerting.notify.metrics import NotifyMetrics
from schemas.ports import PORTS
from streams.kafka.topics import control_topic
from streams.notifier.telemetry import NotifierMetrics
from streams.settings import Settings
from streams.worker.telemetry import CONSUMED, RULES, WorkerMetrics, lag_topics

NOTIFIER_FAMILY_PREFIXES = ("holdwatch_slack_", "holdwatch_alert_to_slack_", "holdwatch_end_to_end_")


def family_names(registry: CollectorRegistry) -> set[str]:
    return {metric.name for metric in registry.collect()}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


def worker_families() -> set[str]:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    return family_names(registry)


def notifier_families() -> set[str]:
    registry = CollectorRegistry()
    NotifierMetrics(registry)
    return family_names(registry)


def test_the_two_family_sets_are_disjoint_and_named_by_their_process() -> None:
    worker, notifier = worker_families(), notifier_families()
    assert len(worker) >= 10 and len(notifier) >= 8
    assert worker & notifier == set()
    assert all(name.startswith(NOTIFIER_FAMILY_PREFIXES) for name in notifier)
    assert not any(name.startswith(NOTIFIER_FAMILY_PREFIXES) for name in worker)


def test_a_standalone_notifier_serves_only_the_notifier_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """`holdwatch notifier` with a metrics port: the registry it serves, caught at start_http_server."""
    import prometheus_client

    import streams.notifier.service
    from streams.cli.notifier import _main

    served: list[CollectorRegistry] = []
    handed: list[Any] = []

    def fake_server(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None) -> None:
        assert registry is not None
        served.append(registry)

    async def fake_run_notifier(settings: Settings, **kwargs: Any) -> None:
        handed.append(kwargs["metrics"])

    monkeypatch.setattr(prometheus_client, "start_http_server", fake_server)
    monkeypatch.setattr(streams.notifier.service, "run_notifier", fake_run_notifier)
    asyncio.run(_main(Settings(metrics_port=9108), None))
    (registry,) = served
    assert family_names(registry) == notifier_families()
    (metrics,) = handed
    assert isinstance(metrics, NotifierMetrics) and metrics.registry is registry


@pytest.mark.parametrize("with_notifier", [False, True])
def test_the_worker_serves_its_families_and_the_notifiers_only_when_it_runs_it(
    with_notifier: bool, tmp_path: Path
) -> None:
    from streams.worker.app import build_app

    registry = CollectorRegistry()
    build_app(
        Settings(kafka_bootstrap="127.0.0.1:1", home=tmp_path),
        clock="event",
        data_dir=tmp_path,
        store="memory",
        registry=registry,
        with_notifier=with_notifier,
    )
    expected = worker_families() | (notifier_families() if with_notifier else set())
    assert family_names(registry) == expected


def test_series_with_labels_known_in_advance_exist_at_zero() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    NotifierMetrics(registry)
    for traffic in ("live", "replay"):
        for name in ("event_to_alert", "kafka_to_alert", "alert_to_slack", "end_to_end"):
            assert value(registry, f"holdwatch_{name}_seconds_count", traffic=traffic) == 0
        for severity in ("warning", "critical"):
            labels = {"severity": severity, "traffic": traffic}
            assert value(registry, "holdwatch_alert_lead_time_seconds_count", **labels) == 0
    for error in PERMANENT_ERRORS:
        assert value(registry, "holdwatch_slack_permanent_errors_total", error=error) == 0
    assert value(registry, "holdwatch_dead_letters_total", reason="internal_error") == 0
    assert (
        value(registry, "holdwatch_alert_events_total", action="raised", severity="critical", port="other")
        == 0
    )
    for method in SLACK_METHODS:
        for outcome in CALL_OUTCOMES:
            assert value(registry, "holdwatch_slack_calls_total", method=method, outcome=outcome) == 0
    assert {"ok", "rate_limited", "transient", "permanent", "gone", "content"} == set(CALL_OUTCOMES)
    consumed = (("emanifest", "cargo_reported"), ("rns", "rns_status"), ("control", "carm_tombstone"))
    for topic, event_type in consumed:
        assert value(registry, "holdwatch_events_consumed_total", topic=topic, event_type=event_type) == 0
    assert len(RULES) >= 15 and "PARS_NOT_MATCHED" in RULES
    for rule in RULES:
        for severity in ("warning", "critical"):
            assert value(registry, "holdwatch_alert_rule_events_total", rule=rule, severity=severity) == 0
    for port in (*PORTS, "other"):
        assert value(registry, "holdwatch_open_alerts", port=port, severity="critical") == 0
    for unlabelled in (
        "holdwatch_slack_rate_limited_total",
        "holdwatch_slack_retries_total",
        "holdwatch_slack_duplicates_dropped_total",
        "holdwatch_slack_storm_grouped_total",
        "holdwatch_slack_pending_alerts",
    ):
        assert value(registry, unlabelled) == 0


def test_the_adapter_moves_the_series_of_each_protocol_call() -> None:
    registry = CollectorRegistry()
    metrics: NotifyMetrics = NotifierMetrics(registry)
    metrics.slack_call("chat.postMessage", "ok")
    metrics.rate_limited()
    metrics.retried()
    metrics.delivery_latency(2.0)
    metrics.delivery_latency(-1.0, "replay")  # clock skew: clamped to 0, never negative
    metrics.end_to_end(30.0, "live")
    metrics.permanent_error("channel_not_found")
    metrics.duplicate_dropped()
    metrics.storm_grouped()
    metrics.pending(4)
    assert value(registry, "holdwatch_slack_calls_total", method="chat.postMessage", outcome="ok") == 1
    assert value(registry, "holdwatch_slack_rate_limited_total") == 1
    assert value(registry, "holdwatch_slack_retries_total") == 1
    assert value(registry, "holdwatch_alert_to_slack_seconds_sum", traffic="live") == 2.0
    assert value(registry, "holdwatch_alert_to_slack_seconds_count", traffic="replay") == 1
    assert value(registry, "holdwatch_alert_to_slack_seconds_sum", traffic="replay") == 0.0
    assert value(registry, "holdwatch_end_to_end_seconds_bucket", traffic="live", le="60.0") == 1
    assert value(registry, "holdwatch_end_to_end_seconds_bucket", traffic="live", le="10.0") == 0
    assert value(registry, "holdwatch_slack_permanent_errors_total", error="channel_not_found") == 1
    assert value(registry, "holdwatch_slack_duplicates_dropped_total") == 1
    assert value(registry, "holdwatch_slack_storm_grouped_total") == 1
    assert value(registry, "holdwatch_slack_pending_alerts") == 4


def test_the_label_values_cover_what_the_code_observes() -> None:
    """The pre-initialised values are the ones observed: every Slack method the executor counts,
    every event type a source topic carries."""
    executor = (Path(__file__).parents[2] / "alerting" / "notify" / "executor.py").read_text()
    used = set(re.findall(r'"((?:chat|conversations)\.[a-zA-Z]+)"', executor))
    assert used and used <= set(SLACK_METHODS)
    assert set(CONSUMED["emanifest"]) == {
        "cargo_reported", "cargo_accepted", "cargo_rejected", "eta_updated", "notice", "cancelled"
    }  # fmt: skip
    assert CONSUMED["control"] == ("carm_snapshot", "carm_tombstone")


def test_the_consumed_topics_lag_exists_at_zero_when_given() -> None:
    settings = Settings(topic_emanifest="x.emanifest")
    assert lag_topics(settings) == ("x.emanifest", "rns.events", "carm.readiness", control_topic(settings))
    registry = CollectorRegistry()
    WorkerMetrics(registry, topics=lag_topics(settings))
    for topic in lag_topics(settings):
        assert value(registry, "holdwatch_consumer_lag_records", topic=topic) == 0
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.set_open_alerts({("0453", "warning"): 2})
    metrics.set_open_alerts({})
    assert value(metrics.registry, "holdwatch_open_alerts", port="0453", severity="warning") == 0


def test_a_built_worker_exports_its_topics_lag_from_the_start(tmp_path: Path) -> None:
    from streams.worker.app import build_app

    registry = CollectorRegistry()
    settings = Settings(kafka_bootstrap="127.0.0.1:1", home=tmp_path)
    build_app(settings, clock="event", data_dir=tmp_path, store="memory", registry=registry)
    for topic in lag_topics(settings):
        assert value(registry, "holdwatch_consumer_lag_records", topic=topic) == 0
