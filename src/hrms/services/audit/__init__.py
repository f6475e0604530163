"""The audit service: a tamper-evident audit log, one hash chain per tenant.

It consumes ``audit-queue`` (:class:`~hrms.events.AuditEvent`) in batches of up to 500
and writes each batch with one bulk insert (seed 000), skipping event ids it has
recorded before. Seed 001's HTTP fallback ``POST /audit-logs`` records one event the
same way. Admins search their tenant's log with ``GET /audit-logs`` and check its chain
with ``GET /audit-logs/verify`` (or ``hrms audit verify``, :func:`verify_chain`).

Records are hash-chained per tenant (see :mod:`hrms.services.audit._chain`): ``seq`` is
contiguous per tenant and each record's hash covers the previous record's hash and its
own non-personal fields, so a changed record, a deleted one (a gap in ``seq``) and a
truncated tail (a checkpoint beyond the last record) are all detected, while the
personal fields (``description``, ``ip_address``, ``user_agent``, ``changes``) can be
erased (:func:`erase_personal_data`) without breaking it. The checkpoints live in the
same database: someone able to delete both the tail and its checkpoints is not caught;
anchoring the checkpoints elsewhere (a WORM store, a periodic signed export) is the
stronger version. Appends for one tenant are serialised in this process by a lock and,
on PostgreSQL, across replicas by ``pg_advisory_xact_lock(hashtext(tenant))``.

``POST /audit-logs`` needs no token: it is a service-to-service path (the users
service posts ``event.model_dump(mode="json")`` without one), and a record lands in the
event's own tenant's chain. It must not be reachable from outside the cluster; build
the service with ``allow_anonymous=False`` where every caller has a token. With a token
the event belongs to the caller's tenant.

The batch handler does not use the session the framework opens for it: every append
runs in its own transaction inside the tenant locks, so the lock is held until the
commit and the next append reads the new chain head.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import KafkaSettings
from eventbus._transport.base import Transport
from hrms.events import AuditEvent
from hrms.service import HrmsSettings, Service
from hrms.services.audit._api import routes
from hrms.services.audit._chain import (
    CHAINED_FIELDS,
    GENESIS,
    NO_TENANT,
    AuditChain,
    AuditStats,
    chain_hash,
    record_digest,
)
from hrms.services.audit._tables import TABLES, metadata
from hrms.services.audit._verify import Problem, VerifyResult, verify

__all__ = [
    "CHAINED_FIELDS",
    "GENESIS",
    "NO_TENANT",
    "AuditChain",
    "AuditStats",
    "Problem",
    "VerifyResult",
    "build",
    "chain_hash",
    "chain_of",
    "erase_personal_data",
    "record_digest",
    "verify_chain",
]

_chains: weakref.WeakKeyDictionary[Service, AuditChain] = weakref.WeakKeyDictionary()


def chain_of(service: Service) -> AuditChain:
    """The :class:`AuditChain` of an audit service built by :func:`build`."""
    chain = _chains.get(service)
    if chain is None:
        chain = _chains[service] = AuditChain(service, TABLES)
    return chain


async def verify_chain(service: Service, tenant_id: str) -> VerifyResult:
    """Check ``tenant_id``'s audit chain in ``service``'s database.

    Returns:
        ``ok``, the records checked, and the first problem: a changed record (hash
        mismatch), a deleted one (gap in ``seq``) or a truncated tail (a checkpoint
        beyond the last record).
    """
    chain = chain_of(service)
    async with service.engine.connect() as conn:
        return await verify(conn, chain.tables, tenant_id)


async def erase_personal_data(service: Service, tenant_id: str, user_id: str) -> int:
    """Erase the personal fields of ``user_id``'s audit records in ``tenant_id``.

    ``description``, ``ip_address``, ``user_agent`` and ``changes`` are blanked; the
    chained fields stay, so :func:`verify_chain` still passes. Returns the record count.
    """
    return await chain_of(service).erase_personal_data(tenant_id, user_id)


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    batch_size: int = 500,
    checkpoint_every: int = 100,
    allow_anonymous: bool = True,
) -> Service:
    """Build the audit service.

    Args:
        settings: HRMS settings (the audit topic); the environment by default.
        kafka: Kafka settings; the environment by default.
        transport: a broker transport (the in-memory broker in tests).
        batch_size: the most audit events written by one insert.
        checkpoint_every: write a chain checkpoint every this many records per tenant.
        allow_anonymous: accept ``POST /audit-logs`` without a token.

    Returns:
        The service; ``service.app()`` serves it.
    """
    service = Service("audit", metadata, settings=settings, kafka=kafka, transport=transport)
    chain = _chains[service] = AuditChain(service, TABLES, checkpoint_every)

    async def audit_state() -> dict[str, Any]:
        stats = chain.stats
        return {"batches": stats.batches, "records": stats.records, "duplicates": stats.duplicates}

    service.readiness["audit"] = audit_state

    @service.consumer(service.settings.audit_topic, batch_size=batch_size)
    async def on_audit_events(events: list[AuditEvent], session: AsyncSession) -> None:
        """Append a batch to the chains (in a transaction of its own: see the docstring)."""
        await chain.append(events)

    service.include(routes(chain, allow_anonymous=allow_anonymous))
    return service
