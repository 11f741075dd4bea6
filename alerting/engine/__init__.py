"""The pure hold-risk engine: state + event + now -> new state + alert events.

- `rules`: every rule, in one place: reason codes and severities, what each RNS indicator and
  eManifest notice means, which reasons are active, how severity aggregates, the deadline
  instants, what counts as an escalation.
- `engine`: the lifecycle mechanics (apply an event's facts, evaluate, fire deadlines),
  reading the meanings from `rules`.
- `runner.EventTimeRunner`: the event-time driver (states, CARM records, a deadline heap).
- `ingest.ingest`: the one decode -> runner dispatch (back-test and live pipeline alike).
- `explain`: the plain-language details, worded from the configured `config.Thresholds`.
- `state`: the per-shipment state and its compact serialisation.

May import: the standard library, pydantic and `schemas` only. Never Faust, Kafka, Slack,
Prometheus, `alerting.notify`, `streams` or `devtools` (tests/unit/test_import_rules.py checks).
No module-level mutable state: caches belong to the object that drives the engine.
"""
