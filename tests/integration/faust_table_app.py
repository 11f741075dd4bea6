"""A minimal Faust worker for test_faust_table_recovery: an agent writes a RocksDB-backed table.

Run as `python -m tests.integration.faust_table_app worker`; configured by environment variables
(set by the test). A record with key `__dump__` makes the agent write the whole table as JSON to
FAUST_TEST_DUMP_FILE, so the test can see what the worker holds, e.g. after recovering from the
changelog. Agents only run after table recovery has finished, so a dump reflects the recovered state.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

DUMP_KEY = "__dump__"

_env = os.environ
app = faust.App(
    _env["FAUST_TEST_APP_ID"],
    broker=f"kafka://{_env['FAUST_TEST_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=_env["FAUST_TEST_DATADIR"],
    topic_partitions=int(_env["FAUST_TEST_PARTITIONS"]),
    topic_replication_factor=1,
    table_standby_replicas=0,
    key_serializer="json",  # the table's changelog; the input topic is raw bytes
    value_serializer="json",
    broker_commit_every=10,
    web_enabled=False,
)

table = app.Table("values", default=str, key_type=str, value_type=str)
source = app.topic(
    _env["FAUST_TEST_INPUT"], key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)


def _dump(path: Path, items: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(items, sort_keys=True))
    tmp.replace(path)  # the test never reads a half-written file


@app.agent(source)
async def record(stream: Any) -> AsyncIterator[None]:
    async for key, value in stream.items():
        name = key.decode()
        if name == DUMP_KEY:
            _dump(Path(_env["FAUST_TEST_DUMP_FILE"]), dict(table.items()))
        else:
            table[name] = value.decode()
        yield None


if __name__ == "__main__":
    app.main()
