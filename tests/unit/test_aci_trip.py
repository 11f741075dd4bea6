"""`holdwatch ingest aci-trip`: trip files → events, against golden files.

tests/fixtures/aci/NN-*.json are ingested in name order into one state (so 05 amends 01); each
file's events and missing facts must equal NN-*.expected.jsonl exactly. After a deliberate change
to the mapping, regenerate them with REGENERATE_ACI_GOLDENS=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.decode import Decoded, TopicKind, decode
from schemas.emanifest import CargoReported, EtaUpdated
from streams.cli.main import build_parser
from streams.feeds.aci_publish import (
    IngestReport,
    PublishError,
    RecordingPublisher,
    TripIngest,
    load_mapping,
    load_state,
    producer_options,
    trip_files,
)
from streams.feeds.aci_trip import (
    IngestState,
    MappingError,
    MissingFacts,
    Result,
    TripContext,
    TripMapping,
    ingest_documents,
    map_trip,
    mapping_from_csv,
    mapping_from_data,
    parse_eta,
)
from streams.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aci"
MAPPING = FIXTURES / "mapping.yaml"
LOCAL_TZ = "America/Winnipeg"  # not the default: proves that naive times use the setting
T0 = datetime(2026, 11, 16, 14, 0, tzinfo=UTC)
TOPIC = "emanifest.test"
REGENERATE = os.environ.get("REGENERATE_ACI_GOLDENS") == "1"


def stepping_clock(start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> Callable[[], datetime]:
    """A clock that moves one step per reading: the ingest reads it once per file it maps."""
    ticks: Iterator[int] = iter(range(10**6))
    return lambda: start + next(ticks) * step


def fixture_files() -> list[Path]:
    return trip_files([FIXTURES])


def make_ingest(
    *,
    publisher: Any = None,
    state_path: Path | None = None,
    mapping_path: Path | None = MAPPING,
    clock: Callable[[], datetime] | None = None,
    say: Callable[[str], None] = lambda _: None,
    topic: str = TOPIC,
) -> TripIngest:
    """The ingest the goldens describe (the integration test drives the same one into Kafka)."""
    mapping, digest = load_mapping(mapping_path)
    return TripIngest(
        topic=topic,
        publisher=publisher if publisher is not None else RecordingPublisher(),
        context=TripContext(mapping=mapping, local_tz=ZoneInfo(LOCAL_TZ)),
        state=load_state(state_path) if state_path else IngestState(),
        state_path=state_path,
        mapping_path=mapping_path,
        mapping_digest=digest,
        clock=clock or stepping_clock(),
        say=say,
    )


def result_line(result: Result) -> dict[str, Any]:
    if isinstance(result, MissingFacts):
        return {
            "missing_facts": {
                "ccn": result.ccn,
                "trip_number": result.trip_number,
                "shipment": result.shipment,
                "blocking": result.blocking,
                "reasons": list(result.reasons),
            }
        }
    return result.model_dump(mode="json")


def golden_path(fixture: Path) -> Path:
    return fixture.with_name(fixture.stem + ".expected.jsonl")


def read_golden(fixture: Path) -> list[dict[str, Any]]:
    text = golden_path(fixture).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def expected_events() -> list[dict[str, Any]]:
    """Every event line of the goldens, in file order: what a directory ingest publishes."""
    return [line for f in fixture_files() for line in read_golden(f) if "event_type" in line]


def test_the_fixtures_cover_the_cases() -> None:
    names = [f.name for f in fixture_files()]
    assert names == [
        "01-complete.json",
        "02-broker-from-mapping.json",
        "03-importer-missing.json",
        "04-naive-times.json",
        "05-amendment-eta.json",
    ]


@pytest.mark.parametrize("index", range(5), ids=lambda i: f"file{i + 1}")
def test_golden(index: int) -> None:
    files = fixture_files()
    ingest = make_ingest()
    for earlier in files[:index]:
        ingest.ingest_file(earlier)
    got = [result_line(r) for r in ingest.ingest_file(files[index])]
    if REGENERATE:
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in got)
        golden_path(files[index]).write_text(text, encoding="utf-8")
    assert got == read_golden(files[index])


def test_goldens_say_what_each_case_is_about() -> None:
    lines = {f.name: read_golden(f) for f in fixture_files()}
    first, second = lines["01-complete.json"]
    assert (first["broker_code"], first["driver_phone"], first["eta"]) == (
        "LKCS",
        "+1-519-555-0142",
        "2026-11-17T19:30:00Z",
    )
    assert second["importer_bn"] == "223456789RM0001"  # importerCsaBusinessNumber
    by_mapping = lines["02-broker-from-mapping.json"]
    assert [e["broker_code"] for e in by_mapping] == ["LKCS", "NRTH"]  # consignee's, shipper's entry
    assert by_mapping[0]["ccn"] == "ABCD42002001"  # upper-cased
    assert by_mapping[1]["importer_bn"] == "323456789RM0001"
    missing, published, note = lines["03-importer-missing.json"]
    assert missing["missing_facts"]["reasons"] == [
        "no importer BN (add the consignee 'ACME Wholesale Ltd' to the mapping file)"
    ]
    assert published["broker_code"] is None and not note["missing_facts"]["blocking"]
    (naive,) = lines["04-naive-times.json"]
    assert naive["eta"] == "2026-11-19T12:15:00Z"  # 06:15 in Winnipeg (CST, -06:00)
    moved, amended = lines["05-amendment-eta.json"]
    assert (moved["event_type"], moved["eta"]) == ("eta_updated", "2026-11-17T21:00:00Z")
    assert (amended["event_type"], amended["broker_code"]) == ("cargo_reported", "LKCS")


def test_every_published_record_is_valid_on_the_wire() -> None:
    publisher = RecordingPublisher()
    ingest = make_ingest(publisher=publisher)
    ingest.run_once([FIXTURES])
    assert len(publisher.sent) == len(expected_events()) == 8
    for topic, key, value in publisher.sent:
        decoded = decode(TopicKind.EMANIFEST, key, value)
        assert isinstance(decoded, Decoded), decoded
        assert isinstance(decoded.event, CargoReported | EtaUpdated)
        assert topic == TOPIC and key.decode() == decoded.event.ccn


def test_reingest_publishes_nothing_new_and_repeats_what_is_missing(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    make_ingest(state_path=state).run_once([FIXTURES])
    publisher = RecordingPublisher()
    said: list[str] = []
    again = make_ingest(
        publisher=publisher, state_path=state, clock=stepping_clock(T0 + timedelta(hours=1)), say=said.append
    )
    report = again.run_once([FIXTURES])
    assert publisher.sent == []
    assert (report.files, report.unchanged, report.not_published) == (5, 4, 1)  # 03 is read again
    assert [line for line in said if line.startswith("not published")] == [
        "not published: CCN ABCD42003001: no importer BN (add the consignee 'ACME Wholesale Ltd' to the "
        "mapping file)  [03-importer-missing.json, shipment 1]"
    ]
    assert report.incomplete


def test_a_lost_state_republishes_the_same_event_ids(tmp_path: Path) -> None:
    first, second = RecordingPublisher(), RecordingPublisher()
    make_ingest(publisher=first).run_once([FIXTURES])
    make_ingest(publisher=second, clock=stepping_clock(T0 + timedelta(days=1))).run_once([FIXTURES])
    ids = [[json.loads(value)["event_id"] for _, _, value in p.sent] for p in (first, second)]
    assert ids[0] == ids[1]  # duplicates the pipeline drops
    assert first.sent[0][2] != second.sent[0][2]  # (occurred_at differs)


def test_a_failed_publish_keeps_no_state_and_the_rerun_sends_the_same_records(tmp_path: Path) -> None:
    class Failing(RecordingPublisher):
        def flush(self) -> None:
            raise PublishError("broker away")

    state = tmp_path / "state.json"
    failing = Failing()
    with pytest.raises(PublishError):
        make_ingest(publisher=failing, state_path=state).ingest_file(fixture_files()[0])
    assert not state.exists()
    retry = RecordingPublisher()
    make_ingest(publisher=retry, state_path=state).ingest_file(fixture_files()[0])
    assert [v for _, _, v in retry.sent] == [v for _, _, v in failing.sent]
    assert load_state(state).shipments.keys() == {"ABCD42001001", "ABCD42001002"}


def test_mapping_csv_and_yaml_are_the_same() -> None:
    from_csv, _ = load_mapping(FIXTURES / "mapping.csv")  # with a BOM, as spreadsheets write it
    from_yaml, _ = load_mapping(MAPPING)
    assert (from_csv.consignees, from_csv.shippers) == (from_yaml.consignees, from_yaml.shippers)
    assert from_yaml.find("shipper", "BUCKEYE plastics, llc") is not None  # case and punctuation ignored


def test_a_bad_mapping_file_names_each_bad_line() -> None:
    text = (
        "party,name,importer_bn,broker_code\n"
        "consignee,ACME,12345,LKCS\n"
        "receiver,Other,,LKCS\n"
        "consignee,Acme.,123456789RM0001,\n"
        "shipper,Blank,,\n"
    )
    with pytest.raises(MappingError) as caught:
        mapping_from_csv(text, "m.csv")
    message = str(caught.value)
    assert "m.csv: line 2: importer_bn '12345' is not a BN15" in message
    assert "m.csv: line 3: party must be consignee or shipper, got 'receiver'" in message
    assert "m.csv: line 4: the consignee 'Acme.' is listed twice" in message
    assert "m.csv: line 5: gives none of" in message
    with pytest.raises(MappingError, match="expected the columns"):
        mapping_from_csv("who,bn\nx,y\n", "m.csv")
    with pytest.raises(MappingError, match="unknown fields \\['broker'\\]"):
        mapping_from_data({"shippers": {"X": {"broker": "LKCS"}}}, "m.yaml")


def _trip(**overrides: Any) -> dict[str, Any]:
    shipment = {
        "cargoControlNumber": "ABCD99000001",
        "shipper": {"name": "S"},
        "consignee": {"name": "C"},
        "importerBusinessNumber": "123456789RM0001",
        "customsBroker": {"code": "LKCS"},
    }
    shipment.update(overrides.pop("shipment", {}))
    trip = {
        "data": "ACI_TRIP",
        "tripNumber": "ABCD0099000",
        "portOfEntry": "0453",
        "estimatedArrivalDateTime": "2026-07-14 09:00:00",
        "shipments": [shipment],
    }
    trip.update(overrides)
    return trip


def _map(document: dict[str, Any], context: TripContext | None = None, **kw: Any) -> list[Result]:
    return map_trip(
        document, context=context or TripContext(local_tz=ZoneInfo(LOCAL_TZ)), observed_at=T0, **kw
    )


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-07-14 09:00:00", "EST", "2026-07-14T13:00:00+00:00"),  # a region: EDT in July
        ("2026-01-14 09:00:00", "EST", "2026-01-14T14:00:00+00:00"),
        ("2026-07-14 09:00:00", "America/Regina", "2026-07-14T15:00:00+00:00"),  # no DST there
        ("2026-07-14 09:00", "pst", "2026-07-14T16:00:00+00:00"),
        ("2026-07-14T09:00:00-05:00", "PST", "2026-07-14T14:00:00+00:00"),  # the offset wins
        ("2026-07-14 09:00:00", None, "2026-07-14T14:00:00+00:00"),  # local tz: Winnipeg, CDT
    ],
)
def test_eta_time_zones(text: str, zone: str | None, expected: str) -> None:
    eta = parse_eta(text, zone, ZoneInfo(LOCAL_TZ))
    assert isinstance(eta, datetime)
    assert eta.astimezone(UTC).isoformat() == expected


def test_what_blocks_a_shipment_is_said_per_shipment() -> None:
    (missing,) = _map(_trip(estimatedArrivalTimeZone="Mars/Olympus", portOfEntry="453"))
    assert isinstance(missing, MissingFacts) and missing.blocking
    assert missing.reasons[0] == "port of entry '453' is not a 4-digit CBSA office code"
    assert missing.reasons[1].startswith("unknown time zone 'Mars/Olympus' (use ")
    shipment_only = {"data": "ACI_SHIPMENT", "cargoControlNumber": "x", "shipper": {}}
    (bad,) = _map(shipment_only)
    assert isinstance(bad, MissingFacts)
    assert bad.message() == (
        "CCN X: CCN 'X' is not 5-25 letters, digits or '-'; no trip number (ingest the ACI_TRIP that "
        "carries this shipment); no port of entry (portOfEntry); no ETA (estimatedArrivalDateTime); "
        "no shipper name (shipper.name); no importer BN (the shipment names neither consignee nor "
        "shipper to look up)"
    )


def test_without_a_mapping_file_the_advice_names_the_setting() -> None:
    (missing,) = _map(_trip(shipment={"importerBusinessNumber": None}))
    assert isinstance(missing, MissingFacts)
    assert missing.reasons == (
        "no importer BN (set HOLDWATCH_TRIP_MAPPING_FILE to a mapping file and add the consignee 'C' "
        "with its importer_bn)",
    )


def test_an_eta_that_moves_back_is_a_new_event_each_time() -> None:
    published: dict[str, Any] = {}
    ids = []
    for eta in ("2026-07-14 09:00:00", "2026-07-14 11:00:00", "2026-07-14 09:00:00"):
        outcome = ingest_documents(
            [_trip(estimatedArrivalDateTime=eta)],
            source="f.json",
            changed=True,
            state=IngestState(shipments=published),
            context=TripContext(),
            observed_at=T0,
        )
        (event,) = outcome.results
        assert not isinstance(event, MissingFacts)
        ids.append((event.event_type, event.event_id))
        published = dict(outcome.state.shipments)
    assert [kind for kind, _ in ids] == ["cargo_reported", "eta_updated", "eta_updated"]
    assert len({event_id for _, event_id in ids}) == 3


def test_an_unchanged_shipment_publishes_nothing_and_a_changed_fact_is_an_amendment() -> None:
    first = ingest_documents(
        [_trip()], source="a", changed=True, state=IngestState(), context=TripContext(), observed_at=T0
    )
    same = ingest_documents(
        [_trip()], source="b", changed=True, state=first.state, context=TripContext(), observed_at=T0
    )
    assert same.results == []
    port = ingest_documents(
        [_trip(portOfEntry="0410")],
        source="b",
        changed=True,
        state=first.state,
        context=TripContext(),
        observed_at=T0,
    )
    assert [type(r).__name__ for r in port.results] == ["EtaUpdated"]
    truck = ingest_documents(
        [_trip(truck={"number": "T-9"})],
        source="b",
        changed=True,
        state=first.state,
        context=TripContext(),
        observed_at=T0,
    )
    (amendment,) = truck.results
    assert isinstance(amendment, CargoReported) and amendment.truck_number == "T-9"


def test_an_old_version_read_again_does_not_move_the_eta_back(tmp_path: Path) -> None:
    trips = tmp_path / "trips"
    trips.mkdir()
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("consignees:\n  C:\n    broker_code: NRTH\n")
    (trips / "a-v1.json").write_text(json.dumps(_trip(shipment={"customsBroker": None})))
    (trips / "b-v2.json").write_text(
        json.dumps(_trip(shipment={"customsBroker": None}, estimatedArrivalDateTime="2026-07-14 12:00:00"))
    )
    publisher = RecordingPublisher()
    said: list[str] = []
    ingest = make_ingest(
        publisher=publisher, state_path=tmp_path / "s.json", mapping_path=mapping, say=said.append
    )
    ingest.run_once([trips])
    assert [json.loads(v)["event_type"] for _, _, v in publisher.sent] == ["cargo_reported", "eta_updated"]
    publisher.sent.clear()
    mapping.write_text("consignees:\n  C:\n    broker_code: LAKE1\n")  # another broker: files re-read
    assert ingest.refresh_mapping()
    ingest.run_once([trips])
    (value,) = [json.loads(v) for _, _, v in publisher.sent]  # only v2 speaks for the CCN
    assert (value["event_type"], value["broker_code"], value["eta"]) == (
        "cargo_reported",
        "LAKE1",
        "2026-07-14T17:00:00Z",
    )


def test_a_mapping_entry_added_later_publishes_the_missing_shipment(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("party,name,broker_code\nconsignee,Nobody,X\n")
    trip = tmp_path / "t.json"
    trip.write_text(json.dumps(_trip(shipment={"importerBusinessNumber": None})))
    publisher = RecordingPublisher()
    ingest = make_ingest(publisher=publisher, state_path=tmp_path / "s.json", mapping_path=mapping)
    ingest.run_once([trip])
    assert publisher.sent == [] and ingest.report.not_published == 1
    mapping.write_text("party,name,importer_bn\nconsignee,C,123456789RM0001\n")
    ingest.refresh_mapping()
    ingest.run_once([trip])
    assert [json.loads(v)["importer_bn"] for _, _, v in publisher.sent] == ["123456789RM0001"]


def test_documents_that_carry_no_trip_facts_are_said(tmp_path: Path) -> None:
    (tmp_path / "ace.json").write_text(json.dumps({"data": "ACE_TRIP", "tripNumber": "X"}))
    (tmp_path / "delete.json").write_text(json.dumps(_trip(operation="DELETE")))
    (tmp_path / "half.json").write_text('{"data": "ACI_TR')
    (tmp_path / "empty.json").write_text(json.dumps(_trip(shipments=[])))
    said: list[str] = []
    report = make_ingest(say=said.append).run_once([tmp_path])
    assert report.unreadable == 3
    assert said[0] == (
        "%s: not ingested: data is 'ACE_TRIP': only ACI_TRIP and ACI_SHIPMENT documents carry trip facts"
        % (tmp_path / "ace.json")
    )
    assert "operation DELETE: only CREATE and UPDATE are ingested" in said[1]
    assert said[2] == "empty.json: no shipments"
    assert "half.json: not ingested: Unterminated string" in said[3]


def test_a_company_key_names_the_carrier_code() -> None:
    context = TripContext(carrier_codes={"c-9000-2bcd8ae5954e0c48": "WXYZ"})
    (event,) = _map(_trip(companyKey="c-9000-2bcd8ae5954e0c48"), context)
    assert isinstance(event, CargoReported) and event.carrier_code == "WXYZ"


def test_watch_picks_up_new_and_changed_files_until_interrupted(tmp_path: Path) -> None:
    publisher = RecordingPublisher()
    said: list[str] = []
    ingest = make_ingest(publisher=publisher, state_path=tmp_path / "s.json", say=said.append)
    watched = tmp_path / "in"
    watched.mkdir()
    (watched / "01.json").write_text(json.dumps(_trip()))
    polls: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        now[0] += seconds
        if len(polls) == 1:
            (watched / "02.json").write_text(
                json.dumps(_trip(estimatedArrivalDateTime="2026-07-14 10:00:00"))
            )
        elif len(polls) == 2:
            (watched / "01.json").write_text(json.dumps(_trip(truck={"number": "T-2"})) + " ")
        elif len(polls) == 3:
            pass  # nothing new: no record, no line
        else:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest.watch([watched], interval_s=2.5, sleep=sleep, monotonic=lambda: now[0], progress_every_s=5)
    kinds = [json.loads(v)["event_type"] for _, _, v in publisher.sent]
    assert kinds == ["cargo_reported", "eta_updated", "cargo_reported"]
    assert polls == [2.5] * 4
    assert said[0] == f"watching {watched} every 2.5 s (Ctrl-C stops)"
    assert any(line.startswith("watching: 2 file(s); so far 3 file(s) read") for line in said)


def test_producer_options_use_idempotence_when_the_client_has_it() -> None:
    from kafka import KafkaProducer

    options = producer_options(KafkaProducer.DEFAULT_CONFIG)
    assert options["acks"] == "all"
    assert options.get("enable_idempotence") is ("enable_idempotence" in KafkaProducer.DEFAULT_CONFIG)
    old_client = producer_options({"acks": 1, "linger_ms": 0})
    assert old_client["acks"] == "all" and "enable_idempotence" not in old_client


def _cli(argv: list[str], settings: Settings) -> int:
    args = build_parser().parse_args(["ingest", "aci-trip", *argv])
    code: int = args.func(args, settings)
    return code


def test_cli_dry_run_prints_and_keeps_no_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(home=tmp_path / "home", trip_mapping_file=MAPPING, feed_local_tz=LOCAL_TZ)
    assert _cli([str(FIXTURES), "--dry-run"], settings) == 3  # one shipment is not published
    out = capsys.readouterr().out
    assert "would publish eta_updated ABCD42001001 (ETA 2026-11-17T21:00:00Z, port 0453)" in out
    assert "not published: CCN ABCD42003001: no importer BN" in out
    assert out.rstrip().endswith(
        "would publish 7 cargo_reported, 1 eta_updated; 1 shipment(s) not published, 1 without a broker"
    )
    assert not (tmp_path / "home").exists()


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(home=tmp_path, trip_mapping_file=tmp_path / "nope.yaml")
    assert _cli([str(tmp_path / "missing"), "--dry-run"], settings) == 2
    assert _cli([str(FIXTURES), "--dry-run"], settings) == 2
    bad_zone = Settings(home=tmp_path, feed_local_tz="Nowhere/Land")
    assert _cli([str(FIXTURES), "--dry-run"], bad_zone) == 2
    no_broker = Settings(home=tmp_path, kafka_bootstrap=None)
    assert _cli([str(FIXTURES)], no_broker) == 2
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "cannot read the mapping file" in err
    assert "HOLDWATCH_FEED_LOCAL_TZ='Nowhere/Land' is not an IANA time zone" in err
    assert "no Kafka broker" in err


def test_report_summary() -> None:
    report = IngestReport(files=2, unchanged=1)
    assert report.summary() == (
        "aci-trip: 2 file(s) read (1 unchanged, 0 not readable); published nothing new; "
        "0 shipment(s) not published, 0 without a broker"
    )
    assert not report.incomplete
    assert TripMapping().find("consignee", None) is None
