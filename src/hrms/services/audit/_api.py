"""HTTP routes: ``POST /audit-logs`` (seed 001's fallback path), search and verification."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from hrms.events import AuditEvent
from hrms.service import context
from hrms.service.auth import Admin, Principal
from hrms.service.errors import Forbidden
from hrms.service.ids import MAX_ID
from hrms.services._common import in_callers_tenant, optional_caller
from hrms.services.audit._chain import AuditChain, tenant_of
from hrms.services.audit._verify import VerifyResult, verify


class Recorded(BaseModel):
    """The outcome of ``POST /audit-logs``."""

    event_id: str
    tenant_id: str
    status: Literal["recorded", "duplicate"]
    seq: int | None


class AuditRecord(BaseModel):
    """One audit record (with its personal fields, unless erased)."""

    event_id: str
    tenant_id: str
    seq: int
    event_type: str
    source_service: str
    action: str
    resource_type: str
    resource_id: str | None
    user_id: str | None
    timestamp: datetime
    correlation_id: str | None
    description: str | None
    ip_address: str | None
    user_agent: str | None
    changes: dict[str, Any] | None
    prev_hash: str
    hash: str
    recorded_at: datetime


class AuditPage(BaseModel):
    """A page of audit records, newest first."""

    items: list[AuditRecord]
    total: int
    limit: int
    offset: int


def routes(chain: AuditChain, *, allow_anonymous: bool) -> APIRouter:
    """The audit service's routes.

    Args:
        chain: appends to and reads the tenants' chains.
        allow_anonymous: accept ``POST /audit-logs`` without a token (service to service).
    """
    router = APIRouter(tags=["audit"])
    log = chain.tables.log
    c = log.c
    caller = optional_caller(allow_anonymous=allow_anonymous)

    @router.post("/audit-logs", status_code=201, response_model=Recorded)
    async def record(
        event: AuditEvent,
        response: Response,
        principal: Annotated[Principal | None, Depends(caller)],
    ) -> Recorded:
        """Record an audit event (the HTTP fallback of the audit topic).

        Idempotent by event id: a repeated event answers 200 ``duplicate``. With a token
        the event belongs to the caller's tenant; without one (service to service) to
        the event's own ``tenant_id``.
        """
        event = in_callers_tenant(event, principal)
        context.event_id.set(str(event.event_id))
        seq = (await chain.append([event]))[str(event.event_id)]
        if seq is None:
            response.status_code = 200
        return Recorded(
            event_id=str(event.event_id),
            tenant_id=tenant_of(event),
            status="duplicate" if seq is None else "recorded",
            seq=seq,
        )

    @router.get("/audit-logs", response_model=AuditPage)
    async def search(
        admin: Admin,
        user_id: Annotated[str | None, Query(max_length=255)] = None,
        action: Annotated[str | None, Query(max_length=255)] = None,
        resource_type: Annotated[str | None, Query(max_length=255)] = None,
        resource_id: Annotated[str | None, Query(max_length=255)] = None,
        tenant: Annotated[str | None, Query(max_length=128)] = None,
        since: Annotated[
            datetime | None, Query(alias="from", description="Events at or after this time.")
        ] = None,
        until: Annotated[
            datetime | None, Query(alias="to", description="Events at or before this time.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> AuditPage:
        """Search the caller's tenant's audit log (admins; newest first)."""
        if tenant is not None and tenant != admin.tenant_id:
            raise Forbidden("admins see their own tenant's audit log only")
        where: list[Any] = [c.tenant_id == admin.tenant_id]
        for column, value in (
            (c.user_id, user_id),
            (c.action, action),
            (c.resource_type, resource_type),
            (c.resource_id, resource_id),
        ):
            if value is not None:
                where.append(column == value)
        if since is not None:
            where.append(c.occurred_at >= since)
        if until is not None:
            where.append(c.occurred_at <= until)
        async with chain.service.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(log).where(*where))
            ).scalar_one()
            rows = (
                await conn.execute(
                    select(log).where(*where).order_by(c.seq.desc()).limit(limit).offset(offset)
                )
            ).all()
        items = [
            AuditRecord.model_validate({**r._mapping, "timestamp": r._mapping["occurred_at"]})
            for r in rows
        ]
        return AuditPage(items=items, total=int(total), limit=limit, offset=offset)

    @router.get("/audit-logs/verify", response_model=VerifyResult)
    async def verify_tenant(admin: Admin) -> VerifyResult:
        """Check the caller's tenant's hash chain (admins)."""
        async with chain.service.engine.connect() as conn:
            return await verify(conn, chain.tables, admin.tenant_id)

    return router
