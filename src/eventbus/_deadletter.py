"""Dead-letter topics: naming, the record written, and the writer that never gives up."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from eventbus import headers as h
from eventbus._codec import header_value
from eventbus._transport.base import OutgoingRecord, ProducerTransport, Record

logger = logging.getLogger("eventbus.deadletter")

_DOMAIN_SUFFIXES = ("-queue", "-events")


def topic_domain(topic: str) -> str:
    """``notification-queue`` -> ``notification``; ``inventory-events`` -> ``inventory``."""
    for suffix in _DOMAIN_SUFFIXES:
        if topic.endswith(suffix) and len(topic) > len(suffix):
            return topic[: -len(suffix)]
    return topic


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``, named as seed 003 does: ``<domain>-dlq``."""
    return f"{topic_domain(topic)}-dlq"


def retry_topic(topic: str, delay: str) -> str:
    """The retry topic of ``topic`` for a delay tier such as ``30s``: ``<domain>-retry-30s``."""
    return f"{topic_domain(topic)}-retry-{delay}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def traceback_digest(exc: BaseException) -> str:
    """A short stable digest of where ``exc`` was raised (file, function, line per frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    text = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}:{f.lineno}" for f in frames)
    return hashlib.sha256(f"{type(exc).__name__}|{text}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a record is being dead-lettered."""

    error: BaseException
    attempts: int
    reason: str
    group_id: str
    first_failure_at: float | None = None


def dead_letter_headers(record: Record, failure: Failure) -> list[tuple[str, bytes]]:
    """The original headers plus ``dlq.*`` headers describing the failure."""
    now = time.time()
    message = str(failure.error)[:1000]
    extra = {
        h.DLQ_ORIGINAL_TOPIC: record.topic,
        h.DLQ_ORIGINAL_PARTITION: str(record.partition),
        h.DLQ_ORIGINAL_OFFSET: str(record.offset),
        h.DLQ_EXCEPTION_TYPE: type(failure.error).__name__,
        h.DLQ_EXCEPTION_MESSAGE: message,
        h.DLQ_TRACEBACK_DIGEST: traceback_digest(failure.error),
        h.DLQ_REASON: failure.reason,
        h.DLQ_ATTEMPTS: str(failure.attempts),
        h.DLQ_FIRST_FAILURE_AT: _iso(failure.first_failure_at or now),
        h.DLQ_FAILED_AT: _iso(now),
        h.DLQ_CONSUMER_GROUP: failure.group_id,
    }
    if record.key is not None:
        extra[h.DLQ_ORIGINAL_KEY] = record.key.decode("utf-8", "replace")
    earlier = {k: v for k, v in record.headers if k.startswith("dlq.original_")}
    if h.DLQ_ORIGINAL_TOPIC in earlier:  # a retry-topic record: keep where it first failed
        for name in (h.DLQ_ORIGINAL_TOPIC, h.DLQ_ORIGINAL_PARTITION, h.DLQ_ORIGINAL_OFFSET):
            extra[name] = earlier[name].decode()
        first = header_value(record.headers, h.DLQ_FIRST_FAILURE_AT)
        if first is not None:
            extra[h.DLQ_FIRST_FAILURE_AT] = first
    kept = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
    return kept + [(k, v.encode()) for k, v in extra.items()]


async def deliver_until_acked(
    attempt: Callable[[], Awaitable[None]],
    what: str,
    stopping: Callable[[], bool],
    max_backoff_s: float = 5.0,
) -> bool:
    """Run ``attempt`` until it succeeds, backing off exponentially between failures.

    Losing the record is not an option, so only ``stopping()`` ends the loop early: then
    it returns False and the caller must not commit the original offset.
    """
    backoff = 0.1
    while True:
        try:
            await attempt()
        except Exception as exc:  # noqa: BLE001 - keep trying: losing it is not an option
            if stopping():
                logger.error("%s abandoned at stop: %s", what, exc)
                return False
            logger.warning("%s failed, retrying in %.1fs: %s", what, backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        return True


AtomicWrite = Callable[[Record, OutgoingRecord], Awaitable[None]]
"""Writes a dead-letter record and commits the original offset in one transaction."""


class DeadLetterWriter:
    """Writes failed records to their dead-letter topic, retrying until acknowledged.

    With ``atomic`` (a broker with transactions), the dead-letter record and the commit of
    the original offset happen in one Kafka transaction, so a poison message redelivered
    after a crash is never dead-lettered twice.

    A dead-letter record keeps the original key, value and headers, so it can be
    replayed as it was. If the broker cannot take it, the writer keeps trying with
    backoff until it succeeds or ``stopping()`` turns true; in the latter case it returns
    False and the caller must not commit the original offset (the record comes back).
    """

    def __init__(
        self,
        producer: ProducerTransport,
        topic_for: Callable[[str], str] = dead_letter_topic,
        max_backoff_s: float = 5.0,
        atomic: AtomicWrite | None = None,
    ) -> None:
        self._producer = producer
        self._topic_for = topic_for
        self._max_backoff_s = max_backoff_s
        self._atomic = atomic

    async def write(self, record: Record, failure: Failure, stopping: Callable[[], bool]) -> bool:
        """Write one dead-letter record; False only if stopped before it was acknowledged."""
        # a record from a retry tier dead-letters to its main topic's dead-letter topic
        topic = self._topic_for(
            header_value(record.headers, h.RETRY_ORIGINAL_TOPIC) or record.topic
        )
        headers = dead_letter_headers(record, failure)

        async def attempt() -> None:
            if self._atomic is not None:
                out = OutgoingRecord(topic, record.value, record.key, tuple(headers))
                await self._atomic(record, out)
            else:
                fut = await self._producer.send(topic, record.value, record.key, headers)
                await fut

        if not await deliver_until_acked(
            attempt, f"dead-letter write to {topic}", stopping, self._max_backoff_s
        ):
            return False
        logger.warning(
            "dead-lettered %s[%d]@%d to %s after %d attempt(s): %s: %s",
            record.topic,
            record.partition,
            record.offset,
            topic,
            failure.attempts,
            type(failure.error).__name__,
            failure.error,
        )
        return True
