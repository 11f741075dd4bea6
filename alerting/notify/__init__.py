"""Slack notifier: routing, Block Kit rendering, exactly-once delivery, storm digests, console sink.

No Kafka and no Prometheus here: the shell (streams/notifier.py) feeds alert events in, stores the
ledger durably and wires metrics through the `NotifyMetrics` protocol.
"""
