"""The employees service: the tenant's employee records.

Endpoints (all scoped to the caller's tenant; another tenant's employee is a 404):

* ``POST /employees`` (admin): create; ``employee.created`` and an ``employee_welcome``
  notification to the new employee.
* ``GET /employees`` (admin, manager): a page of employees, filtered by ``status`` and
  ``department``.
* ``GET /employees/{id}`` (admin, manager, or the employee themself).
* ``PATCH /employees/{id}`` (admin, manager): ``employee.updated``; a terminated employee
  cannot be updated (409).
* ``POST /employees/{id}/status`` (admin): ``employee.status_changed`` with
  ``previous_status``; terminating goes through ``/terminate``.
* ``POST /employees/{id}/terminate`` (admin): ``employee.terminated``.

Every event on ``employee-queue`` carries the whole record (and the manager's e-mail), so
consumers keep a projection by overwriting it. Every write also emits an
``audit.employee.action`` event.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import KafkaSettings
from eventbus._sql import UTCDateTime
from eventbus._transport.base import Transport
from hrms.events import EventType, create_employee_event
from hrms.service import Conflict, Forbidden, HrmsSettings, Principal, RuleBroken, Service
from hrms.service.auth import Admin, CurrentUser, Manager
from hrms.service.ids import Id
from hrms.services._common import (
    EMAIL_PATTERN,
    Clock,
    Journal,
    Page,
    Pagination,
    apply_changes,
    changed,
    event_ids,
    get_or_404,
    insert_row,
    read_or_404,
    read_page,
    refuse_clearing,
    tenant_rows,
    update_row,
    utcnow,
)

SOURCE = "employee-management-service"
"""The ``source_service`` of this service's events (seed 001's client id)."""
_RACE = "employee code or user account already exists (taken by a concurrent write)"
MAX_MANAGER_CHAIN = 100
"""How far up the management chain a new manager is followed looking for a cycle."""


class EmployeeStatus(StrEnum):
    """Where an employee stands; ``terminated`` is final."""

    ACTIVE = "active"
    ON_LEAVE = "on_leave"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


metadata = MetaData()
employees = Table(
    "employees",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False, index=True),
    Column("employee_code", String(50), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("department", String(100), nullable=True, index=True),
    Column("position", String(100), nullable=True),
    Column("status", String(20), nullable=False),
    Column("hire_date", Date, nullable=False),
    Column("user_id", Integer, nullable=True),
    Column("manager_id", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("tenant_id", "employee_code", name="uq_employees_tenant_code"),
    UniqueConstraint("tenant_id", "user_id", name="uq_employees_tenant_user"),
)


# --------------------------------------------------------------------------- bodies

Code = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9._-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=100)]


class EmployeeCreate(BaseModel):
    """A new employee."""

    employee_code: Code
    name: Name
    email: Email
    department: Label | None = None
    position: Label | None = None
    status: EmployeeStatus = EmployeeStatus.ACTIVE
    hire_date: date
    user_id: Id | None = None
    manager_id: Id | None = None


class EmployeeUpdate(BaseModel):
    """Changes to an employee; omitted fields stay, ``null`` clears the optional ones."""

    employee_code: Code | None = None
    name: Name | None = None
    email: Email | None = None
    department: Label | None = None
    position: Label | None = None
    hire_date: date | None = None
    user_id: Id | None = None
    manager_id: Id | None = None


class StatusChange(BaseModel):
    """A new status (``terminated`` goes through ``/terminate``)."""

    status: EmployeeStatus
    reason: Annotated[str, Field(max_length=500)] | None = None


class Termination(BaseModel):
    """Why an employee is terminated (optional)."""

    reason: Annotated[str, Field(max_length=500)] | None = None


class EmployeeOut(BaseModel):
    """An employee record."""

    id: int
    tenant_id: str
    employee_code: str
    name: str
    email: str
    department: str | None
    position: str | None
    status: EmployeeStatus
    hire_date: date
    user_id: int | None
    manager_id: int | None
    created_at: datetime
    updated_at: datetime


def _out(row: RowMapping) -> EmployeeOut:
    return EmployeeOut.model_validate(dict(row))


# --------------------------------------------------------------------------- the routes


class EmployeesApi:
    """The routes of the employees service (each write: row, domain event, audit event)."""

    def __init__(self, service: Service, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self.journal = Journal(
            service,
            SOURCE,
            service.settings.employee_topic,
            "employee",
            EventType.AUDIT_EMPLOYEE_ACTION,
        )

    def router(self) -> APIRouter:
        """The ``/employees`` routes."""
        router = APIRouter(prefix="/employees", tags=["employees"])
        router.add_api_route("", self.create, methods=["POST"], status_code=201)
        router.add_api_route("", self.listing, methods=["GET"])
        router.add_api_route("/{employee_id}", self.get, methods=["GET"])
        router.add_api_route("/{employee_id}", self.update, methods=["PATCH"])
        router.add_api_route("/{employee_id}/status", self.change_status, methods=["POST"])
        router.add_api_route("/{employee_id}/terminate", self.terminate, methods=["POST"])
        return router

    async def create(self, body: EmployeeCreate, principal: Admin) -> EmployeeOut:
        """Create an employee (admin); 409 if the code or user account is taken."""
        if body.status is EmployeeStatus.TERMINATED:
            raise RuleBroken("a new employee cannot start as terminated")
        now = self.clock()
        tenant = principal.tenant_id
        try:
            async with self.service.transaction() as session:
                await _check_unique(session, tenant, "employee_code", body.employee_code)
                if body.user_id is not None:
                    await _check_unique(session, tenant, "user_id", body.user_id)
                if body.manager_id is not None:
                    await _check_manager(session, tenant, body.manager_id)
                values = {**body.model_dump(), "status": body.status.value}
                row = await insert_row(
                    session, employees, tenant, "employee", created_at=now, updated_at=now, **values
                )
                await self._record(
                    session,
                    principal,
                    row,
                    EventType.EMPLOYEE_CREATED,
                    action="CREATE",
                    changes=changed({}, values),
                )
                await self._welcome(session, principal, row)
        except IntegrityError as exc:  # a concurrent write took the code or account first
            raise Conflict(_RACE) from exc
        return _out(row)

    async def listing(
        self,
        principal: Manager,
        page: Pagination,
        status: EmployeeStatus | None = None,
        department: str | None = None,
    ) -> Page[EmployeeOut]:
        """A page of the tenant's employees by code (admin, manager)."""
        query = tenant_rows(
            employees, principal.tenant_id, status=status, department=department
        ).order_by(employees.c.employee_code, employees.c.id)
        return await read_page(self.service, query, page, _out)

    async def get(self, employee_id: Id, principal: CurrentUser) -> EmployeeOut:
        """One employee (admin, manager, or the employee themself)."""
        row = await read_or_404(
            self.service, employees, employee_id, principal.tenant_id, "employee"
        )
        if not principal.can_act_for(employee_id):
            raise Forbidden("employees may read only their own record")
        return _out(row)

    async def update(
        self, employee_id: Id, body: EmployeeUpdate, principal: Manager
    ) -> EmployeeOut:
        """Change an employee (admin, manager); 409 if terminated or the code is taken."""
        given = body.model_dump(exclude_unset=True)
        refuse_clearing(given, ("employee_code", "name", "email", "hire_date"))
        tenant = principal.tenant_id
        try:
            async with self.service.transaction() as session:
                before = await get_or_404(session, employees, employee_id, tenant, "employee")
                if before["status"] == EmployeeStatus.TERMINATED:
                    raise Conflict(f"employee {employee_id} is terminated and cannot be updated")
                for field in ("employee_code", "user_id"):
                    value = given.get(field)
                    if value is not None and value != before[field]:
                        await _check_unique(session, tenant, field, value)
                if given.get("manager_id") is not None:
                    await _check_manager(session, tenant, given["manager_id"], employee_id)
                row, diff = await apply_changes(
                    session, employees, before, given, "employee", self.clock
                )
                if diff:
                    await self._record(
                        session,
                        principal,
                        row,
                        EventType.EMPLOYEE_UPDATED,
                        action="UPDATE",
                        changes=diff,
                    )
        except IntegrityError as exc:
            raise Conflict(_RACE) from exc
        return _out(row)

    async def change_status(
        self, employee_id: Id, body: StatusChange, principal: Admin
    ) -> EmployeeOut:
        """Move an employee between active, on_leave and suspended (admin)."""
        if body.status is EmployeeStatus.TERMINATED:
            raise RuleBroken("use POST /employees/{id}/terminate to terminate an employee")
        return await self._set_status(
            employee_id,
            body.status,
            principal,
            EventType.EMPLOYEE_STATUS_CHANGED,
            "STATUS_CHANGE",
            body.reason,
        )

    async def terminate(
        self, employee_id: Id, principal: Admin, body: Termination | None = None
    ) -> EmployeeOut:
        """Terminate an employee (admin); final: 409 if already terminated."""
        return await self._set_status(
            employee_id,
            EmployeeStatus.TERMINATED,
            principal,
            EventType.EMPLOYEE_TERMINATED,
            "TERMINATE",
            body.reason if body else None,
        )

    # -- helpers ----------------------------------------------------------------------------
    async def _set_status(
        self,
        employee_id: int,
        new: EmployeeStatus,
        principal: Principal,
        event_type: EventType,
        action: str,
        reason: str | None,
    ) -> EmployeeOut:
        tenant = principal.tenant_id
        async with self.service.transaction() as session:
            before = await get_or_404(session, employees, employee_id, tenant, "employee")
            previous = before["status"]
            if previous == EmployeeStatus.TERMINATED:
                raise Conflict(f"employee {employee_id} is already terminated")
            if previous == new:
                raise Conflict(f"employee {employee_id} is already {new.value}")
            row = await update_row(
                session, employees, before, "employee", status=new.value, updated_at=self.clock()
            )
            changes: dict[str, Any] = {"status": new.value, "previous_status": previous}
            if reason:
                changes["reason"] = reason
            await self._record(
                session,
                principal,
                row,
                event_type,
                action=action,
                changes=changes,
                previous_status=previous,
            )
        return _out(row)

    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RowMapping,
        event_type: EventType,
        *,
        action: str,
        changes: dict[str, Any],
        previous_status: str | None = None,
    ) -> None:
        """The employee event (the whole record, with the manager's e-mail) and its audit."""
        event = create_employee_event(
            source_service=SOURCE,
            employee_id=row["id"],
            event_type=event_type,
            name=row["name"],
            email=row["email"],
            employee_code=row["employee_code"],
            department=row["department"],
            position=row["position"],
            status=row["status"],
            previous_status=previous_status,
            user_id=row["user_id"],
            manager_id=row["manager_id"],
            manager_email=await _manager_email(session, row),
            hire_date=row["hire_date"].isoformat(),
            **event_ids(principal),
        )
        await self.journal.record(
            session, principal, event, action=action, resource_id=row["id"], changes=changes
        )

    async def _welcome(self, session: AsyncSession, principal: Principal, row: RowMapping) -> None:
        await self.journal.notify(
            session,
            principal,
            event_type=EventType.EMPLOYEE_CREATED,
            recipient_email=row["email"],
            recipient_name=row["name"],
            subject="Welcome to HRMS!",
            template_name="employee_welcome",
            template_data={
                "name": row["name"],
                "employee_code": row["employee_code"],
                "department": row["department"],
                "position": row["position"],
                "hire_date": row["hire_date"].isoformat(),
            },
            user_id=row["user_id"],
        )


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    clock: Clock = utcnow,
) -> Service:
    """Build the employees service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        clock: the current time, for ``created_at``/``updated_at``.
    """
    service = Service("employees", metadata, settings=settings, kafka=kafka, transport=transport)
    service.include(EmployeesApi(service, clock).router())
    return service


