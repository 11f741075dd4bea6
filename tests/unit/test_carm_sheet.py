"""The CARM readiness spreadsheet: a messy export, the YAML form, the template, the diff, and the
import/show/export commands over a fake topic (the broker is tests/integration/test_carm_import.py)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerting.engine import rules
from alerting.engine.config import Thresholds
from alerting.engine.state import ShipmentState
from schemas.carm import CarmSnapshot, Contact, Delegation, Security
from schemas.decode import Decoded, TopicKind, decode
from streams.cli import carm as carm_cli
from streams.feeds.carm_sheet import (
    COLUMNS,
    CellError,
    SheetFormat,
    SheetOptions,
    cells_of,
    content_id,
    describe_diff,
    diff_registry,
    parse_amount,
    parse_bn,
    parse_bool,
    parse_date,
    parse_delegations,
    read_sheet,
    template_rows,
    write_sheet,
)
from streams.feeds.carm_topic import TopicRecord, TopicState, fold_records
from streams.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "carm"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TORONTO = ZoneInfo("America/Toronto")
OPTIONS = SheetOptions("mdy", TORONTO)
GOOD_MESSY_LINES = [2, 3, 5, 9, 12]


def messy() -> bytes:
    return (FIXTURES / "messy.csv").read_bytes()


def toronto(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TORONTO).astimezone(UTC)


# --- the messy spreadsheet export --------------------------------------------------------------


def test_the_messy_export_reads_every_quirk() -> None:
    data = messy()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data  # the fixture is what Excel saves
    result = read_sheet(data, "csv", OPTIONS, NOW)
    assert result.file_errors == ()
    assert [row.line for row in result.rows] == GOOD_MESSY_LINES
    assert result.blank_rows == 1
    assert any("N (Notes)" in warning and "ignored" in warning for warning in result.warnings)
    by_bn = {row.snapshot.importer_bn: row for row in result.rows}

    maple = by_bn["123456789RM0001"].snapshot  # trailing spaces, Yes/TRUE, $12,500.00, ISO date
    assert maple.legal_name == "Maple Leaf Fasteners Inc."
    assert (maple.ccp_registered, maple.rm_account_linked, maple.rpp_enrolled) == (True, True, True)
    assert maple.delegations == [
        Delegation(broker_code="BRK2", access="program_management", transaction_visibility=True),
        Delegation(broker_code="LKCS", access="business_management", transaction_visibility=True),
    ]
    assert maple.security == Security(kind="surety", amount_cad=12500.0)
    assert maple.highest_monthly_duties_taxes_cad == 25000.0
    assert maple.last_portal_login_at == toronto(2026, 11, 3)
    assert maple.contact == Contact(name="Jeanne Roy", phone="+1-416-555-0142", email="jroy@maple.example")
    assert maple.occurred_at == NOW and maple.event_id.startswith("carm-123456789RM0001-")

    boulangerie = by_bn["987654321RM0002"].snapshot  # spaced BN, x/1/Y, "CAD 30,000", "30 000 $", 11/03/2026
    assert (boulangerie.ccp_registered, boulangerie.rm_account_linked, boulangerie.rpp_enrolled) == (
        True,
        True,
        True,
    )
    assert boulangerie.delegations == [  # two of three visibility rules ticked: not visible
        Delegation(broker_code="LKCS", access="business_management", transaction_visibility=False)
    ]
    assert boulangerie.security == Security(kind="cash", amount_cad=30000.0)
    assert boulangerie.highest_monthly_duties_taxes_cad == 30000.0
    assert boulangerie.last_portal_login_at == toronto(2026, 11, 3)  # month first (mdy)
    assert boulangerie.contact is None

    prairie = by_bn["555000111RM0001"]  # blank cells: unknown, read as "not done"
    assert prairie.snapshot.rm_account_linked is False
    assert prairie.snapshot.security == Security(kind="none", amount_cad=0.0)
    assert prairie.snapshot.highest_monthly_duties_taxes_cad is None
    assert prairie.snapshot.last_portal_login_at is None
    assert prairie.snapshot.delegations == []
    assert prairie.assumed == ("rm_linked blank: read as no", "security_kind blank: read as none")

    lakeshore = by_bn["777888999RM0003"].snapshot  # a quoted comma, a two-line cell, "$ -", 2:05 PM
    assert lakeshore.legal_name == "Lakeshore Produce, Ltd."
    assert [(d.broker_code, d.access, d.transaction_visibility) for d in lakeshore.delegations] == [
        ("BRK3", "none", False),
        ("LKCS", "business_management", True),
    ]
    assert lakeshore.security == Security(kind="none", amount_cad=0.0)
    assert lakeshore.last_portal_login_at == toronto(2026, 3, 7, 14, 5)

    spaces = by_bn["999000111RM0009"].snapshot  # "  no  ", " 0 ", "  FALSE ", empty cells beyond
    assert spaces.legal_name == "Trailing Spaces Inc"
    assert (spaces.ccp_registered, spaces.rm_account_linked, spaces.rpp_enrolled) == (False, False, False)
    assert spaces.highest_monthly_duties_taxes_cad == 0.0


def test_bad_rows_are_reported_with_line_and_column() -> None:
    result = read_sheet(messy(), "csv", OPTIONS, NOW)
    found = {(error.line, error.column) for error in result.errors}
    assert found == {
        (6, "importer_bn"),
        (6, "ccp_account"),
        (6, "delegations"),
        (6, "security_amount_cad"),
        (6, "last_portal_login"),
        (7, "importer_bn"),  # the same BN as line 2
        (8, "legal_name"),
        (8, "highest_monthly_duties_taxes_cad"),
        (8, "contact_email"),
        (11, "last_portal_login"),  # in the future; counted after the two-line cell of line 9
    }
    assert result.bad_lines == (6, 7, 8, 11)
    text = {str(error) for error in result.errors}
    assert "line 6, column C (CCP Account): 'maybe' is not yes/no" in "\n".join(text)
    assert any(
        t.startswith("line 7, column A (Importer BN): 123456789RM0001 is also on line 2") for t in text
    )
    assert any("'12,50' is not an amount" in t for t in text)
    assert any("'13/45/2026' is not a date" in t and "mdy" in t for t in text)


# --- the commands over a fake topic ------------------------------------------------------------


class FakeTopic:
    name = "carm.readiness"

    def __init__(self, snapshots: Sequence[CarmSnapshot] = (), *, exists: bool = True) -> None:
        self.current = {s.importer_bn: s for s in snapshots}
        self.exists = exists
        self.published: list[list[CarmSnapshot]] = []

    def read(self) -> TopicState:
        return TopicState(self.name, self.exists, dict(self.current))

    def publish(self, snapshots: Sequence[CarmSnapshot]) -> None:
        self.published.append(list(snapshots))
        self.current.update({s.importer_bn: s for s in snapshots})


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    carm_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["carm", *argv])


def run(topic: FakeTopic, *argv: str, clock: datetime = NOW) -> int:
    args = parse(*argv)
    kwargs: dict[str, Any] = {"clock": lambda: clock}
    if args.func is not carm_cli.run_template:
        kwargs["topic_factory"] = lambda _settings: topic
    result: int = args.func(args, Settings(), **kwargs)
    return result


def test_main_lists_the_carm_command() -> None:
    source = (Path(carm_cli.__file__).parent / "main.py").read_text()
    assert '"streams.cli.carm",' in source


def test_a_file_with_bad_rows_publishes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    topic = FakeTopic()
    assert run(topic, "import", str(FIXTURES / "messy.csv")) == 1
    assert topic.published == []
    err = capsys.readouterr().err
    assert "line 6, column A (Importer BN)" in err and "line 11, column J (Last Portal Login)" in err
    assert "4 bad row(s): nothing published" in err


def test_skip_bad_publishes_the_good_rows(capsys: pytest.CaptureFixture[str]) -> None:
    topic = FakeTopic()
    assert run(topic, "import", str(FIXTURES / "messy.csv"), "--skip-bad") == 0
    assert len(topic.published) == 1
    published = topic.published[0]
    assert sorted(s.importer_bn for s in published) == sorted(
        ["123456789RM0001", "987654321RM0002", "555000111RM0001", "777888999RM0003", "999000111RM0009"]
    )
    out = capsys.readouterr().out
    assert "skipping 4 bad row(s) (--skip-bad): line(s) 6, 7, 8, 11" in out
    assert "note: line 5 555000111RM0001: rm_linked blank: read as no" in out
    assert "5 new, 0 changed, 0 unchanged, 0 missing from the file" in out
    for snapshot in published:  # what the worker reads: valid, keyed by BN
        decoded = decode(TopicKind.CARM, snapshot.importer_bn.encode(), snapshot.model_dump_json().encode())
        assert isinstance(decoded, Decoded) and decoded.event == snapshot


def test_a_dry_run_prints_the_diff_and_publishes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    registry = FIXTURES / "registry.csv"
    current = read_sheet(registry.read_bytes(), "csv", OPTIONS, NOW - timedelta(days=1)).snapshots()
    gone = current[0].model_copy(update={"importer_bn": "111111111RM0001", "legal_name": "Gone Ltd"})
    topic = FakeTopic([*current[1:], gone])
    assert run(topic, "import", str(registry), "--dry-run") == 0
    assert topic.published == []
    out = capsys.readouterr().out
    assert "new        123456789RM0001  Maple Leaf Fasteners Inc." in out
    assert "missing    111111111RM0001  Gone Ltd  (on the topic, not in the file: kept)" in out
    assert "1 new, 0 changed, 2 unchanged, 1 missing from the file" in out
    assert "dry run: nothing published (1 snapshot(s) would be)" in out


def test_the_import_needs_the_topic(capsys: pytest.CaptureFixture[str]) -> None:
    topic = FakeTopic(exists=False)
    assert run(topic, "import", str(FIXTURES / "registry.csv")) == 2
    assert "holdwatch topics create" in capsys.readouterr().err
    assert run(topic, "import", str(FIXTURES / "registry.csv"), "--dry-run") == 0  # a preview is fine


def test_a_changed_cell_is_published_with_only_its_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    topic = FakeTopic()
    registry = FIXTURES / "registry.csv"
    assert run(topic, "import", str(registry)) == 0
    first = {s.importer_bn: s for s in topic.published[0]}
    capsys.readouterr()

    assert run(topic, "import", str(registry), clock=NOW + timedelta(hours=1)) == 0  # unchanged
    assert len(topic.published) == 1
    assert "nothing to publish" in capsys.readouterr().out

    edited = tmp_path / "edited.csv"
    edited.write_bytes(registry.read_bytes().replace(b",yes,cash,12500.5,", b",no,cash,12500.5,"))
    assert run(topic, "import", str(edited), clock=NOW + timedelta(hours=2)) == 0
    out = capsys.readouterr().out
    assert (
        "changed    987654321RM0002  Boulangerie du Nord Ltée\n               rpp_enrolled: yes → no\n" in out
    )
    assert out.count("→") == 1
    assert "0 new, 1 changed, 2 unchanged" in out
    (changed,) = topic.published[1]
    assert changed.rpp_enrolled is False and changed.occurred_at == NOW + timedelta(hours=2)
    assert changed.event_id != first["987654321RM0002"].event_id


def test_show_prints_the_record_readably_or_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    snapshots = read_sheet((FIXTURES / "registry.csv").read_bytes(), "csv", OPTIONS, NOW).snapshots()
    topic = FakeTopic(snapshots)
    assert run(topic, "show", "987654321rm0002") == 0
    out = capsys.readouterr().out
    assert out.startswith("987654321RM0002  Boulangerie du Nord Ltée\n")
    assert "BRK2: program management, visibility rules incomplete" in out
    assert "LKCS: business management, all three visibility rules" in out
    assert "cash $12,500.50" in out and "2026-05-16T09:30:00-04:00 (199 days ago)" in out
    assert run(topic, "show", "987654321RM0002", "--json") == 0
    assert CarmSnapshot.model_validate_json(capsys.readouterr().out) == topic.current["987654321RM0002"]
    assert run(topic, "show", "222222222RM0001") == 1
    assert "no CARM record" in capsys.readouterr().out
    assert run(topic, "show", "12345") == 2


def test_export_is_a_file_the_import_reads_back_identically(tmp_path: Path) -> None:
    odd = CarmSnapshot(  # what another producer might have written: unsorted, empty contact, µs
        event_id="sim-1",
        event_type="carm_snapshot",
        occurred_at=NOW,
        schema_version=1,
        importer_bn="333444555RM0007",
        legal_name='Quote "and" Comma, Inc.',
        ccp_registered=True,
        rm_account_linked=True,
        delegations=[
            Delegation(broker_code="ZED1", access="program_management", transaction_visibility=True),
            Delegation(broker_code="ABC2", access="none", transaction_visibility=False),
        ],
        rpp_enrolled=True,
        security=Security(kind="surety", amount_cad=1234.567),
        highest_monthly_duties_taxes_cad=0.1,
        last_portal_login_at=datetime(2026, 7, 1, 3, 4, 5, 678901, tzinfo=UTC),
        contact=Contact(),
    )
    snapshots = read_sheet((FIXTURES / "registry.csv").read_bytes(), "csv", OPTIONS, NOW).snapshots()
    formats: tuple[SheetFormat, ...] = ("csv", "yaml")
    for fmt in formats:
        topic = FakeTopic([*snapshots, odd])
        out = tmp_path / f"export.{fmt}"
        assert run(topic, "export", str(out)) == 0
        assert run(topic, "export", str(out)) == 2  # no overwrite without --force
        assert run(topic, "import", str(out)) == 0
        assert topic.published == []  # nothing changed
        read_back = read_sheet(out.read_bytes(), fmt, OPTIONS, NOW)
        assert [cells_of(s, OPTIONS) for s in read_back.snapshots()] == [
            cells_of(topic.current[bn], OPTIONS) for bn in sorted(topic.current)
        ]
    assert (tmp_path / "export.csv").read_bytes().startswith(b"\xef\xbb\xbf")


# --- YAML, the template --------------------------------------------------------------------------


def test_the_yaml_example_means_what_the_csv_says() -> None:
    yaml_result = read_sheet((FIXTURES / "example.yaml").read_bytes(), "yaml", OPTIONS, NOW)
    assert yaml_result.errors == () and yaml_result.file_errors == ()
    csv_rows = {s.importer_bn: s for s in read_sheet(messy(), "csv", OPTIONS, NOW).snapshots()}
    assert len(yaml_result.rows) == 3
    for row in yaml_result.rows:
        assert cells_of(row.snapshot, OPTIONS) == cells_of(csv_rows[row.snapshot.importer_bn], OPTIONS)
        assert row.snapshot.event_id == csv_rows[row.snapshot.importer_bn].event_id  # content-derived
    assert [row.line for row in yaml_result.rows] == [3, 23, 35]


def test_yaml_errors_name_the_line_of_the_key() -> None:
    text = b"importers:\n  - importer_bn: 123456789RM0001\n    legal_name: A\n    rpp_enrolled: perhaps\n"
    result = read_sheet(text, "yaml", OPTIONS, NOW)
    assert [(e.line, e.column) for e in result.errors] == [(4, "rpp_enrolled")]
    broken = read_sheet(b"importers:\n  - importer_bn: [\n", "yaml", OPTIONS, NOW)
    assert broken.file_errors and broken.file_errors[0].line == 3


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_the_template_imports_and_round_trips(
    fmt: SheetFormat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"template.{fmt}"
    topic = FakeTopic()
    assert run(topic, "template", str(out)) == 0
    first = read_sheet(out.read_bytes(), fmt, OPTIONS, NOW)
    assert first.errors == () and first.file_errors == () and first.warnings == ()
    assert len(first.rows) == 3
    for column in COLUMNS:  # every documented column is shown with a value somewhere
        assert any(cells_of(s, OPTIONS)[column] for s in first.snapshots()), column
    assert run(topic, "import", str(out)) == 0
    assert len(topic.published[0]) == 3
    exported = tmp_path / f"export.{fmt}"
    assert run(topic, "export", str(exported)) == 0
    again = read_sheet(exported.read_bytes(), fmt, OPTIONS, NOW)
    assert sorted(map(str, (cells_of(s, OPTIONS) for s in again.snapshots()))) == sorted(
        map(str, (cells_of(s, OPTIONS) for s in first.snapshots()))
    )
    capsys.readouterr()
    assert run(topic, "import", str(exported)) == 0
    assert "nothing to publish" in capsys.readouterr().out


def test_the_template_follows_the_date_order() -> None:
    rows = template_rows(NOW.date(), "dmy")
    result = read_sheet(write_sheet(rows, "csv"), "csv", SheetOptions("dmy", TORONTO), NOW)
    assert result.errors == ()
    assert result.rows[1].snapshot.last_portal_login_at == toronto(2026, 5, 16)


# --- the diff and the event ids ------------------------------------------------------------------


def registry_snapshots(now: datetime = NOW) -> list[CarmSnapshot]:
    return read_sheet((FIXTURES / "registry.csv").read_bytes(), "csv", OPTIONS, now).snapshots()


def test_the_diff_sorts_importers_into_new_changed_unchanged_missing() -> None:
    current = {s.importer_bn: s for s in registry_snapshots()}
    maple, prairie, boulangerie = registry_snapshots(NOW + timedelta(days=1))
    renamed = prairie.model_copy(update={"legal_name": "Prairie Tools Limited", "rpp_enrolled": True})
    newcomer = maple.model_copy(update={"importer_bn": "666777888RM0001"})
    incoming = [boulangerie, renamed, newcomer]
    del current["123456789RM0001"]
    current["111222333RM0001"] = maple.model_copy(update={"importer_bn": "111222333RM0001"})
    diff = diff_registry(current, incoming, OPTIONS)
    assert [s.importer_bn for s in diff.new] == ["666777888RM0001"]
    assert [(c.snapshot.importer_bn, [(f.column, f.old, f.new) for f in c.fields]) for c in diff.changed] == [
        (
            "555000111RM0001",
            [("legal_name", "Prairie Tools Ltd", "Prairie Tools Limited"), ("rpp_enrolled", "no", "yes")],
        )
    ]
    assert diff.unchanged == ("987654321RM0002",)  # a day later: occurred_at alone is no change
    assert [s.importer_bn for s in diff.missing] == ["111222333RM0001"]
    assert [s.importer_bn for s in diff.to_publish()] == ["666777888RM0001", "555000111RM0001"]
    lines = describe_diff(diff)
    assert "             legal_name: Prairie Tools Ltd → Prairie Tools Limited" in lines
    assert lines[-1] == "1 new, 1 changed, 1 unchanged, 1 missing from the file"


def test_event_ids_come_from_the_content_and_the_record_replaced() -> None:
    a = registry_snapshots()[0]
    assert content_id(a) == content_id(registry_snapshots(NOW + timedelta(days=3))[0])  # not the clock
    b = a.model_copy(update={"rpp_enrolled": False})
    assert content_id(b) != content_id(a)
    # A → B → A: the third must not repeat the first id (the worker drops ids it saw recently)
    first = diff_registry({}, [a], OPTIONS).new[0]
    second = diff_registry({a.importer_bn: first}, [b], OPTIONS).changed[0].snapshot
    third = diff_registry({a.importer_bn: second}, [a], OPTIONS).changed[0].snapshot
    assert len({first.event_id, second.event_id, third.event_id}) == 3
    again = diff_registry({a.importer_bn: second}, [a], OPTIONS).changed[0].snapshot
    assert again.event_id == third.event_id  # a retried import is a duplicate


# --- cells ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("yes", True), ("YES ", True), ("y", True), ("True", True), ("1", True), ("x", True), ("X", True),
     ("✓", True), ("no", False), ("N", False), ("false", False), ("0", False), ("", None), ("  ", None),
     ("?", None)],
)  # fmt: skip
def test_booleans(text: str, value: bool | None) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize(
    ("text", "value"),
    [("12500", 12500.0), ("$12,500.00", 12500.0), ("12,500", 12500.0), ("CAD 5000", 5000.0),
     ("$1,234,567.89", 1234567.89), ("30 000 $", 30000.0), ("0", 0.0), ("$0.00", 0.0), (".5", 0.5),
     ("", None), ("$ -", None), ("-", None)],
)  # fmt: skip
def test_amounts(text: str, value: float | None) -> None:
    assert parse_amount(text) == value


@pytest.mark.parametrize("text", ["-500", "(500)", "12,50", "1,2345", "twelve", "12.500,00", "5k"])
def test_bad_amounts(text: str) -> None:
    with pytest.raises(CellError):
        parse_amount(text)


def test_dates_in_both_styles_and_both_orders() -> None:
    dmy = SheetOptions("dmy", TORONTO)
    assert parse_date("2026-11-03", OPTIONS, NOW) == toronto(2026, 11, 3)
    assert parse_date("11/03/2026", OPTIONS, NOW) == toronto(2026, 11, 3)
    assert parse_date("11/03/2026", dmy, NOW) == toronto(2026, 3, 11)
    assert parse_date("3/7/2026 2:05 PM", OPTIONS, NOW) == toronto(2026, 3, 7, 14, 5)
    assert parse_date("2026-11-03 00:00:00", OPTIONS, NOW) == toronto(2026, 11, 3)
    assert parse_date("2026-11-03T10:00:00Z", OPTIONS, NOW) == datetime(2026, 11, 3, 10, tzinfo=UTC)
    assert parse_date("", OPTIONS, NOW) is None
    for bad, why in [
        ("25/10/2026", "month must be in 1..12"),  # day first under mdy
        ("11/03/26", "4 digits"),
        ("46329", "Excel date serial"),
        ("2027-01-10", "in the future"),
        ("last week", "not a date"),
    ]:
        with pytest.raises(CellError, match=why):
            parse_date(bad, OPTIONS, NOW)


def test_bns_and_delegations() -> None:
    assert parse_bn(" 123456789 rm 0001 ") == "123456789RM0001"
    assert parse_bn("123456789-RM-0001") == "123456789RM0001"
    with pytest.raises(CellError, match="BN9"):
        parse_bn("123456789")
    delegations, assumed = parse_delegations("brk2:PM; LKCS:Business Management:yes/yes/yes\nZZ9")
    assert [(d.broker_code, d.access, d.transaction_visibility) for d in delegations] == [
        ("BRK2", "program_management", False),
        ("LKCS", "business_management", True),
        ("ZZ9", "none", False),
    ]
    assert assumed == [
        "BRK2 transaction visibility blank: read as no",
        "ZZ9 access blank: read as none (not delegated)",
    ]
    for bad in [
        "LKCS:bm:yes/no",
        "LKCS:bm:yes; lkcs:pm:yes",
        "LKCS:owner:yes",
        "LK CS:bm:yes",
        "A:bm:yes:no",
    ]:
        with pytest.raises(CellError):
            parse_delegations(bad)


def test_blank_is_read_the_way_that_raises_the_alert() -> None:
    """Dispatcher-safe: a row with every readiness cell blank gets every readiness alert."""
    text = "importer_bn,legal_name,ccp_account,rm_linked,delegations,rpp_enrolled,security_kind,"
    text += "security_amount_cad,highest_monthly_duties_taxes_cad,last_portal_login\n"
    text += "123456789RM0001,Blank Co,,,,,,,,\n"
    text += "123456789RM0002,Half Co,yes,yes,LKCS:business_management:,yes,surety,,,\n"
    result = read_sheet(text.encode(), "csv", OPTIONS, NOW)
    assert result.errors == ()

    def reasons(snapshot: CarmSnapshot) -> set[str]:
        probe = ShipmentState(ccn="ABCD1", known=True, importer_bn=snapshot.importer_bn, broker_code="LKCS")
        active: dict[str, rules.Severity] = {}
        rules.readiness_reasons(probe, snapshot, NOW, Thresholds(), active)
        return set(active)

    blank, half = result.snapshots()
    assert reasons(blank) == {"CARM_NOT_REGISTERED", "CARM_BROKER_NOT_DELEGATED", "CARM_NO_RPP"}
    assert reasons(half) == {"CARM_DELEGATION_INCOMPLETE", "CARM_SECURITY_SHORT"}


def test_header_problems_stop_the_import_even_with_skip_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.csv"
    path.write_text("importer_bn,legal_name,ccp_account\n123456789RM0001,A,yes\n")
    topic = FakeTopic()
    assert run(topic, "import", str(path), "--skip-bad") == 1
    assert topic.published == []
    assert "the header lacks column(s) rm_linked, delegations, rpp_enrolled" in capsys.readouterr().err


def test_semicolons_windows_1252_and_a_sep_line() -> None:
    header = ";".join(COLUMNS[:10])
    text = f'sep=;\r\n{header}\r\n123456789RM0001;Caf\xe9 Qu\xe9bec;oui;oui;"LKCS:bm:yes; BRK2:pm:no";non;'
    text += "cash;1 250,00;;2026-01-02\r\n"
    result = read_sheet(text.encode("cp1252"), "csv", OPTIONS, NOW)
    assert any("Windows-1252" in warning for warning in result.warnings)
    (error,) = result.errors  # "1 250,00" is a decimal comma: refused, not misread as 125000
    assert (error.line, error.column) == (3, "security_amount_cad")
    fixed = text.replace("1 250,00", "1 250")
    (row,) = read_sheet(fixed.encode("cp1252"), "csv", OPTIONS, NOW).rows
    assert row.snapshot.legal_name == "Café Québec" and row.snapshot.rpp_enrolled is False
    assert [d.broker_code for d in row.snapshot.delegations] == ["BRK2", "LKCS"]
    assert row.snapshot.security == Security(kind="cash", amount_cad=1250.0)


# --- the topic's records ----------------------------------------------------------------------


def test_the_topic_state_is_the_latest_record_per_importer() -> None:
    maple, prairie, boulangerie = registry_snapshots()
    newer = maple.model_copy(update={"rpp_enrolled": False, "event_id": "e2"})

    def record(partition: int, offset: int, snapshot: CarmSnapshot | None, key: str) -> TopicRecord:
        value = None if snapshot is None else snapshot.model_dump_json().encode()
        return TopicRecord(partition, offset, 0, key.encode(), value)

    state = fold_records(
        "carm.readiness",
        [
            record(0, 1, newer, maple.importer_bn),
            record(0, 0, maple, maple.importer_bn),
            record(1, 0, prairie, prairie.importer_bn),
            record(1, 1, None, prairie.importer_bn),  # deleted
            record(2, 0, boulangerie, boulangerie.importer_bn),
            TopicRecord(2, 1, 0, boulangerie.importer_bn.encode(), b"{not json"),  # dead-lettered
        ],
    )
    assert state.snapshots == {maple.importer_bn: newer, boulangerie.importer_bn: boulangerie}
    assert state.positions[maple.importer_bn].offset == 1
    assert set(state.deleted) == {prairie.importer_bn}
    assert len(state.unreadable) == 1 and state.unreadable[0].startswith("partition 2 offset 1: not_json")
