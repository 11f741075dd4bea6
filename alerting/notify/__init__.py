"""Alert notifications (Slack, console), built as Alertmanager-style stages that compose.

- `planner`: pure; a lifecycle's ledger state + an incoming alert -> what to do (post, edit,
  owed thread replies, silent, join a storm digest, skip replayed traffic) and which Slack call
  is next. Time passed in.
- `scheduler`: per channel, which key is due when: pacing, 429 Retry-After, backoff for 5xx
  and drops, periodic retry after permanent errors, storm grouping (`storm.StormDetector`).
- `executor`: makes one call over the `gateway.SlackGateway` protocol (intent before a post,
  adopt a post found after an uncertain one), persists through the `ledger.Ledger`, measures.
- `delivery.Delivery`: the thin composition the shell drives (`accept`, `step`, `run`).
- `retention.Retention`: pure; the event-time clock (newest accepted `at`) and which resolved
  lifecycles are past `policy.ledger_retention` (the delivery core tombstones the finished ones).
- `clock.Clock`: the one injected source of monotonic and wall time (tests use `ManualClock`).
- Integrations behind the gateway: `slack` (slack_sdk) and `console`; `render`/`storm` build
  Block Kit messages; `routing` maps alerts to channels; `metrics` is the reporting protocol.

May import: the standard library, `schemas`, `alerting.engine.rules`, pydantic; slack_sdk and
aiohttp only in `slack.py`. Never Kafka, Faust or Prometheus: the shell (streams/notifier.py) feeds
alert events in, stores the ledger durably and maps `NotifyMetrics` to Prometheus.
"""
