"""A topic as an operator sees it: partitions with their offsets, replication, configs."""

from __future__ import annotations

from collections.abc import Sequence
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
    return (await describe_topics(admin, [name]))[0]


async def describe_topics(admin: Admin, names: Sequence[str]) -> list[TopicInfo]:
    """Describe several topics at once (one offsets request for all their partitions).

    Raises:
        UnknownTopicError: a topic does not exist.
    """
    wanted = list(dict.fromkeys(names))
    tps = {name: await admin.partitions(name) for name in wanted}
    every = [tp for parts in tps.values() for tp in parts]
    described = await admin.client.describe_topics(wanted) if wanted else {}
    earliest = await admin.earliest_offsets(every) if every else {}
    ends = await admin.end_offsets(every)
    out: list[TopicInfo] = []
    for name in wanted:
        found = described.get(name)
        out.append(
            TopicInfo(
                name,
                found.replication_factor if found is not None else 0,
                tuple(PartitionInfo(tp.partition, earliest[tp], ends[tp]) for tp in tps[name]),
                dict(found.configs) if found is not None else {},
            )
        )
    return out
