"""Prometheus metrics of the pipeline and the notifier, on an injected registry.

Names follow Prometheus conventions (unit suffixes, `_total` counters); no label
carries a per-load value. Replayed traffic (records stamped by `holdwatch replay`)
is labelled `traffic="replay"`, so history never pollutes live latency.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.decode import DeadLetterReason
from schemas.ports import PORTS

LEAD_TIME_BUCKETS = (0.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
"""Seconds between an alert being raised and the load's ETA: 15 min ... 8 h."""


def port_label(port: str | None) -> str:
    """A bounded label: the known CBSA ports, else `other` (no per-load values in labels)."""
    return port if port in PORTS else "other"


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
"""Seconds. SLO thresholds are among the boundaries: 1 s (pipeline), 10 s (Slack), 60 s (end to end)."""


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
        self.alert_to_slack = Histogram(
            "holdwatch_alert_to_slack_seconds",
            "From an alert event's Kafka timestamp to Slack acknowledging it",
            ["traffic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "holdwatch_end_to_end_seconds",
            "From the triggering record's Kafka timestamp to Slack acknowledging the alert",
            ["traffic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.slack_calls = Counter(
            "holdwatch_slack_calls_total",
            "Slack Web API calls, by method and outcome",
            ["method", "outcome"],
            registry=registry,
        )
        self.slack_rate_limited = Counter(
            "holdwatch_slack_rate_limited_total",
            "Slack answers 429 (Retry-After honoured)",
            registry=registry,
        )
        self.slack_retries = Counter(
            "holdwatch_slack_retries_total",
            "Slack calls retried after 5xx or a dropped connection",
            registry=registry,
        )
        self.slack_pending = Gauge(
            "holdwatch_slack_pending_alerts", "Alert events not yet delivered to Slack", registry=registry
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
        for traffic in ("live", "replay"):
            for histogram in (self.event_to_alert, self.kafka_to_alert, self.alert_to_slack, self.end_to_end):
                histogram.labels(traffic)
        for action in ("raised", "updated", "resolved"):
            for severity in ("warning", "critical") if action != "resolved" else ("none",):
                self.alert_events.labels(action, severity, "other")
        self._open_keys: set[tuple[str, str]] = set()

    def set_open_alerts(self, counts: dict[tuple[str, str], int]) -> None:
        """Replace the open-alert gauge with fresh counts by (port, severity)."""
        for key in self._open_keys - counts.keys():
            self.open_alerts.labels(*key).set(0)
        for key, value in counts.items():
            self.open_alerts.labels(*key).set(value)
        self._open_keys |= counts.keys()


class NotifierPrometheus:
    """The notifier's `NotifyMetrics` protocol (alerting/notify/metrics.py) on PipelineMetrics."""

    def __init__(self, metrics: PipelineMetrics) -> None:
        self._m = metrics
        self._permanent = Counter(
            "holdwatch_slack_permanent_errors_total",
            "Slack answers that need a configuration fix (the alert stays pending)",
            ["error"],
            registry=metrics.registry,
        )
        self._dropped = Counter(
            "holdwatch_slack_duplicates_dropped_total",
            "Alert events already delivered (same event_id or an older step), dropped",
            registry=metrics.registry,
        )
        self._grouped = Counter(
            "holdwatch_slack_storm_grouped_total",
            "Alerts folded into a storm digest instead of their own message",
            registry=metrics.registry,
        )

    def slack_call(self, method: str, outcome: str) -> None:
        self._m.slack_calls.labels(method, outcome).inc()

    def rate_limited(self) -> None:
        self._m.slack_rate_limited.inc()

    def retried(self) -> None:
        self._m.slack_retries.inc()

    def delivery_latency(self, seconds: float, traffic: str = "live") -> None:
        self._m.alert_to_slack.labels(traffic).observe(max(0.0, seconds))

    def end_to_end(self, seconds: float, traffic: str) -> None:
        self._m.end_to_end.labels(traffic).observe(max(0.0, seconds))

    def permanent_error(self, error: str) -> None:
        self._permanent.labels(error).inc()

    def duplicate_dropped(self) -> None:
        self._dropped.inc()

    def storm_grouped(self) -> None:
        self._grouped.inc()

    def pending(self, count: int) -> None:
        self._m.slack_pending.set(count)
