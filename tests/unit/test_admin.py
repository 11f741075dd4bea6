"""Topic specs and the co-partitioning check, with an in-memory stand-in for the admin client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.kafka.admin import (
    CoPartitioningError,
    TopicResult,
    TopicSpec,
    check_co_partitioning,
    co_partitioning_problems,
    ensure_topics,
    retention_risks,
    retention_warnings,
    topic_specs,
)
from streams.settings import Settings


class FakeAdmin:
    """Just enough of kafka-python's KafkaAdminClient for ensure_topics."""

    def __init__(self, partitions: dict[str, int], configs: dict[str, dict[str, str]] | None = None) -> None:
        self.partitions = dict(partitions)
        self.configs = configs or {}
        self.create_calls: list[dict[str, Any]] = []
        self.closed = False

    def list_topics(self) -> list[str]:
        return list(self.partitions)

    def create_topics(self, new_topics: dict[str, Any], raise_errors: bool = True) -> dict[str, Any]:
        self.create_calls.append(new_topics)
        for name, spec in new_topics.items():
            self.partitions[name] = spec["num_partitions"]
            self.configs[name] = spec["configs"]
        return {"topics": [{"name": name, "error_code": 0} for name in new_topics]}

    def wait_for_topics(self, names: list[str], timeout_ms: int) -> None:
        return None

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"name": n, "error_code": 0, "partitions": [{}] * self.partitions[n]}
            for n in names
            if n in self.partitions
        ]

    def describe_configs(self, resources: list[Any], config_filter: str) -> dict[str, Any]:
        return {
            "topic": {
                r.name: {
                    k: {"value": v}
                    for k, v in {"cleanup.policy": "delete", **self.configs.get(r.name, {})}.items()
                }
                for r in resources
            }
        }

    def close(self) -> None:
        self.closed = True


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(kafka_bootstrap="x:9092", home=tmp_path, **overrides)


def test_specs_follow_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, partitions=4, replication_factor=3, topic_rns="rns.custom")
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert set(specs) == {
        "emanifest.events",
        "rns.custom",
        "carm.readiness",
        "holdwatch.alerts",
        "holdwatch.deadletter",
    }
    assert {(s.partitions, s.replication_factor) for s in specs.values()} == {(4, 3)}
    assert specs["carm.readiness"].config == {"cleanup.policy": "compact"}
    assert {n for n, s in specs.items() if s.co_partitioned} == {
        "emanifest.events",
        "rns.custom",
        "carm.readiness",
    }


def test_creates_only_missing_topics_and_extras(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    admin = FakeAdmin({"emanifest.events": 6})
    extra = TopicSpec(
        "holdwatch-changelog", partitions=6, replication_factor=1, config={"cleanup.policy": "compact"}
    )
    results = ensure_topics(settings, [extra], admin_factory=lambda _: admin)
    statuses = {r.name: r.status for r in results}
    assert statuses["emanifest.events"] == "exists"
    assert statuses["holdwatch-changelog"] == "created"
    assert sum(status == "created" for status in statuses.values()) == 5
    assert "emanifest.events" not in admin.create_calls[0]
    assert admin.closed


def test_nothing_to_create_means_no_create_call(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    names = settings.topic_names().values()
    admin = FakeAdmin(dict.fromkeys(names, 6), {settings.topic_carm: {"cleanup.policy": "compact"}})
    results = ensure_topics(settings, admin_factory=lambda _: admin)
    assert admin.create_calls == []
    assert all(r.status == "exists" and not r.config_mismatches for r in results)


def test_existing_topic_with_other_partition_count_is_reported(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    admin = FakeAdmin({settings.topic_rns: 12, settings.topic_carm: 6})
    results = ensure_topics(settings, admin_factory=lambda _: admin)
    rns = next(r for r in results if r.name == settings.topic_rns)
    assert rns.partitions == 12 and "settings say 6" in rns.describe()
    problems = co_partitioning_problems(results)
    assert len(problems) == 1 and "rns.events=12" in problems[0]
    with pytest.raises(CoPartitioningError):
        check_co_partitioning(results)
    carm = next(r for r in results if r.name == settings.topic_carm)
    assert carm.config_mismatches == ("cleanup.policy=delete (wanted compact)",)


def test_outputs_may_differ_from_inputs(tmp_path: Path) -> None:
    spec = topic_specs(make_settings(tmp_path))
    results = [TopicResult(s, "exists", 1 if s.role == "output" else 6) for s in spec]
    assert co_partitioning_problems(results) == []


def test_duplicate_extra_topic_is_rejected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    duplicate = TopicSpec(settings.topic_alerts, partitions=1, replication_factor=1)
    with pytest.raises(ValueError, match="duplicate"):
        ensure_topics(settings, [duplicate], admin_factory=lambda _: FakeAdmin({}))


def test_retention_that_could_drop_unconsumed_input_is_a_risk_with_its_fix() -> None:
    assert retention_risks("em", {"cleanup.policy": "delete", "retention.ms": "604800000"}) == ()
    assert retention_risks("em", {"retention.ms": "-1", "retention.bytes": "-1"}) == ()
    size = retention_risks("em", {"retention.bytes": "1073741824"})
    assert len(size) == 1 and "retention.bytes=1073741824" in size[0]
    assert "--entity-name em --add-config retention.bytes=-1" in size[0]
    short = retention_risks("em", {"retention.ms": "3600000", "retention.bytes": "0"})
    assert len(short) == 2 and "retention.ms=3600000" in short[1] and "retention.ms=604800000" in short[1]
    assert retention_risks("carm", {"cleanup.policy": "compact", "retention.bytes": "10"}) == ()
    assert len(retention_risks("carm", {"cleanup.policy": "compact,delete", "retention.bytes": "10"})) == 1


def test_ensure_topics_reports_the_input_topics_retention_risks(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    names = settings.topic_names().values()
    admin = FakeAdmin(
        dict.fromkeys(names, 6),
        {
            settings.topic_rns: {"retention.bytes": "1000"},
            settings.topic_carm: {"cleanup.policy": "compact"},
            settings.topic_alerts: {"retention.ms": "1000"},  # not an input: not checked
        },
    )
    results = ensure_topics(settings, admin_factory=lambda _: admin)
    warnings = retention_warnings(results)
    assert len(warnings) == 1 and warnings[0].startswith(f"{settings.topic_rns}: retention.bytes=1000")
    assert all(not r.config_mismatches for r in results)
