"""Every input record reaches the pipeline: the recovery's order, and the gap counter that shows a loss.

The end of a recovery clears the stream queues before the input partitions are fetched again.

Faust's own order (resume the inputs, seek, then `flow_control.resume()`, which clears every
stream queue) drops the records fetched in between (streams/worker/recovery.py). The real race
is covered end to end by tests/integration/test_replay_retention.py and test_faults.py (a); here
the order itself, which a refactor could undo without those tests failing every time. A record
skipped anyway shows as `holdwatch_input_offset_gaps_total` (alert HoldwatchInputRecordsSkipped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.settings import Settings
from streams.worker.app import build_app
from streams.worker.recovery import OrderedRecovery, OrderedTableManager

INPUT = TP("emanifest", 0)
CHANGELOG = TP("hw-shipments-changelog", 0)


class _Calls:
    def __init__(self) -> None:
        self.order: list[str] = []

    async def perform_seek(self) -> None:
        self.order.append("seek")

    def resume_partitions(self, tps: set[TP]) -> None:
        self.order.append(f"resume_partitions {sorted(tp.topic for tp in tps)}")

    def resume_flow(self) -> None:
        self.order.append("resume_flow")

    def clear_queues(self) -> None:
        self.order.append("flow_control.resume (clears the queues)")


def _recovery_stub(calls: _Calls) -> Any:
    async def wait(coro: Awaitable[None], timeout: float) -> None:
        await coro

    consumer = SimpleNamespace(
        perform_seek=calls.perform_seek,
        resume_partitions=calls.resume_partitions,
        resume_flow=calls.resume_flow,
    )
    app = SimpleNamespace(
        consumer=consumer,
        flow_control=SimpleNamespace(resume=calls.clear_queues),
        conf=SimpleNamespace(broker_request_timeout=1.0),
    )
    return SimpleNamespace(
        app=app,
        log=logging.getLogger("test"),
        _wait=wait,
        _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
    )


def test_the_queues_are_cleared_after_the_seek_and_before_any_input_is_fetched() -> None:
    calls = _Calls()
    asyncio.run(OrderedRecovery._seek_and_resume_inputs(_recovery_stub(calls), {INPUT, CHANGELOG}))
    assert calls.order == [
        "seek",
        "flow_control.resume (clears the queues)",
        "resume_partitions ['emanifest']",  # the inputs only, never the changelogs
        "resume_flow",
    ]


def test_the_worker_app_uses_the_ordered_recovery(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", home=tmp_path, web_port=0)
    app = build_app(settings, clock="event", data_dir=tmp_path, store="memory")
    assert isinstance(app.tables, OrderedTableManager)
    assert isinstance(app.tables.recovery, OrderedRecovery)


def _worker() -> Any:
    from prometheus_client import CollectorRegistry

    from streams.worker.app import Worker, WorkerStats
    from streams.worker.telemetry import WorkerMetrics

    topology = SimpleNamespace(sources={"rns-t": "rns", "emanifest-t": "emanifest"})
    metrics = WorkerMetrics(CollectorRegistry())
    none = SimpleNamespace()
    return Worker(Settings(), topology, none, none, none, none, WorkerStats(), metrics)  # type: ignore[arg-type]


def _skipped(worker: Any, role: str) -> float:
    found = worker.metrics.registry.get_sample_value("holdwatch_input_offset_gaps_total", {"topic": role})
    assert found is not None
    return float(found)


def test_offsets_never_delivered_are_counted_and_a_redelivery_or_a_new_run_is_not() -> None:
    worker = _worker()
    for offset in (0, 1, 2, 1, 2, 3):  # a re-delivery from a seek back is not a gap
        worker.seen("rns-t", 1, offset, is_input=True)
    assert _skipped(worker, "rns") == 0
    worker.seen("rns-t", 1, 185, is_input=True)  # 4..184 never delivered
    assert _skipped(worker, "rns") == 181
    worker.seen("emanifest-t", 0, 40, is_input=True)  # a partition's first record: no history
    worker.forget_offsets({("emanifest-t", 0)})  # rns[1] given up, later assigned again further on
    worker.seen("rns-t", 1, 900, is_input=True)
    worker.seen("emanifest-t", 0, 43, is_input=True)  # kept: its history too (41, 42 skipped)
    assert (_skipped(worker, "rns"), _skipped(worker, "emanifest")) == (181, 2)
