"""An in-memory broker with Kafka's semantics, for fast unit tests.

It keeps partitions and offsets, places keys with Kafka's murmur2 partitioner, runs
consumer groups with an eager range-style assignment and rebalance callbacks, stores
committed offsets per group and redelivers what was not committed when a member stops.
A commit for a partition the member no longer owns fails, as Kafka's generation check does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventbus._partitioner import partition_for
from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    GroupDescription,
    GroupMember,
    OffsetSpec,
    OutgoingRecord,
    ProducerConfig,
    Record,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
    TopicSpec,
)
from eventbus.errors import BrokerError, BrokerUnavailableError, PublishError

MAX_MESSAGE_BYTES = 1_048_588


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MemoryBroker:
    """A Kafka-like broker living in this process.

    Args:
        default_partitions: partitions of an auto-created topic (Kafka's default is 1).
    """

    def __init__(self, default_partitions: int = 1) -> None:
        self.default_partitions = default_partitions
        self.topics: dict[str, list[list[Record]]] = {}
        self.topic_configs: dict[str, dict[str, str]] = {}
        """Each topic's own configs (``retention.ms``...), as created or altered."""
        self.replication: dict[str, int] = {}
        """Each created topic's replication factor (kept, not enforced)."""
        self.groups: dict[str, _Group] = {}
        self.available = True
        self.fail_sends = 0
        self._rr = itertools.count()
        self.data_event = asyncio.Event()

    # -- fault injection -------------------------------------------------------------
    def go_down(self) -> None:
        """Make the broker unreachable: sends fail, starts fail."""
        self.available = False

    def come_back(self) -> None:
        """Make the broker reachable again."""
        self.available = True

    # -- topics ----------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int | None = None) -> None:
        """Create ``name`` if missing."""
        if name not in self.topics:
            self.topics[name] = [[] for _ in range(partitions or self.default_partitions)]

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic``, partition by partition."""
        return [r for part in self.topics.get(topic, []) for r in part]

    def end_offset(self, tp: TopicPartition) -> int:
        """The log end offset of ``tp``."""
        parts = self.topics.get(tp.topic)
        return len(parts[tp.partition]) if parts and tp.partition < len(parts) else 0

    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The committed offset of ``group_id`` on ``tp``."""
        group = self.groups.get(group_id)
        return None if group is None else group.committed.get(tp)

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        partition: int | None,
    ) -> RecordMetadata:
        """Store a record and return where it went."""
        if not self.available:
            raise PublishError(f"KafkaConnectionError: memory broker is down (topic {topic})")
        if self.fail_sends > 0:
            self.fail_sends -= 1
            raise PublishError("injected send failure")
        size = len(value or b"") + len(key or b"")
        if size > MAX_MESSAGE_BYTES:
            raise PublishError(f"MessageSizeTooLargeError: record of {size} bytes")
        self.create_topic(topic)
        parts = self.topics[topic]
        if partition is None:
            partition = (
                partition_for(key, len(parts)) if key is not None else next(self._rr) % len(parts)
            )
        if not 0 <= partition < len(parts):
            raise PublishError(f"UnknownTopicOrPartition: {topic}[{partition}]")
        log = parts[partition]
        rec = Record(
            topic, partition, len(log), key, value, tuple(headers), int(time.time() * 1000)
        )
        log.append(rec)
        self.data_event.set()
        self.data_event = asyncio.Event()
        return RecordMetadata(topic, partition, rec.offset)

    # -- groups ----------------------------------------------------------------------
    async def join(self, member: MemoryConsumer) -> None:
        group = self.groups.setdefault(member.config.group_id, _Group())
        async with group.lock:
            group.members.append(member)
            await self._rebalance(group)

    async def leave(self, member: MemoryConsumer) -> None:
        group = self.groups.get(member.config.group_id)
        if group is None or member not in group.members:
            return
        async with group.lock:
            group.members.remove(member)
            member.owned = set()
            await self._rebalance(group)

    async def _rebalance(self, group: _Group) -> None:
        group.generation += 1
        for m in group.members:  # eager protocol: everyone gives everything back first
            if m.owned and m.config.on_revoked is not None:
                await m.config.on_revoked(set(m.owned))
            m.owned = set()
        wanted = sorted(
            {
                TopicPartition(t, p)
                for m in group.members
                for t in m.config.topics
                for p in range(len(self.topics.get(t) or self._autocreate(t)))
            }
        )
        if not group.members:
            return
        # Kafka's range assignor: per topic, consecutive partitions to members in order,
        # so co-partitioned topics give the same partition numbers to the same member.
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in wanted:
            by_topic.setdefault(tp.topic, []).append(tp)
        for tps in by_topic.values():
            members = [m for m in group.members if tps[0].topic in m.config.topics]
            share, extra = divmod(len(tps), len(members))
            start = 0
            for i, m in enumerate(members):
                count = share + (1 if i < extra else 0)
                m.owned.update(tps[start : start + count])
                start += count
        for m in group.members:
            m.positions = {}
            for tp in m.owned:
                committed = group.committed.get(tp)
                if committed is not None:
                    m.positions[tp] = committed
                elif m.config.auto_offset_reset == "latest":
                    m.positions[tp] = self.end_offset(tp)
                else:
                    m.positions[tp] = 0
            if m.config.on_assigned is not None:
                await m.config.on_assigned(set(m.owned))

    def _autocreate(self, topic: str) -> list[list[Record]]:
        self.create_topic(topic)
        return self.topics[topic]

    # -- transport factory -------------------------------------------------------------
    name = "memory"

    def producer(self, config: ProducerConfig) -> MemoryProducer:
        """A producer transport on this broker."""
        return MemoryProducer(self)

    def consumer(self, config: ConsumerConfig) -> MemoryConsumer:
        """A consumer transport on this broker."""
        return MemoryConsumer(self, config)

    def admin(self) -> MemoryAdmin:
        """An admin transport on this broker."""
        return MemoryAdmin(self)

    def transactional_producer(
        self, config: ProducerConfig, transactional_id: str
    ) -> MemoryTransactionalProducer:
        """A transactional producer on this broker (records and offsets land together)."""
        return MemoryTransactionalProducer(self)


