"""The shell: everything that talks to Kafka, Faust, Prometheus or a person, around the pure core.

Rooms (each a package with its own rules):
- `streams.kafka`    client configuration (one factory), admin, topic specs;
- `streams.worker`   the Faust topology and the small classes it wires (partition processor,
                     aligner, write-behind batcher, tables, telemetry);
- `streams.notifier` the notifier service: alert topic → `alerting.notify` → Slack, ledger on Kafka;
- `streams.replay`   event logs → the input topics, in log order (plan: pure; publish: the shell);
- `streams.backtest` the batch back-test: event logs → the engine, in-process;
- `streams.settings` the one frozen settings object; `streams.cli` the console command and
                     composition root.
May import `schemas` and `alerting`; never `devtools` (only `streams.cli.main` may, to register the
developer commands and find the local broker).
"""
