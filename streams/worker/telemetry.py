"""The worker's Prometheus families (the live pipeline), on an injected registry.

The notifier's families (Slack, delivery and end-to-end latency) live in
`streams.notifier.telemetry`: a worker registers them too only when it runs its notifier.
Names follow Prometheus conventions (unit suffixes, `_total` counters); no label carries a
per-load value. Replayed traffic (records stamped by `holdwatch replay`) is labelled
`traffic="replay"`, so history never pollutes live latency.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerting.engine.explain import EXPLAINERS
from schemas.carm import CarmSnapshot
from schemas.decode import DeadLetterReason
from schemas.emanifest import EManifestEvent
from schemas.ports import PORTS
from schemas.rns import RnsEvent
from streams.kafka.topics import control_topic
from streams.notifier.telemetry import LATENCY_BUCKETS, TRAFFIC
from streams.settings import Settings

LEAD_TIME_BUCKETS = (0.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
"""Seconds between an alert being raised and the load's ETA: 15 min ... 8 h."""

RAISED_SEVERITIES = ("warning", "critical")


def _tag(model: Any) -> str:
    """A model's `event_type` literal."""
    tag: str = get_args(model.model_fields["event_type"].annotation)[0]
    return tag


def _tags(annotated_union: Any) -> tuple[str, ...]:
    """The `event_type` tags of an `Annotated[A | B | ..., discriminator]` (or of one model)."""
    union = get_args(annotated_union)[0]
    return tuple(_tag(model) for model in (get_args(union) or (union,)))


CONSUMED = {
    "emanifest": _tags(EManifestEvent),
    "rns": _tags(RnsEvent),
    # CARM snapshots reach each shipment partition through its control topic (the `carm` agent's
    # broadcast); a tombstone has no body (`alerting.engine.ingest`).
    "control": (_tag(CarmSnapshot), "carm_tombstone"),
}
"""`holdwatch_events_consumed_total`'s (topic role, event type) pairs (`alerting.engine.ingest`)."""
RULES = tuple(sorted(EXPLAINERS))
"""Every rule code (each one has its sentence in `alerting.engine.explain`)."""


def lag_topics(settings: Settings) -> tuple[str, ...]:
    """The topics whose lag the worker reports from the start: its inputs and its control topic."""
    return (settings.topic_emanifest, settings.topic_rns, settings.topic_carm, control_topic(settings))


def port_label(port: str | None) -> str:
    """A bounded label: the known CBSA ports, else `other` (no per-load values in labels)."""
    return port if port in PORTS else "other"


WEB_ROUTES = ("load", "loads", "local_loads", "readiness", "healthz", "readyz", "board", "asset")
"""The status API's and board's routes (streams/worker/webserver.py), the `route` label."""


