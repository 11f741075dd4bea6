"""The Faust shell of the live pipeline: deserialize, look up, call the engine, write, emit.

Agents
- `shipments` consumes emanifest + rns (key CCN) and the internal control topic, all
  co-partitioned; per partition a `PartitionProcessor` applies records in log order
  and the state lives in the `shipments` table. Records are acked only once applied.
- `carm` consumes carm.readiness (key BN), dead-letters bad records and broadcasts
  valid snapshots (and tombstones) to every control partition.
- a timer sends wall-clock ticks to the control partitions this worker owns
  (`--clock wall`); with `--clock event` time comes from the records and replay ticks.

Pieces: `WorkerTopology` (topics and tables), `Partitions` (a processor per owned partition),
`AlertEmitter` (alerts, dead letters, their metrics), `AckBatcher` (batcher.py: write-behind,
ack after write) and one small function per agent or timer. Headers are read only by
`schemas.envelope.parse_envelope`, once per record as it enters (`_record_of`, the CARM agent).

Every send is confirmed before the records that caused it are acked (docs/reliability.md): the
shipments agent's alerts, dead letters and changelog writes go to `Deliveries`, which the batcher
awaits when a batch is due; the CARM agent acks a record once its broadcasts (or its dead letter)
are confirmed; the wall clock awaits its ticks. A send that fails after the producer's retries
stops the worker (`_stop_worker`: exit code 1, nothing more acked), so a restart consumes the
records again; raising would not do: Faust restarts a crashed agent in place, past its records.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.types import CodecArg
from faust.types.tuples import FutureMessage
from prometheus_client import CollectorRegistry

from alerting.engine.config import Thresholds
from schemas.actions import DispatchAction
from schemas.alerts import AlertEvent
from schemas.deadletter import encode_dead_letter, make_dead_letter
from schemas.decode import DeadLetterReason, Decoded, Rejected, TopicKind, decode
from schemas.envelope import Envelope, Tick, alert_headers, control_headers, parse_envelope
from streams.feeds.brokers import load_broker_directory
from streams.feeds.ports import load_ports
from streams.kafka.config import faust_broker_settings
from streams.kafka.topics import control_topic
from streams.notifier.telemetry import NotifierMetrics
from streams.settings import Settings
from streams.worker import ownership
from streams.worker.batcher import AckBatcher, Deliveries
from streams.worker.processor import ClockMode, Output, PartitionProcessor, RawRecord, Source
from streams.worker.recovery import OrderedTableManager
from streams.worker.tables import carm_view, define_ownership_table, define_tables, shipment_view
from streams.worker.telemetry import WorkerMetrics, lag_topics, port_label
from streams.worker.web import LocalStatus, ReadinessFacts
from streams.worker.webserver import register_web, web_bind_address

log = logging.getLogger("holdwatch.worker")


@dataclass
class WorkerStats:
    records: int = 0
    alerts: int = 0
    dead_letters: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class WorkerTopology:
    """The worker's topics and tables. Topic and table names are the deployment's contract."""

    inputs: Any
    """emanifest + rns + control, co-partitioned: the `shipments` agent's stream."""
    control: Any
    carm: Any
    alerts: Any
    dead_letters: Any
    shipments_table: Any
    carm_table: Any
    control_name: str
    actions: Any
    """holdwatch.actions (dispatch in Slack), co-partitioned by CCN: the `ownership` agent's stream."""
    ownership_table: Any
    sources: dict[str, Source]
    """Topic name → the role of its records."""

    def topic_of(self, source: Source) -> str:
        return next(topic for topic, role in self.sources.items() if role == source)


def define_topology(app: faust.App, settings: Settings) -> WorkerTopology:
    def raw_topic(*names: str, partitions: int | None = None) -> Any:
        return app.topic(*names, partitions=partitions, key_serializer="raw", value_serializer="raw")

    control_name = control_topic(settings)
    inputs = raw_topic(settings.topic_emanifest, settings.topic_rns, control_name)
    control = raw_topic(control_name, partitions=settings.partitions)
    carm, alerts = raw_topic(settings.topic_carm), raw_topic(settings.topic_alerts)
    dead_letters = raw_topic(settings.topic_deadletter)
    shipments_table, carm_table = define_tables(app, settings.partitions)
    sources: dict[str, Source] = {
        settings.topic_emanifest: "emanifest",
        settings.topic_rns: "rns",
        control_name: "control",
        settings.topic_carm: "carm",
    }
    actions = raw_topic(settings.actions_topic())
    ownership_table = define_ownership_table(app, settings.partitions)
    return WorkerTopology(
        inputs, control, carm, alerts, dead_letters, shipments_table, carm_table, control_name,
        actions=actions, ownership_table=ownership_table, sources=sources,
    )  # fmt: skip


