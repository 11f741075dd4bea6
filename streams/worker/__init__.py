"""The live pipeline worker: the Faust topology (agents, topics, tables, timers) and the small
Faust-free classes it wires — `processor` (one partition's records → the engine runner),
`aligner` (log order across topics), `batcher` (write-behind and ack-after-write), `tables`
(changelog-backed views) and `telemetry` (the worker's Prometheus families).

May import `schemas`, `alerting.engine`, `streams.kafka`, `streams.settings`, and `streams.notifier`
(`app` runs the notifier in-process unless `--no-notifier`; `telemetry` shares its latency buckets);
`app` alone imports Faust.
"""
