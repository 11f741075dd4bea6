"""Topic names and specs of the pipeline, from settings."""

from __future__ import annotations

from streams.kafka.admin import TopicSpec
from streams.settings import Settings


def control_topic(settings: Settings) -> str:
    """Internal: CARM broadcasts and clock ticks, co-partitioned with the CCN-keyed inputs."""
    return f"{settings.app_id}.control"


def internal_topic_specs(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(
            name=control_topic(settings),
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={"retention.ms": str(7 * 24 * 3600 * 1000)},
            role="internal",
            co_partitioned=True,
        ),
        TopicSpec(  # dispatch's actions in Slack: written by the notifier, read by it and the worker
            name=settings.actions_topic(),
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={},
            role="internal",
            co_partitioned=True,
        ),
    ]
