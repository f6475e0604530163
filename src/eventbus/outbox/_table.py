"""The outbox table and writing to it in the caller's transaction."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from eventbus._codec import DEFAULT_MAX_VALUE_BYTES, encode_event, encode_raw
from eventbus._envelope import BaseEvent
from eventbus._sql import (
    Bind,
    Clock,
    UTCDateTime,
    as_utc,
    create_tables,
    execute,
    fetch_all,
    utcnow,
)
from eventbus.errors import ConfigurationError, SerializationError
from eventbus.headers import TRACEPARENT
from eventbus.observe import Observer, fanout

Key = str | bytes | int | None
HeaderValue = bytes | str
StoredHeaders = list[list[str]]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is waiting in the outbox, for metrics and readiness checks.

    Unpacks as a pair: ``count, oldest_age_s = await outbox.backlog(engine)``.
    """

    count: int
    """Undelivered rows."""
    oldest_age_s: float
    """Age in seconds of the oldest undelivered row (0.0 when there is none)."""

    def __iter__(self) -> Iterator[int | float]:
        return iter((self.count, self.oldest_age_s))


def _key_text(key: Key) -> str | None:
    if key is None or isinstance(key, str):
        return key
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError as exc:
            raise SerializationError("an outbox key must be UTF-8 text") from exc
    return str(key)


def pack_headers(headers: Iterable[tuple[str, bytes]]) -> StoredHeaders:
    """Headers as JSON: ``[name, text]``, or ``[name, base64, "base64"]`` for non-UTF-8."""
    out: StoredHeaders = []
    for name, value in headers:
        try:
            out.append([name, value.decode()])
        except UnicodeDecodeError:
            out.append([name, base64.b64encode(value).decode(), "base64"])
    return out


def unpack_headers(stored: Sequence[Sequence[str]]) -> list[tuple[str, bytes]]:
    """The inverse of :func:`pack_headers`."""
    out: list[tuple[str, bytes]] = []
    for item in stored:
        name, text = item[0], item[1]
        value = base64.b64decode(text) if len(item) > 2 else text.encode()
        out.append((name, value))
    return out


