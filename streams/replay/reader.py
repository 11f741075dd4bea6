"""Reading and planning a replay in a child process, so that the producer's process only sends.

Why: reading the logs (gzip, `json.loads` of every line, `decode_parsed` for the clock,
`json.dumps` of every value) and kafka-python's `send()` are both pure Python, and in one
process they take turns on the GIL. The child hands the plan's actions over in batches, in the
plan's order, through a pipe that is the bounded queue (memory stays bounded; a slow broker
holds the reader back). Records travel as plain tuples (`Wire`, cheap to pickle), with the partition that
kafka-python's default partitioner would pick, computed in the child (its murmur2 is pure
Python too). Nothing is sent by the child: ordering, acknowledgements and resume stay the
parent's (streams/replay/publish.py).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeAlias

from streams.replay.plan import Action, Barrier, LogItems, Publish, ReplayPlan, Skip, TickAll

Wire: TypeAlias = tuple[
    str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None, int, datetime | None, int, str
]
"""A record to publish: topic, key, value, headers, partition (None: the producer's
partitioner picks), line, event_time (the clock after it, if it moved it), seq, source."""
Item: TypeAlias = Wire | TickAll | Barrier | Skip
Batch: TypeAlias = list[Item]

BATCH_ACTIONS: Final = 1_000
BATCH_SECONDS: Final = 0.2
"""A batch is handed over when it holds this many actions or is this old (a slowly read log)."""
PIPE_BYTES: Final = 1 << 20
READ_AHEAD_MIN_BYTES: Final = 1 << 20
"""Smaller logs (~3,000 records) are planned in the producer's process: the reader process takes
a few tenths of a second to start (imports), about what it saves on them."""
GZIP_RATIO: Final = 10
"""Event logs compress about tenfold (a simulated day: 15.7 MB, 1.5 MB gzipped)."""


class ReaderDied(OSError):
    """The reader process ended without finishing the plan (killed, out of memory)."""


def wire(action: Publish, partition: int | None = None) -> Wire:
    return (
        action.topic,
        action.key,
        action.value,
        action.headers,
        partition,
        action.line,
        action.event_time,
        action.seq,
        action.source,
    )


def partition_for(key: bytes | None, partitions: Sequence[int]) -> int | None:
    """The partition kafka-python's DefaultPartitioner picks for a keyed record (None without a
    key or partitions: the producer picks, as it would have)."""
    if key is None or not partitions:
        return None
    from kafka.partitioner.default import murmur2

    index: int = murmur2(key) & 0x7FFFFFFF
    return partitions[index % len(partitions)]


class Partitioner:
    """`partition_for` per topic, remembered per key (a load's ~9 records share its CCN; the
    hash is pure Python), forgetting everything past `max_keys` so memory stays bounded."""

    def __init__(self, partitions: Mapping[str, Sequence[int]], max_keys: int = 200_000) -> None:
        self._partitions = partitions
        self._known: dict[tuple[str, bytes], int | None] = {}
        self._max_keys = max_keys

    def __call__(self, topic: str, key: bytes | None) -> int | None:
        if key is None:
            return None
        known = self._known
        found = known.get((topic, key), -1)
        if found != -1:
            return found
        if len(known) >= self._max_keys:
            known.clear()
        found = known[topic, key] = partition_for(key, self._partitions.get(topic, ()))
        return found


def in_process(actions: Iterable[Action]) -> Iterator[Batch]:
    """The actions as one-item batches, computed here (plans not read from files: tests)."""
    for action in actions:
        yield [wire(action) if isinstance(action, Publish) else action]


@contextmanager
def batches(
    actions: Iterable[Action], partitions: Mapping[str, Sequence[int]], *, min_bytes: int | None = None
) -> Iterator[Iterable[Batch]]:
    """The actions in batches: planned in a child process when they are a plan over log files of
    at least `min_bytes` (default READ_AHEAD_MIN_BYTES), planned here otherwise."""
    threshold = READ_AHEAD_MIN_BYTES if min_bytes is None else min_bytes
    if not (isinstance(actions, ReplayPlan) and isinstance(actions.items, LogItems)):
        yield in_process(actions)
        return
    if log_bytes(actions.items.paths) < threshold:
        yield in_process(actions)
        return
    reader = ReadAhead(actions, {topic: list(ids) for topic, ids in partitions.items()})
    try:
        yield reader
    finally:
        reader.close()


def log_bytes(paths: Iterable[Path]) -> int:
    """About how many bytes of JSON the logs hold (a .gz counted as GZIP_RATIO times its size)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):  # missing or unreadable: reading it will say so
            total += path.stat().st_size * (GZIP_RATIO if path.suffix == ".gz" else 1)
    return total


