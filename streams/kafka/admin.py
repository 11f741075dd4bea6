"""Create holdwatch's topics idempotently and check that the co-partitioned inputs still match.

Why: the inputs are joined by key inside one worker task, which only works if every input topic has
the same partition count (co-partitioning). A topic created earlier with another count is reported,
not silently used. The input topics' retention is checked too: a replay publishes history with
the wall time as the Kafka timestamp, so only a size limit or a very short time limit could delete
records the pipeline has not consumed yet (`retention_risks`, docs/replay.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.kafka.config import admin_client, kafka_python_config
from streams.settings import Settings

TopicRole = Literal["input", "output", "internal"]
TopicStatus = Literal["created", "exists"]

SAFE_RETENTION_MS = 24 * 3600 * 1000
"""Below this time retention, a long replay (or a pipeline stopped for a while) can lose input."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)
    role: TopicRole = "internal"
    co_partitioned: bool = False  # must have the same partition count as the other co-partitioned topics


@dataclass(frozen=True)
class TopicResult:
    spec: TopicSpec
    status: TopicStatus
    partitions: int  # what the cluster has now (may differ from spec.partitions if it existed)
    config_mismatches: tuple[str, ...] = ()  # e.g. "cleanup.policy=delete (wanted compact)"
    retention_risks: tuple[str, ...] = ()  # how the topic's retention could drop unconsumed input

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        note = ""
        if self.status == "exists" and self.partitions != self.spec.partitions:
            note = f" (settings say {self.spec.partitions})"
        if self.config_mismatches:
            note += f"; WARNING config differs: {', '.join(self.config_mismatches)}"
        return f"{self.name}: {self.status}, {self.partitions} partitions{note}"


class CoPartitioningError(RuntimeError):
    """Co-partitioned input topics have different partition counts."""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """holdwatch's own topics as the settings describe them."""
    partitions, replication = settings.partitions, settings.replication_factor

    def spec(name: str, role: TopicRole, *, compact: bool = False) -> TopicSpec:
        return TopicSpec(
            name=name,
            partitions=partitions,
            replication_factor=replication,
            config={"cleanup.policy": "compact"} if compact else {},
            role=role,
            co_partitioned=role == "input",
        )

    return [
        spec(settings.topic_emanifest, "input"),
        spec(settings.topic_rns, "input"),
        spec(settings.topic_carm, "input", compact=True),
        spec(settings.topic_alerts, "output"),
        spec(settings.topic_deadletter, "output"),
    ]


def co_partitioning_problems(results: Sequence[TopicResult]) -> list[str]:
    """Human-readable mismatches among the co-partitioned topics; empty when they agree."""
    counts = {r.name: r.partitions for r in results if r.spec.co_partitioned}
    if len(set(counts.values())) <= 1:
        return []
    listing = ", ".join(f"{name}={count}" for name, count in counts.items())
    return [
        f"co-partitioned input topics have different partition counts ({listing}); joins by key would "
        "miss events. Recreate the odd topic(s) with the same count, or set HOLDWATCH_PARTITIONS to match."
    ]


def retention_risks(name: str, config: Mapping[str, str]) -> tuple[str, ...]:
    """How an input topic's retention (its described config) could delete records before the
    pipeline consumed them, each with the fix; empty when it cannot (or the topic is compact only)."""
    if "delete" not in config.get("cleanup.policy", "delete"):
        return ()
    fix = f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name {name}"
    risks = []
    size = config.get("retention.bytes", "-1")
    if size.lstrip("-").isdigit() and int(size) >= 0:
        risks.append(
            f"{name}: retention.bytes={size} deletes a partition's oldest records once it holds more, "
            f"consumed or not (a long replay outgrows it); fix: {fix} --add-config retention.bytes=-1"
        )
    age = config.get("retention.ms", "-1")
    if age.lstrip("-").isdigit() and 0 <= int(age) < SAFE_RETENTION_MS:
        risks.append(
            f"{name}: retention.ms={age} (under a day) deletes records the pipeline has not consumed "
            f"within it (a replay stamps records with the time it sends them); "
            f"fix: {fix} --add-config retention.ms=604800000"
        )
    return tuple(risks)


