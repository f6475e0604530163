"""Redrive: read, filter and replay dead-letter records.

A dead-letter record (see :mod:`eventbus._deadletter`) keeps the original key, value and
headers and adds ``dlq.*`` headers describing the failure. This module reads a
dead-letter topic into :class:`DeadLetter` views, filters them with a
:class:`DeadLetterFilter`, and :func:`replay` sends chosen records back to their original
topic::

    from eventbus.redrive import DeadLetterFilter, read_dead_letters, replay

    letters = await read_dead_letters(
        "leave-dlq", filters=DeadLetterFilter(exception_type="TimeoutError")
    )
    result = await replay(letters)
    assert result.failed == 0

A replayed record carries the original value, key and headers (the ``dlq.*`` headers and
any retry-tier ``retry.*`` markers removed) plus replay markers:

==========================  ==========================================================
``replay.count``            how many times this event has been replayed (1, 2, ...)
``replay.at``               when it was replayed (ISO 8601, UTC)
``replay.from``             the dead-letter record: ``<dlq topic>:<partition>:<offset>``
``replay.previous_attempts``  ``dlq.attempts`` of that record
==========================  ==========================================================

**Replays pass through the inbox.** The ``event_id`` header and the value are sent
unchanged, so a consumer using :class:`eventbus.inbox.Inbox` (or any deduplication by
event id) skips a replayed event it already applied: replaying the same dead letters twice,
or replaying a record that a later redelivery had handled after all, applies it at most
once. A raw record without any event id (no ``event_id`` header and no envelope) is
deduplicated by the inbox by ``topic:partition:offset`` only, which a replay changes, so
such records are applied again.

Reading uses a throwaway consumer group (unique id, ``auto_offset_reset=earliest``, never
committed) and stops at the high watermark each partition had when reading began, so
records dead-lettered while a listing runs are not included. The high watermark comes
from fetch responses (``ConsumerTransport.highwater``), never from ListOffsets, which some
brokers answer wrongly.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventbus import headers as h
from eventbus._clients import make_transport
from eventbus._codec import decode_json, header_value, normalise
from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    ProducerConfig,
    ProducerTransport,
    Record,
    RecordMetadata,
    TopicPartition,
    Transport,
)
from eventbus.errors import BrokerError, ConfigurationError, EventBusError
from eventbus.settings import KafkaSettings, load_settings

__all__ = [
    "REPLAY_AT",
    "REPLAY_COUNT",
    "REPLAY_FROM",
    "REPLAY_PREVIOUS_ATTEMPTS",
    "DeadLetter",
    "DeadLetterFilter",
    "ReplayOutcome",
    "ReplayResult",
    "UnknownTopicError",
    "parse_time",
    "read_dead_letters",
    "replay",
    "replay_headers",
    "select_offsets",
]

logger = logging.getLogger("eventbus.redrive")

REPLAY_COUNT = "replay.count"
REPLAY_AT = "replay.at"
REPLAY_FROM = "replay.from"
REPLAY_PREVIOUS_ATTEMPTS = "replay.previous_attempts"
_REPLAY_HEADERS = (REPLAY_COUNT, REPLAY_AT, REPLAY_FROM, REPLAY_PREVIOUS_ATTEMPTS)
_RETRY_PREFIX = "retry."  # retry-tier markers (retry.tier, retry.due_at, ...)

_POLL_MS = 200
_MAX_RECORDS = 500


class UnknownTopicError(ConfigurationError):
    """A topic named by the caller does not exist on the broker."""


# -- the view of one dead-letter record ---------------------------------------------------


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).isoformat().replace("+00:00", "Z")


def _envelope(value: bytes | None) -> dict[str, Any]:
    try:
        return normalise(decode_json(value))
    except EventBusError:
        return {}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, with its ``dlq.*`` headers parsed.

    Attributes:
        dlq_topic: the dead-letter topic the record was read from.
        dlq_partition: its partition there.
        dlq_offset: its offset there.
        original_topic: the topic the record failed on (None if the record has no
            ``dlq.original_topic`` header, i.e. it is not a dead-letter record).
        original_partition: its partition there.
        original_offset: its offset there.
        key: the original key (a dead-letter record keeps it).
        event_type: the ``event_type`` header, else the envelope's.
        event_id: the ``event_id`` header, else the envelope's.
        tenant_id: the ``tenant_id`` header, else the envelope's.
        exception_type: the class name of the exception that dead-lettered it.
        exception_message: its message (at most 1000 characters).
        reason: ``handler``, ``decode``, ``oversize``, ...
        attempts: how many times the handler was tried.
        failed_at: when it was dead-lettered (``dlq.failed_at``, else the record time).
        first_failed_at: when its first attempt failed.
        consumer_group: the group that dead-lettered it.
        replay_count: how many times it had been replayed before it failed this time.
        value: the original value.
        headers: every header of the dead-letter record, ``dlq.*`` included.
    """

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    key: bytes | None
    event_type: str | None
    event_id: str | None
    tenant_id: str | None
    exception_type: str | None
    exception_message: str | None
    reason: str | None
    attempts: int
    failed_at: datetime
    first_failed_at: datetime | None
    consumer_group: str | None
    replay_count: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        """Parse a record read from a dead-letter topic."""
        hdr = record.headers

        def get(name: str) -> str | None:
            return header_value(hdr, name)

        env: dict[str, Any] | None = None

        def from_env(name: str) -> str | None:
            nonlocal env
            if env is None:
                env = _envelope(record.value)
            return _text(env.get(name))

        failed_at = _when(get(h.DLQ_FAILED_AT)) or datetime.fromtimestamp(
            record.timestamp_ms / 1000, UTC
        )
        return cls(
            dlq_topic=record.topic,
            dlq_partition=record.partition,
            dlq_offset=record.offset,
            original_topic=get(h.DLQ_ORIGINAL_TOPIC),
            original_partition=_int(get(h.DLQ_ORIGINAL_PARTITION)),
            original_offset=_int(get(h.DLQ_ORIGINAL_OFFSET)),
            key=record.key,
            event_type=get(h.EVENT_TYPE) or from_env("event_type"),
            event_id=get(h.EVENT_ID) or from_env("event_id"),
            tenant_id=get(h.TENANT_ID) or from_env("tenant_id"),
            exception_type=get(h.DLQ_EXCEPTION_TYPE),
            exception_message=get(h.DLQ_EXCEPTION_MESSAGE),
            reason=get(h.DLQ_REASON),
            attempts=_int(get(h.DLQ_ATTEMPTS)) or 0,
            failed_at=failed_at,
            first_failed_at=_when(get(h.DLQ_FIRST_FAILURE_AT)),
            consumer_group=get(h.DLQ_CONSUMER_GROUP),
            replay_count=_int(get(REPLAY_COUNT)) or 0,
            value=record.value,
            headers=tuple(hdr),
        )

    @property
    def ref(self) -> str:
        """Where the dead-letter record is: ``<dlq topic>:<partition>:<offset>``."""
        return f"{self.dlq_topic}:{self.dlq_partition}:{self.dlq_offset}"

    @property
    def key_text(self) -> str | None:
        """The key decoded as UTF-8 (undecodable bytes replaced), or None."""
        return None if self.key is None else self.key.decode("utf-8", "replace")

    @property
    def original(self) -> str:
        """``<topic>:<partition>@<offset>`` of the record that failed (``?`` if unknown)."""
        if self.original_topic is None:
            return "?"
        part = "?" if self.original_partition is None else self.original_partition
        off = "?" if self.original_offset is None else self.original_offset
        return f"{self.original_topic}:{part}@{off}"

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the record had before it was dead-lettered (``dlq.*`` removed)."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq.")]

    def json_value(self) -> Any:
        """The value parsed as JSON, else the value as text (None for an empty value)."""
        if not self.value:
            return None
        try:
            return json.loads(self.value)
        except (UnicodeDecodeError, ValueError):
            return self.value.decode("utf-8", "replace")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (value parsed as JSON when it is JSON)."""
        return {
            "dlq_topic": self.dlq_topic,
            "dlq_partition": self.dlq_partition,
            "dlq_offset": self.dlq_offset,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "key": self.key_text,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "exception_type": self.exception_type,
            "exception_message": self.exception_message,
            "reason": self.reason,
            "attempts": self.attempts,
            "failed_at": _iso(self.failed_at),
            "first_failed_at": _iso(self.first_failed_at) if self.first_failed_at else None,
            "consumer_group": self.consumer_group,
            "replay_count": self.replay_count,
            "headers": {k: _header_text(v) for k, v in self.headers},
            "value": self.json_value(),
        }


def _header_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


# -- filtering ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to keep; every given criterion must hold (AND).

    ``original_topic``, ``event_type`` and ``exception_type`` accept shell-style wildcards
    (``leave.*``); ``key`` and ``tenant_id`` must match exactly. ``since`` is inclusive and
    ``until`` exclusive; both compare ``failed_at``, and a naive datetime is taken as UTC.

    Attributes:
        original_topic: the topic the record failed on.
        event_type: the event type.
        exception_type: the exception class name, e.g. ``RuntimeError``.
        key: the original key (str compared with the key decoded as UTF-8).
        tenant_id: the tenant id.
        since: dead-lettered at or after this time.
        until: dead-lettered before this time.
    """

    original_topic: str | None = None
    event_type: str | None = None
    exception_type: str | None = None
    key: str | bytes | None = None
    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        since, until = self.since, self.until
        if since is not None and until is not None and _utc(since) >= _utc(until):
            raise ConfigurationError(f"since ({_iso(since)}) must be before until ({_iso(until)})")

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes every criterion."""
        return (
            _glob(self.original_topic, letter.original_topic)
            and _glob(self.event_type, letter.event_type)
            and _glob(self.exception_type, letter.exception_type)
            and (self.key is None or _key_matches(self.key, letter.key))
            and (self.tenant_id is None or self.tenant_id == letter.tenant_id)
            and (self.since is None or letter.failed_at >= _utc(self.since))
            and (self.until is None or letter.failed_at < _utc(self.until))
        )


def _glob(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def _key_matches(wanted: str | bytes, key: bytes | None) -> bool:
    if key is None:
        return False
    return key == (wanted if isinstance(wanted, bytes) else wanted.encode())


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """Parse a point in time given by a user: ISO 8601, or a duration ago.

    Accepted: ``2025-11-25``, ``2025-11-25T18:00``, ``2025-11-25T18:00:00Z``,
    ``2025-11-25T20:00:00+02:00``, and ``30m``, ``2h``, ``7d``, ``1w`` (that long before
    ``now``). A time without an offset is taken as UTC.

    Raises:
        ConfigurationError: ``text`` is neither.
    """
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        return _utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ConfigurationError(
            f"{text!r} is not a time: use ISO 8601 (2025-11-25T18:00Z) or an age (30m, 2h, 7d)"
        ) from None


def select_offsets(
    letters: Sequence[DeadLetter],
    offsets: Iterable[str | int | tuple[int, int]],
    *,
    partition: int | None = None,
) -> list[DeadLetter]:
    """Pick dead letters by their position in the dead-letter topic.

    Args:
        letters: the dead letters to pick from.
        offsets: ``7`` or ``"7"`` (offset 7 of ``partition``, or of the only partition
            holding one), ``"2:7"`` or ``(2, 7)`` (partition 2, offset 7).
        partition: the partition of offsets given without one.

    Returns:
        The chosen dead letters, in the order of ``letters``, each once.

    Raises:
        ConfigurationError: an offset is malformed, not among ``letters``, or found in
            more than one partition (then it must be given as ``partition:offset``).
    """
    by_pos = {(d.dlq_partition, d.dlq_offset): d for d in letters}
    chosen: set[tuple[int, int]] = set()
    for ref in offsets:
        part, off = _parse_ref(ref, partition)
        if part is not None:
            if (part, off) not in by_pos:
                raise ConfigurationError(f"no dead letter at partition {part} offset {off}")
            chosen.add((part, off))
            continue
        hits = [pos for pos in by_pos if pos[1] == off]
        if not hits:
            raise ConfigurationError(f"no dead letter at offset {off}")
        if len(hits) > 1:
            parts = ", ".join(str(p) for p, _ in sorted(hits))
            raise ConfigurationError(
                f"offset {off} is in partitions {parts}: give it as PARTITION:{off}"
            )
        chosen.add(hits[0])
    return [d for d in letters if (d.dlq_partition, d.dlq_offset) in chosen]


def _parse_ref(ref: str | int | tuple[int, int], partition: int | None) -> tuple[int | None, int]:
    if isinstance(ref, tuple):
        return ref
    if isinstance(ref, int):
        return partition, ref
    text = ref.strip()
    try:
        if ":" in text:
            part, _, off = text.partition(":")
            return int(part), int(off)
        return partition, int(text)
    except ValueError:
        raise ConfigurationError(
            f"{ref!r} is not an offset: give OFFSET or PARTITION:OFFSET, e.g. 7 or 2:7"
        ) from None


# -- reading ------------------------------------------------------------------------------


def _resolve(
    settings: KafkaSettings | None, transport: Transport | None
) -> tuple[KafkaSettings, Transport]:
    s = load_settings(settings)
    return s, transport or make_transport(s)


async def _topics(transport: Transport) -> dict[str, int]:
    admin = transport.admin()
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.stop()


def _unknown(topic: str, known: dict[str, int], settings: KafkaSettings) -> UnknownTopicError:
    dlqs = sorted(t for t in known if t.endswith("-dlq"))
    hint = f"; dead-letter topics there: {', '.join(dlqs)}" if dlqs else ""
    return UnknownTopicError(f"topic {topic!r} does not exist on {settings.servers}{hint}")


async def read_dead_letters(
    dlq_topic: str,
    *,
    settings: KafkaSettings | None = None,
    transport: Transport | None = None,
    filters: DeadLetterFilter | None = None,
    limit: int | None = None,
    timeout_s: float = 60.0,
    settle_s: float = 2.0,
) -> list[DeadLetter]:
    """Read a dead-letter topic from the beginning up to its end when the call began.

    Every partition is read up to the high watermark captured once the throwaway reader
    group was assigned it; records appended later are left out. A partition whose
    remaining offsets below the high watermark hold no records (transaction markers,
    records deleted by retention, an open transaction) counts as read once it stayed
    silent for ``settle_s``.

    Args:
        dlq_topic: the dead-letter topic, e.g. ``leave-dlq``.
        settings: Kafka settings; read from the ``KAFKA_*`` environment when omitted.
        transport: a transport object (e.g. :class:`eventbus.testing.MemoryBroker`);
            made from ``settings`` when omitted.
        filters: keep only the dead letters matching these criteria.
        limit: return at most this many (the first, in topic order).
        timeout_s: give up if the topic was not read to its end within this time.
        settle_s: see above.

    Returns:
        The matching dead letters ordered by partition, then offset.

    Raises:
        UnknownTopicError: ``dlq_topic`` does not exist.
        BrokerUnavailableError: the broker cannot be reached.
        BrokerError: the topic was not read to its end within ``timeout_s``.
        ConfigurationError: ``limit`` is negative or a setting is invalid.
    """
    if limit is not None and limit < 0:
        raise ConfigurationError(f"limit must be zero or more, not {limit}")
    s, tr = _resolve(settings, transport)
    known = await _topics(tr)
    if dlq_topic not in known:
        raise _unknown(dlq_topic, known, s)
    records = await _read_to_end(tr, s, dlq_topic, known[dlq_topic], timeout_s, settle_s)
    letters = [DeadLetter.from_record(r) for r in records]
    if filters is not None:
        letters = [d for d in letters if filters.matches(d)]
    return letters if limit is None else letters[:limit]


class _Reader:
    """Reads one topic to the high watermarks captured after assignment."""

    def __init__(self, consumer: ConsumerTransport, topic: str, partitions: int) -> None:
        self.consumer = consumer
        self.topic = topic
        self.expected = {TopicPartition(topic, p) for p in range(partitions)}
        self.ends: dict[TopicPartition, int] = {}
        self.next: dict[TopicPartition, int] = {}
        self.found: dict[tuple[int, int], Record] = {}

    def capture(self) -> bool:
        """Record the high watermark of newly assigned partitions; True if any was new."""
        new = False
        for tp in self.consumer.assignment() & self.expected:
            if tp not in self.ends:
                hw = self.consumer.highwater(tp)
                if hw is not None:
                    self.ends[tp] = hw
                    new = True
        return new

    def add(self, records: Sequence[Record]) -> bool:
        """Keep the records below their partition's captured end; True if any was new."""
        new = False
        for r in records:
            end = self.ends.get(r.tp)
            if r.topic != self.topic or end is None or r.offset >= end:
                continue
            if (r.partition, r.offset) not in self.found:
                self.found[(r.partition, r.offset)] = r
                new = True
            self.next[r.tp] = max(self.next.get(r.tp, 0), r.offset + 1)
        return new

    def all_known(self) -> bool:
        return len(self.ends) == len(self.expected)

    def behind(self) -> dict[TopicPartition, tuple[int, int]]:
        """Partitions not read to their end: tp -> (next offset, end)."""
        return {
            tp: (self.next.get(tp, 0), end)
            for tp, end in self.ends.items()
            if self.next.get(tp, 0) < end
        }

    async def catch_up(self) -> None:
        """Advance ``next`` to the consumer's position: past transaction markers, which
        take offsets but are never delivered as records."""
        for tp in list(self.behind()):
            pos = await self.consumer.position(tp)
            if pos is not None and pos > self.next.get(tp, 0):
                self.next[tp] = pos

    def where(self) -> str:
        if not self.all_known():
            missing = len(self.expected) - len(self.ends)
            return f"{missing} of {len(self.expected)} partition(s) not yet assigned and fetched"
        return ", ".join(
            f"partition {tp.partition} at offset {nxt} of {end}"
            for tp, (nxt, end) in sorted(self.behind().items())
        )

    def records(self) -> list[Record]:
        return [self.found[pos] for pos in sorted(self.found)]