class Partitions:
    """This worker's partition processors: made on a partition's first record, dropped on revoke."""

    def __init__(self, topology: WorkerTopology, thresholds: Thresholds, clock: ClockMode) -> None:
        self._topology = topology
        self._thresholds = thresholds
        self._clock = clock
        self._processors: dict[int, PartitionProcessor] = {}

    def get(self, partition: int) -> PartitionProcessor:
        found = self._processors.get(partition)
        if found is None:
            found = PartitionProcessor(
                partition,
                self._thresholds,
                shipment_view(self._topology.shipments_table, partition),
                carm_view(self._topology.carm_table, partition),
                self._clock,
            )
            self._processors[partition] = found
        return found

    def flush(self, partition: int) -> None:
        found = self._processors.get(partition)
        if found is not None:
            found.flush()

    def keep_only(self, keep: set[int]) -> list[int]:
        """Drop the processors of partitions no longer assigned (their records go to the new owner)."""
        dropped = [partition for partition in self._processors if partition not in keep]
        for partition in dropped:
            del self._processors[partition]
        return dropped

    def all(self) -> list[PartitionProcessor]:
        return list(self._processors.values())


class AlertEmitter:
    """Sends what processing produced: alert events (with their origin headers), dead letters,
    and the per-alert and per-record metrics. Sends are not awaited here: their delivery futures
    go to `deliveries`, under the partition whose records wait for them."""

    def __init__(
        self, topology: WorkerTopology, stats: WorkerStats, metrics: WorkerMetrics, deliveries: Deliveries
    ) -> None:
        self._topology = topology
        self._stats = stats
        self._metrics = metrics
        self._deliveries = deliveries

    async def emit(self, partition: int, out: Output) -> None:
        """Send what processing a record of `partition` produced; its acks wait for the sends."""
        now = time.time()
        for alert, trigger in zip(out.alerts, out.triggers, strict=True):
            sent = await self._topology.alerts.send(
                key=alert.ccn.encode(),
                value=alert.model_dump_json(exclude_none=True).encode(),
                timestamp=now,
                headers=alert_headers(trigger.envelope),
            )
            self._deliveries.add(partition, sent)
            self._observe(alert, trigger.envelope, now)
        self._stats.alerts += len(out.alerts)
        for record, event_type in out.applied:
            self._metrics.events_consumed.labels(record.source, event_type).inc()
        for rejected, record in out.rejected:
            self._deliveries.add(partition, await self.dead_letter(rejected, record))

    async def dead_letter(self, rejected: Rejected, record: RawRecord) -> Awaitable[object]:
        """Send the record's dead letter; returns its delivery (the caller waits before acking)."""
        self._metrics.dead_letters.labels(str(rejected.reason)).inc()
        letter = make_dead_letter(
            rejected,
            topic=self._topology.topic_of(record.source),
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            timestamp_ms=record.timestamp_ms,
            now=datetime.now(UTC),
        )
        self._stats.dead_letters += 1
        sent: Awaitable[object] = await self._topology.dead_letters.send(
            key=record.key, value=encode_dead_letter(letter)
        )
        return sent

    def _observe(self, alert: AlertEvent, trigger: Envelope, now: float) -> None:
        metrics = self._metrics
        port = port_label(alert.port_of_entry)
        metrics.alert_events.labels(alert.action, alert.severity or "none", port).inc()
        for detail in alert.details:
            metrics.alert_rules.labels(detail.code, detail.severity).inc()
        if alert.action == "raised" and alert.eta is not None:
            lead = (alert.eta - alert.at).total_seconds()
            metrics.alert_lead_time.labels(alert.severity or "none", trigger.traffic).observe(max(0.0, lead))
        metrics.event_to_alert.labels(trigger.traffic).observe(max(0.0, now - alert.at.timestamp()))
        if trigger.trigger_ms is not None:
            metrics.kafka_to_alert.labels(trigger.traffic).observe(max(0.0, now - trigger.trigger_ms / 1000))


