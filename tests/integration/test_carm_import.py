"""`holdwatch carm import|show|export` on the real broker: import, show, change one cell, import
again (only that field is printed and only that importer published), export = the file."""

from __future__ import annotations

import shutil
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from schemas.carm import CarmSnapshot
from schemas.decode import Decoded, TopicKind, decode
from tests.integration.pipeline_harness import Namespace

REGISTRY = Path(__file__).resolve().parents[1] / "fixtures" / "carm" / "registry.csv"


def topic_records(bootstrap: str, topic: str) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) of the topic, read to the end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[tuple[bytes, bytes | None]] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                out += [(record.key, record.value) for record in batch]
        return out
    finally:
        consumer.close()


def test_import_show_change_export(kafka_bootstrap: str, tmp_path: Path) -> None:
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=3)
    topic = ns.topics["carm"]
    registry = tmp_path / "registry.csv"
    shutil.copyfile(REGISTRY, registry)

    missing = ns.run("carm", "import", str(registry))
    assert missing.returncode == 2 and "holdwatch topics create" in missing.stderr
    assert ns.run("topics", "create").returncode == 0

    dry = ns.run("carm", "import", str(registry), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 new, 0 changed, 0 unchanged, 0 missing from the file" in dry.stdout
    assert topic_records(kafka_bootstrap, topic) == []

    first = ns.run("carm", "import", str(registry))
    assert first.returncode == 0, first.stderr
    assert f"published 3 snapshot(s) to {topic} (3 new, 0 changed)" in first.stdout

    show = ns.run("carm", "show", "987654321RM0002")
    assert show.returncode == 0, show.stderr
    assert show.stdout.startswith("987654321RM0002  Boulangerie du Nord Ltée\n")
    assert "RPP enrolled                       yes" in show.stdout
    assert f"record: {topic} partition " in show.stdout
    as_json = ns.run("carm", "show", "987654321RM0002", "--json")
    snapshot = CarmSnapshot.model_validate_json(as_json.stdout)
    assert snapshot.rpp_enrolled is True and snapshot.security.amount_cad == 12500.5

    # one cell changed: RPP enrolment of the Boulangerie, yes → no
    edited = registry.read_bytes().replace(b",yes,cash,12500.5,", b",no,cash,12500.5,")
    assert edited != registry.read_bytes()
    registry.write_bytes(edited)
    second = ns.run("carm", "import", str(registry))
    assert second.returncode == 0, second.stderr
    assert (
        "changed    987654321RM0002  Boulangerie du Nord Ltée\n               rpp_enrolled: yes → no\n"
        in (second.stdout)
    )
    assert second.stdout.count("→") == 1, second.stdout
    assert "0 new, 1 changed, 2 unchanged, 0 missing from the file" in second.stdout
    assert "published 1 snapshot(s)" in second.stdout

    again = ns.run("carm", "import", str(registry))
    assert again.returncode == 0 and "nothing to publish" in again.stdout

    records = topic_records(kafka_bootstrap, topic)
    assert len(records) == 4  # 3 + the one change; unchanged importers were not re-published
    decoded = [decode(TopicKind.CARM, key, value) for key, value in records]
    assert all(isinstance(d, Decoded) for d in decoded)
    ids = [d.event.event_id for d in decoded if isinstance(d, Decoded) and d.event is not None]
    assert len(set(ids)) == 4

    exported = tmp_path / "export.csv"
    export = ns.run("carm", "export", str(exported))
    assert export.returncode == 0, export.stderr
    assert exported.read_bytes() == edited

    exported_yaml = tmp_path / "export.yaml"
    assert ns.run("carm", "export", str(exported_yaml)).returncode == 0
    from_yaml = ns.run("carm", "import", str(exported_yaml))
    assert from_yaml.returncode == 0 and "0 new, 0 changed, 3 unchanged" in from_yaml.stdout
