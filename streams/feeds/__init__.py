"""Real feeds in: the carrier's and its partners' data → holdwatch's input events on Kafka.

One module per feed, each a pure mapping (`*_map.py` or a mapping function: foreign record →
schemas events or a reason it cannot be used) and a thin shell that reads, publishes with an
idempotent producer and dead-letters what the mapping does not understand (docs/connectors.md):
the BorderConnect WebSocket connector, the carrier's ACI trip files, the CARM readiness
spreadsheet. May import `schemas`, `alerting.engine`, `streams.kafka`, `streams.settings`;
never the worker, the notifier, replay or the CLI.
"""
