"""Taking the next batch of outbox rows to publish.

Two strategies, chosen by the database dialect:

* :func:`claim_single` (SQLite, or any database with exactly one relay): the oldest
  undelivered rows in id order. No locking: a single relay owns the table.
* :func:`claim_shared` (PostgreSQL, any number of relays): per-key advisory locks decide
  which relay owns a key for the length of its transaction, and ``FOR UPDATE SKIP
  LOCKED`` shares the unkeyed rows. See :class:`~eventbus.outbox.OutboxRelay` for why
  this keeps each key's order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, bindparam, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import ARRAY, Integer, Text

from eventbus.outbox._table import unpack_headers


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One row taken for publishing."""

    id: int
    topic: str
    key: str | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    event_id: str | None
    attempts: int


_TRY_LOCK_KEYS = text(
    "SELECT k FROM unnest(CAST(:keys AS text[])) AS k "
    "WHERE pg_try_advisory_xact_lock(CAST(:ns AS integer), hashtext(k))"
).bindparams(bindparam("keys", type_=ARRAY(Text)), bindparam("ns", type_=Integer))


def lock_namespace(table: Table) -> int:
    """The first half of the two-int advisory lock ids: a signed 32-bit hash of the table.

    The two-int advisory lock space is separate from the one-bigint space applications
    usually use, and the table name keeps two outboxes in one database apart.
    """
    crc = zlib.crc32(table.fullname.encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def _row(r: Row[Any]) -> OutboxRow:
    return OutboxRow(
        id=int(r.id),
        topic=r.topic,
        key=r.key,
        value=r.value,
        headers=unpack_headers(r.headers or []),
        event_id=r.event_id,
        attempts=int(r.attempts),
    )


def _columns(table: Table) -> list[Any]:
    c = table.c
    return [c.id, c.topic, c.key, c.value, c.headers, c.event_id, c.attempts]


async def claim_single(conn: AsyncConnection, table: Table, batch_size: int) -> list[OutboxRow]:
    """The oldest ``batch_size`` undelivered rows, in id order, without locking."""
    c = table.c
    stmt = select(*_columns(table)).where(c.delivered_at.is_(None)).order_by(c.id).limit(batch_size)
    return [_row(r) for r in (await conn.execute(stmt)).all()]


async def claim_shared(
    conn: AsyncConnection, table: Table, batch_size: int, max_pages: int = 4
) -> list[OutboxRow]:
    """Take up to ``batch_size`` rows that no other relay holds, keeping per-key order.

    Must run inside the transaction that publishes the rows and marks them delivered:
    the locks it takes are released by that transaction's commit or rollback.

    1. Scan undelivered ``(id, key)`` in id order, a page of ``batch_size`` at a time.
    2. For each key not decided yet, try ``pg_try_advisory_xact_lock(ns, hashtext(key))``
       (never waits). A key whose lock another relay holds is *blocked* for the rest of
       this claim, even if its lock frees up meanwhile: its older rows may be in that
       relay's hands, so none of its rows may be taken now.
    3. Page on (past the keys other relays hold) until the locked keys and keyless rows
       seen add up to ``batch_size`` rows, or ``max_pages`` pages were scanned.
    4. Read, in one statement and so one snapshot taken after the locks were granted,
       the undelivered rows of the locked keys (all of them, whatever page they were
       seen on) and the keyless rows seen, oldest first, ``LIMIT batch_size``, ``FOR
       UPDATE SKIP LOCKED``. The fresh snapshot drops rows another relay delivered
       before releasing a key, and, as each key's rows commit in id order, yields each
       locked key's undelivered rows from its oldest on: the pages, read in several
       snapshots, could have missed a key's older row that committed in between. Keyless
       rows another relay locked are skipped. Keyed rows are never skipped, because only
       the holder of the key's advisory lock ever locks them.
    """
    c = table.c
    ns = lock_namespace(table)
    locked: set[str] = set()
    blocked: set[str] = set()
    keyless: list[int] = []
    wanted = 0
    last_id = 0
    for _ in range(max_pages):
        page = (
            await conn.execute(
                select(c.id, c.key)
                .where(c.delivered_at.is_(None), c.id > last_id)
                .order_by(c.id)
                .limit(batch_size)
            )
        ).all()
        if not page:
            break
        last_id = int(page[-1].id)
        fresh = list(dict.fromkeys(r.key for r in page if r.key is not None))
        fresh = [k for k in fresh if k not in locked and k not in blocked]
        if fresh:
            got = set(
                (await conn.execute(_TRY_LOCK_KEYS, {"keys": fresh, "ns": ns})).scalars().all()
            )
            locked |= got
            blocked.update(k for k in fresh if k not in got)
        keyless.extend(int(r.id) for r in page if r.key is None)
        wanted += sum(1 for r in page if r.key is None or r.key in locked)
        if wanted >= batch_size or len(page) < batch_size:
            break
    if not locked and not keyless:
        return []
    mine = []
    if locked:
        mine.append(c.key.in_(sorted(locked)))
    if keyless:
        mine.append(c.id.in_(keyless[:batch_size]))
    stmt = (
        select(*_columns(table))
        .where(c.delivered_at.is_(None), or_(*mine))
        .order_by(c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    return [_row(r) for r in (await conn.execute(stmt)).all()]
