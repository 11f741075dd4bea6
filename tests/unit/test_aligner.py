"""The seq merge: whatever the interleaving of two topics, items come out in log order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from streams.worker.aligner import SeqAligner


@given(st.lists(st.booleans(), min_size=0, max_size=60), st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_any_interleaving_comes_out_in_seq_order(sides: list[bool], seed: int, tick_every: int) -> None:
    # The log: record i goes to topic a or b; every `tick_every` records a tick goes to both.
    streams: dict[str, list[tuple[int, bool]]] = {"a": [], "b": []}
    for seq, side in enumerate(sides, start=1):
        streams["a" if side else "b"].append((seq, False))
        if seq % tick_every == 0:
            for topic in streams:
                streams[topic].append((seq + 1, True))
    final = len(sides) + 1
    for topic in streams:
        streams[topic].append((final, True))
    rng = random.Random(seed)
    aligner: SeqAligner[tuple[str, int, bool]] = SeqAligner(("a", "b"))
    cursors = {"a": 0, "b": 0}
    released: list[tuple[str, int, bool]] = []
    while any(cursors[t] < len(streams[t]) for t in streams):
        topic = rng.choice([t for t in streams if cursors[t] < len(streams[t])])
        seq, is_tick = streams[topic][cursors[topic]]
        cursors[topic] += 1
        aligner.push(topic, seq, (topic, seq, is_tick), is_tick=is_tick)
        released += aligner.pop_ready()
    assert len(aligner) == 0
    records = [seq for _, seq, is_tick in released if not is_tick]
    assert records == list(range(1, len(sides) + 1))
    # A tick is released only after every record before it.
    for index, (_, seq, is_tick) in enumerate(released):
        if is_tick:
            assert all(r < seq for _, r, t in released[:index] if not t) or seq == 1
            assert all(r >= seq for _, r, t in released[index:] if not t)


def test_a_record_waits_for_the_other_topic() -> None:
    aligner: SeqAligner[str] = SeqAligner(("a", "b"))
    aligner.push("a", 2, "a2")
    assert aligner.pop_ready() == []  # b may still deliver seq 1
    aligner.push("b", 1, "b1")
    assert aligner.pop_ready() == ["b1"]  # a2 still waits: b may deliver seq 2
    aligner.push("b", 5, "b5")
    assert aligner.pop_ready() == ["a2"]
    aligner.push("a", 6, "tick", is_tick=True)
    assert aligner.pop_ready() == ["b5", "tick"]