_LABELS = {"employee_code": "employee code", "user_id": "user account"}


async def _check_unique(session: AsyncSession, tenant_id: str, field: str, value: object) -> None:
    """409 if another employee of the tenant has ``value`` in ``field``."""
    taken = await session.scalar(
        select(employees.c.id).where(
            employees.c.tenant_id == tenant_id, employees.c[field] == value
        )
    )
    if taken is not None:
        raise Conflict(f"{_LABELS[field]} {value!r} already exists (employee {taken})")


async def _check_manager(
    session: AsyncSession, tenant_id: str, manager_id: int, employee_id: int | None = None
) -> None:
    """The manager must be an employee of the tenant, and not below the employee."""
    seen = manager_id
    for _ in range(MAX_MANAGER_CHAIN):
        if seen == employee_id:
            raise RuleBroken(
                f"manager {manager_id} would make a management cycle through employee {employee_id}"
            )
        row = (
            await session.execute(
                select(employees.c.manager_id, employees.c.status).where(
                    employees.c.id == seen, employees.c.tenant_id == tenant_id
                )
            )
        ).first()
        if row is None:
            raise RuleBroken(f"manager {manager_id} is not an employee of this tenant")
        if seen == manager_id and row.status == EmployeeStatus.TERMINATED:
            raise RuleBroken(f"manager {manager_id} is terminated")
        if row.manager_id is None:
            return
        seen = row.manager_id


async def _manager_email(session: AsyncSession, row: RowMapping) -> str | None:
    if row["manager_id"] is None:
        return None
    email: str | None = await session.scalar(
        select(employees.c.email).where(
            employees.c.id == row["manager_id"], employees.c.tenant_id == row["tenant_id"]
        )
    )
    return email


__all__ = ["EmployeeStatus", "EmployeesApi", "build", "employees", "metadata"]