class MemoryProducer:
    """:class:`ProducerTransport` on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        if not self._broker.available:
            raise BrokerUnavailableError("memory broker is down")

    async def stop(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self._broker.append(topic, value, key, headers, partition))
        except BrokerError as exc:
            fut.set_exception(exc)
        return fut

    async def flush(self) -> None:
        return None


class MemoryTransactionalProducer:
    """:class:`TransactionalProducer` on a :class:`MemoryBroker`: all or nothing."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        if not self._broker.available:
            raise BrokerUnavailableError("memory broker is down")

    async def stop(self) -> None:
        return None

    async def commit_atomically(
        self,
        records: Sequence[OutgoingRecord],
        offsets: dict[TopicPartition, int],
        consumer: ConsumerTransport,
        group_id: str,
    ) -> None:
        broker = self._broker
        if not broker.available or broker.fail_sends > 0:
            if broker.fail_sends > 0:
                broker.fail_sends -= 1
            raise PublishError("transaction aborted: memory broker is down")
        group = broker.groups.get(group_id)
        owned = consumer.assignment()
        if group is None or any(tp not in owned for tp in offsets):
            raise PublishError("transaction aborted: partitions are no longer assigned")
        for r in records:
            broker.append(r.topic, r.value, r.key, r.headers, None)
        group.committed.update(offsets)