@dataclass
class Worker:
    """What the agents and timers share."""

    settings: Settings
    topology: WorkerTopology
    partitions: Partitions
    emitter: AlertEmitter
    batcher: AckBatcher[RawRecord]
    deliveries: Deliveries
    stats: WorkerStats
    metrics: WorkerMetrics
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    last_input_at: float | None = None
    """Monotonic time of the last input record (for /readyz)."""

    def seen(self, topic: str, partition: int, offset: int, *, is_input: bool) -> None:
        previous = self.last_offsets.get((topic, partition))
        if previous is not None and offset > previous + 1:
            self._skipped(topic, partition, previous, offset)
        self.last_offsets[(topic, partition)] = offset
        if is_input:  # ticks are not input: HoldwatchNoInput must see silence
            self.metrics.last_input.set_to_current_time()
            self.last_input_at = time.monotonic()

    def _skipped(self, topic: str, partition: int, previous: int, offset: int) -> None:
        """Offsets between two consecutive deliveries never reached the pipeline: say so loudly
        (docs/reliability.md: Faust's recovery dropped records this way before OrderedRecovery)."""
        skipped = offset - previous - 1
        self.metrics.input_gaps.labels(self.topology.sources.get(topic, "other")).inc(skipped)
        log.warning(
            "%s[%d]: offsets %d..%d were never delivered to the pipeline (%d records); unless a "
            "transactional producer writes this topic, they were lost: see docs/operations.md, "
            "HoldwatchInputRecordsSkipped",
            topic,
            partition,
            previous + 1,
            offset - 1,
            skipped,
        )

    def forget_offsets(self, assigned: set[tuple[str, int]]) -> None:
        """A topic partition given up: its next delivery (after it comes back) starts a new run."""
        for key in [key for key in self.last_offsets if key not in assigned]:
            del self.last_offsets[key]

    def apply(self, record: RawRecord) -> Output:
        """Run one record through its partition; a failure dead-letters it (and it counts as done)."""
        out = Output()
        try:
            self.partitions.get(record.partition).on_record(record, out)
        except Exception as exc:
            self.stats.errors += 1
            topic = self.topology.topic_of(record.source)
            log.exception("failed to apply %s[%d]@%d", topic, record.partition, record.offset)
            out.rejected.append((Rejected(DeadLetterReason.INTERNAL_ERROR, repr(exc)[:300]), record))
            out.done.append(record)
        return out


def build_app(
    settings: Settings,
    *,
    clock: ClockMode,
    data_dir: Path,
    store: str | None = None,
    wall_tick_s: float = 1.0,
    registry: CollectorRegistry | None = None,
    with_notifier: bool = False,
    flush_every: int = 500,
    flush_after_s: float = 0.5,
) -> faust.App:
    deliveries = Deliveries()
    app = _faust_app(settings, data_dir, store or settings.store, deliveries)
    topology = define_topology(app, settings)
    stats = WorkerStats()
    metrics = _telemetry(app, settings, registry, with_notifier=with_notifier)
    app.holdwatch_stats = stats  # type: ignore[attr-defined]
    app.holdwatch_metrics = metrics  # type: ignore[attr-defined]
    partitions = Partitions(topology, settings.thresholds(), clock)
    batcher: AckBatcher[RawRecord] = AckBatcher(
        partitions.flush, flush_every=flush_every, flush_after_s=flush_after_s, confirm=deliveries.confirm
    )
    emitter = AlertEmitter(topology, stats, metrics, deliveries)
    worker = Worker(settings, topology, partitions, emitter, batcher, deliveries, stats, metrics)
    _on_rebalance(app, worker)
    _shipments_agent(app, worker)
    _carm_agent(app, worker)
    _ownership_agent(app, worker)
    if clock == "wall":
        _wall_clock(app, worker, wall_tick_s)
    _gauges(app, worker)
    _heartbeat(app, worker)
    if settings.web_port:
        _status_api(app, worker, clock)
    return app


def _confirmed_table(deliveries: Deliveries) -> type[faust.Table[Any, Any]]:
    """Faust's Table, its changelog writes confirmed like the worker's own sends.

    Faust sends changelog records with `send_soon` and, before a commit, only flushes its
    producer: a changelog record that failed (or still sat in Faust's buffer) is not noticed, and
    the commit goes ahead. Here each write's future goes to `deliveries` under its partition (the
    record's: the tables follow the source partition), so the batcher acks nothing unconfirmed."""

    class ConfirmedTable(faust.Table[Any, Any]):
        def send_changelog(
            self,
            partition: int | None,
            key: Any,
            value: Any,
            key_serializer: CodecArg | None = None,
            value_serializer: CodecArg | None = None,
        ) -> FutureMessage:
            sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
            target = sent.message.partition if partition is None else partition
            if target is not None:
                deliveries.add(target, sent)
            return sent

    return ConfirmedTable


