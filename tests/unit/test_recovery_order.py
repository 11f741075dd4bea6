"""The end of a recovery clears the stream queues before the input partitions are fetched again.

Faust's own order (resume the inputs, seek, then `flow_control.resume()`, which clears every
stream queue) drops the records fetched in between (streams/worker/recovery.py). The real race
is covered end to end by tests/integration/test_replay_retention.py and test_faults.py (a); here
the order itself, which a refactor could undo without those tests failing every time.
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
