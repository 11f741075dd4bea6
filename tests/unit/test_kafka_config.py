"""Settings → client configs, without a broker: bootstrap, security protocols, no leaked secrets."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import certifi
import faust
import pytest
from pydantic import SecretStr

from devtools.broker import BrokerState, write_state
from streams.cli.main import with_local_broker
from streams.kafka.config import (
    PRODUCER_DELIVERY_TIMEOUT_S,
    KafkaConfigError,
    aiokafka_config,
    faust_broker_settings,
    kafka_python_config,
    resolve_bootstrap,
)
from streams.settings import Settings

PASSWORD = "s3cr3t-Pa55word"


def settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"home": tmp_path / "home", "kafka_bootstrap": "broker-1:9092"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def sasl_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_username": "alice",
        "kafka_sasl_password": SecretStr(PASSWORD),
    }
    values.update(overrides)
    return settings(tmp_path, **values)


# --- bootstrap -----------------------------------------------------------------------------------


def test_explicit_bootstrap_wins_and_is_normalised(tmp_path: Path) -> None:
    s = settings(tmp_path, kafka_bootstrap=" a:9092 , b:9093 ")
    assert resolve_bootstrap(s) == "a:9092,b:9093"


@pytest.mark.parametrize("bad", ["localhost", "host:port", ":9092", " , "])
def test_malformed_bootstrap_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(KafkaConfigError, match="HOLDWATCH_KAFKA_BOOTSTRAP"):
        resolve_bootstrap(settings(tmp_path, kafka_bootstrap=bad))


def test_without_bootstrap_or_local_broker_the_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match="holdwatch broker start"):
        resolve_bootstrap(settings(tmp_path, kafka_bootstrap=None))


def test_a_recorded_but_dead_local_broker_is_not_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_state(home, BrokerState(dead.pid, "127.0.0.1:1234", "3.9.2", str(tmp_path), "x.log"))
    with pytest.raises(KafkaConfigError, match="holdwatch broker start"):
        resolve_bootstrap(settings(tmp_path, kafka_bootstrap=None))


@pytest.fixture
def fake_broker_process(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A process whose command line looks like the local broker's JVM (kafka.Kafka + its data dir)."""
    data_dir = tmp_path / "broker-data"
    process = subprocess.Popen(["sh", "-c", "sleep 60", "kafka.Kafka", str(data_dir)])
    try:
        yield process.pid, data_dir
    finally:
        process.kill()
        process.wait()


def test_the_running_local_broker_is_found_through_its_state_file(
    tmp_path: Path, fake_broker_process: tuple[int, Path]
) -> None:
    pid, data_dir = fake_broker_process
    write_state(tmp_path / "home", BrokerState(pid, "127.0.0.1:45678", "3.9.2", str(data_dir), "x.log"))
    found = with_local_broker(settings(tmp_path, kafka_bootstrap=None))
    assert resolve_bootstrap(found) == "127.0.0.1:45678"
    # an explicit setting still wins over the local broker
    explicit = with_local_broker(settings(tmp_path, kafka_bootstrap="remote:9092"))
    assert resolve_bootstrap(explicit) == "remote:9092"


def test_a_reused_pid_of_another_program_is_not_mistaken_for_the_broker(
    tmp_path: Path, fake_broker_process: tuple[int, Path]
) -> None:
    pid, _ = fake_broker_process
    write_state(tmp_path / "home", BrokerState(pid, "127.0.0.1:45678", "3.9.2", str(tmp_path / "other"), "x"))
    with pytest.raises(KafkaConfigError):
        resolve_bootstrap(with_local_broker(settings(tmp_path, kafka_bootstrap=None)))


def test_production_configuration_never_looks_for_the_local_broker(
    tmp_path: Path, fake_broker_process: tuple[int, Path]
) -> None:
    pid, data_dir = fake_broker_process
    write_state(tmp_path / "home", BrokerState(pid, "127.0.0.1:45678", "3.9.2", str(data_dir), "x.log"))
    with pytest.raises(KafkaConfigError, match="HOLDWATCH_KAFKA_BOOTSTRAP"):
        resolve_bootstrap(settings(tmp_path, kafka_bootstrap=None))


# --- PLAINTEXT / SASL ------------------------------------------------------------------------------