class ReadAhead:
    """Runs a plan over log files in a child process; iterating yields its batches in order.

    The child is a fresh interpreter started by subprocess (not multiprocessing: no re-import
    of the caller's main module, no fork of kafka-python's I/O thread). The plan goes to its
    stdin; its stdout is a stream of pickled messages, whose pipe is the bounded queue: the
    child blocks when the parent is a megabyte behind. The child's exceptions are raised here,
    with its traceback as a note; `close()` stops it.
    """

    def __init__(self, plan: ReplayPlan, partitions: dict[str, list[int]]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", CHILD_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stream = self._process.stdout
        _widen_pipe(self._stream.fileno())
        try:
            with self._process.stdin as stdin:
                pickle.dump((plan, partitions), stdin, protocol=pickle.HIGHEST_PROTOCOL)
        except BrokenPipeError:
            pass  # the child died at once: iterating says so
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def __iter__(self) -> Iterator[Batch]:
        while True:
            kind, payload = self._next()
            if kind == "batch":
                yield payload
            elif kind == "end":
                return
            else:
                raise payload

    def _next(self) -> tuple[str, Any]:
        try:
            message: tuple[str, Any] = pickle.load(self._stream)
        except (EOFError, pickle.UnpicklingError) as exc:
            code = self._process.wait()
            raise ReaderDied(f"the log reader process stopped (exit code {code})") from exc
        return message

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stream.close()


def _child_env() -> dict[str, str]:
    """The parent's environment, and its import path: the child imports the same holdwatch."""
    paths = [path for path in sys.path if path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _widen_pipe(fd: int) -> None:
    """A 1 MiB pipe (Linux; the default is 64 KiB): the reader may run a few batches ahead."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: keep the default
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


# --------------------------------------------------------------------------------------
# In the child
# --------------------------------------------------------------------------------------

CHILD_MAIN: Final = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # Ctrl-C is the parent's to handle
    "from streams.replay.reader import child_main; child_main()"
)


def child_main() -> None:
    """The reader process: the plan from stdin, messages to stdout (which nothing else may write)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to stderr, never into the stream
    plan, partitions = pickle.load(sys.stdin.buffer)

    def put(message: tuple[str, Any]) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        read_plan(plan, partitions, put)
    except BrokenPipeError:  # the parent is gone
        sys.exit(1)


def read_plan(
    plan: ReplayPlan, partitions: dict[str, list[int]], put: Callable[[tuple[str, Any]], None]
) -> None:
    """Plan, batch, hand over; then ("end", None), or ("error", exception) if anything failed."""
    try:
        batch: Batch = []
        started = time.monotonic()
        partition = Partitioner(partitions)
        for action in plan:
            if isinstance(action, Publish):
                batch.append(wire(action, partition(action.topic, action.key)))
            else:
                batch.append(action)
            if len(batch) >= BATCH_ACTIONS or time.monotonic() - started >= BATCH_SECONDS:
                put(("batch", batch))
                batch, started = [], time.monotonic()
        if batch:
            put(("batch", batch))
        put(("end", None))
    except BrokenPipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is the parent's to report
        put(("error", _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """The exception with the child's traceback as a note, or a RuntimeError if it cannot be pickled."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any pickling problem: send its text instead
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    exc.add_note(f"in the log reader process:\n{text}")
    return exc
