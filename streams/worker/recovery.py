"""Faust's end of table recovery, reordered so that no input record fetched meanwhile is lost.

faust-streaming 0.15.3 ends a recovery (`Recovery.on_recovery_completed`, and `_resume_streams`
for an app without tables) in this order:

  1. resume the input partitions: the fetcher, already running for the changelogs, starts
     fetching input records at once and puts them in the streams' queues;
  2. seek the input partitions to their committed offsets (an await on the consumer thread:
     tens to hundreds of milliseconds, while the fetcher goes on);
  3. `app.flow_control.resume()`, which **clears every stream queue** (mode's FlowControlEvent).

The records fetched between 1 and 3 are dropped from the queues while the consumer's position
and Faust's read offset have moved past them: they are never delivered, never acked, and the
partition's commit stops below them (faust-streaming issue #596 describes the same race). Seen
here: a worker started on three weeks of waiting history lost 181 consecutive rns records of one
partition (`tests/integration/test_replay_retention.py`), and one restarted after a SIGKILL lost
records the same way (`tests/integration/test_faults.py`, fault (a)); the pipeline then waited
for them for ever (the aligner held the other topic) or judged loads without them.

Here the queues are cleared (3) before the input partitions are resumed (1), after the seek (2):
nothing is fetched from an input partition until its queue can keep what is fetched. The rest of
each method is Faust's, unchanged (pinned faust-streaming version: constraints.txt).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery


class OrderedRecovery(Recovery):
    """`Recovery` whose end resumes the input partitions last (see the module docstring)."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
            )
            return
        await self._seek_and_resume_inputs(assignment)
        self.completed.set()
        await self.app._fetcher.maybe_start()  # type: ignore[attr-defined]
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_streams(self, generation_id: int = 0) -> None:
        app = self.app
        await app.on_rebalance_complete.send()
        assignment = app.consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._seek_and_resume_inputs(assignment)
        self.completed.set()
        await app._fetcher.maybe_start()  # type: ignore[attr-defined]
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _seek_and_resume_inputs(self, assignment: Any) -> None:
        """Seek, clear the queues, and only then let the fetcher read the input partitions."""
        consumer = self.app.consumer
        inputs = {tp for tp in assignment if not self._is_changelog_tp(tp)}
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.app.flow_control.resume()  # clears the stream queues: nothing of the inputs is in them
        consumer.resume_partitions(inputs)
        consumer.resume_flow()


class OrderedTableManager(TableManager):
    """Faust's TableManager with `OrderedRecovery` (the app's `TableManager` setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = OrderedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
