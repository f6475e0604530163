"""The delivery log: one row per notification event id, written around the SMTP call.

Each write is its own committed transaction (SMTP is not transactional, so the log must
say ``sending`` before the server is contacted, and ``sent`` after).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from eventbus._sql import UTCDateTime


class Status(StrEnum):
    """Where one notification's delivery stands."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def define_log(metadata: MetaData) -> Table:
    """The delivery log table, in ``metadata``."""
    return Table(
        "delivery_log",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(255), nullable=False, unique=True),
        Column("tenant_id", String(128), nullable=True, index=True),
        Column("recipient", String(320), nullable=False, index=True),
        Column("template", String(64), nullable=False),
        Column("subject", Text, nullable=False),
        Column("status", String(16), nullable=False, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("error", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime, nullable=True),
    )


metadata = MetaData()
"""The notification service's tables (the framework copies them, adding outbox and inbox)."""

delivery_log = define_log(metadata)
"""The delivery log queries use (SQL names it, so it serves every built service)."""


class Entry(BaseModel):
    """One notification as the log knows it (the API shows it as it is)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    tenant_id: str | None
    recipient: str
    template: str
    subject: str
    status: Status
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


class DeliveryLog:
    """Reads and writes the delivery log, each write committed on its own."""

    def __init__(
        self, table: Table, sessions: async_sessionmaker[AsyncSession], dialect: str
    ) -> None:
        self.table = table
        self.sessions = sessions
        self.dialect = dialect

    async def get(self, event_id: str) -> Entry | None:
        """The log entry of ``event_id``, if any."""
        async with self.sessions() as session:
            row = (
                await session.execute(select(self.table).where(self.table.c.event_id == event_id))
            ).first()
        return None if row is None else _entry(row._mapping)

    async def start(
        self,
        *,
        event_id: str,
        tenant_id: str | None,
        recipient: str,
        template: str,
        subject: str,
        status: Status = Status.SENDING,
        error: str | None = None,
    ) -> None:
        """Record (or re-record) the event as ``status`` and commit."""
        now = _now()
        values: dict[str, Any] = {
            "event_id": event_id,
            "tenant_id": tenant_id,
            "recipient": recipient,
            "template": template,
            "subject": subject,
            "status": status.value,
            "attempts": 0,
            "error": error,
            "created_at": now,
            "updated_at": now,
        }
        async with self.sessions() as session, session.begin():
            if self.dialect in ("sqlite", "postgresql"):
                mod = sqlite if self.dialect == "sqlite" else postgresql
                await session.execute(
                    mod.insert(self.table).values(**values).on_conflict_do_nothing()
                )
            elif (await session.execute(self._select_id(event_id))).first() is None:
                await session.execute(insert(self.table).values(**values))
            await session.execute(
                update(self.table)
                .where(self.table.c.event_id == event_id)
                .values(status=status.value, error=error, updated_at=now)
            )

    def _select_id(self, event_id: str) -> Any:
        return select(self.table.c.id).where(self.table.c.event_id == event_id)

    async def attempt_failed(self, event_id: str, error: str) -> None:
        """Count a failed SMTP try and keep its error."""
        await self._update(
            event_id, attempts=self.table.c.attempts + 1, error=error[:2000], updated_at=_now()
        )

    async def sent(self, event_id: str) -> None:
        """Mark the event sent (counting the successful try)."""
        now = _now()
        await self._update(
            event_id,
            status=Status.SENT.value,
            attempts=self.table.c.attempts + 1,
            error=None,
            sent_at=now,
            updated_at=now,
        )

    async def failed(self, event_id: str, error: str, *, attempted: bool = False) -> None:
        """Mark the event failed with ``error`` (counting a try if ``attempted``)."""
        values: dict[str, Any] = {"status": Status.FAILED.value, "error": error[:2000]}
        if attempted:
            values["attempts"] = self.table.c.attempts + 1
        await self._update(event_id, updated_at=_now(), **values)

    async def _update(self, event_id: str, **values: Any) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(self.table).where(self.table.c.event_id == event_id).values(**values)
            )

    async def search(
        self,
        tenant_id: str,
        *,
        status: Status | None,
        recipient: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Entry], int]:
        """A page of ``tenant_id``'s log, newest first, and the count of all matches."""
        c = self.table.c
        where = [c.tenant_id == tenant_id]
        if status is not None:
            where.append(c.status == status.value)
        if recipient is not None:
            where.append(func.lower(c.recipient) == recipient.lower())
        async with self.sessions() as session:
            total = (
                await session.execute(select(func.count()).select_from(self.table).where(*where))
            ).scalar_one()
            rows = (
                await session.execute(
                    select(self.table)
                    .where(*where)
                    .order_by(c.created_at.desc(), c.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return [_entry(r._mapping) for r in rows], int(total)


def _entry(row: Any) -> Entry:
    return Entry.model_validate(dict(row))