def retention_warnings(results: Sequence[TopicResult]) -> list[str]:
    """Every retention risk of the topics, one line each (for stderr)."""
    return [risk for result in results for risk in result.retention_risks]


def check_co_partitioning(results: Sequence[TopicResult]) -> None:
    problems = co_partitioning_problems(results)
    if problems:
        raise CoPartitioningError("; ".join(problems))


AdminFactory = Callable[[Settings], Any]


def _kafka_python_admin(settings: Settings) -> Any:
    return admin_client(kafka_python_config(settings), client_id="holdwatch-admin")


def _partition_counts(admin: Any, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[topic["name"]] = len(topic["partitions"])
    return counts


def _described_configs(admin: Any, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Each topic's effective config (broker defaults included), as name -> {key: value}."""
    from kafka.admin import ConfigResource, ConfigResourceType

    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    topics = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {
        name: {key: entry.get("value") for key, entry in config.items() if entry.get("value") is not None}
        for name, config in topics.items()
    }


def _config_mismatches(
    specs: list[TopicSpec], existing: set[str], actual: Mapping[str, Mapping[str, str]]
) -> dict[str, tuple[str, ...]]:
    """Configs of pre-existing topics that differ from what holdwatch would create."""
    mismatches: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        if not spec.config or spec.name not in existing:
            continue
        config = actual.get(spec.name, {})
        found = tuple(
            f"{key}={config.get(key)} (wanted {value})"
            for key, value in spec.config.items()
            if config.get(key) != value
        )
        if found:
            mismatches[spec.name] = found
    return mismatches


_TOPIC_ALREADY_EXISTS = 36


def _create_missing(admin: Any, missing: list[TopicSpec]) -> set[str]:
    """Create the missing topics; the names this call created (a lost race is fine)."""
    if not missing:
        return set()
    response = admin.create_topics(
        {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": spec.replication_factor,
                "configs": dict(spec.config),
            }
            for spec in missing
        },
        raise_errors=False,
    )
    created: set[str] = set()
    errors = []
    for topic in response.get("topics", []):
        code = topic.get("error_code", 0)
        if code == 0:
            created.add(topic["name"])
        elif code != _TOPIC_ALREADY_EXISTS:  # lost a race with another creator: fine
            errors.append(f"{topic['name']}: {topic.get('error_message') or f'error code {code}'}")
    if errors:
        raise RuntimeError("could not create topics: " + "; ".join(errors))
    if created:
        admin.wait_for_topics(sorted(created), timeout_ms=30000)
    return created


def ensure_topics(
    settings: Settings,
    extra: Iterable[TopicSpec] = (),
    *,
    admin_factory: AdminFactory = _kafka_python_admin,
) -> list[TopicResult]:
    """Create every missing topic (holdwatch's own plus `extra`); report what each one is now.

    Existing topics are left alone (partition counts are reported, never changed).
    """
    specs = [*topic_specs(settings), *extra]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate topic names in {names}")
    admin = admin_factory(settings)
    try:
        existing = set(admin.list_topics())
        created = _create_missing(admin, [spec for spec in specs if spec.name not in existing])
        counts = _partition_counts(admin, names)
        checked = {s.name for s in specs if s.role == "input" or (s.config and s.name in existing)}
        actual = _described_configs(admin, sorted(checked))
    finally:
        admin.close()
    mismatches = _config_mismatches(specs, existing, actual)
    results = []
    for spec in specs:
        if spec.name not in counts:
            raise RuntimeError(f"topic {spec.name} is not visible in the cluster metadata")
        status: TopicStatus = "created" if spec.name in created else "exists"
        is_input = spec.role == "input"
        results.append(
            TopicResult(
                spec=spec,
                status=status,
                partitions=counts[spec.name],
                config_mismatches=mismatches.get(spec.name, ()),
                retention_risks=retention_risks(spec.name, actual.get(spec.name, {})) if is_input else (),
            )
        )
    return results
