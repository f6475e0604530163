"""The inbox: an idempotent consumer, by event id, in the handler's database transaction.

Kafka delivers at least once, and the outbox publishes at least once, so a handler may
see an event twice. The inbox records each processed event id per consumer group in the
same database transaction as the handler's side effects: they commit together, or roll
back together, and an id already recorded is skipped and counted.

Three ways to use it::

    inbox = Inbox()

    # 1. a consumer middleware: every handler runs in a transaction; the session is in
    #    ctx.state["session"]
    consumer.use(inbox.middleware(sessionmaker))

    # 2. a decorator on a handler taking (event, ctx)
    @consumer.on(EventType.LEAVE_APPROVED)
    @inbox.idempotent(sessionmaker)
    async def on_approved(event: LeaveEvent, ctx: MessageContext) -> None:
        ctx.state["session"].add(...)

    # 3. a context manager in your own transaction
    async with session.begin():
        async with inbox.guard(session, "payroll", event_id) as fresh:
            if fresh:
                session.add(...)
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, delete, exists, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from eventbus._codec import decode_json, header_value, normalise
from eventbus._envelope import BaseEvent
from eventbus._handlers import MessageContext
from eventbus._sql import (
    Bind,
    Clock,
    UTCDateTime,
    as_utc,
    bounded_id,
    create_tables,
    dialect_name,
    execute,
    fetch_all,
    utcnow,
)
from eventbus._transport.base import Record
from eventbus.errors import ConfigurationError, DecodeError
from eventbus.headers import EVENT_ID

SessionFactory = Callable[[], AsyncSession]
"""Makes a new session, e.g. an :class:`~sqlalchemy.ext.asyncio.async_sessionmaker`."""
CallNext = Callable[[], Awaitable[None]]
InboxMiddleware = Callable[[MessageContext, CallNext], Awaitable[None]]
Handler = Callable[..., Awaitable[Any]]

SESSION = "session"
"""The ``ctx.state`` entry holding the handler's session."""


def record_event_id(record: Record) -> str:
    """The id of the event in ``record``.

    The ``event_id`` header, else the envelope's ``event_id`` (any shape eventbus reads),
    else ``topic:partition:offset``, which still deduplicates redeliveries of one record.
    """
    found = header_value(record.headers, EVENT_ID)
    if found:
        return found
    try:
        env = normalise(decode_json(record.value))
    except DecodeError:
        env = {}
    if env.get("event_id"):
        return str(env["event_id"])
    return f"{record.topic}:{record.partition}:{record.offset}"


def event_id_of(payload: Any, ctx: MessageContext) -> str:
    """The id of the event a handler received: header, payload, then record position."""
    found = ctx.header(EVENT_ID)
    if found:
        return found
    if isinstance(payload, BaseEvent):
        return str(payload.event_id)
    if isinstance(payload, dict) and payload.get("event_id"):
        return str(payload["event_id"])
    return record_event_id(ctx.record)


