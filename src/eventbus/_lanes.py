"""Key-ordered concurrency: N lanes inside a consumer, one key always on the same lane."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from collections.abc import Awaitable, Callable

from eventbus._transport.base import Record, TopicPartition

Work = Callable[[Record], Awaitable[None]]


class Lanes:
    """Runs records on ``count`` concurrent lanes; records with the same key share a lane.

    Records of one key are therefore handled in offset order, and records of different
    keys overlap. Keyless records are spread round-robin and have no order among
    themselves. At most ``max_in_flight`` records wait or run at once; :meth:`submit`
    waits for room (backpressure on the poll loop).
    """

    def __init__(self, count: int, work: Work, max_in_flight: int) -> None:
        self._work = work
        self._queues: list[asyncio.Queue[Record]] = [asyncio.Queue() for _ in range(count)]
        self._room = asyncio.Semaphore(max_in_flight)
        self._rr = itertools.count()
        self._in_flight: dict[TopicPartition, int] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks = [
            asyncio.create_task(self._run(q), name=f"eventbus-lane-{i}")
            for i, q in enumerate(self._queues)
        ]

    def _lane(self, record: Record) -> asyncio.Queue[Record]:
        n = len(self._queues)
        if record.key is None:
            return self._queues[next(self._rr) % n]
        return self._queues[zlib.crc32(record.key) % n]

    async def submit(self, record: Record) -> None:
        """Queue ``record`` on its lane, waiting while ``max_in_flight`` are in flight."""
        await self._room.acquire()
        self._in_flight[record.tp] = self._in_flight.get(record.tp, 0) + 1
        self._lane(record).put_nowait(record)

    async def _run(self, queue: asyncio.Queue[Record]) -> None:
        while True:
            record = await queue.get()
            try:
                await self._work(record)
            finally:
                left = self._in_flight[record.tp] - 1
                if left:
                    self._in_flight[record.tp] = left
                else:
                    del self._in_flight[record.tp]
                self._room.release()
                if self._waiters:
                    for waiter in self._waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                    self._waiters.clear()

    async def drain(self, tps: set[TopicPartition] | None = None) -> None:
        """Wait until no record (of ``tps``, or at all) is queued or running."""
        loop = asyncio.get_running_loop()
        while any(tps is None or tp in tps for tp in self._in_flight):
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            await waiter

    async def close(self) -> None:
        """Cancel the lane workers (call :meth:`drain` first to finish the work)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
