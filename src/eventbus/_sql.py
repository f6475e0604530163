"""SQL helpers shared by the transactional outbox and the inbox (SQLAlchemy 2, async)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Executable, MetaData, Result, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.types import TypeDecorator

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime; injectable for tests."""

Bind = AsyncEngine | AsyncConnection | AsyncSession
"""Where a statement runs: an engine (its own short transaction), or the caller's
connection or session (the caller's transaction, not committed here)."""

MAX_ID_LENGTH = 255


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime.

    PostgreSQL stores ``timestamp with time zone``; SQLite, which has no such type, stores
    the naive UTC text, which still compares in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def dialect_name(bind: Bind) -> str:
    """The SQL dialect name of ``bind``: ``postgresql``, ``sqlite``, ..."""
    if isinstance(bind, AsyncSession):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def bounded_id(value: str) -> str:
    """``value`` if it fits an id column, else a stable digest of it."""
    if len(value) <= MAX_ID_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


async def fetch_all(bind: Bind, stmt: Executable) -> Sequence[Any]:
    """Run a query and return its rows (an engine gets its own short transaction)."""
    if isinstance(bind, AsyncEngine):
        async with bind.connect() as conn:
            return (await conn.execute(stmt)).all()
    return (await bind.execute(stmt)).all()


async def execute(bind: Bind, stmt: Executable) -> int:
    """Run a write and return the affected row count.

    On an engine it commits at once; on a connection or session it joins (and leaves
    uncommitted) the caller's transaction.
    """
    result: Result[Any]
    if isinstance(bind, AsyncEngine):
        async with bind.begin() as conn:
            result = await conn.execute(stmt)
    else:
        result = await bind.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def create_tables(engine: AsyncEngine, metadata: MetaData, tables: Sequence[Table]) -> None:
    """Create ``tables`` (and their indexes) if they do not exist."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=list(tables), checkfirst=True)