class Inbox:
    """Processed event ids per consumer group, written with the handler's side effects.

    Args:
        table_name: the inbox table's name.
        metadata: the :class:`~sqlalchemy.MetaData` to define the table in; a private one
            by default.
        schema: the table's schema, if not the default one.
        clock: the current aware UTC time (``processed_at``, cleanup); injectable.

    Attributes:
        duplicates: events skipped as already processed, per consumer group
            (``duplicates.total()`` for all groups).
        processed: events recorded and committed, per consumer group.
    """

    def __init__(
        self,
        table_name: str = "eventbus_inbox",
        metadata: MetaData | None = None,
        *,
        schema: str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.metadata = metadata if metadata is not None else MetaData()
        self.clock = clock
        self.table = Table(
            table_name,
            self.metadata,
            Column("consumer_group", String(255), primary_key=True),
            Column("event_id", String(255), primary_key=True),
            Column("processed_at", UTCDateTime, nullable=False, index=True),
            schema=schema,
        )
        self.duplicates: Counter[str] = Counter()
        self.processed: Counter[str] = Counter()

    async def create_tables(self, engine: AsyncEngine) -> None:
        """Create the inbox table if missing (for apps without migrations)."""
        await create_tables(engine, self.metadata, [self.table])

    # -- the primitive ------------------------------------------------------------------------
    async def claim(
        self, session: AsyncSession | AsyncConnection, group_id: str, event_id: str
    ) -> bool:
        """Record ``event_id`` for ``group_id`` in the caller's transaction.

        Returns True if it was not recorded yet (process the event, then commit), False
        for a duplicate (counted in :attr:`duplicates`; skip it).

        On PostgreSQL and SQLite this is one ``INSERT ... ON CONFLICT DO NOTHING``: a
        concurrent transaction that recorded the same id first makes this one wait for
        its outcome (PostgreSQL) or for the write lock (SQLite) and then see a
        duplicate, or record the id itself if that one rolled back. Elsewhere a SELECT,
        then an INSERT in a savepoint whose primary-key violation means a duplicate. The
        caller's transaction stays usable either way and nothing is committed here.
        """
        group, eid = bounded_id(group_id), bounded_id(event_id)
        values = {"consumer_group": group, "event_id": eid, "processed_at": self.clock()}
        dialect = dialect_name(session)
        if dialect in ("postgresql", "sqlite"):
            mod = postgresql if dialect == "postgresql" else sqlite
            stmt = mod.insert(self.table).values(**values).on_conflict_do_nothing()
            fresh = await execute(session, stmt) == 1
        else:
            fresh = await self._claim_generic(session, values)
        if not fresh:
            self.duplicates[group_id] += 1
        return fresh

    async def _claim_generic(
        self, session: AsyncSession | AsyncConnection, values: dict[str, Any]
    ) -> bool:
        c = self.table.c
        seen = select(
            exists().where(
                c.consumer_group == values["consumer_group"], c.event_id == values["event_id"]
            )
        )
        if (await session.execute(seen)).scalar():
            return False
        try:
            async with session.begin_nested():
                await session.execute(insert(self.table).values(**values))
        except IntegrityError:
            return False
        return True

    async def seen(self, bind: Bind, group_id: str, event_id: str) -> bool:
        """Whether ``group_id`` has committed the processing of ``event_id``."""
        c = self.table.c
        stmt = select(c.event_id).where(
            c.consumer_group == bounded_id(group_id), c.event_id == bounded_id(event_id)
        )
        return bool(await fetch_all(bind, stmt))

    @asynccontextmanager
    async def guard(
        self, session: AsyncSession | AsyncConnection, group_id: str, event_id: str
    ) -> AsyncIterator[bool]:
        """Claim ``event_id`` in the caller's transaction; yield whether it is fresh.

        Do the side effects only when it is; commit (or roll back) the transaction
        yourself, after the block: the inbox row and the side effects share its fate.
        """
        yield await self.claim(session, group_id, event_id)

    # -- handler forms ------------------------------------------------------------------------
    async def _run(
        self,
        session_factory: SessionFactory,
        group_id: str,
        event_id: str,
        ctx: MessageContext,
        call: CallNext,
    ) -> bool:
        """Claim, call and commit in one transaction; False for a skipped duplicate."""
        async with session_factory() as session:
            if not await self.claim(session, group_id, event_id):
                return False
            ctx.state[SESSION] = session
            try:
                await call()
            finally:
                ctx.state.pop(SESSION, None)
            await session.commit()  # an exception above rolls both back on close
        self.processed[group_id] += 1
        return True

    def middleware(self, session_factory: SessionFactory) -> InboxMiddleware:
        """A consumer middleware: each message is handled once per consumer group.

        Every handler call runs in a new session's transaction, with the session in
        ``ctx.state["session"]``; the event id is recorded in it and committed with the
        handler's writes. A duplicate is not handed to the handler (and its offset is
        committed). A handler exception rolls everything back, so a retry starts clean.
        For single-record handlers (not ``consume_batch``).
        """

        async def inbox_step(ctx: MessageContext, call_next: CallNext) -> None:
            event_id = record_event_id(ctx.record)
            await self._run(session_factory, ctx.group_id, event_id, ctx, call_next)

        return inbox_step

    def idempotent(
        self, session_factory: SessionFactory, *, group_id: str | None = None
    ) -> Callable[[Handler], Callable[[Any, MessageContext], Awaitable[None]]]:
        """Decorate a handler ``(payload[, ctx])`` to run once per event id and group.

        The wrapped handler takes ``(payload, ctx)``; the session is in
        ``ctx.state["session"]`` while it runs. See :meth:`middleware` for the rest.

        Args:
            session_factory: makes the session of each call.
            group_id: the group the ids are recorded under (``ctx.group_id`` by default).
        """

        def decorate(handler: Handler) -> Callable[[Any, MessageContext], Awaitable[None]]:
            params = list(inspect.signature(handler).parameters.values())
            if not params:
                raise ConfigurationError("a handler takes the message as its first parameter")
            wants_ctx = len(params) > 1

            @functools.wraps(handler)
            async def idempotent_handler(payload: Any, ctx: MessageContext) -> None:
                async def call() -> None:
                    await (handler(payload, ctx) if wants_ctx else handler(payload))

                group = group_id or ctx.group_id
                await self._run(session_factory, group, event_id_of(payload, ctx), ctx, call)

            # The consumer reads the signature to decide what to pass: keep the payload's
            # annotation and always ask for the context.
            first = params[0].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
            ctx_param = inspect.Parameter(
                "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=MessageContext
            )
            idempotent_handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
                [first, ctx_param], return_annotation=None
            )
            annotations = getattr(handler, "__annotations__", {})
            idempotent_handler.__annotations__ = {
                **({first.name: annotations[first.name]} if first.name in annotations else {}),
                "ctx": MessageContext,
                "return": None,
            }
            return idempotent_handler

        return decorate

    async def cleanup(self, bind: Bind, older_than_s: float, *, now: datetime | None = None) -> int:
        """Forget ids processed more than ``older_than_s`` ago (keep that longer than any
        redelivery can take: retention of the topics, outbox backlog). Returns the count."""
        cutoff = as_utc(now or self.clock()) - timedelta(seconds=older_than_s)
        return await execute(bind, delete(self.table).where(self.table.c.processed_at < cutoff))
