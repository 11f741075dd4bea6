"""The live pipeline worker: the Faust topology (agents, topics, tables, timers) and the small
Faust-free classes it wires — `processor` (one partition's records → the engine runner),
`aligner` (log order across topics), `batcher` (write-behind and ack-after-write), `tables`
(changelog-backed views), `telemetry` (the worker's Prometheus families), `web` (the status API,
Faust-free) and `webserver` (its pages on Faust's web server) with the board in `board/`;
`recovery` is Faust glue too: the end of table recovery reordered so no input record is dropped.

May import `schemas`, `alerting.engine`, `streams.kafka`, `streams.settings`, `streams.feeds` (reference
files for the status API), and `streams.notifier`
(`app` runs the notifier in-process unless `--no-notifier`; `telemetry` shares its latency buckets);
`app` and `recovery` alone import Faust.
"""