class WebMetrics:
    """Requests per route and status, and their latency; every route's series exist from the start."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "holdwatch_http_requests", "Status API and board requests", ["route", "code"], registry=registry
        )
        self.latency = Histogram(
            "holdwatch_http_request_seconds",
            "Time to answer a status API or board request",
            ["route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        for route in WEB_ROUTES:
            self.latency.labels(route)
            for code in ("200", "400", "401", "404", "503"):
                self.requests.labels(route, code)

    def observe(self, route: str, status: int, started: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)


class WorkerMetrics:
    """What the live pipeline reports. Every series a dashboard or rule can query exists at 0 from
    the start: labelled families for each of their known values (ports, rules, event types, the
    consumed topics given as `topics`)."""

    def __init__(self, registry: CollectorRegistry, *, topics: Iterable[str] = ()) -> None:
        """`topics`: the consumed topics (`lag_topics(settings)`), whose lag exists at 0 from the start."""
        self.registry = registry
        self.web = WebMetrics(registry)
        self.events_consumed = Counter(
            "holdwatch_events_consumed_total",
            "Input records consumed, by source topic role and event type",
            ["topic", "event_type"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "holdwatch_dead_letters_total",
            "Records sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.alert_events = Counter(
            "holdwatch_alert_events_total",
            "Alert events published, by action, severity and port",
            ["action", "severity", "port"],
            registry=registry,
        )
        self.alert_rules = Counter(
            "holdwatch_alert_rule_events_total",
            "Active rules carried by published alert events",
            ["rule", "severity"],
            registry=registry,
        )
        self.open_alerts = Gauge(
            "holdwatch_open_alerts",
            "Open alert lifecycles in this worker's partitions, by port and severity",
            ["port", "severity"],
            registry=registry,
        )
        self.alert_lead_time = Histogram(
            "holdwatch_alert_lead_time_seconds",
            "When an alert is raised: seconds left until the load's ETA (how early dispatch hears)",
            ["severity", "traffic"],
            buckets=LEAD_TIME_BUCKETS,
            registry=registry,
        )
        self.event_to_alert = Histogram(
            "holdwatch_event_to_alert_seconds",
            "From the triggering record's event time (occurred_at) to its alert event being sent",
            ["traffic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.kafka_to_alert = Histogram(
            "holdwatch_kafka_to_alert_seconds",
            "From the triggering record's Kafka timestamp to its alert event being sent",
            ["traffic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "holdwatch_consumer_lag_records",
            "Records behind the end of each input topic",
            ["topic"],
            registry=registry,
        )
        self.last_input = Gauge(
            "holdwatch_last_input_timestamp_seconds",
            "Wall time of the last input record consumed",
            registry=registry,
        )
        self.input_gaps = Counter(
            "holdwatch_input_offset_gaps_total",
            "Input offsets skipped between two records the pipeline received from one partition: "
            "records never delivered (0 unless records are lost, or a transactional producer "
            "writes the topic: its commit markers take offsets)",
            ["topic"],
            registry=registry,
        )
        self.shipments = Gauge(
            "holdwatch_shipments_in_state", "Shipments held in this worker's tables", registry=registry
        )
        self.importers = Gauge(
            "holdwatch_importers_in_state", "Importer CARM records known to this worker", registry=registry
        )
        self.pending_deadlines = Gauge(
            "holdwatch_pending_deadlines",
            "Deadlines scheduled in this worker's partitions",
            registry=registry,
        )
        self.held_for_order = Gauge(
            "holdwatch_records_held_for_order",
            "Replayed records waiting for the other topic (log order)",
            registry=registry,
        )

        # Series exist at 0 from the start, so that rate() sees the first increment of a burst.
        for reason in DeadLetterReason:
            self.dead_letters.labels(str(reason))
        for traffic in TRAFFIC:
            self.event_to_alert.labels(traffic)
            self.kafka_to_alert.labels(traffic)
            for severity in RAISED_SEVERITIES:
                self.alert_lead_time.labels(severity, traffic)
        for action in ("raised", "updated", "resolved"):
            for severity in RAISED_SEVERITIES if action != "resolved" else ("none",):
                self.alert_events.labels(action, severity, "other")
        for role in (*CONSUMED, "carm"):
            self.input_gaps.labels(role)
        for source, event_types in CONSUMED.items():
            for event_type in event_types:
                self.events_consumed.labels(source, event_type)
        for rule in RULES:
            for severity in RAISED_SEVERITIES:
                self.alert_rules.labels(rule, severity)
        self._open_keys: set[tuple[str, str]] = {
            (port, severity) for port in (*sorted(PORTS), "other") for severity in RAISED_SEVERITIES
        }
        for key in self._open_keys:
            self.open_alerts.labels(*key).set(0)
        for topic in topics:
            self.consumer_lag.labels(topic).set(0)

    def set_open_alerts(self, counts: dict[tuple[str, str], int]) -> None:
        """Replace the open-alert gauge with fresh counts by (port, severity)."""
        for key in self._open_keys - counts.keys():
            self.open_alerts.labels(*key).set(0)
        for key, value in counts.items():
            self.open_alerts.labels(*key).set(value)
        self._open_keys |= counts.keys()