def _as_bytes(value: HeaderValue) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Outbox:
    """A transactional outbox: events written in the caller's database transaction.

    :meth:`add` inserts the encoded event into the outbox table inside the caller's
    transaction, so the event exists if and only if the business change committed. An
    :class:`~eventbus.outbox.OutboxRelay` then publishes the rows to Kafka.

    Example::

        outbox = Outbox()
        await outbox.create_tables(engine)          # or create them with your migrations

        async with session.begin():
            session.add(leave)
            await outbox.add(session, "leave-queue", create_leave_event(...))

    Args:
        table_name: the outbox table's name.
        metadata: the :class:`~sqlalchemy.MetaData` to define the table in (pass your
            application's so that Alembic autogenerate sees it); a private one by default.
        schema: the table's schema, if not the default one.
        max_message_bytes: events larger than this are refused by :meth:`add` (keep it at
            or below ``KAFKA_MAX_MESSAGE_BYTES``).
        clock: returns the current aware UTC time; injectable for tests.
        observers: may add headers to each event written (tracing stores the writer's
            trace context here); the process-wide observers when omitted.
    """

    def __init__(
        self,
        table_name: str = "eventbus_outbox",
        metadata: MetaData | None = None,
        *,
        schema: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Clock = utcnow,
        observers: Sequence[Observer] | None = None,
    ) -> None:
        self.metadata = metadata if metadata is not None else MetaData()
        self.observers = fanout(observers)
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.table = Table(
            table_name,
            self.metadata,
            Column(
                "id",
                BigInteger().with_variant(Integer(), "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            Column("topic", String(255), nullable=False),
            Column("key", Text, nullable=True),
            Column("value", LargeBinary, nullable=True),
            Column("headers", JSON, nullable=False),
            Column("event_id", String(255), nullable=True),
            Column("event_type", String(255), nullable=True),
            Column("tenant_id", String(255), nullable=True),
            Column("traceparent", String(255), nullable=True),
            Column("created_at", UTCDateTime, nullable=False),
            Column("delivered_at", UTCDateTime, nullable=True),
            Column("attempts", Integer, nullable=False, default=0, server_default="0"),
            Column("last_error", Text, nullable=True),
            schema=schema,
            sqlite_autoincrement=True,  # ids never reused: id order is insertion order
        )
        c = self.table.c
        pending = c.delivered_at.is_(None)
        Index(
            f"ix_{table_name}_pending",
            c.id,
            postgresql_where=pending,
            sqlite_where=pending,
        )
        Index(f"ix_{table_name}_delivered_at", c.delivered_at)
        self._insert_stmt = insert(self.table).returning(c.id)

    @property
    def name(self) -> str:
        """The table's name, with its schema if any."""
        return self.table.fullname

    async def create_tables(self, engine: AsyncEngine) -> None:
        """Create the outbox table and its indexes if missing (for apps without migrations)."""
        await create_tables(engine, self.metadata, [self.table])

    async def add(
        self,
        session: AsyncSession | AsyncConnection,
        topic: str,
        event: BaseEvent,
        key: Key = None,
        headers: Iterable[tuple[str, HeaderValue]] = (),
        *,
        traceparent: str | None = None,
    ) -> int:
        """Write ``event`` to the outbox in the caller's transaction (not committed here).

        The event is encoded now, exactly as :meth:`KafkaProducer.publish` would encode
        it, so an event that cannot be encoded or is too large fails here, before the
        caller commits.

        Args:
            session: the caller's session (or connection) whose transaction the row joins.
            topic: the destination topic.
            event: the event.
            key: the Kafka key; the event's aggregate id (``default_key()``) when omitted.
            headers: extra headers, after the envelope's own.
            traceparent: the W3C ``traceparent`` of the current span; taken from
                ``headers`` if one is there, else from the observers (tracing adds the
                current span's). It is stored in the row and sent as a header.

        Returns:
            The row's id (its place in the publishing order).

        Raises:
            SerializationError: the event cannot be encoded, is too large, or the key is
                not UTF-8 text.
        """
        value, event_headers = encode_event(event, self.max_message_bytes)
        return await self._insert(
            session,
            topic,
            value,
            key if key is not None else event.default_key(),
            [*event_headers, *((n, _as_bytes(v)) for n, v in headers)],
            traceparent=traceparent,
            event_id=str(event.event_id),
            event_type=event.event_type,
            tenant_id=event.tenant_id,
        )

    async def add_raw(
        self,
        session: AsyncSession | AsyncConnection,
        topic: str,
        value: Any,
        key: Key = None,
        headers: Iterable[tuple[str, HeaderValue]] = (),
        *,
        traceparent: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        tenant_id: str | None = None,
    ) -> int:
        """Write a raw record (bytes, text or a JSON value) to the outbox.

        ``value=None`` writes a tombstone (a record with no value). The optional ids are
        stored for inspection only; the record carries just ``headers``.

        Returns:
            The row's id.

        Raises:
            SerializationError: the value cannot be encoded or is too large.
        """
        data = None if value is None else encode_raw(value, self.max_message_bytes)
        return await self._insert(
            session,
            topic,
            data,
            key,
            [(n, _as_bytes(v)) for n, v in headers],
            traceparent=traceparent,
            event_id=event_id,
            event_type=event_type,
            tenant_id=tenant_id,
        )

    async def _insert(
        self,
        session: AsyncSession | AsyncConnection,
        topic: str,
        value: bytes | None,
        key: Key,
        headers: list[tuple[str, bytes]],
        *,
        traceparent: str | None,
        event_id: str | None,
        event_type: str | None,
        tenant_id: str | None,
    ) -> int:
        if not topic:
            raise ConfigurationError("an outbox row needs a topic")
        if traceparent is None and self.observers:
            self.observers.outgoing(headers)
        carried = next((v.decode("utf-8", "replace") for n, v in headers if n == TRACEPARENT), None)
        if carried is None and traceparent:
            headers.append((TRACEPARENT, traceparent.encode()))
        # One statement built once, run with parameters: building ``insert().values()``
        # per call cost about half of an outbox write's CPU (SQLAlchemy caches the
        # compiled form of a parameterised statement, not of one with literal values).
        result = await session.execute(
            self._insert_stmt,
            {
                "topic": topic,
                "key": _key_text(key),
                "value": value,
                "headers": pack_headers(headers),
                "event_id": event_id,
                "event_type": event_type,
                "tenant_id": tenant_id,
                "traceparent": carried or traceparent,
                "created_at": self.clock(),
                "attempts": 0,
            },
        )
        return int(result.scalar_one())

    async def backlog(self, bind: Bind, *, now: datetime | None = None) -> Backlog:
        """Count undelivered rows and the age of the oldest, for metrics and ready checks.

        Args:
            bind: an engine, connection or session.
            now: the current time (the outbox's clock by default).
        """
        c = self.table.c
        stmt = select(func.count(), func.min(c.created_at)).where(c.delivered_at.is_(None))
        row = (await fetch_all(bind, stmt))[0]
        count, oldest = row[0], row[1]
        if not count or oldest is None:
            return Backlog(0, 0.0)
        age = (as_utc(now or self.clock()) - as_utc(oldest)).total_seconds()
        return Backlog(int(count), max(0.0, age))

    async def cleanup(
        self,
        bind: Bind,
        older_than_s: float,
        *,
        now: datetime | None = None,
        chunk_size: int = 5_000,
    ) -> int:
        """Delete rows delivered more than ``older_than_s`` seconds ago; never undelivered ones.

        On an engine each chunk of ``chunk_size`` rows is deleted in its own short
        transaction, so a large cleanup does not hold locks for long.

        Returns:
            The number of rows deleted.
        """
        c = self.table.c
        threshold = as_utc(now or self.clock()) - timedelta(seconds=older_than_s)
        old = (
            select(c.id)
            .where(c.delivered_at.is_not(None), c.delivered_at < threshold)
            .order_by(c.id)
            .limit(chunk_size)
        )
        total = 0
        while True:
            deleted = await execute(bind, delete(self.table).where(c.id.in_(old)))
            total += deleted
            if deleted < chunk_size:
                return total