async def _read_to_end(
    transport: Transport,
    settings: KafkaSettings,
    topic: str,
    partitions: int,
    timeout_s: float,
    settle_s: float,
) -> list[Record]:
    config = ConsumerConfig(
        group_id=f"eventbus-redrive-{uuid.uuid4().hex}",
        topics=(topic,),
        auto_offset_reset="earliest",
        max_poll_records=_MAX_RECORDS,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        client_id=f"{settings.client_id}-redrive",
        # dead letters written in a transaction that aborted are not dead letters
        isolation_level="read_committed" if settings.features.transactions else "read_uncommitted",
    )
    consumer = transport.consumer(config)
    await consumer.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    reader = _Reader(consumer, topic, partitions)
    quiet_since = loop.time()
    failure: str | None = None
    try:
        while True:
            if reader.capture():
                quiet_since = loop.time()
            if reader.all_known() and reader.behind():
                await reader.catch_up()
            if reader.all_known() and not reader.behind():
                break
            now = loop.time()
            if reader.all_known() and now - quiet_since >= settle_s:
                logger.info(
                    "reading %s: nothing left below the high watermark (%s); done",
                    topic,
                    reader.where(),
                )
                break
            if now >= deadline:
                last = f" (last error: {failure})" if failure else ""
                raise BrokerError(
                    f"reading {topic!r} did not reach its end within {timeout_s:g}s: "
                    f"{reader.where()}{last}"
                )
            wait_ms = max(1, min(_POLL_MS, int((deadline - now) * 1000)))
            batch: list[Record] = []
            try:
                batch = await asyncio.wait_for(
                    consumer.getmany(wait_ms, _MAX_RECORDS), wait_ms / 1000 + 5
                )
            except TimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001 - a client error: retry until the deadline
                failure = f"{type(exc).__name__}: {exc}"
                logger.warning("reading %s: poll failed, retrying: %s", topic, failure)
                await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
                quiet_since = loop.time()  # a failing poll is no proof that nothing is left
            if reader.capture() | reader.add(batch):
                quiet_since = loop.time()
    finally:
        await consumer.stop()
    return reader.records()


