"""Databases for the outbox and HTTP scenarios: SQLite files and PostgreSQL databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from bench.pg import PG_USER, PgServer
from eventbus.outbox import Outbox
from hrms.events import AuditEvent

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
"""What a service on SQLite sets: readers do not block the writer, no fsync per commit."""


def sqlite_engine(path: Path, pool_size: int | None = None) -> AsyncEngine:
    """An aiosqlite engine on ``path`` in WAL mode; writers wait up to 30 s for the lock.

    ``pool_size`` (with no overflow) caps the connections; SQLAlchemy's default otherwise.
    """
    pool: dict[str, Any] = {}
    if pool_size is not None:
        pool = {"pool_size": pool_size, "max_overflow": 0}
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30}, **pool
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    return engine


def pg_engine(url: str) -> AsyncEngine:
    """An asyncpg engine (pool of 10, as the tests use)."""
    return create_async_engine(url, pool_size=10)


async def create_pg_database(server: PgServer, name: str) -> str:
    """Create database ``name`` on ``server``; return its URL."""
    admin = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=PG_USER, database="postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.url(name)


async def drop_pg_database(server: PgServer, name: str) -> None:
    """Drop database ``name`` (closing its sessions)."""
    admin = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=PG_USER, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fill_outbox(
    engine: AsyncEngine, outbox: Outbox, topic: str, events: list[AuditEvent], n: int
) -> None:
    """Put ``n`` undelivered rows for ``topic`` in ``outbox``.

    The first ``len(events)`` rows are written by :meth:`Outbox.add` (one transaction), the
    rest are copies of them made by ``INSERT ... SELECT`` (so filling 50k rows takes a
    second, not a minute). Copies share ``event_id`` with their original, which the relay
    does not mind.
    """
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    first = events[: min(n, len(events))]
    async with sessions() as session, session.begin():
        for e in first:
            await outbox.add(session, topic, e)
    t = outbox.table
    cols = [c for c in t.c if c.name not in {"id", "delivered_at", "last_error"}]
    count = len(first)
    while count < n:
        copy = select(*cols).order_by(t.c.id).limit(n - count)
        async with engine.begin() as conn:
            await conn.execute(insert(t).from_select([c.name for c in cols], copy))
            count = int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
