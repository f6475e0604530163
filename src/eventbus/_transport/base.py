"""The seams between the library core and a Kafka client.

The core (producer, consumer, policies) speaks only to these Protocols; the aiokafka
adapter, the confluent-kafka adapter and the in-memory broker implement them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, runtime_checkable


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record as read from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0
    tp: TopicPartition = field(init=False, repr=False, compare=False)
    """The record's topic partition (computed once: the consumer asks for it often)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tp", TopicPartition(self.topic, self.partition))


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where the broker stored an acknowledged record."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: name, partitions, replication and configs."""

    name: str
    partitions: int = 3
    replication_factor: int = 1
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """A topic as the cluster has it: partitions, replication and configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    """The topic's configs as the broker reports them (its defaults included)."""


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A member of a consumer group, as the group coordinator reports it."""

    member_id: str
    client_id: str = ""
    host: str = ""


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A consumer group as the cluster has it.

    Attributes:
        group_id: the group.
        state: Kafka's group state: ``Empty`` (no members), ``Stable``,
            ``PreparingRebalance``, ``CompletingRebalance``, ``Dead`` (unknown to the
            coordinator) or ``Unknown``.
        members: the active members (empty when the group has none).
    """

    group_id: str
    state: str
    members: tuple[GroupMember, ...] = ()


OffsetSpec = Literal["earliest", "latest"] | int
"""Which offset ListOffsets answers: the first, the end, or (an int) the first record at
or after that timestamp in milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record to write as part of a transaction."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


RebalanceCallback = Callable[[set[TopicPartition]], Awaitable[None]]


@runtime_checkable
class ProducerTransport(Protocol):
    """Sends records; every send resolves only when the broker acknowledged it."""

    async def start(self) -> None:
        """Connect; raise BrokerUnavailableError if the broker cannot be reached."""

    async def stop(self) -> None:
        """Flush and disconnect."""

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue a record; the returned future resolves on acknowledgement."""

    async def flush(self) -> None:
        """Wait until every enqueued record is acknowledged or failed."""


@runtime_checkable
class ConsumerTransport(Protocol):
    """Reads records for a consumer group and commits offsets."""

    async def start(self) -> None:
        """Connect and join the group."""

    async def stop(self) -> None:
        """Leave the group and disconnect (offsets are committed by the caller first)."""

    async def getmany(self, timeout_ms: int, max_records: int) -> list[Record]:
        """Return up to ``max_records`` fetched records, waiting at most ``timeout_ms``."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the next offsets to read for the given partitions."""

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp``."""

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned to this member."""

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next fetch of ``tp`` start at ``offset``."""

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        """Stop fetching from ``tps``."""

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        """Fetch again from ``tps``."""

    def highwater(self, tp: TopicPartition) -> int | None:
        """The high watermark seen in the last fetch response (trustworthy on every broker)."""

    async def group_metadata(self) -> object:
        """What a transactional producer needs to commit this member's offsets."""

    async def position(self, tp: TopicPartition) -> int | None:
        """The offset of the next record to fetch (past transaction markers), or None."""


@runtime_checkable
class TransactionalProducer(Protocol):
    """Writes records and consumer offsets atomically, in one Kafka transaction."""

    async def start(self) -> None:
        """Connect and initialise the transactional id (fencing older instances)."""

    async def stop(self) -> None:
        """Disconnect."""

    async def commit_atomically(
        self,
        records: Sequence[OutgoingRecord],
        offsets: dict[TopicPartition, int],
        consumer: ConsumerTransport,
        group_id: str,
    ) -> None:
        """Write ``records`` and commit ``offsets`` for ``group_id`` together, or neither.

        Raises:
            PublishError: the transaction was aborted; nothing of it is visible.
        """


@runtime_checkable
class AdminTransport(Protocol):
    """Topic administration."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Disconnect."""

    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        """Create the missing topics; return the names created."""

    async def list_topics(self) -> dict[str, int]:
        """Topic name -> partition count."""

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicDescription]:
        """The topics of ``names`` that exist, with partitions, replication and configs."""

    async def create_partitions(self, counts: dict[str, int]) -> None:
        """Grow each topic of ``counts`` to that total number of partitions."""

    async def alter_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Set ``configs`` on topic ``name``; its other topic-level configs are kept."""

    async def list_offsets(
        self, partitions: Sequence[TopicPartition], spec: OffsetSpec
    ) -> dict[TopicPartition, int | None]:
        """ListOffsets for each partition: the first offset, the end offset, or the first
        offset whose record timestamp is at or after ``spec`` ms (None when no record is).

        The broker's answer, as is: where ``Features.correct_end_offsets`` is False (Tansu)
        the end and timestamp answers are wrong; :mod:`eventbus.ops` then reads instead.
        """

    async def list_groups(self) -> list[str]:
        """The ids of the consumer groups the cluster knows, sorted."""

    async def describe_groups(self, group_ids: Sequence[str]) -> dict[str, GroupDescription]:
        """State and members of each group (state ``Dead`` for a group nobody knows)."""

    async def group_offsets(
        self, group_id: str, topics: Sequence[str] | None = None
    ) -> dict[TopicPartition, int]:
        """The group's committed offsets on ``topics`` (every topic when None); partitions
        it never committed are left out."""

    async def alter_group_offsets(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        """Set the group's committed offsets, as a commit from outside the group.

        The broker accepts it only while the group has no active members.

        Raises:
            BrokerError: the broker refused (e.g. the group has members).
        """


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """What the consumer core asks of a consumer transport."""

    group_id: str
    topics: tuple[str, ...]
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 500
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    group_instance_id: str | None = None
    client_id: str = "eventbus"
    on_revoked: RebalanceCallback | None = None
    on_assigned: RebalanceCallback | None = None
    isolation_level: str = "read_uncommitted"
    range_assignment: bool = False
    """Assign the same partition numbers of co-partitioned topics to the same member."""
    assign: Mapping[TopicPartition, int] | None = None
    """Read these partitions from these offsets by manual assignment instead of
    subscribing to ``topics``: no group is joined and nothing may be committed (tools
    such as ``eventbus tail`` read this way)."""


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """What the producer core asks of a producer transport."""

    client_id: str = "eventbus"
    acks: str = "all"
    enable_idempotence: bool = True
    compression: str | None = None
    linger_ms: int = 5
    max_batch_bytes: int = 1_048_576
    max_request_bytes: int = 1_048_576
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 120_000
    retries: int = 2_147_483_647
    retry_backoff_ms: int = 100
    transactional_id: str | None = None


class Transport(Protocol):
    """A factory of producer, consumer and admin clients for one cluster."""

    name: str

    def producer(self, config: ProducerConfig) -> ProducerTransport:
        """Create (not start) a producer."""

    def consumer(self, config: ConsumerConfig) -> ConsumerTransport:
        """Create (not start) a consumer."""

    def admin(self) -> AdminTransport:
        """Create (not start) an admin client."""

    def transactional_producer(
        self, config: ProducerConfig, transactional_id: str
    ) -> TransactionalProducer:
        """Create (not start) a transactional producer."""