class _HoldwatchApp(faust.App):
    """Faust's App, its web server without Faust's own index page: `/` is the dispatch board."""

    def _new_web(self) -> Any:
        driver = super()._new_web()
        board_first = type("HoldwatchWeb", (type(driver),), {"production_blueprints": []})
        return board_first(self)


def _web_settings(settings: Settings) -> dict[str, Any]:
    """The status API on Faust's web server; Faust's own table and router pages stay off (they
    would show every table's content without a token)."""
    if not settings.web_port:
        return {"web_enabled": False}
    bind = web_bind_address(settings)
    host = "127.0.0.1" if bind == "127.0.0.1" else None
    return {
        "web_enabled": True,
        "web_port": settings.web_port,
        "web_bind": bind,
        **({"web_host": host} if host else {}),
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
    }


def _faust_app(settings: Settings, data_dir: Path, store_name: str, deliveries: Deliveries) -> faust.App:
    return _HoldwatchApp(
        settings.app_id,
        **faust_broker_settings(settings),
        Table=_confirmed_table(deliveries),
        TableManager=OrderedTableManager,
        store="rocksdb://" if store_name == "rocksdb" else "memory://",
        datadir=str(data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        **_web_settings(settings),
        broker_commit_every=2000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
    )


def _on_rebalance(app: faust.App, worker: Worker) -> None:
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
        keep = {tp.partition for tp in assigned if tp.topic == worker.topology.control_name}
        worker.forget_offsets({(tp.topic, tp.partition) for tp in assigned})
        for partition in worker.partitions.keep_only(keep):
            worker.batcher.revoke(partition)  # never ack what this worker did not write
            worker.deliveries.drop(partition)


def _record_of(event: Any, sources: dict[str, Source]) -> RawRecord:
    """The record of a Faust event, its envelope parsed (the only place headers are read)."""
    message = event.message
    timestamp_ms = int(message.timestamp * 1000) if message.timestamp else None
    envelope = parse_envelope(sources[message.topic], message.headers, message.value, timestamp_ms)
    return RawRecord(message.partition, message.offset, message.key, message.value, envelope, event)


async def _stop_worker(app: faust.App, agent: str, exc: BaseException) -> None:
    """A send was not confirmed (or could not be made): stop the whole worker, exit code 1.

    Nothing more is acked, and the consumer commits only what was acked, all of it confirmed: a
    restart (the supervisor's) consumes the unconfirmed records again, and their outputs are the
    same events (idempotent by event_id). Not `raise`: Faust would restart the agent in place
    and carry on past the records whose outputs were lost."""
    log.critical(
        "%s: %s: %s -- stopping the worker without acking; its unacked records are consumed "
        "again after a restart",
        agent,
        type(exc).__name__,
        exc,
    )
    mark_state_suspect(Path(app.conf.datadir), f"{agent}: {type(exc).__name__}: {exc}")
    await app.crash(exc)


STATE_SUSPECT = "STATE-SUSPECT"
"""Left in the data dir by a stop on a failed send: the local tables may hold writes the changelog
lacks, so the next start drops them and recovers from the changelog (`discard_suspect_state`)."""


def mark_state_suspect(data_dir: Path, why: str) -> None:
    try:
        (data_dir / STATE_SUSPECT).write_text(why + "\n", encoding="utf-8")
    except OSError:
        log.exception("could not mark %s as suspect: delete it before the next start", data_dir)


def discard_suspect_state(data_dir: Path) -> str | None:
    """After a stop on a failed send, remove the local table state (it may be ahead of the
    changelog); Faust then recovers every table from its changelog. Returns why, or None."""
    marker = data_dir / STATE_SUSPECT
    if not marker.exists():
        return None
    why = marker.read_text(encoding="utf-8", errors="replace").strip()
    for child in data_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    return why


def _shipments_agent(app: faust.App, worker: Worker) -> None:
    """Records are acked by the batcher, once the states they changed are written and every send
    they caused is confirmed."""

    @app.agent(worker.topology.inputs, name="shipments", concurrency=1)
    async def process_shipments(stream: Any) -> None:
        sources = worker.topology.sources
        try:
            async for event in stream.noack().events():
                record = _record_of(event, sources)
                worker.stats.records += 1
                is_input = record.source != "control"
                worker.seen(event.message.topic, record.partition, record.offset, is_input=is_input)
                out = worker.apply(record)
                await worker.emitter.emit(record.partition, out)
                await worker.batcher.settle(record.partition, record.envelope, out.done)
        except Exception as exc:  # noqa: BLE001 - apply() dead-letters its own errors: these are sends
            await _stop_worker(app, "shipments", exc)


def _carm_agent(app: faust.App, worker: Worker) -> None:
    """Dead-letters bad CARM records and broadcasts valid ones to every control partition; a
    record is acked once its broadcasts (or its dead letter) are confirmed, never before.
    One wait per record: CARM records are few (a snapshot per importer change)."""

    @app.agent(worker.topology.carm, name="carm", concurrency=1)
    async def broadcast_carm(stream: Any) -> None:
        try:
            async for event in stream.noack().events():
                for sent in await _carm_sends(worker, event.message):
                    await sent
                event.ack()
        except Exception as exc:  # noqa: BLE001 - a send that failed: see _stop_worker
            await _stop_worker(app, "carm", exc)


def _ownership_agent(app: faust.App, worker: Worker) -> None:
    """Folds dispatch's actions into the `ownership` table the status API reads. The records are
    the notifier's own (validated before they were sent): an unreadable one is logged and skipped."""
    table = worker.topology.ownership_table

    @app.agent(worker.topology.actions, name="ownership", concurrency=1)
    async def fold_actions(stream: Any) -> None:
        async for event in stream.events():
            try:
                action = DispatchAction.model_validate_json(event.message.value or b"")
            except ValueError as exc:
                worker.stats.errors += 1
                log.error("skipping unreadable action record at offset %s: %s", event.message.offset, exc)
                continue
            key = action.ccn.encode()
            table[key] = ownership.encode(ownership.fold(ownership.decode(table.get(key)), action))


async def _carm_sends(worker: Worker, message: Any) -> list[Awaitable[object]]:
    """The dead letter of a bad CARM record, or the broadcast of a good one to every partition."""
    result = decode(TopicKind.CARM, message.key, message.value)
    worker.seen(message.topic, message.partition, message.offset, is_input=True)
    if isinstance(result, Rejected):
        origin = Envelope("carm", None)  # as before the envelope: no timestamp in the letter
        record = RawRecord(message.partition, message.offset, message.key, message.value, origin)
        return [await worker.emitter.dead_letter(result, record)]
    assert isinstance(result, Decoded)
    envelope = parse_envelope("carm", message.headers, None, None)
    # hw-log-ts too: a replayed tombstone's time is its log timestamp, not the Kafka one.
    headers = control_headers("carm", envelope.seq, envelope.log_ts_ms)
    return [
        await worker.topology.control.send(
            key=result.key.encode(),
            value=message.value,
            partition=partition,
            timestamp=message.timestamp,
            headers=headers,
        )
        for partition in range(worker.settings.partitions)
    ]


def _wall_clock(app: faust.App, worker: Worker, interval_s: float) -> None:
    """Ticks to the control partitions this worker owns (`--clock wall`), each confirmed before
    the next round: a lost tick would be covered by the next, but a failing producer is not
    ignored (it stops the worker like any unconfirmed send)."""
    control_name = worker.topology.control_name

    @app.timer(interval=interval_s)  # type: ignore[untyped-decorator]
    async def wall_clock() -> None:
        tick = Tick(0, datetime.now(UTC)).to_bytes()
        try:
            sends = [
                await worker.topology.control.send(
                    key=None, value=tick, partition=tp.partition, headers=control_headers("tick")
                )
                for tp in app.consumer.assignment()
                if tp.topic == control_name
            ]
            for sent in sends:
                await sent
        except Exception as exc:  # noqa: BLE001 - a send that failed: see _stop_worker
            await _stop_worker(app, "wall clock", exc)


def _telemetry(
    app: faust.App, settings: Settings, registry: CollectorRegistry | None, *, with_notifier: bool
) -> WorkerMetrics:
    """The worker's metric families; with the notifier in this process, its task and families."""
    metrics = WorkerMetrics(registry or CollectorRegistry(), topics=lag_topics(settings))
    if with_notifier:
        notifier_stop = asyncio.Event()
        # Registered now, beside the worker's families, so the first scrape already has them.
        notifier_metrics = NotifierMetrics(metrics.registry)

        @app.task  # type: ignore[untyped-decorator]
        async def notifier() -> None:
            from streams.notifier.service import run_notifier

            await run_notifier(settings, stop=notifier_stop, metrics=notifier_metrics)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _stop_notifier(sender: Any, **_: Any) -> None:
            notifier_stop.set()

    return metrics


def _input_lag(app: faust.App, worker: Worker) -> dict[str, int]:
    """Records not yet consumed, per input or control topic (changelogs excluded)."""
    lag: dict[str, int] = {}
    for tp in app.consumer.assignment():
        highwater = app.consumer.highwater(tp)
        if highwater is None or tp.topic.endswith("-changelog"):
            continue
        seen = worker.last_offsets.get((tp.topic, tp.partition), -1)
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - seen - 1)
    return lag


