"""A topic as an operator sees it: partitions with their offsets, replication, configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventbus.ops._admin import Admin


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition's offsets.

    Attributes:
        partition: the partition number.
        earliest: the first offset still stored (the log start).
        end: the offset the next record will get (the high watermark).
    """

    partition: int
    earliest: int
    end: int

    @property
    def records(self) -> int:
        """Offsets between the log start and the end (records, plus any transaction
        markers)."""
        return max(0, self.end - self.earliest)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic's partitions and settings.

    Attributes:
        name: the topic.
        replication_factor: replicas of each partition.
        partitions: each partition's offsets, in partition order.
        configs: the topic's configs as the broker reports them (defaults included).
    """

    name: str
    replication_factor: int
    partitions: tuple[PartitionInfo, ...]
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Offsets stored over every partition."""
        return sum(p.records for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "topic": self.name,
            "replication_factor": self.replication_factor,
            "partitions": [
                {
                    "partition": p.partition,
                    "earliest": p.earliest,
                    "end": p.end,
                    "records": p.records,
                }
                for p in self.partitions
            ],
            "configs": dict(sorted(self.configs.items())),
        }


async def describe_topic(admin: Admin, name: str) -> TopicInfo:
    """Describe topic ``name``: partitions with earliest and end offsets, and configs.

    Raises:
        UnknownTopicError: the topic does not exist.
    """
    tps = await admin.partitions(name)
    described = (await admin.client.describe_topics([name])).get(name)
    earliest = await admin.earliest_offsets(tps)
    ends = await admin.end_offsets(tps)
    return TopicInfo(
        name,
        described.replication_factor if described is not None else 0,
        tuple(PartitionInfo(tp.partition, earliest[tp], ends[tp]) for tp in tps),
        dict(described.configs) if described is not None else {},
    )
