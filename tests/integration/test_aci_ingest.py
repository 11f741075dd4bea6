"""`holdwatch ingest aci-trip` against a real broker: a directory of trip files → exactly the golden
events on the eManifest topic, once each, keyed by CCN; ingesting it again publishes nothing."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from streams.feeds.aci_publish import KafkaPublisher
from streams.kafka.admin import ensure_topics
from streams.kafka.config import kafka_python_config
from streams.settings import Settings
from tests.integration.pipeline_harness import Namespace
from tests.unit.test_aci_trip import LOCAL_TZ, MAPPING, expected_events, fixture_files, make_ingest


def _by_ccn(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Kafka keeps the order per key (one partition per CCN), not across keys."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        out[event["ccn"]].append(event)
    return dict(out)


def test_a_directory_lands_once_each_and_a_reingest_publishes_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=3)
    trips = tmp_path / "trips"
    trips.mkdir()
    for fixture in fixture_files():
        shutil.copy(fixture, trips / fixture.name)
    state = tmp_path / "aci-trip-state.json"
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        partitions=3,
        home=tmp_path / "home",
        topic_emanifest=ns.topics["emanifest"],
        topic_rns=ns.topics["rns"],
        topic_carm=ns.topics["carm"],
        topic_alerts=ns.topics["alerts"],
        topic_deadletter=ns.topics["deadletter"],
    )
    ensure_topics(settings)

    publisher = KafkaPublisher.create(kafka_python_config(settings))
    try:
        report = make_ingest(publisher=publisher, state_path=state, topic=settings.topic_emanifest).run_once(
            [trips]
        )
    finally:
        publisher.close()
    assert (report.events["cargo_reported"], report.events["eta_updated"], report.not_published) == (7, 1, 1)

    records = ns.read_topic("emanifest")
    assert all(record.key.decode() == json.loads(record.value)["ccn"] for record in records)
    got = [json.loads(record.value) for record in records]
    expected = expected_events()
    assert len(got) == len(expected) == 8  # once each: no duplicate from a producer retry
    assert _by_ccn(got) == _by_ccn(expected)

    # Again, through the command in its own process: unchanged files publish nothing new; the
    # shipment without an importer BN is listed again (exit 3).
    ns.env.update(HOLDWATCH_TRIP_MAPPING_FILE=str(MAPPING), HOLDWATCH_FEED_LOCAL_TZ=LOCAL_TZ)
    again = ns.run("ingest", "aci-trip", str(trips), "--state", str(state), timeout=120)
    assert again.returncode == 3, again.stdout + again.stderr
    assert "not published: CCN ABCD42003001: no importer BN" in again.stdout
    assert again.stdout.rstrip().endswith(
        "5 file(s) read (4 unchanged, 0 not readable); published nothing new; "
        "1 shipment(s) not published, 0 without a broker"
    ), again.stdout
    assert len(ns.read_topic("emanifest")) == len(records)