def _gauges(app: faust.App, worker: Worker) -> None:
    """Lag, states and open alerts, recomputed from the partitions every 5 s (never drift)."""
    metrics = worker.metrics

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def gauges() -> None:
        for topic, value in _input_lag(app, worker).items():
            metrics.consumer_lag.labels(topic).set(value)
        processors = worker.partitions.all()
        metrics.shipments.set(sum(len(p.runner.shipments) for p in processors))
        open_now: dict[tuple[str, str], int] = {}
        for found in processors:
            for (port, severity), count in found.open_alerts().items():
                key = (port_label(port), severity)
                open_now[key] = open_now.get(key, 0) + count
        metrics.set_open_alerts(open_now)
        metrics.importers.set(max((len(p.runner.carm) for p in processors), default=0))
        metrics.pending_deadlines.set(sum(p.runner.pending_deadlines() for p in processors))
        metrics.held_for_order.set(sum(p.held() for p in processors))


def _heartbeat(app: faust.App, worker: Worker) -> None:
    stats = worker.stats

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        processors = worker.partitions.all()
        held = sum(p.held() for p in processors)
        elapsed = time.monotonic() - stats.started
        inputs, lag = _assigned_inputs(app, worker)
        log.info(
            "holdwatch: %d records (%.0f/s), %d alert events, %d dead letters, %d held for order, "
            "%d partitions with records; %d input partitions assigned, %d records behind",
            stats.records,
            stats.records / elapsed if elapsed else 0.0,
            stats.alerts,
            stats.dead_letters,
            held,
            len(processors),
            inputs,
            lag,
        )


