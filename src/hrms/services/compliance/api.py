"""The compliance HTTP API: findings (list, show, resolve) and on-demand checks.

Every query is scoped to the caller's tenant; a finding of another tenant is a 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from hrms.events import EntityId, EventType, create_audit_event
from hrms.service import Conflict, Forbidden, ServiceContext
from hrms.service.auth import CurrentUser, Manager, Principal, Role
from hrms.service.ids import MAX_ID
from hrms.services._common import read_or_404
from hrms.services.compliance.checks import Checks
from hrms.services.compliance.findings import OPEN, RESOLVED, SOURCE, as_finding_row
from hrms.services.compliance.rules import Kind, Rule
from hrms.services.compliance.tables import findings


class FindingOut(BaseModel):
    """A compliance finding."""

    id: int
    tenant_id: str
    employee_id: EntityId | None
    rule: Rule
    kind: Kind
    severity: str
    description: str
    details: dict[str, Any]
    subject: str
    source_event_id: str | None
    status: Literal["open", "resolved"]
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: int | None = None
    resolution_note: str | None = None


class FindingPage(BaseModel):
    """One page of findings, newest first."""

    items: list[FindingOut]
    total: int
    limit: int
    offset: int


class ResolveIn(BaseModel):
    """How a finding was dealt with."""

    note: str | None = Field(default=None, max_length=2000)


class CheckOut(BaseModel):
    """What an on-demand check found."""

    check_id: str
    checked_at: datetime
    open_check_ins: int
    overdue: int
    alerts_created: int
    already_reported: int
    finding_ids: list[int]


def _may_see(principal: Principal, employee_id: EntityId | None) -> bool:
    """Managers and admins see every finding of their tenant; employees their own."""
    if principal.role in (Role.ADMIN, Role.MANAGER):
        return True
    return principal.employee_id is not None and str(principal.employee_id) == str(employee_id)


FindingId = Annotated[int, Path(ge=1, le=MAX_ID, description="The finding's id.")]


def router(checks: Checks) -> APIRouter:
    """The ``/compliance`` routes of ``checks``' service."""
    service = checks.service
    api = APIRouter(prefix="/compliance", tags=["compliance"])

    async def load(principal: Principal, finding_id: int) -> dict[str, Any]:
        return as_finding_row(
            await read_or_404(service, findings, finding_id, principal.tenant_id, "finding")
        )

    @api.get("/findings")
    async def list_findings(
        principal: Manager,
        employee_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        rule: Rule | None = None,
        kind: Kind | None = None,
        status: Literal["open", "resolved"] | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> FindingPage:
        """Findings of the caller's tenant, newest first (managers and admins)."""
        where = [findings.c.tenant_id == principal.tenant_id]
        if employee_id is not None:
            where.append(findings.c.employee_id == employee_id)
        if rule is not None:
            where.append(findings.c.rule == rule.value)
        if kind is not None:
            where.append(findings.c.kind == kind.value)
        if status is not None:
            where.append(findings.c.status == status)
        async with service.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(findings).where(*where))
            rows = await session.execute(
                select(findings)
                .where(*where)
                .order_by(findings.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
            items = [FindingOut.model_validate(as_finding_row(r)) for r in rows.mappings()]
        return FindingPage(items=items, total=int(total or 0), limit=limit, offset=offset)

    @api.get("/findings/{finding_id}")
    async def get_finding(principal: CurrentUser, finding_id: FindingId) -> FindingOut:
        """One finding; employees may see only their own."""
        row = await load(principal, finding_id)
        if not _may_see(principal, row["employee_id"]):
            raise Forbidden("employees may see only their own findings")
        return FindingOut.model_validate(row)

    @api.post("/findings/{finding_id}/resolve")
    async def resolve_finding(
        principal: Manager,
        finding_id: FindingId,
        body: Annotated[ResolveIn | None, Body()] = None,
    ) -> FindingOut:
        """Mark a finding resolved (managers and admins); 409 if it is resolved already."""
        note = body.note if body else None
        async with service.transaction() as session:
            result = await session.execute(
                update(findings)
                .where(
                    findings.c.id == finding_id,
                    findings.c.tenant_id == principal.tenant_id,
                    findings.c.status == OPEN,
                )
                .values(
                    status=RESOLVED,
                    resolved_at=checks.clock(),
                    resolved_by=principal.user_id,
                    resolution_note=note,
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                await load(principal, finding_id)  # 404 when it is not the caller's
                raise Conflict(f"finding {finding_id} is resolved already")
            await service.emit(
                session,
                service.settings.audit_topic,
                create_audit_event(
                    SOURCE,
                    action="RESOLVE",
                    resource_type="compliance_finding",
                    user_id=principal.user_id,
                    resource_id=finding_id,
                    description=f"finding {finding_id} resolved",
                    changes={"status": RESOLVED, "note": note},
                    event_type=EventType.AUDIT_COMPLIANCE_ACTION,
                    **ServiceContext(principal.tenant_id).ids(),
                ),
            )
        return FindingOut.model_validate(await load(principal, finding_id))

    @api.post("/checks")
    async def run_check(principal: Manager) -> CheckOut:
        """Run the missing check-out check of the caller's tenant now (managers and admins)."""
        (result,) = await checks.run_check(
            principal.tenant_id, trigger="manual", user_id=principal.user_id
        )
        counts = result.counts()
        return CheckOut(
            check_id=result.check_id,
            checked_at=result.checked_at,
            open_check_ins=result.open_check_ins,
            overdue=result.overdue,
            alerts_created=result.alerts_created,
            already_reported=counts["already_reported"],
            finding_ids=result.finding_ids,
        )

    return api