def test_plaintext_configs(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert kafka_python_config(s) == {"bootstrap_servers": "broker-1:9092", "security_protocol": "PLAINTEXT"}
    assert aiokafka_config(s) == {"bootstrap_servers": "broker-1:9092", "security_protocol": "PLAINTEXT"}
    assert faust_broker_settings(s) == {
        "broker": "kafka://broker-1:9092",
        "broker_credentials": None,
        "producer_acks": -1,
        "producer_request_timeout": PRODUCER_DELIVERY_TIMEOUT_S,
    }


def test_the_worker_producer_waits_for_all_replicas_and_rides_out_a_broker_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acks=all, and a send is retried for minutes (a broker restart takes ~30 s), not 20 (Faust's
    default) and not seconds: a send that still fails stops the worker (docs/reliability.md)."""
    for name in ("PRODUCER_ACKS", "PRODUCER_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    app = faust.App("config-test", **faust_broker_settings(settings(tmp_path)))
    assert app.conf.producer_acks == -1
    assert 60.0 <= app.conf.producer_request_timeout == PRODUCER_DELIVERY_TIMEOUT_S <= 300.0


def test_faust_gets_one_url_per_bootstrap_server(tmp_path: Path) -> None:
    s = settings(tmp_path, kafka_bootstrap="a:1,b:2")
    assert faust_broker_settings(s)["broker"] == "kafka://a:1;kafka://b:2"


def test_sasl_plaintext_configs_carry_the_credentials(tmp_path: Path) -> None:
    s = sasl_settings(tmp_path, kafka_sasl_mechanism="SCRAM-SHA-512")
    for config in (kafka_python_config(s), aiokafka_config(s)):
        assert config["security_protocol"] == "SASL_PLAINTEXT"
        assert config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert config["sasl_plain_username"] == "alice"
        assert config["sasl_plain_password"] == PASSWORD
        assert "ssl_context" not in config
    credentials = faust_broker_settings(s)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("alice", PASSWORD)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_the_password_never_shows_in_repr_or_str(tmp_path: Path) -> None:
    s = sasl_settings(tmp_path)
    shown = [repr(s), str(s), repr(s.kafka_sasl_password)]
    for config in (kafka_python_config(s), aiokafka_config(s), faust_broker_settings(s)):
        shown += [repr(config), str(config), f"{config}"]
    assert all(PASSWORD not in text for text in shown)
    assert "alice" in repr(kafka_python_config(s))  # the rest of the config is still visible


@pytest.mark.parametrize("missing", ["kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_without_credentials_is_a_clear_error(tmp_path: Path, missing: str) -> None:
    s = sasl_settings(tmp_path, **{missing: None})
    for build in (kafka_python_config, aiokafka_config, faust_broker_settings):
        with pytest.raises(KafkaConfigError, match="HOLDWATCH_KAFKA_SASL_USERNAME"):
            build(s)


# --- TLS ---------------------------------------------------------------------------------------------


def test_ssl_configs_use_the_ca_file(tmp_path: Path) -> None:
    ca = Path(certifi.where())
    s = settings(tmp_path, kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    python_config = kafka_python_config(s)
    assert python_config["security_protocol"] == "SSL"
    assert python_config["ssl_cafile"] == str(ca)
    assert python_config["ssl_check_hostname"] is True
    context = aiokafka_config(s)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_broker_settings(s)["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"


def test_sasl_ssl_gives_faust_sasl_credentials_with_tls(tmp_path: Path) -> None:
    s = sasl_settings(tmp_path, kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=Path(certifi.where()))
    credentials = faust_broker_settings(s)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert aiokafka_config(s)["security_protocol"] == "SASL_SSL"


def test_missing_ssl_file_is_a_clear_error(tmp_path: Path) -> None:
    s = settings(tmp_path, kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(KafkaConfigError, match="HOLDWATCH_KAFKA_SSL_CAFILE"):
        aiokafka_config(s)


def test_certificate_without_key_is_a_clear_error(tmp_path: Path) -> None:
    s = settings(tmp_path, kafka_security_protocol="SSL", kafka_ssl_certfile=Path(certifi.where()))
    with pytest.raises(KafkaConfigError, match="KEYFILE"):
        kafka_python_config(s)


def test_garbage_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    s = settings(tmp_path, kafka_security_protocol="SSL", kafka_ssl_cafile=garbage)
    with pytest.raises(KafkaConfigError, match="TLS context"):
        aiokafka_config(s)