def _assigned_inputs(app: faust.App, worker: Worker) -> tuple[int, int]:
    """(input and control partitions assigned, records behind on them): a worker that has
    partitions, records behind and no progress is stuck, one with none assigned is idle."""
    try:
        assigned = [tp for tp in app.consumer.assignment() if not tp.topic.endswith("-changelog")]
    except Exception:  # noqa: BLE001 - before the consumer exists: nothing assigned yet
        return 0, 0
    return len(assigned), sum(_input_lag(app, worker).values())


def _status_api(app: faust.App, worker: Worker, clock: ClockMode) -> None:
    """The status API and the board (docs/status-api.md) over this worker's partitions."""
    topology = worker.topology

    def assigned() -> set[int]:
        try:
            tps = app.consumer.assignment()
        except Exception:  # noqa: BLE001 - before the consumer exists: nothing assigned yet
            return set()
        return {tp.partition for tp in tps if tp.topic == topology.control_name}

    def runners() -> dict[int, Any]:
        return {p: worker.partitions.get(p).runner for p in sorted(assigned())}

    def readiness() -> ReadinessFacts:
        recovery = getattr(app.tables, "recovery", None)
        completed = getattr(recovery, "completed", None)
        recovered = bool(completed is not None and completed.is_set()) and not app.rebalancing
        owned = assigned()
        lag = sum(_input_lag(app, worker).values()) if owned else None
        last = worker.last_input_at
        idle = time.monotonic() - last if last is not None else None
        return ReadinessFacts(len(owned), recovered, lag, idle)

    def owner_of(ccn: str) -> dict[str, Any] | None:
        return ownership.decode(topology.ownership_table.get(ccn.encode()))

    local = LocalStatus(
        runners,
        worker.settings.thresholds(),
        worker.settings.partitions,
        ownership=owner_of,
        event_clock=clock == "event",
        ports=load_ports(worker.settings.ports_file),
        brokers=load_broker_directory(worker.settings.broker_directory_file),
    )
    register_web(app, worker.settings, local, readiness, worker.metrics.web, SameNode)
