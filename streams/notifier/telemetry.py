"""The notifier's Prometheus families, on an injected registry, behind `NotifyMetrics`.

A standalone `holdwatch notifier` registers these alone; a worker that runs its notifier
registers them beside the worker's (`streams.worker.telemetry`) on one registry. Names follow
Prometheus conventions (unit suffixes, `_total` counters); no label carries a per-load value.
Replayed traffic is labelled `traffic="replay"`, so history never pollutes live latency.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerting.notify.actions import ACTION_IDS, ACTION_OUTCOMES
from alerting.notify.gateway import CALL_OUTCOMES, PERMANENT_ERRORS, SLACK_METHODS

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
"""Seconds, for every latency histogram of both processes (the worker imports it from here).
SLO thresholds are among the boundaries: 1 s (pipeline), 10 s (Slack), 60 s (end to end)."""

ACK_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
"""Seconds from raised to acknowledged: the escalation default (10 min) is a boundary."""

TRAFFIC = ("live", "replay")
"""The `traffic` label's values: records stamped by `holdwatch replay` are `replay`."""


SKIP_REASONS = ("replayed",)
"""The `reason` label's values of `holdwatch_slack_skipped_total` (`alerting.notify.planner.skip_reason`)."""


class NotifierMetrics:
    """`alerting.notify.metrics.NotifyMetrics` as Prometheus families; every series a dashboard or
    rule can query exists at 0 from the start (labelled ones for each of their known values), so
    that rate() sees the first increment of a burst and no panel starts as "No data"."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.alert_to_slack = Histogram(
            "holdwatch_alert_to_slack_seconds",
            "From an alert event's Kafka timestamp to Slack acknowledging it",
            ["traffic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
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
        self.permanent_errors = Counter(
            "holdwatch_slack_permanent_errors_total",
            "Slack answers that need a configuration fix (the alert stays pending)",
            ["error"],
            registry=registry,
        )
        self.dropped_duplicates = Counter(
            "holdwatch_slack_duplicates_dropped_total",
            "Alert events already delivered (same event_id or an older step), dropped",
            registry=registry,
        )
        self.folded_into_storms = Counter(
            "holdwatch_slack_storm_grouped_total",
            "Alerts folded into a storm digest instead of their own message",
            registry=registry,
        )
        self.skipped_alerts = Counter(
            "holdwatch_slack_skipped_total",
            "Alert events never delivered, by reason (replayed: replayed traffic without opt-in)",
            ["reason"],
            registry=registry,
        )
        self._dispatch_families(registry)
        for reason in SKIP_REASONS:
            self.skipped_alerts.labels(reason)
        for traffic in TRAFFIC:
            self.alert_to_slack.labels(traffic)
            self.end_to_end_latency.labels(traffic)
        for error in sorted(PERMANENT_ERRORS):
            self.permanent_errors.labels(error)
        for method in SLACK_METHODS:
            for outcome in CALL_OUTCOMES:
                self.slack_calls.labels(method, outcome)

    def _dispatch_families(self, registry: CollectorRegistry) -> None:
        """Dispatch acting in Slack: actions, time to acknowledge, on-call pages, inbound requests."""
        self.actions = Counter(
            "holdwatch_slack_actions_total",
            "Dispatch actions in Slack (acknowledge, snooze, release), by outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.time_to_ack = Histogram(
            "holdwatch_slack_time_to_acknowledge_seconds",
            "From an alert lifecycle's first raise (event time) to a dispatcher acknowledging it",
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.pages = Counter(
            "holdwatch_slack_oncall_pages_total",
            "On-call escalations of critical alerts nobody acknowledged, by level (1, 2)",
            ["level"],
            registry=registry,
        )
        self.requests = Counter(
            "holdwatch_slack_interaction_requests_total",
            "Clicks and slash commands received, by transport and outcome (accepted or why refused)",
            ["transport", "kind", "outcome"],
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "holdwatch_slack_interaction_ack_seconds",
            "From receiving a click or command to acknowledging it to Slack (Slack allows 3 s)",
            ["transport"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
            registry=registry,
        )
        for kind in sorted(set(ACTION_IDS.values())):
            for outcome in ACTION_OUTCOMES:
                self.actions.labels(kind, outcome)
        for level in ("1", "2"):
            self.pages.labels(level)
        for transport in ("socket", "http"):
            self.ack_seconds.labels(transport)
            for delivered in ("interactive", "slash_commands"):
                self.requests.labels(transport, delivered, "accepted")

    def action(self, kind: str, outcome: str) -> None:
        self.actions.labels(kind, outcome).inc()

    def acknowledged_after(self, seconds: float) -> None:
        self.time_to_ack.observe(max(0.0, seconds))

    def paged(self, level: int) -> None:
        self.pages.labels(str(level)).inc()

    def request(self, transport: str, kind: str, outcome: str) -> None:
        """`streams.notifier.interactions.InteractionMetrics`."""
        self.requests.labels(transport, kind, outcome).inc()

    def ack_latency(self, transport: str, seconds: float) -> None:
        self.ack_seconds.labels(transport).observe(max(0.0, seconds))

    def slack_call(self, method: str, outcome: str) -> None:
        self.slack_calls.labels(method, outcome).inc()

    def rate_limited(self) -> None:
        self.slack_rate_limited.inc()

    def retried(self) -> None:
        self.slack_retries.inc()

    def delivery_latency(self, seconds: float, traffic: str = "live") -> None:
        self.alert_to_slack.labels(traffic).observe(max(0.0, seconds))

    def end_to_end(self, seconds: float, traffic: str) -> None:
        self.end_to_end_latency.labels(traffic).observe(max(0.0, seconds))

    def permanent_error(self, error: str) -> None:
        self.permanent_errors.labels(error).inc()

    def duplicate_dropped(self) -> None:
        self.dropped_duplicates.inc()

    def storm_grouped(self) -> None:
        self.folded_into_storms.inc()

    def skipped(self, reason: str) -> None:
        self.skipped_alerts.labels(reason).inc()

    def pending(self, count: int) -> None:
        self.slack_pending.set(count)
