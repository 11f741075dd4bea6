"""The one place that turns `Settings` into Kafka client configs (kafka-python, aiokafka, Faust).

Why one place: the bootstrap address and the security settings (PLAINTEXT, SSL, SASL_PLAINTEXT,
SASL_SSL) must mean the same thing to every client. The returned dicts hold the SASL password in
clear (the clients need it) but never show it: their repr/str mask secrets.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from streams.settings import Settings

SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password", "password"})
_MASK = "**********"


class KafkaConfigError(ValueError):
    """The settings do not describe a reachable, consistent Kafka connection."""


class ClientConfig(dict[str, Any]):
    """A plain dict of client keyword arguments whose repr/str never show a secret."""

    def __repr__(self) -> str:
        shown = {
            key: (_MASK if key in SECRET_KEYS and value is not None else value) for key, value in self.items()
        }
        return f"ClientConfig({shown!r})"

    __str__ = __repr__


def resolve_bootstrap(settings: Settings) -> str:
    """HOLDWATCH_KAFKA_BOOTSTRAP, validated, else a clear error.

    The local development broker is found by the entry point (streams/cli/main.py), which fills
    `kafka_bootstrap` in: production configuration never looks at developer tools."""
    if settings.kafka_bootstrap:
        servers = [part.strip() for part in settings.kafka_bootstrap.split(",") if part.strip()]
        if not servers:
            raise KafkaConfigError("HOLDWATCH_KAFKA_BOOTSTRAP is empty; expected host:port[,host:port]")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise KafkaConfigError(
                    f"HOLDWATCH_KAFKA_BOOTSTRAP has {server!r}; expected host:port[,host:port]"
                )
        return ",".join(servers)
    raise KafkaConfigError(
        "no Kafka broker: set HOLDWATCH_KAFKA_BOOTSTRAP=host:port for an existing cluster, "
        "or run `holdwatch broker start` for a local one"
    )


def _sasl_credentials(settings: Settings) -> tuple[str, str]:
    username = settings.kafka_sasl_username
    password = settings.kafka_sasl_password
    if not username or password is None:
        raise KafkaConfigError(
            f"HOLDWATCH_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "HOLDWATCH_KAFKA_SASL_USERNAME and HOLDWATCH_KAFKA_SASL_PASSWORD"
        )
    return username, password.get_secret_value()


def uses_ssl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context from the CA/cert/key files; None unless the protocol uses TLS."""
    if not uses_ssl(settings):
        return None
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        raise KafkaConfigError(
            "set both HOLDWATCH_KAFKA_SSL_CERTFILE and HOLDWATCH_KAFKA_SSL_KEYFILE, or neither"
        )
    cafile = settings.kafka_ssl_cafile
    for label, path in (
        ("CAFILE", cafile),
        ("CERTFILE", settings.kafka_ssl_certfile),
        ("KEYFILE", settings.kafka_ssl_keyfile),
    ):
        if path is not None and not path.is_file():
            raise KafkaConfigError(f"HOLDWATCH_KAFKA_SSL_{label}={path} is not a readable file")
    try:
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
        if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
            context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    except (ssl.SSLError, OSError) as exc:
        raise KafkaConfigError(
            f"cannot build the TLS context from the HOLDWATCH_KAFKA_SSL_* files: {exc}"
        ) from exc
    return context


def _security(settings: Settings) -> dict[str, Any]:
    """Keys that kafka-python and aiokafka name the same way."""
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        username, password = _sasl_credentials(settings)
        config.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=username,
            sasl_plain_password=password,
        )
    return config


def kafka_python_config(settings: Settings) -> ClientConfig:
    """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
    config = ClientConfig(bootstrap_servers=resolve_bootstrap(settings), **_security(settings))
    if uses_ssl(settings):
        ssl_context(settings)  # validate the files up front with a clear error
        config.update(
            ssl_check_hostname=True,
            ssl_cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            ssl_certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            ssl_keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return config


def aiokafka_config(settings: Settings) -> ClientConfig:
    """Keyword arguments for aiokafka's AIOKafkaProducer/AIOKafkaConsumer."""
    config = ClientConfig(bootstrap_servers=resolve_bootstrap(settings), **_security(settings))
    context = ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    return config


PRODUCER_ACKS_ALL = -1
"""acks=all: a send is confirmed once every in-sync replica has it (with the topics'
min.insync.replicas, the strongest guarantee Kafka gives)."""
PRODUCER_DELIVERY_TIMEOUT_S = 120.0
"""How long the worker's producer retries a send that the broker does not confirm (a broker
restart, a leader election) before failing it: aiokafka retries a batch until this age (its
`request_timeout_ms` is also the batch expiry; Faust's default is 20 min). Kafka's Java default
delivery.timeout.ms is the same 2 minutes. A failed send stops the worker (docs/reliability.md)."""


def faust_broker_settings(settings: Settings) -> ClientConfig:
    """`broker`, `broker_credentials` and the producer's delivery settings for `faust.App(...)`.

    Faust lets its own environment variables win over these (PRODUCER_ACKS,
    PRODUCER_REQUEST_TIMEOUT): an operator can still change them, on purpose."""
    import faust  # imported here: Faust is heavy and not every command needs it

    servers = resolve_bootstrap(settings).split(",")
    credentials: Any = None
    context = ssl_context(settings)
    if uses_sasl(settings):
        username, password = _sasl_credentials(settings)
        credentials = faust.SASLCredentials(
            username=username,
            password=password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return ClientConfig(
        broker=";".join(f"kafka://{server}" for server in servers),
        broker_credentials=credentials,
        producer_acks=PRODUCER_ACKS_ALL,
        producer_request_timeout=PRODUCER_DELIVERY_TIMEOUT_S,
    )


def explain_connection_error(settings: Settings, exc: BaseException) -> str:
    """A broker error said plainly; with SASL, a refused login looks like a timeout in the clients,
    so name the likely cause (never the password)."""
    text = f"{type(exc).__name__}: {exc}"
    if uses_sasl(settings):
        text += (
            f"; could not connect or authenticate to {settings.kafka_bootstrap} as user "
            f"{settings.kafka_sasl_username!r} ({settings.kafka_security_protocol}/"
            f"{settings.kafka_sasl_mechanism}): check HOLDWATCH_KAFKA_SASL_USERNAME and "
            "HOLDWATCH_KAFKA_SASL_PASSWORD, and that this address is the SASL listener"
        )
    return text


def admin_client(config: Mapping[str, Any], *, client_id: str, **options: Any) -> Any:
    """kafka-python's `KafkaAdminClient` for a client config (`kafka_python_config`): the one
    place that builds one, so every admin connection uses the same security settings."""
    from kafka.admin import KafkaAdminClient  # heavy import, only when an admin client is needed

    return KafkaAdminClient(client_id=client_id, **options, **config)
