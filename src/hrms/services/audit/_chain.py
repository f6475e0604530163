"""Appending audit events to per-tenant hash chains.

Each tenant has its own chain, so writers of different tenants do not wait for each
other (on PostgreSQL). Record ``seq`` of a tenant links to record ``seq - 1``::

    hash = sha256(prev_hash + sha256(canonical JSON of the chained fields))

The chained fields are the record without personal data: event id, tenant, seq, event
type, source service, action, resource type and id, acting user id, time and
correlation id. ``description``, ``ip_address``, ``user_agent`` and ``changes`` are
stored beside them but not hashed, so erasing them (:func:`erase_personal_data`) leaves
the chain verifiable. A checkpoint (tenant, seq, hash) is written every
``checkpoint_every`` records and at the end of every append, so a truncated tail is
noticed.

Appends of one tenant are serialised: a per-tenant :class:`asyncio.Lock` in this
process, the chain head read inside the writing transaction, and on PostgreSQL
``pg_advisory_xact_lock(hashtext(tenant))`` so that several replicas serialise too. On
SQLite, which has a single writer, one lock covers every tenant (a reader upgrading to
writer while another connection writes would fail with "database is locked").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from hrms.events import AuditEvent
from hrms.service import Service
from hrms.services.audit._tables import AuditTables

GENESIS = "0" * 64
"""The ``prev_hash`` of every tenant's first record."""
NO_TENANT = ""
"""The chain of events that carry no tenant id."""
CHAINED_FIELDS = (
    "event_id",
    "tenant_id",
    "seq",
    "event_type",
    "source_service",
    "action",
    "resource_type",
    "resource_id",
    "user_id",
    "occurred_at",
    "correlation_id",
)
"""The columns a record's hash covers (never personal data)."""

_ID_CHUNK = 500