class MemoryConsumer:
    """:class:`ConsumerTransport` on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, config: ConsumerConfig) -> None:
        self._broker = broker
        self.config = config
        self.owned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()

    async def start(self) -> None:
        if not self._broker.available:
            raise BrokerUnavailableError("memory broker is down")
        if self.config.assign is None:
            await self._broker.join(self)
            return
        self.owned = set(self.config.assign)  # manual assignment: no group is joined
        self.positions = dict(self.config.assign)

    async def stop(self) -> None:
        if self.config.assign is None:
            await self._broker.leave(self)

    async def getmany(self, timeout_ms: int, max_records: int) -> list[Record]:
        arrived = self._broker.data_event
        out = self._take(max_records)
        if not out and timeout_ms > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout_ms / 1000)
            out = self._take(max_records)
        if not out:
            await asyncio.sleep(0)  # let other tasks run, as a network poll would
        return out

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for tp in sorted(self.owned):
            if tp in self._paused:
                continue
            log = self._broker.topics.get(tp.topic, [[]])[tp.partition]
            pos = self.positions.get(tp, 0)
            chunk = log[pos : pos + (max_records - len(out))]
            out.extend(chunk)
            self.positions[tp] = pos + len(chunk)
            if len(out) >= max_records:
                break
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.config.assign is not None:
            raise BrokerError("a consumer with manual assignment has no group to commit to")
        group = self._broker.groups[self.config.group_id]
        foreign = [tp for tp in offsets if tp not in self.owned]
        if foreign:
            raise BrokerError(f"CommitFailedError: partitions {foreign} are not assigned to member")
        group.committed.update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._broker.committed(self.config.group_id, tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._paused.update(tps)

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._paused.difference_update(tps)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._broker.end_offset(tp)

    async def group_metadata(self) -> object:
        return self.config.group_id

    async def position(self, tp: TopicPartition) -> int | None:
        return self.positions.get(tp)


class MemoryAdmin:
    """:class:`AdminTransport` on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        if not self._broker.available:
            raise BrokerUnavailableError("memory broker is down")

    async def stop(self) -> None:
        return None

    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        created = [s.name for s in specs if s.name not in self._broker.topics]
        for spec in specs:
            if spec.name in created:
                self._broker.topic_configs[spec.name] = dict(spec.configs)
                self._broker.replication[spec.name] = spec.replication_factor
            self._broker.create_topic(spec.name, spec.partitions)
        return created

    async def list_topics(self) -> dict[str, int]:
        return {name: len(parts) for name, parts in self._broker.topics.items()}

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicDescription]:
        broker = self._broker
        return {
            name: TopicDescription(
                name,
                len(broker.topics[name]),
                broker.replication.get(name, 1),
                dict(broker.topic_configs.get(name, {})),
            )
            for name in names
            if name in broker.topics
        }

    async def create_partitions(self, counts: dict[str, int]) -> None:
        broker = self._broker
        for name, total in counts.items():
            parts = broker.topics.get(name)
            if parts is None:
                raise BrokerError(f"UnknownTopicOrPartition: {name}")
            if total <= len(parts):
                raise BrokerError(
                    f"InvalidPartitions: {name} has {len(parts)} partitions, asked for {total}"
                )
            parts.extend([] for _ in range(total - len(parts)))

    async def alter_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        if name not in self._broker.topics:
            raise BrokerError(f"UnknownTopicOrPartition: {name}")
        self._broker.topic_configs.setdefault(name, {}).update(configs)

    async def list_offsets(
        self, partitions: Sequence[TopicPartition], spec: OffsetSpec
    ) -> dict[TopicPartition, int | None]:
        broker = self._broker
        out: dict[TopicPartition, int | None] = {}
        for tp in partitions:
            if spec == "earliest":
                out[tp] = 0
            elif spec == "latest":
                out[tp] = broker.end_offset(tp)
            else:
                parts = broker.topics.get(tp.topic) or []
                log = parts[tp.partition] if tp.partition < len(parts) else []
                out[tp] = next((r.offset for r in log if r.timestamp_ms >= spec), None)
        return out

    async def list_groups(self) -> list[str]:
        return sorted(self._broker.groups)

    async def describe_groups(self, group_ids: Sequence[str]) -> dict[str, GroupDescription]:
        out: dict[str, GroupDescription] = {}
        for group_id in group_ids:
            group = self._broker.groups.get(group_id)
            if group is None:
                out[group_id] = GroupDescription(group_id, "Dead")
                continue
            members = tuple(
                GroupMember(f"{m.config.client_id}-{id(m):x}", m.config.client_id, "memory")
                for m in group.members
            )
            out[group_id] = GroupDescription(group_id, "Stable" if members else "Empty", members)
        return out

    async def group_offsets(
        self, group_id: str, topics: Sequence[str] | None = None
    ) -> dict[TopicPartition, int]:
        group = self._broker.groups.get(group_id)
        if group is None:
            return {}
        return {tp: o for tp, o in group.committed.items() if topics is None or tp.topic in topics}

    async def alter_group_offsets(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        group = self._broker.groups.setdefault(group_id, _Group())
        if group.members:
            raise BrokerError(
                f"the broker refused the offsets of group {group_id}: it has active members"
            )
        group.committed.update(offsets)