# -- replaying ----------------------------------------------------------------------------


def replay_headers(letter: DeadLetter, *, now: datetime | None = None) -> list[tuple[str, bytes]]:
    """The headers a replay of ``letter`` is sent with.

    The original headers (``event_id`` unchanged) without the failure's bookkeeping:
    ``dlq.*``, the retry-tier markers ``retry.*`` of a record that failed in a retry
    topic, and earlier ``replay.*`` markers. Then ``replay.count`` (one more than the
    record carried), ``replay.at``, ``replay.from`` and ``replay.previous_attempts``.
    """
    kept = [
        (k, v)
        for k, v in letter.original_headers
        if k not in _REPLAY_HEADERS and not k.startswith(_RETRY_PREFIX)
    ]
    markers = {
        REPLAY_COUNT: str(letter.replay_count + 1),
        REPLAY_AT: _iso(now or datetime.now(UTC)),
        REPLAY_FROM: letter.ref,
        REPLAY_PREVIOUS_ATTEMPTS: str(letter.attempts),
    }
    return kept + [(k, v.encode()) for k, v in markers.items()]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What became of one dead letter.

    Attributes:
        dead_letter: the dead letter.
        topic: the topic it was (or, in a dry run, would be) sent to.
        metadata: where the broker stored the replay; None unless acknowledged.
        error: why it was not acknowledged; None if it was (or in a dry run).
    """

    dead_letter: DeadLetter
    topic: str
    metadata: RecordMetadata | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the broker acknowledged the replay."""
        return self.metadata is not None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The counts of a replay; ``replayed`` counts acknowledged records only.

    Attributes:
        replayed: records the broker acknowledged.
        failed: records it did not acknowledge (see each outcome's ``error``).
        dry_run: nothing was sent; ``outcomes`` say where each record would go.
        outcomes: one per dead letter, in the order given.
    """

    replayed: int
    failed: int
    dry_run: bool
    outcomes: tuple[ReplayOutcome, ...]

    @property
    def total(self) -> int:
        """How many dead letters were given."""
        return len(self.outcomes)

    @property
    def ok(self) -> bool:
        """Whether every record was acknowledged (vacuously true for a dry run)."""
        return self.failed == 0


async def replay(
    dead_letters: Iterable[DeadLetter],
    *,
    settings: KafkaSettings | None = None,
    transport: Transport | None = None,
    target_topic: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
    delivery_timeout_s: float = 60.0,
) -> ReplayResult:
    """Send dead letters back to their original topic (or ``target_topic``).

    Each record is sent with its original value and key (so it lands on the partition
    its key maps to) and the headers of :func:`replay_headers`. Sends are pipelined and
    every acknowledgement is awaited; a record counts as replayed only once the broker
    acknowledged it. The ``event_id`` header is unchanged, so an idempotent consumer's
    inbox skips events it already applied.

    Args:
        dead_letters: what to replay, e.g. from :func:`read_dead_letters`.
        settings: Kafka settings; read from the ``KAFKA_*`` environment when omitted.
        transport: a transport object; made from ``settings`` when omitted.
        target_topic: send every record here instead of its original topic.
        progress: called as ``progress(done, total)`` after each acknowledgement or
            failure (and once with ``done=0`` before sending).
        dry_run: check the target topics exist and return the plan without sending.
        delivery_timeout_s: how long to wait for all acknowledgements; records still
            unacknowledged then count as failed.

    Returns:
        The counts and one outcome per dead letter.

    Raises:
        ConfigurationError: a record has no original topic and no ``target_topic`` was
            given.
        UnknownTopicError: a target topic does not exist (nothing was sent).
        BrokerUnavailableError: the broker cannot be reached (nothing was sent).
    """
    letters = list(dead_letters)
    orphans = [d.ref for d in letters if d.original_topic is None]
    if orphans and target_topic is None:
        raise ConfigurationError(
            f"{len(orphans)} record(s) have no dlq.original_topic header (not dead letters?): "
            f"{', '.join(orphans[:5])}; give a target topic to replay them"
        )
    targets = [target_topic or d.original_topic or "" for d in letters]
    total = len(letters)
    if total == 0:
        return ReplayResult(0, 0, dry_run, ())
    s, tr = _resolve(settings, transport)
    known = await _topics(tr)
    for topic in sorted(set(targets)):
        if topic not in known:
            raise _unknown(topic, known, s)
    if dry_run:
        plan = tuple(ReplayOutcome(d, t) for d, t in zip(letters, targets, strict=True))
        return ReplayResult(0, 0, True, plan)
    producer = tr.producer(
        ProducerConfig(
            client_id=f"{s.client_id}-redrive",
            acks=s.producer_acks,
            enable_idempotence=s.idempotence(),
            compression=None if s.producer_compression == "none" else s.producer_compression,
            linger_ms=s.producer_linger_ms,
            request_timeout_ms=s.producer_request_timeout_ms,
        )
    )
    await producer.start()
    try:
        outcomes = await _send_all(producer, letters, targets, progress, delivery_timeout_s)
    finally:
        await producer.stop()
    replayed = sum(1 for o in outcomes if o.ok)
    result = ReplayResult(replayed, total - replayed, False, tuple(outcomes))
    logger.info("replayed %d of %d dead letter(s)", result.replayed, total)
    return result


async def _send_all(
    producer: ProducerTransport,
    letters: list[DeadLetter],
    targets: list[str],
    progress: Callable[[int, int], None] | None,
    timeout_s: float,
) -> list[ReplayOutcome]:
    total = len(letters)
    done = 0
    if progress is not None:
        progress(0, total)
    now = datetime.now(UTC)
    outcomes: list[ReplayOutcome | None] = [None] * total
    pending: dict[asyncio.Future[RecordMetadata], int] = {}
    for i, (letter, topic) in enumerate(zip(letters, targets, strict=True)):
        try:
            fut = await producer.send(
                topic, letter.value, letter.key, replay_headers(letter, now=now)
            )
        except EventBusError as exc:
            outcomes[i] = ReplayOutcome(letter, topic, error=f"{type(exc).__name__}: {exc}")
            done += 1
            if progress is not None:
                progress(done, total)
            continue
        pending[fut] = i
    deadline = time.monotonic() + timeout_s
    waiting = set(pending)
    while waiting:
        finished, waiting = await asyncio.wait(
            waiting,
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not finished:
            break
        for fut in finished:
            i = pending[fut]
            outcomes[i] = _outcome(letters[i], targets[i], fut)
            done += 1
            if progress is not None:
                progress(done, total)
    for fut in waiting:
        i = pending[fut]
        outcomes[i] = ReplayOutcome(
            letters[i], targets[i], error=f"no acknowledgement within {timeout_s:g}s"
        )
    return [o for o in outcomes if o is not None]


def _outcome(letter: DeadLetter, topic: str, fut: asyncio.Future[RecordMetadata]) -> ReplayOutcome:
    if fut.cancelled():
        return ReplayOutcome(letter, topic, error="send was cancelled")
    exc = fut.exception()
    if exc is not None:
        return ReplayOutcome(letter, topic, error=f"{type(exc).__name__}: {exc}")
    return ReplayOutcome(letter, topic, metadata=fut.result())
