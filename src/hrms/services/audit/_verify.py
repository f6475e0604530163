"""Checking a tenant's audit chain: changed, deleted and truncated records."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hrms.services.audit._chain import GENESIS, chain_hash
from hrms.services.audit._tables import AuditTables

_PAGE = 1000


class Problem(BaseModel):
    """The first thing wrong with a chain.

    Attributes:
        kind: ``changed`` (a record no longer matches its hash, or its link to the
            previous one is broken), ``deleted`` (a gap in the sequence) or
            ``truncated`` (a checkpoint names a record beyond the last one).
        seq: where it was found.
        detail: a sentence for people.
    """

    kind: Literal["changed", "deleted", "truncated"]
    seq: int
    detail: str


class VerifyResult(BaseModel):
    """The outcome of checking one tenant's chain.

    Attributes:
        ok: no problem was found.
        tenant_id: the tenant checked.
        records_checked: records found intact before the problem (all of them if ok).
        last_seq: the highest seq checked.
        checkpoints: checkpoints compared.
        problem: the first problem, if any.
    """

    ok: bool
    tenant_id: str
    records_checked: int
    last_seq: int
    checkpoints: int
    problem: Problem | None = None


async def verify(conn: AsyncConnection, tables: AuditTables, tenant_id: str) -> VerifyResult:
    """Walk ``tenant_id``'s chain in ``conn`` and report the first problem.

    Checkpoints are read first, so every record a checkpoint names was committed
    before the walk starts (appends during the walk only add later records).
    """
    cp = tables.checkpoints.c
    marks = {
        int(seq): str(h)
        for seq, h in await conn.execute(select(cp.seq, cp.hash).where(cp.tenant_id == tenant_id))
    }
    c = tables.log.c
    checked, expected, prev = 0, 1, GENESIS

    def result(problem: Problem | None) -> VerifyResult:
        return VerifyResult(
            ok=problem is None,
            tenant_id=tenant_id,
            records_checked=checked,
            last_seq=expected - 1,
            checkpoints=len(marks),
            problem=problem,
        )

    while True:
        page = (
            await conn.execute(
                select(tables.log)
                .where(c.tenant_id == tenant_id, c.seq >= expected)
                .order_by(c.seq)
                .limit(_PAGE)
            )
        ).all()
        for raw in page:
            row = dict(raw._mapping)
            seq = int(row["seq"])
            if seq != expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
                return result(
                    Problem(kind="deleted", seq=expected, detail=f"record {missing} missing")
                )
            if chain_hash(row["prev_hash"], row) != row["hash"]:
                return result(
                    Problem(kind="changed", seq=seq, detail=f"record {seq} does not match its hash")
                )
            if row["prev_hash"] != prev:
                return result(
                    Problem(
                        kind="changed",
                        seq=seq,
                        detail=f"record {seq} does not link to record {seq - 1}",
                    )
                )
            if seq in marks and marks[seq] != row["hash"]:
                return result(
                    Problem(
                        kind="changed",
                        seq=seq,
                        detail=f"record {seq} differs from the checkpoint taken at {seq}",
                    )
                )
            prev = row["hash"]
            checked += 1
            expected += 1
        if len(page) < _PAGE:
            break
    beyond = [s for s in marks if s >= expected]
    if beyond:
        last = expected - 1
        return result(
            Problem(
                kind="truncated",
                seq=max(beyond),
                detail=f"a checkpoint names record {max(beyond)} but the last record is {last}",
            )
        )
    return result(None)
