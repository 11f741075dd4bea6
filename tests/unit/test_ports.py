"""The CBSA office table: codes checked against the sources, and a carrier's file over it."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerting.engine.config import Thresholds
from alerting.engine.runner import EventTimeRunner
from alerting.engine.status import load_status
from alerting.notify.render import Reference, alert_card, port_info, render_alert
from schemas.ports import PORTS, SOURCES, Port, with_overrides
from streams.feeds.ports import PortsFileError, load_ports, parse_ports_csv
from tests.enginekit import at, reported
from tests.fixtures.slack import make_alert

CHECKED = {  # ../shared/notes/cbsa-ports.md: code -> (a word of the name, zone, confirmed by)
    "0453": ("Ambassador", "America/Toronto", ("A", "C")),
    "0452": ("Tunnel", "America/Toronto", ("C",)),
    "0440": ("Blue Water", "America/Toronto", ("A", "C")),
    "0410": ("Peace Bridge", "America/Toronto", ("B", "C")),
    "0427": ("Queenston", "America/Toronto", ("C",)),
    "0456": ("Lansdowne", "America/Toronto", ("C",)),
    "0439": ("Prescott", "America/Toronto", ("C",)),
    "0409": ("Cornwall", "America/Toronto", ("C",)),
    "0441": ("Sault Ste. Marie", "America/Toronto", ("C",)),
    "0478": ("Fort Frances", "America/Winnipeg", ("C",)),
    "0475": ("Pigeon River", "America/Toronto", ("C",)),
    "0351": ("Lacolle", "America/Toronto", ("C",)),
    "0314": ("Stanstead", "America/Toronto", ("C",)),
    "0328": ("St-Armand", "America/Toronto", ("C",)),
    "0211": ("St. Stephen", "America/Moncton", ("C",)),
    "0231": ("3rd Bridge", "America/Moncton", ("C",)),
    "0212": ("Woodstock", "America/Moncton", ("C",)),
    "0213": ("Edmundston", "America/Moncton", ("C",)),
    "0502": ("Emerson", "America/Winnipeg", ("C",)),
    "0602": ("North Portal", "America/Regina", ("C",)),
    "0607": ("Regway", "America/Regina", ("C",)),
    "0705": ("Coutts", "America/Edmonton", ("C",)),
    "0813": ("Pacific Highway", "America/Vancouver", ("C",)),
    "0815": ("Boundary Bay", "America/Vancouver", ("C",)),
    "0817": ("Huntingdon", "America/Vancouver", ("C",)),
    "0841": ("Aldergrove", "America/Vancouver", ("C",)),
    "0840": ("Douglas", "America/Vancouver", ("C",)),
    "0818": ("Kingsgate", "America/Vancouver", ("C",)),
    "0819": ("Osoyoos", "America/Vancouver", ("C",)),
    "0824": ("Roosville", "America/Edmonton", ("C",)),
}


def test_the_table_is_the_checked_list() -> None:
    assert set(PORTS) == set(CHECKED)
    for code, (word, tz, sources) in CHECKED.items():
        port = PORTS[code]
        assert port.code == code and word in port.name and port.tz == tz and port.sources == sources
        ZoneInfo(port.tz)
        assert set(port.sources) <= set(SOURCES)


def test_the_two_wrong_codes_are_corrected() -> None:
    assert "Lacolle" in PORTS["0351"].name and "0352" not in PORTS  # 0352 is Cantic station
    assert "Woodstock" in PORTS["0212"].name
    assert "St. Stephen" in PORTS["0211"].name and "Woodstock" not in PORTS["0211"].name


def test_single_source_codes_are_marked() -> None:
    assert {code for code, port in PORTS.items() if not port.single_source} == {"0453", "0440", "0410"}
    assert PORTS["0351"].single_source and PORTS["0212"].single_source
    assert not Port("9999", "Nowhere", "UTC").single_source  # no source at all is not "one source"


def test_a_carrier_file_adds_and_corrects_offices(tmp_path: Path) -> None:
    path = tmp_path / "ports.csv"
    path.write_text(
        "\ufeffname,code,tz\n\n"
        '"Windsor - Ambassador Bridge (our yard), ON",0453,America/Toronto\n'
        '"Rainy River, ON",0479,America/Winnipeg\n',
        encoding="utf-8",
    )
    table = load_ports(path)
    assert table["0453"].name == "Windsor - Ambassador Bridge (our yard), ON"
    assert table["0453"].sources == ("carrier",)
    assert table["0479"] == Port("0479", "Rainy River, ON", "America/Winnipeg", ("carrier",))
    assert table["0351"] == PORTS["0351"]  # the rest of the built-in table stays
    assert "0479" not in PORTS and PORTS["0453"].name == "Windsor - Ambassador Bridge, ON"  # not mutated
    assert load_ports(None) == PORTS
    with pytest.raises(PortsFileError, match="cannot read the file"):
        load_ports(tmp_path / "missing.csv")
    assert with_overrides([], PORTS) == PORTS


def test_bad_port_rows_are_each_reported_with_line_and_reason() -> None:
    text = (
        "code,name,tz\n"
        "0479,Rainy River,America/Winnipeg\n"
        "479,Too Short,America/Winnipeg\n"
        "0480,,America/Winnipeg\n"
        "0481,Bad Zone,Central\n"
        "0479,Again,America/Winnipeg\n"
        "0482,A, comma,America/Toronto\n"
    )
    with pytest.raises(PortsFileError) as caught:
        parse_ports_csv(text, "ports.csv")
    problems = [(p.line, p.reason) for p in caught.value.problems]
    assert problems == [
        (3, "code '479' is not a 4-digit CBSA office code"),
        (4, "no name"),
        (5, "unknown time zone 'Central': use an IANA name like America/Toronto"),
        (6, "code 0479 again (first on line 2)"),
        (7, "4 cells for 3 columns"),
    ]
    assert str(caught.value).startswith("ports file ports.csv: 5 bad row(s)")
    with pytest.raises(PortsFileError, match="the columns are code, name, tz"):
        parse_ports_csv("code,office\n0479,Rainy River\n")
    with pytest.raises(PortsFileError, match="no header row"):
        parse_ports_csv("")


def test_messages_and_status_name_ports_from_the_injected_table() -> None:
    table = with_overrides([Port("0479", "Rainy River, ON", "America/Winnipeg", ("carrier",))])
    alert = make_alert(port="0479")
    assert port_info("0479") == port_info("0479", PORTS)
    plain = alert_card(alert).facts
    assert ("Port", "0479") in plain  # an unknown office still shows its code
    named = json.dumps(render_alert(alert, reference=Reference(ports=table)).blocks)
    assert "Rainy River, ON (0479)" in named and "CST" in named  # the port's local time
    runner = EventTimeRunner(Thresholds())
    runner.on_shipment_event(reported(0))  # port 0427
    s = runner.shipments["ABCD100"]
    renamed = with_overrides([Port("0427", "Queenston (our name), ON", "America/Toronto", ("carrier",))])
    assert load_status(s, None, at(0), Thresholds()).port_name == PORTS["0427"].name
    status = load_status(s, None, at(0), Thresholds(), ports=renamed)
    assert (status.port_name, status.port_tz) == ("Queenston (our name), ON", "America/Toronto")
    unknown = load_status(s, None, at(0), Thresholds(), ports={})
    assert unknown.port_of_entry == "0427" and unknown.port_name is None