def canonical_time(value: datetime) -> str:
    """``value`` in UTC with microseconds, the form hashed (``2025-11-25T18:00:00.000000Z``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_digest(row: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``row``'s chained fields."""
    fields = {name: row[name] for name in CHAINED_FIELDS}
    fields["occurred_at"] = canonical_time(row["occurred_at"])
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The hash of ``row`` linked after a record whose hash is ``prev_hash``."""
    return hashlib.sha256((prev_hash + record_digest(row)).encode()).hexdigest()


def tenant_of(event: AuditEvent) -> str:
    """The chain an event belongs to."""
    return event.tenant_id or NO_TENANT


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _row(event: AuditEvent, tenant: str, seq: int, prev_hash: str, now: datetime) -> dict[str, Any]:
    data = event.data
    row: dict[str, Any] = {
        "event_id": str(event.event_id),
        "tenant_id": tenant,
        "seq": seq,
        "event_type": event.event_type,
        "source_service": event.source_service,
        "action": data.action,
        "resource_type": data.resource_type,
        "resource_id": _text(data.resource_id),
        "user_id": _text(data.user_id),
        "occurred_at": event.timestamp,
        "correlation_id": event.correlation_id,
        "description": data.description,
        "ip_address": data.ip_address,
        "user_agent": data.user_agent,
        "changes": data.changes,
        "prev_hash": prev_hash,
        "recorded_at": now,
    }
    row["hash"] = chain_hash(prev_hash, row)
    return row


@dataclass
class AuditStats:
    """What the appender has done since the service started."""

    batches: int = 0
    records: int = 0
    duplicates: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class AuditChain:
    """Appends audit events to their tenants' chains.

    Args:
        service: the audit service (its engine and transactions).
        tables: the audit tables.
        checkpoint_every: write a checkpoint every this many records of a tenant.
    """

    def __init__(self, service: Service, tables: AuditTables, checkpoint_every: int = 100) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.service = service
        self.tables = tables
        self.checkpoint_every = checkpoint_every
        self.dialect = service.engine.dialect.name
        self.stats = AuditStats()
        self._tenant_locks: dict[str, asyncio.Lock] = {}
        self._sqlite_writer = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def serialised(self, tenants: Iterable[str]) -> AsyncIterator[None]:
        """Hold the in-process locks of ``tenants`` (in sorted order: no deadlocks)."""
        async with contextlib.AsyncExitStack() as stack:
            if self.dialect == "sqlite":
                await stack.enter_async_context(self._sqlite_writer)
            for tenant in sorted(set(tenants)):
                lock = self._tenant_locks.setdefault(tenant, asyncio.Lock())
                await stack.enter_async_context(lock)
            yield

    async def _lock_in_database(self, session: AsyncSession, tenants: Sequence[str]) -> None:
        if self.dialect == "postgresql":
            for tenant in sorted(set(tenants)):
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:tenant))"), {"tenant": tenant}
                )

    async def _existing(self, session: AsyncSession, ids: list[str]) -> set[str]:
        c = self.tables.log.c
        found: set[str] = set()
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = ids[i : i + _ID_CHUNK]
            rows = await session.execute(select(c.event_id).where(c.event_id.in_(chunk)))
            found.update(r[0] for r in rows)
        return found

    async def _head(self, session: AsyncSession, tenant: str) -> tuple[int, str]:
        c = self.tables.log.c
        row = (
            await session.execute(
                select(c.seq, c.hash).where(c.tenant_id == tenant).order_by(c.seq.desc()).limit(1)
            )
        ).first()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def _insert(self, table: Table, *conflict: str) -> Any:
        if self.dialect in ("sqlite", "postgresql"):
            mod = sqlite if self.dialect == "sqlite" else postgresql
            return mod.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
        return insert(table)

    async def append(self, events: Sequence[AuditEvent]) -> dict[str, int | None]:
        """Record ``events`` with one bulk insert; duplicates (by event id) are skipped.

        Returns:
            Each event id with its new ``seq``, or ``None`` if it was recorded before.
        """
        unique: dict[str, AuditEvent] = {}
        for event in events:
            unique.setdefault(str(event.event_id), event)
        result: dict[str, int | None] = dict.fromkeys(unique)
        if not unique:
            return result
        tenants = sorted({tenant_of(e) for e in unique.values()})
        async with self.serialised(tenants), self.service.transaction() as session:
            await self._lock_in_database(session, tenants)
            existing = await self._existing(session, list(unique))
            fresh = [e for eid, e in unique.items() if eid not in existing]
            heads = {t: await self._head(session, t) for t in {tenant_of(e) for e in fresh}}
            now = datetime.now(UTC)
            rows: list[dict[str, Any]] = []
            marks: dict[tuple[str, int], str] = {}
            for event in fresh:
                tenant = tenant_of(event)
                seq, prev = heads[tenant]
                row = _row(event, tenant, seq + 1, prev, now)
                rows.append(row)
                heads[tenant] = (seq + 1, row["hash"])
                result[row["event_id"]] = seq + 1
                if (seq + 1) % self.checkpoint_every == 0:
                    marks[(tenant, seq + 1)] = row["hash"]
            for tenant, (seq, head_hash) in heads.items():
                marks[(tenant, seq)] = head_hash  # the end of this append
            if rows:
                await session.execute(self._insert(self.tables.log, "event_id"), rows)
                await session.execute(
                    self._insert(self.tables.checkpoints, "tenant_id", "seq"),
                    [
                        {"tenant_id": t, "seq": s, "hash": h, "created_at": now}
                        for (t, s), h in marks.items()
                    ],
                )
        if rows:
            self.stats.batches += 1
            self.stats.batch_sizes.append(len(rows))
        self.stats.records += len(rows)
        self.stats.duplicates += len(events) - len(rows)
        return result

    async def erase_personal_data(self, tenant_id: str, user_id: str) -> int:
        """Blank the unhashed personal fields of ``user_id``'s records in ``tenant_id``.

        Returns:
            How many records were changed. The chain stays verifiable.
        """
        c = self.tables.log.c
        stmt = (
            self.tables.log.update()
            .where(c.tenant_id == tenant_id, c.user_id == user_id)
            .values(description=None, ip_address=None, user_agent=None, changes=None)
        )
        async with self.serialised([tenant_id]), self.service.transaction() as session:
            result = await session.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)
