"""Kafka over SASL_PLAINTEXT/PLAIN, configured once in Settings, against the local broker's SASL
listener: the right password works for every client, a wrong one is refused, and the password
(and the Slack token) never shows in reprs, our errors, logs or `--help`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from pydantic import SecretStr

from streams.cli.main import build_parser
from streams.kafka.config import (
    KafkaConfigError,
    aiokafka_config,
    faust_broker_settings,
    kafka_python_config,
)
from streams.settings import Settings
from tests.fixtures.kafka import SaslKafka

REPO = Path(__file__).resolve().parents[2]
WRONG_PASSWORD = "wrong-pw-7f3e9c"  # distinctive, so a leak is found by a plain substring search
SLACK_TOKEN = "xoxb-test-token-5d8a1b"
SASL_PASSWORD = "sasl-pw-2c6f4d"

needs_local_broker = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="the SASL listener is on the local broker, which needs Java and Maven",
)


def sasl_settings(sasl: SaslKafka, password: str) -> Settings:
    return Settings(
        kafka_bootstrap=sasl.sasl_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=sasl.username,
        kafka_sasl_password=SecretStr(password),
    )


def create_topic(settings: Settings) -> str:
    """Created over SASL too: the admin client uses the same settings as the others."""
    name = f"sasl.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(**kafka_python_config(settings), client_id="holdwatch-sasl-test")
    try:
        admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()
    return name


# --- right password --------------------------------------------------------------------------------


@needs_local_broker
def test_kafka_python_round_trip_with_the_right_password(sasl_kafka: SaslKafka) -> None:
    settings = sasl_settings(sasl_kafka, sasl_kafka.password)
    topic = create_topic(settings)
    producer = KafkaProducer(**kafka_python_config(settings))
    try:
        producer.send(topic, key=b"CCN1", value=b"over sasl").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        **kafka_python_config(settings),
        group_id=f"sasl-test-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=30000,
    )
    try:
        received = [(message.key, message.value) for message in consumer]
    finally:
        consumer.close()
    assert received == [(b"CCN1", b"over sasl")]


@needs_local_broker
async def test_aiokafka_round_trip_with_the_right_password(sasl_kafka: SaslKafka) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings = sasl_settings(sasl_kafka, sasl_kafka.password)
    topic = create_topic(settings)
    producer = AIOKafkaProducer(**aiokafka_config(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"CCN2", value=b"async over sasl")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_config(settings),
        group_id=f"sasl-test-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"CCN2", b"async over sasl")


@needs_local_broker
def test_faust_gets_sasl_credentials_for_the_same_listener(sasl_kafka: SaslKafka) -> None:
    config = faust_broker_settings(sasl_settings(sasl_kafka, sasl_kafka.password))
    assert config["broker"] == f"kafka://{sasl_kafka.sasl_bootstrap}"
    credentials = config["broker_credentials"]
    assert credentials.username == sasl_kafka.username
    assert credentials.password == sasl_kafka.password
    assert credentials.mechanism.name == "PLAIN"
    assert sasl_kafka.password not in repr(config) and sasl_kafka.password not in str(credentials)


# --- wrong password --------------------------------------------------------------------------------


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


@needs_local_broker
def test_kafka_python_refuses_a_wrong_password(
    sasl_kafka: SaslKafka, caplog: pytest.LogCaptureFixture
) -> None:
    right = KafkaProducer(**kafka_python_config(sasl_settings(sasl_kafka, sasl_kafka.password)))
    right.close()  # the listener is up and takes the right password ...
    caplog.set_level(logging.WARNING)
    with pytest.raises(KafkaError) as raised:  # ... and refuses a wrong one
        KafkaProducer(
            **kafka_python_config(sasl_settings(sasl_kafka, WRONG_PASSWORD)), bootstrap_timeout_ms=8000
        )
    # kafka-python says only "Unable to bootstrap"; its log names the reason only sometimes (the
    # broker may close the socket before the client reads the error), so that is not asserted.
    assert WRONG_PASSWORD not in str(raised.value) + repr(raised.value)
    assert WRONG_PASSWORD not in logged_text(caplog)


@needs_local_broker
async def test_aiokafka_refuses_a_wrong_password(
    sasl_kafka: SaslKafka, caplog: pytest.LogCaptureFixture
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AIOKafkaError

    caplog.set_level(logging.WARNING)
    producer = AIOKafkaProducer(
        **aiokafka_config(sasl_settings(sasl_kafka, WRONG_PASSWORD)), request_timeout_ms=10000
    )
    with pytest.raises(AIOKafkaError) as raised:
        await producer.start()
    await producer.stop()
    assert "Invalid username or password" in logged_text(caplog)
    assert WRONG_PASSWORD not in str(raised.value) + logged_text(caplog)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_with_wrong_password(sasl_kafka: SaslKafka) -> Iterator[subprocess.CompletedProcess[str]]:
    env = {
        "HOLDWATCH_KAFKA_BOOTSTRAP": sasl_kafka.sasl_bootstrap,
        "HOLDWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HOLDWATCH_KAFKA_SASL_USERNAME": sasl_kafka.username,
        "HOLDWATCH_KAFKA_SASL_PASSWORD": WRONG_PASSWORD,
        "HOLDWATCH_TOPIC_EMANIFEST": f"emanifest.{uuid.uuid4().hex[:6]}",
    }
    yield run_cli("topics", "create", env=env)


@needs_local_broker
def test_cli_with_a_wrong_password_fails_without_showing_it(
    cli_with_wrong_password: subprocess.CompletedProcess[str],
) -> None:
    result = cli_with_wrong_password
    assert result.returncode != 0
    assert "holdwatch topics: failed" in result.stderr
    assert WRONG_PASSWORD not in result.stdout + result.stderr


@needs_local_broker
def test_cli_says_the_login_was_refused(cli_with_wrong_password: subprocess.CompletedProcess[str]) -> None:
    assert "authenticate" in cli_with_wrong_password.stderr.lower()
    assert "HOLDWATCH_KAFKA_SASL_PASSWORD" in cli_with_wrong_password.stderr


# --- secrets never shown -------------------------------------------------------------------------------


def secret_settings() -> Settings:
    return Settings(
        kafka_bootstrap="127.0.0.1:9",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="alice",
        kafka_sasl_password=SecretStr(SASL_PASSWORD),
        slack_token=SecretStr(SLACK_TOKEN),
    )


def test_settings_never_show_secrets() -> None:
    settings = secret_settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SASL_PASSWORD  # the value is there
    shown = [str(settings), repr(settings), settings.model_dump_json(), str(settings.model_dump())]
    for text in shown:
        assert SASL_PASSWORD not in text and SLACK_TOKEN not in text


def test_client_configs_never_show_the_password() -> None:
    settings = secret_settings()
    for config in (kafka_python_config(settings), aiokafka_config(settings), faust_broker_settings(settings)):
        assert SASL_PASSWORD not in repr(config) and SASL_PASSWORD not in str(config)
        assert SASL_PASSWORD not in f"{config}"
    assert kafka_python_config(settings)["sasl_plain_password"] == SASL_PASSWORD  # yet the client gets it


def test_our_configuration_errors_never_show_the_password(tmp_path: Path) -> None:
    no_user = Settings(
        kafka_bootstrap="127.0.0.1:9",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_password=SecretStr(SASL_PASSWORD),
    )
    bad_files = Settings(
        kafka_bootstrap="127.0.0.1:9",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="alice",
        kafka_sasl_password=SecretStr(SASL_PASSWORD),
        kafka_ssl_cafile=tmp_path / "missing-ca.pem",
    )
    for settings in (no_user, bad_files):
        with pytest.raises(KafkaConfigError) as raised:
            kafka_python_config(settings)
        assert SASL_PASSWORD not in str(raised.value)


def test_invalid_settings_error_never_shows_secrets() -> None:
    env = {
        "HOLDWATCH_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "HOLDWATCH_SLACK_TOKEN": SLACK_TOKEN,
        "HOLDWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HOLDWATCH_PARTITIONS": "zero",
    }
    result = run_cli("topics", "create", env=env)
    assert result.returncode == 2
    assert "invalid settings" in result.stderr and "partitions" in result.stderr
    assert SASL_PASSWORD not in result.stdout + result.stderr
    assert SLACK_TOKEN not in result.stdout + result.stderr


def test_help_output_never_shows_secrets() -> None:
    env = {"HOLDWATCH_KAFKA_SASL_PASSWORD": SASL_PASSWORD, "HOLDWATCH_SLACK_TOKEN": SLACK_TOKEN}
    for args in (["--help"], ["worker", "--help"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert "usage: holdwatch" in result.stdout
        assert SASL_PASSWORD not in result.stdout + result.stderr
        assert SLACK_TOKEN not in result.stdout + result.stderr


def test_no_subcommand_help_shows_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOLDWATCH_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("HOLDWATCH_SLACK_TOKEN", SLACK_TOKEN)
    parser = build_parser()
    commands = [action for action in parser._subparsers._group_actions if action.choices]  # type: ignore[union-attr]
    names = sorted(name for action in commands for name in action.choices)  # type: ignore[union-attr]
    assert "worker" in names and "notifier" in names
    for name in names:
        with contextlib.suppress(SystemExit):
            build_parser().parse_args([name, "--help"])
        printed = capsys.readouterr()
        assert "usage: holdwatch" in printed.out, name
        assert SASL_PASSWORD not in printed.out + printed.err, name
        assert SLACK_TOKEN not in printed.out + printed.err, name
