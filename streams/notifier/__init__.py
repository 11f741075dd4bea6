"""The notifier service: consumes the alert topic, drives `alerting.notify` (the delivery stages)
and keeps its ledger on a compacted Kafka topic; `telemetry` holds its own Prometheus families.

May import `schemas`, `alerting.notify`, `streams.kafka`, `streams.settings`, and `streams.feeds`
(the reference files: CBSA offices, the broker directory).
"""
