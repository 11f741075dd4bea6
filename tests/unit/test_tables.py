"""PartitionView: the engine's mapping over a Faust table (write-behind, per-partition listing)."""

from __future__ import annotations

from alerting.engine.state import ShipmentState
from streams.worker.tables import shipment_view


class FakeTable(dict[bytes, bytes]):
    """What PartitionView uses of a Faust table: get, item assignment, items."""

    writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        type(self).writes += 1
        super().__setitem__(key, value)


def test_writes_wait_for_flush_and_coalesce() -> None:
    table = FakeTable()
    view = shipment_view(table, 2)
    state = ShipmentState(ccn="ABCD100", known=True)
    for _ in range(5):
        view["ABCD100"] = state
    assert table == {}  # nothing written before the flush
    assert view["ABCD100"] is state  # but readable
    FakeTable.writes = 0
    assert view.flush() == 1
    assert FakeTable.writes == 1
    assert table[b"ABCD100"].startswith(b"2|")
    assert view.flush() == 0


def test_a_view_lists_only_its_partition_and_reloads_after_recovery() -> None:
    table = FakeTable()
    two, three = shipment_view(table, 2), shipment_view(table, 3)
    two["AAAA1"] = ShipmentState(ccn="AAAA1", known=True, load_ref="L1")
    three["BBBB2"] = ShipmentState(ccn="BBBB2")
    two.flush()
    three.flush()
    recovered = shipment_view(table, 2)  # a new worker: empty cache
    assert list(recovered) == ["AAAA1"]
    assert len(recovered) == 1
    assert recovered["AAAA1"].load_ref == "L1"


def test_a_removal_is_a_tombstone_written_with_the_next_batch() -> None:
    table = FakeTable()
    view = shipment_view(table, 1)
    view["ABCD100"] = ShipmentState(ccn="ABCD100", known=True)
    view["ABCD101"] = ShipmentState(ccn="ABCD101", known=True)
    view.flush()
    del view["ABCD100"]
    assert b"ABCD100" in table  # the tombstone waits for the batch, like the writes
    assert "ABCD100" not in view and sorted(view) == ["ABCD101"]
    view["ABCD102"] = ShipmentState(ccn="ABCD102")
    del view["ABCD102"]  # removed within one batch: never written, so no tombstone either
    assert view.flush() == 2
    assert set(table) == {b"ABCD101"}
    assert "ABCD100" not in shipment_view(table, 1)  # after recovery too


def test_removing_a_key_it_never_had_is_a_key_error() -> None:
    import pytest

    view = shipment_view(FakeTable(), 1)
    with pytest.raises(KeyError):
        del view["NOPE1"]
