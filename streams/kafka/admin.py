"""Create holdwatch's topics idempotently and check that the co-partitioned inputs still match.

Why: the inputs are joined by key inside one worker task, which only works if every input topic has
the same partition count (co-partitioning). A topic created earlier with another count is reported,
not silently used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.kafka.config import admin_client, kafka_python_config
from streams.settings import Settings

TopicRole = Literal["input", "output", "internal"]
TopicStatus = Literal["created", "exists"]


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


def _config_mismatches(admin: Any, specs: list[TopicSpec], existing: set[str]) -> dict[str, tuple[str, ...]]:
    """Configs of pre-existing topics that differ from what holdwatch would create."""
    from kafka.admin import ConfigResource, ConfigResourceType

    wanted = {spec.name: spec.config for spec in specs if spec.config and spec.name in existing}
    if not wanted:
        return {}
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted], config_filter="all"
    )
    topics = described.get("topic", {})
    mismatches: dict[str, tuple[str, ...]] = {}
    for name, config in wanted.items():
        actual = topics.get(name, {})
        found = tuple(
            f"{key}={actual.get(key, {}).get('value')} (wanted {value})"
            for key, value in config.items()
            if actual.get(key, {}).get("value") != value
        )
        if found:
            mismatches[name] = found
    return mismatches


_TOPIC_ALREADY_EXISTS = 36


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
        missing = [spec for spec in specs if spec.name not in existing]
        created: set[str] = set()
        if missing:
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
        counts = _partition_counts(admin, names)
        mismatches = _config_mismatches(admin, specs, existing)
    finally:
        admin.close()
    results = []
    for spec in specs:
        if spec.name not in counts:
            raise RuntimeError(f"topic {spec.name} is not visible in the cluster metadata")
        status: TopicStatus = "created" if spec.name in created else "exists"
        results.append(
            TopicResult(
                spec=spec,
                status=status,
                partitions=counts[spec.name],
                config_mismatches=mismatches.get(spec.name, ()),
            )
        )
    return results
