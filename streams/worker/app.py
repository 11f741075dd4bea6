"""The Faust shell of the live pipeline: deserialize, look up, call the engine, write, emit.

Agents
- `shipments` consumes emanifest + rns (key CCN) and the internal control topic, all
  co-partitioned; per partition a `PartitionProcessor` applies records in log order
  and the state lives in the `shipments` table. Records are acked only once applied.
- `carm` consumes carm.readiness (key BN), dead-letters bad records and broadcasts
  valid snapshots (and tombstones) to every control partition.
- a timer sends wall-clock ticks to the control partitions this worker owns
  (`--clock wall`); with `--clock event` time comes from the records and replay ticks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertEvent
from schemas.deadletter import encode_dead_letter, make_dead_letter
from schemas.decode import DeadLetterReason, Decoded, Rejected, TopicKind, decode
from schemas.envelope import SEQ_HEADER, TRAFFIC_HEADER, TRIGGER_TS_HEADER, Tick, header_value
from streams.kafka.config import faust_broker_settings
from streams.kafka.topics import control_topic
from streams.settings import Settings
from streams.worker.processor import (
    CONTROL_HEADER,
    ClockMode,
    Output,
    PartitionProcessor,
    RawRecord,
    Source,
    is_replayed,
    is_tick,
)
from streams.worker.tables import carm_view, define_tables, shipment_view
from streams.worker.telemetry import NotifierPrometheus, PipelineMetrics, port_label

log = logging.getLogger("holdwatch.worker")


@dataclass
class WorkerStats:
    records: int = 0
    alerts: int = 0
    dead_letters: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


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
    store_name = store or settings.store
    app = faust.App(
        settings.app_id,
        **faust_broker_settings(settings),
        store="rocksdb://" if store_name == "rocksdb" else "memory://",
        datadir=str(data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        broker_commit_every=2000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
    )
    thresholds = settings.thresholds()
    control_name = control_topic(settings)
    sources: dict[str, Source] = {
        settings.topic_emanifest: "emanifest",
        settings.topic_rns: "rns",
        control_name: "control",
    }
    inputs = app.topic(
        settings.topic_emanifest,
        settings.topic_rns,
        control_name,
        key_serializer="raw",
        value_serializer="raw",
    )
    control = app.topic(
        control_name, partitions=settings.partitions, key_serializer="raw", value_serializer="raw"
    )
    carm_topic = app.topic(settings.topic_carm, key_serializer="raw", value_serializer="raw")
    alerts = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(settings.topic_deadletter, key_serializer="raw", value_serializer="raw")
    shipments_table, carm_table = define_tables(app, settings.partitions)
    processors: dict[int, PartitionProcessor] = {}
    stats = WorkerStats()
    metrics = PipelineMetrics(registry or CollectorRegistry())
    app.holdwatch_stats = stats  # type: ignore[attr-defined]
    app.holdwatch_metrics = metrics  # type: ignore[attr-defined]
    last_offsets: dict[tuple[str, int], int] = {}

    # Write-behind: a partition's changed states are written to the table (its changelog) in
    # batches, and the records that changed them are acked only after that write, so a commit
    # never covers a change that is not in the changelog. Alerts are sent at once.
    unacked: dict[int, list[RawRecord]] = {}
    unacked_since: dict[int, float] = {}

    def processor(partition: int) -> PartitionProcessor:
        found = processors.get(partition)
        if found is None:
            found = PartitionProcessor(
                partition,
                thresholds,
                shipment_view(shipments_table, partition),
                carm_view(carm_table, partition),
                clock,
            )
            processors[partition] = found
        return found

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
        keep = {tp.partition for tp in assigned if tp.topic == control_name}
        for partition in list(processors):
            if partition not in keep:
                del processors[partition]  # its records are redelivered to the new owner
                unacked.pop(partition, None)  # never ack what this worker did not write

    async def send_dead_letter(rejected: Rejected, record: RawRecord, topic: str) -> None:
        letter = make_dead_letter(
            rejected,
            topic=topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            timestamp_ms=record.timestamp_ms,
            now=datetime.now(UTC),
        )
        stats.dead_letters += 1
        await dead_letters.send(key=record.key, value=encode_dead_letter(letter))

    def observe(alert: AlertEvent, trigger: RawRecord, now: float) -> None:
        port = port_label(alert.port_of_entry)
        metrics.alert_events.labels(alert.action, alert.severity or "none", port).inc()
        for detail in alert.details:
            metrics.alert_rules.labels(detail.code, detail.severity).inc()
        traffic = "replay" if is_replayed(trigger) else "live"
        if alert.action == "raised" and alert.eta is not None:
            lead = (alert.eta - alert.at).total_seconds()
            metrics.alert_lead_time.labels(alert.severity or "none", traffic).observe(max(0.0, lead))
        metrics.event_to_alert.labels(traffic).observe(max(0.0, now - alert.at.timestamp()))
        if trigger.timestamp_ms is not None and trigger.source != "control":
            metrics.kafka_to_alert.labels(traffic).observe(max(0.0, now - trigger.timestamp_ms / 1000))

    async def emit(out: Output, topic_of: dict[Source, str]) -> None:
        now = time.time()
        for alert, trigger in zip(out.alerts, out.triggers, strict=True):
            headers = [(TRAFFIC_HEADER, b"replay" if is_replayed(trigger) else b"live")]
            if trigger.timestamp_ms is not None and trigger.source != "control":
                headers.append((TRIGGER_TS_HEADER, str(trigger.timestamp_ms).encode()))
            await alerts.send(
                key=alert.ccn.encode(),
                value=alert.model_dump_json(exclude_none=True).encode(),
                timestamp=now,
                headers=headers,
            )
            observe(alert, trigger, now)
        stats.alerts += len(out.alerts)
        for record, event_type in out.applied:
            metrics.events_consumed.labels(record.source, event_type).inc()
        for rejected, record in out.rejected:
            metrics.dead_letters.labels(str(rejected.reason)).inc()
            await send_dead_letter(rejected, record, topic_of[record.source])

    source_topic = {source: topic for topic, source in sources.items()}

    def settle(partition: int, record: RawRecord, done: list[RawRecord]) -> None:
        waiting = unacked.setdefault(partition, [])
        if not waiting:
            unacked_since[partition] = time.monotonic()
        waiting += done
        if (
            len(waiting) >= flush_every
            or record.source == "control"
            or time.monotonic() - unacked_since[partition] >= flush_after_s
            or is_tick(record)
        ):
            found = processors.get(partition)
            if found is not None:
                found.flush()
            for finished in waiting:
                finished.handle.ack()
            waiting.clear()

    @app.agent(inputs, name="shipments", concurrency=1)
    async def process_shipments(stream: Any) -> None:
        async for event in stream.noack().events():
            message = event.message
            record = RawRecord(
                sources[message.topic],
                message.partition,
                message.offset,
                message.key,
                message.value,
                message.headers,
                int(message.timestamp * 1000) if message.timestamp else None,
                event,
            )
            stats.records += 1
            last_offsets[(message.topic, message.partition)] = message.offset
            if record.source != "control":  # ticks are not input: HoldwatchNoInput must see silence
                metrics.last_input.set_to_current_time()
            out = Output()
            try:
                processor(message.partition).on_record(record, out)
            except Exception as exc:
                stats.errors += 1
                log.exception("failed to apply %s[%d]@%d", message.topic, message.partition, message.offset)
                out.rejected.append((Rejected(DeadLetterReason.INTERNAL_ERROR, repr(exc)[:300]), record))
                out.done.append(record)
            await emit(out, source_topic)
            settle(message.partition, record, out.done)

    @app.agent(carm_topic, name="carm", concurrency=1)
    async def broadcast_carm(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            result = decode(TopicKind.CARM, message.key, message.value)
            last_offsets[(message.topic, message.partition)] = message.offset
            metrics.last_input.set_to_current_time()
            if isinstance(result, Rejected):
                metrics.dead_letters.labels(str(result.reason)).inc()
                record = RawRecord(
                    "control", message.partition, message.offset, message.key, message.value, None, None
                )
                await send_dead_letter(result, record, settings.topic_carm)
                continue
            assert isinstance(result, Decoded)
            headers = [(CONTROL_HEADER, b"carm")]
            seq = header_value(message.headers, SEQ_HEADER)
            if seq is not None:
                headers.append((SEQ_HEADER, seq))  # a replayed change stays marked as replay
            for partition in range(settings.partitions):
                await control.send(
                    key=result.key.encode(),
                    value=message.value,
                    partition=partition,
                    timestamp=message.timestamp,
                    headers=headers,
                )

    if clock == "wall":

        @app.timer(interval=wall_tick_s)  # type: ignore[untyped-decorator]
        async def wall_clock() -> None:
            now = datetime.now(UTC)
            tick = Tick(0, now).to_bytes()
            for tp in app.consumer.assignment():
                if tp.topic == control_name:
                    await control.send(
                        key=None, value=tick, partition=tp.partition, headers=[(CONTROL_HEADER, b"tick")]
                    )

    if with_notifier:
        notifier_stop = asyncio.Event()

        @app.task  # type: ignore[untyped-decorator]
        async def notifier() -> None:
            from streams.notifier.service import run_notifier

            await run_notifier(settings, stop=notifier_stop, metrics=NotifierPrometheus(metrics))

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _stop_notifier(sender: Any, **_: Any) -> None:
            notifier_stop.set()

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def gauges() -> None:
        lag: dict[str, int] = {}
        for tp in app.consumer.assignment():
            highwater = app.consumer.highwater(tp)
            if highwater is None or tp.topic.endswith("-changelog"):
                continue
            seen = last_offsets.get((tp.topic, tp.partition), -1)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - seen - 1)
        for topic, value in lag.items():
            metrics.consumer_lag.labels(topic).set(value)
        metrics.shipments.set(sum(len(p.runner.shipments) for p in processors.values()))
        open_now: dict[tuple[str, str], int] = {}
        for found in processors.values():
            for (port, severity), count in found.open_alerts().items():
                key = (port_label(port), severity)
                open_now[key] = open_now.get(key, 0) + count
        metrics.set_open_alerts(open_now)
        metrics.importers.set(max((len(p.runner.carm) for p in processors.values()), default=0))
        metrics.pending_deadlines.set(sum(p.runner.pending_deadlines() for p in processors.values()))
        metrics.held_for_order.set(sum(p.held() for p in processors.values()))

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        held = sum(p.held() for p in processors.values())
        elapsed = time.monotonic() - stats.started
        log.info(
            "holdwatch: %d records (%.0f/s), %d alert events, %d dead letters, %d held for order, "
            "%d partitions",
            stats.records,
            stats.records / elapsed if elapsed else 0.0,
            stats.alerts,
            stats.dead_letters,
            held,
            len(processors),
        )

    return app
