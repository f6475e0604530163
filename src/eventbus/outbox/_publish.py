"""One relay cycle's sends: pipelined, in id order, holding back a key after a failure."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from eventbus._producer import KafkaProducer
from eventbus._transport.base import RecordMetadata
from eventbus.errors import EventBusError
from eventbus.outbox._claim import OutboxRow

logger = logging.getLogger("eventbus.outbox")


@dataclass
class Outcome:
    """Which rows of a cycle were acknowledged, which failed and why."""

    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    resent: int = 0


class Batch:
    """One cycle's sends: which keys may still go, and what came back."""

    def __init__(self, producer: KafkaProducer, outcome: Outcome) -> None:
        self.producer = producer
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + producer.delivery_timeout_s
        self.outcome = outcome
        self.held: set[str] = set()  # keys with a failed or deferred row: send no more
        self.seen: set[str] = set()
        self.sent: list[tuple[OutboxRow, asyncio.Future[RecordMetadata]]] = []

    def expired(self) -> bool:
        return self.loop.time() > self.deadline

    def admit(self, row: OutboxRow) -> bool:
        """Whether ``row`` may be sent now without breaking its key's order."""
        if row.key is None:
            return True
        if row.key in self.held:
            return False
        if row.key not in self.seen and row.attempts > 0:
            self.held.add(row.key)  # its key's head failed before: it goes alone this cycle
        self.seen.add(row.key)
        return True

    async def _enqueue(self, row: OutboxRow) -> asyncio.Future[RecordMetadata] | None:
        try:
            return await self.producer.enqueue_raw(row.topic, row.value, _key(row), row.headers)
        except EventBusError as exc:  # refused before it left: as good as failed
            self.outcome.failed[row.id] = f"{type(exc).__name__}: {exc}"
            if row.key is not None:
                self.held.add(row.key)
            return None

    async def probe(self, row: OutboxRow) -> bool:
        """Send ``row`` alone and wait for it; True if it was acknowledged."""
        fut = await self._enqueue(row)
        if fut is None:
            return False
        await asyncio.wait({fut}, timeout=max(0.0, self.deadline - self.loop.time()))
        error = _error_of(fut)
        if error is not None:
            self.outcome.failed[row.id] = error
            return False
        self.outcome.delivered.append(row.id)
        if row.key is not None:
            self.seen.add(row.key)
        return True

    async def send(self, row: OutboxRow) -> None:
        """Hand ``row`` to the client without waiting for its acknowledgement."""
        fut = await self._enqueue(row)
        if fut is None:
            return
        self.sent.append((row, fut))
        if fut.done() and row.key is not None and _error_of(fut) is not None:
            self.held.add(row.key)  # failed at once: keep the key's later rows back

    async def collect(self) -> None:
        """Wait for the acknowledgements (until the deadline) and sort the rows out."""
        if not self.sent:
            return
        timeout = max(0.0, self.deadline - self.loop.time())
        await asyncio.wait({f for _, f in self.sent}, timeout=timeout)
        failed_keys: set[str] = set()
        for row, fut in self.sent:
            error = _error_of(fut)
            if error is not None:
                self.outcome.failed[row.id] = error
                if row.key is not None:
                    failed_keys.add(row.key)
            elif row.key is not None and row.key in failed_keys:
                self.outcome.resent += 1  # acknowledged behind a failed row: goes again
            else:
                self.outcome.delivered.append(row.id)


def _key(row: OutboxRow) -> bytes | None:
    return None if row.key is None else row.key.encode()


def _error_of(fut: asyncio.Future[RecordMetadata]) -> str | None:
    """None if ``fut`` succeeded; otherwise why it did not (not done yet = timed out)."""
    if not fut.done():
        fut.add_done_callback(_retrieve)
        return "PublishError: no acknowledgement within the delivery timeout"
    if fut.cancelled():
        return "PublishError: send was cancelled"
    exc = fut.exception()
    if exc is None:
        return None
    if not isinstance(exc, EventBusError):
        logger.debug("unexpected send failure", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _retrieve(fut: asyncio.Future[RecordMetadata]) -> None:
    """Mark a late failure as seen so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()
