"""Event replay: run a range of a topic through a consumer group again.

A consumer group reads each partition in order from its committed offset; it can be told
where to start, never where to stop. So there are two sound replays:

* **rewind** (no end given): the group's committed offsets move back to the start of
  the range. When its consumers start again they re-read everything from there: the
  range *and every record after it* up to the end of the topic.
* **copy** (``to``, with or without an end): the records of ``[start, until)`` are
  copied to a replay topic, in order, with their key, value and headers plus
  ``replay.count``, ``replay.at`` and ``replay.from`` (``topic:partition:offset``). The
  group's offsets on the replay topic are set to its end before copying, so a consumer
  of the group that also subscribes to the replay topic reads exactly these copies (and
  no earlier replay); its offsets on the original topic are untouched.

Both change the group's offsets, so both refuse while the group has active members. The
``event_id`` of a replayed event is unchanged: a consumer with an inbox
(:mod:`eventbus.inbox`) skips events it already applied, so a replay re-runs them only
through consumers without one (or whose inbox entries were cleared, or a new group).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from eventbus._codec import header_value
from eventbus._producer import KafkaProducer
from eventbus._transport.base import Record, TopicPartition, TopicSpec
from eventbus.errors import ConfigurationError, PublishError
from eventbus.ops._admin import Admin
from eventbus.ops._groups import ensure_inactive
from eventbus.redrive import REPLAY_AT, REPLAY_COUNT, REPLAY_FROM


@dataclass(frozen=True, slots=True)
class ReplayRange:
    """The offsets of one partition to replay.

    Attributes:
        topic: the topic.
        partition: the partition.
        start: the first offset replayed.
        end: the offset after the last one (the partition's end, when rewinding).
        committed: the group's committed offset before the replay (None: never).
    """

    topic: str
    partition: int
    start: int
    end: int
    committed: int | None

    @property
    def records(self) -> int:
        """How many offsets the range spans."""
        return max(0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay will do.

    Attributes:
        topic: the topic replayed.
        group_id: the consumer group that re-runs it.
        mode: ``rewind`` (move the group back) or ``copy`` (to a replay topic).
        ranges: one per partition, in partition order.
        target: the replay topic (copy mode).
        target_exists: whether it exists already (it is created otherwise).
    """

    topic: str
    group_id: str
    mode: Literal["rewind", "copy"]
    ranges: tuple[ReplayRange, ...]
    target: str | None = None
    target_exists: bool = True

    @property
    def records(self) -> int:
        """Offsets replayed over every partition."""
        return sum(r.records for r in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "topic": self.topic,
            "group": self.group_id,
            "mode": self.mode,
            "target": self.target,
            "records": self.records,
            "partitions": [
                {
                    "partition": r.partition,
                    "start": r.start,
                    "end": r.end,
                    "records": r.records,
                    "committed": r.committed,
                }
                for r in self.ranges
            ],
        }


async def plan_replay(
    admin: Admin,
    topic: str,
    group_id: str,
    *,
    from_offset: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    until_offset: int | None = None,
    to: str | None = None,
    partitions: Sequence[int] | None = None,
) -> ReplayPlan:
    """Work out a replay of ``topic`` through ``group_id``; change nothing.

    The range starts at ``from_offset`` (in every chosen partition, clamped to the log)
    or at the first record at or after ``since``, and ends at ``until`` /
    ``until_offset`` (exclusive) or at the end. An end needs ``to`` (copy mode): a group
    cannot be stopped at an offset. When rewinding, a partition where the group has not
    yet reached the start keeps its committed offset (a replay never skips records).

    Raises:
        ConfigurationError: not exactly one start, an end without ``to``, ``to`` is the
            topic itself, or a partition does not exist.
        UnknownTopicError: the topic does not exist.
        GroupActiveError: the group has active members.
    """
    if (from_offset is None) == (since is None):
        raise ConfigurationError("give where the replay starts: --from-offset N or --since TIME")
    if until is not None and until_offset is not None:
        raise ConfigurationError("give one end: --until TIME or --until-offset N")
    bounded = until is not None or until_offset is not None
    if bounded and to is None:
        raise ConfigurationError(
            "--until needs --to REPLAY_TOPIC: a consumer group cannot be stopped at an offset, "
            "so rewinding it re-reads everything after the start. Copy the range to a replay "
            "topic the group also reads (--to), or drop --until to rewind the group"
        )
    if to == topic:
        raise ConfigurationError(f"--to must name another topic than {topic!r}")
    tps = await admin.partitions(topic, partitions)
    await ensure_inactive(admin, group_id)
    committed = await admin.client.group_offsets(group_id, [topic])
    earliest = await admin.earliest_offsets(tps)
    ends = await admin.end_offsets(tps)
    if since is not None:
        starts = await admin.offsets_at(tps, since)
    else:
        assert from_offset is not None
        starts = {tp: min(max(from_offset, earliest[tp]), ends[tp]) for tp in tps}
    stops = dict(ends)
    if until is not None:
        stops = await admin.offsets_at(tps, until)
    elif until_offset is not None:
        stops = {tp: min(max(until_offset, earliest[tp]), ends[tp]) for tp in tps}
    ranges = []
    for tp in tps:
        start, current = starts[tp], committed.get(tp)
        if to is None and current is not None:
            start = min(start, current)  # never moves the group forward
        ranges.append(ReplayRange(tp.topic, tp.partition, start, max(start, stops[tp]), current))
    if to is None:
        return ReplayPlan(topic, group_id, "rewind", tuple(ranges))
    exists = to in await admin.topics(refresh=True)
    return ReplayPlan(topic, group_id, "copy", tuple(ranges), to, exists)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did.

    Attributes:
        plan: the plan it ran.
        copied: records copied to the replay topic (copy mode).
        created: whether the replay topic was created.
        group_offsets: the offsets committed for the group.
    """

    plan: ReplayPlan
    copied: int
    created: bool
    group_offsets: dict[TopicPartition, int]


async def run_replay(
    admin: Admin,
    plan: ReplayPlan,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 60.0,
) -> ReplayResult:
    """Carry out ``plan``: rewind the group, or copy the range and point the group at it.

    Raises:
        GroupActiveError: the group has active members now.
        PublishError: a copy was not acknowledged (the result so far is in the message).
    """
    await ensure_inactive(admin, plan.group_id)
    if plan.mode == "rewind":
        offsets = {TopicPartition(r.topic, r.partition): r.start for r in plan.ranges}
        await admin.client.alter_group_offsets(plan.group_id, offsets)
        return ReplayResult(plan, 0, False, offsets)
    assert plan.target is not None
    created = False
    if plan.target not in await admin.topics(refresh=True):
        source = (await admin.client.describe_topics([plan.topic]))[plan.topic]
        spec = TopicSpec(plan.target, source.partitions, source.replication_factor)
        created = bool(await admin.client.create_topics([spec]))
        await admin.topics(refresh=True)
    target_tps = await admin.partitions(plan.target)
    offsets = await admin.end_offsets(target_tps)
    await admin.client.alter_group_offsets(plan.group_id, offsets)
    copied = await _copy(admin, plan, len(target_tps), progress, timeout_s)
    return ReplayResult(plan, copied, created, offsets)


async def _copy(
    admin: Admin,
    plan: ReplayPlan,
    target_partitions: int,
    progress: Callable[[int, int], None] | None,
    timeout_s: float,
) -> int:
    assert plan.target is not None
    total, copied = plan.records, 0
    if progress is not None:
        progress(0, total)
    ranges = [r for r in plan.ranges if r.records]
    if not ranges:
        return 0
    starts = {TopicPartition(r.topic, r.partition): r.start for r in ranges}
    stops = {TopicPartition(r.topic, r.partition): r.end for r in ranges}
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    producer = KafkaProducer(settings=admin.settings, transport=admin.transport)
    await producer.start()
    try:
        async with admin.reader(starts) as reader:
            batches = reader.read_to(stops, timeout_s=timeout_s)
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    futures = [
                        await producer.enqueue_raw(
                            plan.target,
                            r.value,
                            r.key,
                            _replay_headers(r, now),
                            r.partition if r.partition < target_partitions else None,
                        )
                        for r in batch
                    ]
                    try:
                        results = await asyncio.wait_for(
                            asyncio.gather(*futures, return_exceptions=True), timeout_s
                        )
                    except TimeoutError:
                        raise PublishError(
                            f"copying to {plan.target} stopped after {copied} record(s): "
                            f"no acknowledgement within {timeout_s:g}s"
                        ) from None
                    failed = [x for x in results if isinstance(x, BaseException)]
                    copied += len(results) - len(failed)
                    if failed:
                        raise PublishError(
                            f"copying to {plan.target} stopped after {copied} record(s): "
                            f"{type(failed[0]).__name__}: {failed[0]}"
                        )
                    if progress is not None:
                        progress(copied, total)
    finally:
        await producer.stop()
    return copied


def _replay_headers(record: Record, now: str) -> list[tuple[str, bytes]]:
    count = header_value(record.headers, REPLAY_COUNT)
    previous = int(count) if count is not None and count.isdigit() else 0
    kept = [(k, v) for k, v in record.headers if k not in (REPLAY_COUNT, REPLAY_AT, REPLAY_FROM)]
    return [
        *kept,
        (REPLAY_COUNT, str(previous + 1).encode()),
        (REPLAY_AT, now.encode()),
        (REPLAY_FROM, f"{record.topic}:{record.partition}:{record.offset}".encode()),
    ]
