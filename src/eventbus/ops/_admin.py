"""An operator's connection to a cluster: topics, and offsets that are right on every broker.

Where the broker's ListOffsets answers can be trusted (``Features.correct_end_offsets``),
end offsets and offsets for a time come from it. Elsewhere (Tansu) they come from reading:
end offsets are the high watermarks of fetch responses, and the offset for a time is the
first record read at or after it.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from eventbus._clients import make_transport
from eventbus._transport.base import AdminTransport, TopicPartition, Transport
from eventbus.errors import BrokerError, ConfigurationError
from eventbus.ops._reader import PartitionReader
from eventbus.redrive import UnknownTopicError
from eventbus.settings import KafkaSettings, load_settings

logger = logging.getLogger("eventbus.ops")


class GroupActiveError(ConfigurationError):
    """A consumer group has active members, so its offsets cannot be changed now."""


class Admin:
    """An admin connection for operators' tools (``eventbus topics describe``, ``lag``...).

    Example::

        async with Admin(settings) as admin:
            ends = await admin.end_offsets(await admin.partitions("user-queue"))

    Args:
        settings: Kafka settings; read from the ``KAFKA_*`` environment when omitted.
        transport: a transport object (e.g. :class:`eventbus.testing.MemoryBroker`);
            made from ``settings`` when omitted.
    """

    def __init__(
        self, settings: KafkaSettings | None = None, transport: Transport | None = None
    ) -> None:
        self.settings = load_settings(settings)
        self.transport = transport or make_transport(self.settings)
        self.client: AdminTransport = self.transport.admin()
        self._topics: dict[str, int] | None = None

    async def start(self) -> None:
        """Connect; raise :class:`~eventbus.errors.BrokerUnavailableError` if unreachable."""
        await self.client.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self.client.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- topics -------------------------------------------------------------------------

    async def topics(self, *, refresh: bool = False) -> dict[str, int]:
        """Topic name -> partition count (internal ``__`` topics left out)."""
        if self._topics is None or refresh:
            self._topics = await self.client.list_topics()
        return self._topics

    async def partitions(
        self, topic: str, only: Sequence[int] | None = None
    ) -> list[TopicPartition]:
        """The partitions of ``topic`` (or those of ``only``).

        Raises:
            UnknownTopicError: the topic does not exist (the message suggests close names).
            ConfigurationError: a partition of ``only`` does not exist.
        """
        known = await self.topics()
        if topic not in known:
            raise self.unknown_topic(topic, known)
        count = known[topic]
        if only is None:
            return [TopicPartition(topic, p) for p in range(count)]
        missing = sorted({p for p in only if not 0 <= p < count})
        if missing:
            raise ConfigurationError(
                f"topic {topic!r} has partitions 0-{count - 1}; "
                f"no partition {', '.join(str(p) for p in missing)}"
            )
        return [TopicPartition(topic, p) for p in sorted(set(only))]

    def unknown_topic(self, topic: str, known: Mapping[str, int]) -> UnknownTopicError:
        """The error for a topic that does not exist, naming close matches."""
        close = difflib.get_close_matches(topic, list(known), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return UnknownTopicError(f"topic {topic!r} does not exist on {self.settings.servers}{hint}")

    # -- offsets ------------------------------------------------------------------------

    @property
    def trusts_list_offsets(self) -> bool:
        """Whether the broker's ListOffsets answers (end, by time) are right."""
        return self.settings.features.correct_end_offsets

    async def earliest_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset still in each partition (its log start)."""
        found = await self.client.list_offsets(partitions, "earliest")
        return {tp: found.get(tp) or 0 for tp in partitions}

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end offset: the offset the next record will get."""
        if not partitions:
            return {}
        if self.trusts_list_offsets:
            found = await self.client.list_offsets(partitions, "latest")
            return {tp: found.get(tp) or 0 for tp in partitions}
        return await self._high_watermarks(partitions)

    async def offsets_at(
        self, partitions: Sequence[TopicPartition], when: datetime
    ) -> dict[TopicPartition, int]:
        """Each partition's first offset whose record time is at or after ``when``; the end
        offset for a partition without such a record."""
        if not partitions:
            return {}
        aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when  # naive means UTC
        ms = int(aware.timestamp() * 1000)
        ends = await self.end_offsets(partitions)
        if self.trusts_list_offsets:
            found = await self.client.list_offsets(partitions, ms)
            out: dict[TopicPartition, int] = {}
            for tp in partitions:
                offset = found.get(tp)
                out[tp] = ends[tp] if offset is None else offset
            return out
        return await self._scan_for_time(partitions, ms, ends)

    def reader(self, starts: Mapping[TopicPartition, int]) -> PartitionReader:
        """A reader of these partitions from these offsets (manual assignment, no group)."""
        return PartitionReader(self.transport, self.settings, starts)

    async def _high_watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        starts = await self.earliest_offsets(partitions)
        async with self.reader(starts) as reader:
            found = await reader.high_watermarks(timeout_s=self.settings.connect_timeout_s * 3)
        missing = [tp for tp in partitions if tp not in found]
        if missing:
            raise BrokerError(
                f"no fetch answered for {', '.join(f'{t}[{p}]' for t, p in missing[:5])}: "
                "their end offsets are unknown"
            )
        return found

    async def _scan_for_time(
        self,
        partitions: Sequence[TopicPartition],
        ms: int,
        ends: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        starts = await self.earliest_offsets(partitions)
        found: dict[TopicPartition, int] = {}
        async with (
            self.reader(starts) as reader,
            contextlib.aclosing(reader.read_to(ends)) as batches,
        ):
            async for batch in batches:
                for r in batch:
                    if r.tp not in found and r.timestamp_ms >= ms:
                        found[r.tp] = r.offset
                if len(found) == len(partitions):
                    break
        logger.info("offsets at %d ms found by reading: this broker's ListOffsets is wrong", ms)
        return {tp: found.get(tp, ends[tp]) for tp in partitions}
