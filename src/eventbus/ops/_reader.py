"""Reading chosen partitions from chosen offsets, by manual assignment.

No consumer group is joined and nothing is committed, so reading leaves no trace on the
cluster (no throwaway group in ``eventbus lag``) and cannot disturb a running group.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import Self

from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    Record,
    TopicPartition,
    Transport,
)
from eventbus.errors import BrokerError, LifecycleError
from eventbus.settings import KafkaSettings

logger = logging.getLogger("eventbus.ops")

_MAX_RECORDS = 500
_POLL_MS = 200
_BACKOFF_S = 0.5


class PartitionReader:
    """Reads partitions from given offsets; use it as an ``async with`` block.

    Args:
        transport: the transport whose consumer reads.
        settings: the Kafka settings (features decide the isolation level).
        starts: each partition to read and the offset to start at.
    """

    def __init__(
        self,
        transport: Transport,
        settings: KafkaSettings,
        starts: Mapping[TopicPartition, int],
    ) -> None:
        self.starts = dict(starts)
        self._settings = settings
        self._transport = transport
        self._consumer: ConsumerTransport | None = None

    async def __aenter__(self) -> Self:
        s = self._settings
        config = ConsumerConfig(
            group_id=f"eventbus-ops-{uuid.uuid4().hex}",  # unused: nothing joins or commits
            topics=tuple(sorted({tp.topic for tp in self.starts})),
            assign=self.starts,
            auto_offset_reset="earliest",
            max_poll_records=_MAX_RECORDS,
            client_id=f"{s.client_id}-ops",
            # records of aborted transactions were never events
            isolation_level="read_committed" if s.features.transactions else "read_uncommitted",
        )
        consumer = self._transport.consumer(config)
        await consumer.start()
        self._consumer = consumer
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    @property
    def consumer(self) -> ConsumerTransport:
        """The started consumer."""
        if self._consumer is None:
            raise LifecycleError("PartitionReader is not started; use it in 'async with'")
        return self._consumer

    async def poll(self, timeout_ms: int = _POLL_MS) -> list[Record]:
        """The next records fetched, waiting at most ``timeout_ms``; ``[]`` on a client
        error (logged; the caller's deadline decides when to give up)."""
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
            # (Ctrl-C) that arrives as the poll completes, which a busy poll makes likely
            async with asyncio.timeout(timeout_ms / 1000 + 5):
                return await self.consumer.getmany(timeout_ms, _MAX_RECORDS)
        except TimeoutError:
            return []
        except Exception as exc:  # noqa: BLE001 - a client error: the caller retries
            logger.warning("poll failed, retrying: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(_BACKOFF_S)
            return []

    async def high_watermarks(self, timeout_s: float) -> dict[TopicPartition, int]:
        """Each partition's high watermark from the fetch responses (right on every broker);
        partitions no fetch answered for within ``timeout_s`` are left out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        found: dict[TopicPartition, int] = {}
        while True:
            for tp in self.starts:
                hw = self.consumer.highwater(tp)
                if hw is not None:
                    found[tp] = hw
            if len(found) == len(self.starts) or loop.time() >= deadline:
                return found
            await self.poll()

    async def read_to(
        self,
        ends: Mapping[TopicPartition, int],
        *,
        timeout_s: float = 60.0,
        settle_s: float = 2.0,
    ) -> AsyncGenerator[list[Record], None]:
        """Yield batches of the records from each start up to (not including) its end.

        Stops once every partition reached its end. A partition whose remaining offsets
        hold no readable record (transaction markers, an open transaction) counts as read
        once it stayed silent for ``settle_s``.

        Raises:
            BrokerError: the ends were not reached within ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        nxt = {tp: self.starts.get(tp, 0) for tp in ends}
        quiet_since = loop.time()

        def behind() -> list[TopicPartition]:
            return [tp for tp, end in ends.items() if nxt[tp] < end]

        while behind():
            batch = [
                r for r in await self.poll() if r.tp in ends and nxt[r.tp] <= r.offset < ends[r.tp]
            ]
            if batch:
                for r in batch:
                    nxt[r.tp] = max(nxt[r.tp], r.offset + 1)
                quiet_since = loop.time()
                yield batch
                continue
            for tp in behind():  # past transaction markers, which are never delivered
                pos = await self.consumer.position(tp)
                if pos is not None and pos > nxt[tp]:
                    nxt[tp] = pos
                    quiet_since = loop.time()
            now = loop.time()
            if behind() and now - quiet_since >= settle_s:
                logger.info(
                    "nothing more to read below the end offsets: %s", self._where(nxt, ends)
                )
                return
            if now >= deadline:
                raise BrokerError(
                    f"reading did not reach the end within {timeout_s:g}s: {self._where(nxt, ends)}"
                )

    async def follow(self) -> AsyncGenerator[list[Record], None]:
        """Yield every batch of records as it arrives, forever (cancel to stop)."""
        while True:
            batch = await self.poll()
            if batch:
                yield batch

    @staticmethod
    def _where(nxt: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> str:
        return ", ".join(
            f"{tp.topic}[{tp.partition}] at {nxt[tp]} of {end}"
            for tp, end in sorted(ends.items())
            if nxt[tp] < end
        )
