"""The local broker's pure parts: versions, cluster ids, server.properties (no JVM started)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devtools.broker import (
    BrokerError,
    BrokerPorts,
    LocalBroker,
    fetch_broker_jars,
    jvm_options,
    kafka_major,
    logging_backend,
    new_cluster_id,
    render_server_properties,
)


def parse(properties: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in properties.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_versions_pick_their_logging_backend() -> None:
    assert (kafka_major("3.9.2"), logging_backend("3.9.2")) == (3, "reload4j")
    assert (kafka_major("4.1.0"), logging_backend("4.1.0")) == (4, "log4j2")


@pytest.mark.parametrize("bad", ["3.9", "latest", "2.8.1", "3.9.2; rm -rf /", ""])
def test_bad_versions_are_rejected(bad: str) -> None:
    with pytest.raises(BrokerError):
        kafka_major(bad)


def test_cluster_id_is_16_random_bytes_in_urlsafe_base64() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert first != second
    assert len(first) == 22 and "=" not in first
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_single_node_kraft_properties(tmp_path: Path) -> None:
    props = parse(
        render_server_properties(ports=BrokerPorts(9092, 9093), log_dirs=tmp_path / "kraft", major=3)
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["log.dirs"] == str(tmp_path / "kraft")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert not any(key.startswith("share.") for key in props)  # 3.9 does not know them
    assert "sasl.enabled.mechanisms" not in props


def test_kafka_4_also_gets_share_coordinator_settings(tmp_path: Path) -> None:
    props = parse(render_server_properties(ports=BrokerPorts(1, 2), log_dirs=tmp_path, major=4))
    assert props["share.coordinator.state.topic.replication.factor"] == "1"


def test_sasl_users_add_a_plain_listener(tmp_path: Path) -> None:
    props = parse(
        render_server_properties(
            ports=BrokerPorts(9092, 9093, 9094),
            log_dirs=tmp_path,
            major=3,
            sasl_users={"bob": "pw-b", "alice": "pw-a"},
        )
    )
    assert props["listeners"].endswith(",SASL_PLAINTEXT://127.0.0.1:9094")
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094"
    assert "SASL_PLAINTEXT:SASL_PLAINTEXT" in props["listener.security.protocol.map"]
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="pw-a" user_bob="pw-b";'
    )


@pytest.mark.parametrize("users", [{"al ice": "pw"}, {"alice": 'pw"; evil'}, {"alice": ""}])
def test_sasl_users_that_would_break_the_jaas_line_are_rejected(
    tmp_path: Path, users: dict[str, str]
) -> None:
    with pytest.raises(BrokerError):
        LocalBroker(tmp_path, home=tmp_path, sasl_users=users)


def test_broker_repr_hides_sasl_passwords(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, home=tmp_path, sasl_users={"alice": "hunter2-secret"})
    assert "hunter2-secret" not in repr(broker)
    assert "alice" in repr(broker)


def test_jvm_heap_and_logging_flags(tmp_path: Path) -> None:
    v3 = jvm_options(version="3.9.2", logs_dir=tmp_path, heap_mb=512)
    assert "-Xmx512m" in v3 and "-Xms512m" in v3
    assert f"-Dkafka.logs.dir={tmp_path}" in v3
    assert any(flag.startswith("-Dlog4j.configuration=file:") for flag in v3)
    v4 = jvm_options(version="4.1.0", logs_dir=tmp_path, heap_mb=512)
    assert any(flag.startswith("-Dlog4j2.configurationFile=") for flag in v4)
    for flag in (*v3, *v4):
        if "log4j" in flag:
            assert Path(flag.split("=", 1)[1].removeprefix("file:")).is_file()


FAKE_MVN = """#!/bin/sh
# Stands in for Maven: records the call, then "downloads" the broker jar (or fails on request).
echo "$@" >> "$FAKE_MVN_CALLS"
[ -n "$FAKE_MVN_FAIL" ] && { echo "Could not find artifact org.apache.kafka:kafka_2.13"; exit 1; }
for arg in "$@"; do
  case "$arg" in
    -Dkafka.version=*) version="${arg#-Dkafka.version=}" ;;
    -DoutputDirectory=*) out="${arg#-DoutputDirectory=}" ;;
  esac
done
mkdir -p "$out" && touch "$out/kafka_2.13-$version.jar" "$out/kafka-clients-$version.jar"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN)
    mvn.chmod(0o755)
    calls = tmp_path / "mvn-calls"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_MVN_CALLS", str(calls))
    return calls


def test_jars_are_fetched_once_then_served_from_the_cache(tmp_path: Path, fake_mvn: Path) -> None:
    home = tmp_path / "home"
    libs = fetch_broker_jars("3.9.2", home)
    assert libs == home / "kafka" / "3.9.2" / "libs"
    assert (libs / "kafka_2.13-3.9.2.jar").is_file()
    assert fetch_broker_jars("3.9.2", home) == libs
    calls = fake_mvn.read_text().splitlines()
    assert len(calls) == 1
    assert "-Dkafka.logging=reload4j" in calls[0] and "-DincludeScope=runtime" in calls[0]
    assert "maven-dependency-plugin:3.8.1:copy-dependencies" in calls[0]
    fetch_broker_jars("4.1.0", home)
    assert "-Dkafka.logging=log4j2" in fake_mvn.read_text().splitlines()[1]


def test_a_failed_fetch_says_why_and_leaves_no_half_cache(
    tmp_path: Path, fake_mvn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    home = tmp_path / "home"
    with pytest.raises(BrokerError, match="Could not find artifact"):
        fetch_broker_jars("3.9.2", home)
    assert not (home / "kafka" / "3.9.2" / "libs").exists()
    assert not list((home / "kafka" / "3.9.2").glob("libs.partial-*"))


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BrokerError, match=r"`mvn` is not on PATH.*HOLDWATCH_KAFKA_BOOTSTRAP"):
        fetch_broker_jars("3.9.2", tmp_path / "home")


def test_cluster_ids_never_start_with_a_dash() -> None:
    from devtools.broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(3000)]  # ~1 in 64 would start with "-" by chance
    assert all(not cluster_id.startswith("-") and len(cluster_id) == 22 for cluster_id in ids)
