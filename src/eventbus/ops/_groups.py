"""Consumer groups: lag per partition, and resetting a group's committed offsets."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from eventbus._transport.base import GroupDescription, TopicPartition
from eventbus.errors import ConfigurationError
from eventbus.ops._admin import Admin, GroupActiveError


class UnknownGroupError(ConfigurationError):
    """A consumer group named by the caller has no members and no committed offsets."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a group is behind on one partition.

    Attributes:
        topic: the topic.
        partition: the partition.
        committed: the group's committed offset (the next record it will read).
        end: the partition's end offset.
    """

    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        """Records between the committed offset and the end."""
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A consumer group's state and its lag on each partition it committed.

    Attributes:
        group_id: the group.
        state: Kafka's group state (``Stable``, ``Empty``...).
        members: how many members it has now.
        partitions: one entry per partition with a committed offset, sorted.
    """

    group_id: str
    state: str
    members: int
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        """The lag summed over every partition."""
        return sum(p.lag for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "group": self.group_id,
            "state": self.state,
            "members": self.members,
            "lag": self.total,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag,
                }
                for p in self.partitions
            ],
        }


async def consumer_lag(
    admin: Admin, groups: Sequence[str] | None = None, topic: str | None = None
) -> list[GroupLag]:
    """Each group's lag per partition: committed offset, end offset, the difference.

    Args:
        groups: these groups; every group the cluster lists when omitted.
        topic: only partitions of this topic.

    Raises:
        UnknownGroupError: a group of ``groups`` has no members and no committed offsets.
        UnknownTopicError: ``topic`` does not exist.
    """
    if topic is not None:
        await admin.partitions(topic)
    known = await admin.client.list_groups()
    wanted = list(dict.fromkeys(groups)) if groups else known
    described = await admin.client.describe_groups(wanted)
    topics = await admin.topics()
    committed: dict[str, dict[TopicPartition, int]] = {}
    for group in wanted:
        offsets = await admin.client.group_offsets(group, None if topic is None else [topic])
        committed[group] = {tp: o for tp, o in offsets.items() if tp.topic in topics}
        description = described.get(group) or GroupDescription(group, "Unknown")
        if groups and group not in known and not offsets and not description.members:
            close = difflib.get_close_matches(group, known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownGroupError(
                f"consumer group {group!r} has no members and no committed offsets on "
                f"{admin.settings.servers}{hint}"
            )
    every = sorted({tp for offsets in committed.values() for tp in offsets})
    ends = await admin.end_offsets(every)
    out: list[GroupLag] = []
    for group in wanted:
        description = described.get(group) or GroupDescription(group, "Unknown")
        out.append(
            GroupLag(
                group,
                description.state,
                len(description.members),
                tuple(
                    PartitionLag(tp.topic, tp.partition, o, ends[tp])
                    for tp, o in sorted(committed[group].items())
                ),
            )
        )
    return out


async def ensure_inactive(admin: Admin, group_id: str) -> GroupDescription:
    """The group's description, if it has no active members.

    Raises:
        GroupActiveError: it has members; the message names them.
    """
    found = (await admin.client.describe_groups([group_id])).get(group_id)
    description = found or GroupDescription(group_id, "Unknown")
    if description.members:
        clients = sorted({m.client_id or m.member_id for m in description.members})
        raise GroupActiveError(
            f"consumer group {group_id!r} has {len(description.members)} active member(s) "
            f"({description.state}; {', '.join(clients[:5])}): stop its consumers first. "
            "A group's offsets can only be changed while it has no members."
        )
    return description


ResetTo = Literal["earliest", "latest"] | datetime | int
"""Where to move a group: the log start, the end, the first record at or after a time, or
an offset (the same offset in every partition chosen)."""


@dataclass(frozen=True, slots=True)
class OffsetMove:
    """One partition's committed offset now, and where a reset moves it.

    Attributes:
        topic: the topic.
        partition: the partition.
        current: the committed offset now (None: the group never committed here).
        target: the offset it is moved to.
        note: why ``target`` differs from what was asked (clamped to the log), or None.
    """

    topic: str
    partition: int
    current: int | None
    target: int
    note: str | None = None

    @property
    def delta(self) -> int | None:
        """``target - current``: negative re-reads records, positive skips them."""
        return None if self.current is None else self.target - self.current


@dataclass(frozen=True, slots=True)
class ResetPlan:
    """A reset of one group's offsets on one topic.

    Attributes:
        group_id: the group.
        topic: the topic.
        to: what was asked, in words (``earliest``, ``offset 5``...).
        moves: one per partition, in partition order.
    """

    group_id: str
    topic: str
    to: str
    moves: tuple[OffsetMove, ...]

    @property
    def offsets(self) -> dict[TopicPartition, int]:
        """The offsets the reset commits."""
        return {TopicPartition(m.topic, m.partition): m.target for m in self.moves}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "group": self.group_id,
            "topic": self.topic,
            "to": self.to,
            "partitions": [
                {
                    "partition": m.partition,
                    "current": m.current,
                    "target": m.target,
                    "delta": m.delta,
                    "note": m.note,
                }
                for m in self.moves
            ],
        }


async def plan_reset(
    admin: Admin,
    group_id: str,
    topic: str,
    to: ResetTo,
    partitions: Sequence[int] | None = None,
) -> ResetPlan:
    """Work out where a reset moves ``group_id`` on ``topic``; change nothing.

    An offset outside a partition's log is clamped to its start or end, as Kafka's
    ``kafka-consumer-groups.sh`` does; a time after a partition's last record gives
    its end.

    Raises:
        UnknownTopicError: the topic does not exist.
        ConfigurationError: a partition does not exist.
        GroupActiveError: the group has active members.
    """
    tps = await admin.partitions(topic, partitions)
    await ensure_inactive(admin, group_id)
    committed = await admin.client.group_offsets(group_id, [topic])
    earliest = await admin.earliest_offsets(tps)
    ends = await admin.end_offsets(tps)
    notes: dict[TopicPartition, str] = {}
    if to == "earliest":
        targets, label = earliest, "earliest"
    elif to == "latest":
        targets, label = ends, "latest"
    elif isinstance(to, datetime):
        targets, label = (
            await admin.offsets_at(tps, to),
            f"first record at or after {to.isoformat()}",
        )
    else:
        targets, label = {}, f"offset {to}"
        for tp in tps:
            targets[tp] = min(max(to, earliest[tp]), ends[tp])
            if to < earliest[tp]:
                notes[tp] = f"{to} is before the log start {earliest[tp]}"
            elif to > ends[tp]:
                notes[tp] = f"{to} is past the end {ends[tp]}"
    moves = tuple(
        OffsetMove(tp.topic, tp.partition, committed.get(tp), targets[tp], notes.get(tp))
        for tp in tps
    )
    return ResetPlan(group_id, topic, label, moves)


async def apply_reset(admin: Admin, plan: ResetPlan) -> None:
    """Commit the plan's offsets for its group (checked again to have no members).

    Raises:
        GroupActiveError: the group has active members now.
        BrokerError: the broker refused (a member joined meanwhile).
    """
    await ensure_inactive(admin, plan.group_id)
    await admin.client.alter_group_offsets(plan.group_id, plan.offsets)
