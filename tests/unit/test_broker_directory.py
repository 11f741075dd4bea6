"""The broker directory: its files (TOML, CSV), office hours in the broker's zone, the API's contact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.status import load_status
from schemas.api import LoadQuery
from schemas.brokers import BrokerContact, BrokerDirectory, Span, parse_hours
from streams.feeds.brokers import BrokerDirectoryError, load_broker_directory, parse_csv, parse_toml
from streams.worker.web import LocalStatus, StatusApi
from tests.enginekit import BN, BROKER, accepted, at, carm, reported

TOML = """\
# the carrier's brokers
[[broker]]
code = "lkcs"
name = "Lakeshore Customs Services"
phone_24h = "+1-519-555-0134"
phone = "+1-519-555-0100"
email = "ops@lakeshore.example"
hours = "Mon-Fri 07:00-19:00; Sat 08:00-12:00"
tz = "America/Toronto"

[[broker]]
code = "PRCG"
name = "Prairie Customs Group"
phone = "+1-204-555-0111"
tz = "America/Winnipeg"
"""

CSV = (
    "\ufeffname,code,phone_24h,phone,email,hours,tz\r\n"
    "Lakeshore Customs Services,LKCS,+1-519-555-0134,,ops@lakeshore.example,"
    "Mon-Fri 07:00-19:00,America/Toronto\r\n"
    "\r\n"
    '"Coast-to-Coast Declarations, Inc.",CSTD,+1-604-555-0177,,,"Mon-Fri 06:00-18:00",America/Vancouver\r\n'
)


def _utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def contact(
    hours: str | None = "Mon-Fri 07:00-19:00", tz: str = "America/Toronto", **kw: str
) -> BrokerContact:
    fields = {"code": "LKCS", "name": "Lakeshore Customs Services", "phone_24h": "+1-519-555-0134"} | kw
    return BrokerContact.model_validate({**fields, "hours": hours, "tz": tz})


# --- files -------------------------------------------------------------------------------------


def test_toml_file_gives_each_broker_by_code() -> None:
    directory = parse_toml(TOML)
    assert len(directory) == 2
    lkcs = directory.get("LKCS")
    assert lkcs is not None and lkcs.code == "LKCS"  # codes are upper-cased, lookups too
    assert directory.get(" lkcs ") == lkcs
    assert (lkcs.phone_24h, lkcs.phone, lkcs.email) == (
        "+1-519-555-0134",
        "+1-519-555-0100",
        "ops@lakeshore.example",
    )
    prcg = directory.get("PRCG")
    assert (
        prcg is not None and prcg.phone_24h is None and prcg.hours is None and prcg.tz == "America/Winnipeg"
    )
    assert directory.get("NOPE") is None and directory.get(None) is None


def test_csv_file_with_bom_blank_lines_quoted_cells_and_blank_cells() -> None:
    directory = parse_csv(CSV)
    assert sorted(directory.contacts) == ["CSTD", "LKCS"]
    cstd = directory.get("CSTD")
    assert cstd is not None and cstd.name == "Coast-to-Coast Declarations, Inc."
    assert cstd.phone is None and cstd.email is None  # blank cells are unknown, not ""
    lkcs = directory.get("LKCS")
    assert lkcs is not None and (lkcs.phone_24h, lkcs.hours) == ("+1-519-555-0134", "Mon-Fri 07:00-19:00")


def test_bad_csv_rows_are_each_reported_with_line_and_reason_and_nothing_is_used() -> None:
    text = (
        "code,name,phone_24h,hours,tz\n"
        "LKCS,Lakeshore,+1-519-555-0134,Mon-Fri 07:00-19:00,America/Toronto\n"  # line 2: good
        "NGCB,Niagara Gateway,+1-905-555-0101,Mnday 07:00-19:00,America/Toronto\n"  # 3: bad day
        "STLB,St. Lawrence,+1-514-555-0102,,America/Montreal_\n"  # 4: bad zone
        "MPLC,Maple Leaf,,,\n"  # 5: no phone
        "lkcs,Lakeshore again,+1-519-555-0999,,\n"  # 6: duplicate
        "PRTC,Portage,+1-204-555-0103,,America/Winnipeg,extra\n"  # 7: a cell too many
        ",No Code,+1-204-555-0104,,\n"  # 8: no code
    )
    with pytest.raises(BrokerDirectoryError) as caught:
        parse_csv(text, "brokers.csv")
    problems = {p.line: p.reason for p in caught.value.problems}
    assert sorted(problems) == [3, 4, 5, 6, 7, 8]
    assert "unknown day 'Mnday'" in problems[3]
    assert "tz" in problems[4] and "unknown time zone 'America/Montreal_'" in problems[4]
    assert "no phone" in problems[5]
    assert "code LKCS again (first on line 2)" in problems[6]
    assert "6 cells for 5 columns" in problems[7]
    assert problems[8].startswith("code:")
    message = str(caught.value)
    assert message.startswith("broker directory brokers.csv: 6 bad row(s)") and "line 3: hours:" in message


def test_a_csv_header_with_an_unknown_or_missing_column_is_refused() -> None:
    with pytest.raises(BrokerDirectoryError) as typo:
        parse_csv("code,name,phone24\nLKCS,Lakeshore,+1\n")
    [problem] = typo.value.problems
    assert (
        problem.line == 1 and "unknown column(s) phone24" in problem.reason and "phone_24h" in problem.reason
    )
    with pytest.raises(BrokerDirectoryError, match="no code column"):
        parse_csv("\n\nname,phone\nLakeshore,+1\n")
    with pytest.raises(BrokerDirectoryError, match="no header row"):
        parse_csv("\n")


def test_bad_toml_tables_are_reported_at_their_header_line() -> None:
    text = TOML + '\n[[broker]]\ncode = "BRDX"\nname = "Bridgewater"\nphone = "+1"\nhours = "Mon 9-5"\n'
    text += '\n[[broker]]\ncode = "NGCB"\nname = "Niagara"\nfax = "+1"\nphone = "+1"\n'
    with pytest.raises(BrokerDirectoryError) as caught:
        parse_toml(text)
    assert [(p.line, p.reason.split(":")[0]) for p in caught.value.problems] == [(17, "hours"), (23, "fax")]
    assert "bad time '9'" in caught.value.problems[0].reason
    assert "Extra inputs are not permitted" in caught.value.problems[1].reason
    with pytest.raises(BrokerDirectoryError) as syntax:
        parse_toml('[[broker]]\ncode = "X\n')
    assert syntax.value.problems[0].line == 2
    with pytest.raises(BrokerDirectoryError, match="unknown key"):
        parse_toml('[brokers.LKCS]\nname = "x"\n')


def test_load_picks_the_format_by_suffix_and_no_file_is_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "brokers.toml").write_text(TOML)
    (tmp_path / "brokers.csv").write_text(CSV, encoding="utf-8")
    assert sorted(load_broker_directory(tmp_path / "brokers.toml").contacts) == ["LKCS", "PRCG"]
    assert sorted(load_broker_directory(tmp_path / "brokers.csv").contacts) == ["CSTD", "LKCS"]
    assert len(load_broker_directory(None)) == 0
    with pytest.raises(BrokerDirectoryError, match="cannot read the file"):
        load_broker_directory(tmp_path / "missing.toml")
    with pytest.raises(BrokerDirectoryError, match=str(tmp_path / "bad.csv")):
        (tmp_path / "bad.csv").write_text("code,name\nX,\n")
        load_broker_directory(tmp_path / "bad.csv")


# --- office hours ----------------------------------------------------------------------------


def test_the_hours_format() -> None:
    assert parse_hours("Mon-Fri 07:00-19:00; Sat 08:00-12:00; Sun closed") == tuple(
        [Span(d, 420, 1140) for d in range(5)] + [Span(5, 480, 720)]
    )
    assert parse_hours("Sat, Sun 8:00-12:00 13:00-16:30") == (
        Span(5, 480, 720),
        Span(5, 780, 990),
        Span(6, 480, 720),
        Span(6, 780, 990),
    )
    assert parse_hours("Fri-Mon 09:00-17:00") == tuple(Span(d, 540, 1020) for d in (0, 4, 5, 6))  # wraps
    assert parse_hours("Fri 22:00-06:00") == (Span(4, 1320, 1800),)  # past midnight
    assert parse_hours("24/7") == tuple(Span(d, 0, 1440) for d in range(7))
    assert parse_hours("daily 00:00-24:00") == parse_hours("24/7")
    for bad, reason in [
        ("Mnd 07:00-19:00", "unknown day"),
        ("Mon 7-19", "bad time"),
        ("Mon 24:30-25:00", "bad time"),
        ("Mon 07:00-07:00", "empty span"),
        ("07:00-19:00", "write days then times"),
        ("Mon-Fri", "write days then times"),
        ("Mon 07:00", "bad span"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_hours(bad)


def test_office_open_in_the_brokers_own_zone() -> None:
    """One instant, two brokers with the same hours: open in Toronto, not yet in Vancouver."""
    toronto, vancouver = contact(), contact(tz="America/Vancouver")
    noon_toronto = _utc(2026, 11, 24, 17)  # Tue 12:00 EST = 09:00 PST
    early = _utc(2026, 11, 24, 14)  # Tue 09:00 EST = 06:00 PST
    assert toronto.office_open(noon_toronto).open_now is True
    assert toronto.office_open(noon_toronto).closes_at == _utc(2026, 11, 25, 0)  # 19:00 EST
    assert vancouver.office_open(noon_toronto).open_now is True
    state = vancouver.office_open(early)
    assert state.open_now is False and state.opens_at == _utc(2026, 11, 24, 15)  # 07:00 PST
    assert vancouver.closed_note(early) == "office closed until 07:00 PST: use the 24 h line"
    assert toronto.closed_note(early) is None


def test_a_weekend_closes_until_monday_and_says_the_day() -> None:
    friday_evening = _utc(2026, 11, 28, 0, 30)  # Fri 27 Nov 19:30 EST
    state = contact().office_open(friday_evening)
    assert state.open_now is False and state.opens_at == _utc(2026, 11, 30, 12)  # Mon 07:00 EST
    assert contact().closed_note(friday_evening) == "office closed until Mon 07:00 EST: use the 24 h line"
    saturday = contact(hours="Mon-Fri 07:00-19:00; Sat 08:00-12:00")
    assert saturday.office_open(friday_evening).opens_at == _utc(2026, 11, 28, 13)  # Sat 08:00 EST
    no_line = contact(phone_24h="", phone="+1-519-555-0100")
    assert (
        no_line.closed_note(friday_evening) == "office closed until Mon 07:00 EST, and no 24 h line on file"
    )


def test_hours_follow_daylight_saving_and_run_past_midnight() -> None:
    # 2026-03-08: Toronto moves to EDT. Monday 9 March opens at 07:00 EDT = 11:00 UTC.
    sunday = _utc(2026, 3, 8, 20)
    assert contact().office_open(sunday).opens_at == _utc(2026, 3, 9, 11)
    assert contact().closed_note(sunday) == "office closed until Mon 07:00 EDT: use the 24 h line"
    night = contact(hours="Fri 22:00-06:00")
    assert night.office_open(_utc(2026, 11, 28, 9)).open_now is True  # Sat 04:00 EST
    assert night.office_open(_utc(2026, 11, 28, 12)).open_now is False  # Sat 07:00 EST
    always = contact(hours="24/7")
    state = always.office_open(_utc(2026, 11, 28, 9))
    assert state.open_now is True and state.closes_at is not None and state.closes_at > _utc(2026, 12, 3, 0)


def test_no_hours_means_unknown_not_closed() -> None:
    state = contact(hours=None).office_open(_utc(2026, 11, 28, 3))
    assert state.open_now is None and contact(hours=None).closed_note(_utc(2026, 11, 28, 3)) is None


def test_the_call_line_names_the_broker_and_its_numbers() -> None:
    full = contact(phone="+1-519-555-0100", email="ops@lakeshore.example")
    assert full.call_line() == (
        "Call Lakeshore Customs Services (LKCS), 24 h line +1-519-555-0134, office +1-519-555-0100, "
        "ops@lakeshore.example"
    )
    assert contact(phone_24h="", phone="+1-519-555-0100").call_line() == (
        "Call Lakeshore Customs Services (LKCS), office +1-519-555-0100"
    )


# --- the status API ----------------------------------------------------------------------------


def _directory(hours: str = "Mon-Fri 07:00-19:00") -> BrokerDirectory:
    return BrokerDirectory.of(
        [contact(hours=hours, code=BROKER, name="Border Brokers", email="ops@bb.example")]
    )


def test_a_loads_status_carries_its_brokers_contact_as_of_the_answer() -> None:
    runner = EventTimeRunner(Thresholds())
    record = carm(rpp=False)
    runner.on_carm(BN, record, record.occurred_at)
    runner.on_shipment_event(reported(0))
    s = runner.shipments["ABCD100"]
    # T0 is Mon 2 March 2026 08:00 UTC = 03:00 EST: the office opens at 07:00 EST (12:00 UTC).
    closed = load_status(s, record, at(0), Thresholds(), brokers=_directory())
    assert closed.broker_contact is not None
    assert closed.broker_contact.open_now is False and closed.broker_contact.opens_at == at(240)
    assert closed.broker_contact.office_note == "office closed until 07:00 EST: use the 24 h line"
    assert (
        closed.broker_contact.call == "Call Border Brokers (BRK1), 24 h line +1-519-555-0134, ops@bb.example"
    )
    opened = load_status(s, record, at(300), Thresholds(), brokers=_directory())
    assert opened.broker_contact is not None and opened.broker_contact.open_now is True
    assert opened.broker_contact.office_note is None and opened.broker_contact.opens_at is None
    assert load_status(s, record, at(0), Thresholds()).broker_contact is None  # no directory
    assert load_status(s, record, at(0), Thresholds(), brokers=BrokerDirectory()).broker_contact is None


def test_the_status_api_answers_with_the_contact() -> None:
    runners: dict[int, Any] = {p: EventTimeRunner(Thresholds()) for p in range(3)}  # Runner protocol
    local = LocalStatus(
        lambda: runners, Thresholds(), 3, event_clock=False, wall=lambda: at(0), brokers=_directory()
    )
    runners[local.partition_of("ABCD100")].on_shipment_event(reported(0))
    runners[local.partition_of("ABCD100")].on_shipment_event(accepted(1))
    reply = StatusApi(local).load("ABCD100")
    assert reply is not None and reply.status == 200
    body = json.loads(reply.body)
    assert body["broker_contact"]["phone_24h"] == "+1-519-555-0134"
    assert (
        body["broker_contact"]["open_now"] is False
        and body["broker_contact"]["opens_at"] == "2026-03-02T12:00:00Z"
    )
    assert body["broker_contact"]["office_note"].startswith("office closed until 07:00 EST")
    listed = local.loads(LoadQuery(), at(0))
    assert [item.broker_contact.code for item in listed if item.broker_contact] == [BROKER]
