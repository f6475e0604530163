"""The attendance service: check-ins, check-outs and manual attendance records.

Endpoints (all scoped to the caller's tenant; another tenant's record is a 404):

* ``POST /attendance/check-in``: open a record now (the injectable clock's now) for
  ``employee_id`` (the caller's own employee id by default; managers/admins may name
  anyone); ``attendance.marked``. A second open check-in is a 409.
* ``POST /attendance/check-out``: close the employee's open record; needs one (409);
  ``attendance.updated`` with ``hours_worked``.
* ``POST /attendance`` (manager, admin): a manual record; ``attendance.marked``.
* ``PATCH /attendance/{id}`` (manager, admin): change times, status or notes (a ``null``
  ``check_out`` reopens the record); ``attendance.updated``.
* ``DELETE /attendance/{id}`` (manager, admin): ``attendance.deleted``.
* ``GET /attendance``: a page of records, filtered by ``employee_id`` and a date range
  (``date_from``/``date_to``, on the working day); employees see only their own.
* ``GET /attendance/{id}``: one record (its employee, or a manager/admin).

Rules: one open record per employee (409, also enforced by a partial unique index);
``check_out`` not before ``check_in`` (422). Times must carry a time zone and are stored in
UTC; the working day (``attendance_date``) is the UTC date of the check-in unless given.
Every write also emits an ``audit.attendance.action`` event. The service keeps no employee
projection: it does not check that ``employee_id`` names an existing employee.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import (
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import KafkaSettings
from eventbus._sql import UTCDateTime
from eventbus._transport.base import Transport
from hrms.events import EventType, create_attendance_event
from hrms.service import Conflict, HrmsSettings, Principal, RuleBroken, Service
from hrms.service.auth import CurrentUser, Manager
from hrms.service.ids import Id
from hrms.services._common import (
    Clock,
    Journal,
    Page,
    Pagination,
    acting_employee,
    apply_changes,
    as_utc,
    changed,
    ensure_can_act_for,
    event_ids,
    get_or_404,
    insert_row,
    read_or_404,
    read_page,
    refuse_clearing,
    scope_to_self,
    tenant_rows,
    update_row,
    utcnow,
)

SOURCE = "attendance-management-service"
"""The ``source_service`` of this service's events (seed 001's client id)."""


class AttendanceStatus(StrEnum):
    """How the day went."""

    PRESENT = "present"
    LATE = "late"
    HALF_DAY = "half_day"
    REMOTE = "remote"


metadata = MetaData()
attendance = Table(
    "attendance",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False, index=True),
    Column("employee_id", Integer, nullable=False, index=True),
    Column("attendance_date", Date, nullable=False, index=True),
    Column("check_in", UTCDateTime, nullable=False),
    Column("check_out", UTCDateTime, nullable=True),
    Column("hours_worked", Float, nullable=True),
    Column("status", String(20), nullable=False),
    Column("notes", String(1000), nullable=True),
    Column("source", String(20), nullable=False),
    Column("recorded_by", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
_open = attendance.c.check_out.is_(None)
Index(
    "uq_attendance_open_per_employee",
    attendance.c.tenant_id,
    attendance.c.employee_id,
    unique=True,
    sqlite_where=_open,
    postgresql_where=_open,
)


# --------------------------------------------------------------------------- bodies

Notes = Annotated[str, Field(max_length=1000)]


class Punch(BaseModel):
    """A check-in or check-out: for the caller's own employee record unless named."""

    employee_id: Id | None = None


class ManualEntry(BaseModel):
    """A record entered by a manager."""

    employee_id: Id
    check_in: AwareDatetime
    check_out: AwareDatetime | None = None
    attendance_date: date | None = None
    status: AttendanceStatus = AttendanceStatus.PRESENT
    notes: Notes | None = None


class AttendanceChange(BaseModel):
    """Changes to a record; omitted fields stay, a ``null`` ``check_out`` reopens it."""

    check_in: AwareDatetime | None = None
    check_out: AwareDatetime | None = None
    attendance_date: date | None = None
    status: AttendanceStatus | None = None
    notes: Notes | None = None


class AttendanceOut(BaseModel):
    """An attendance record."""

    id: int
    tenant_id: str
    employee_id: int
    attendance_date: date
    check_in: datetime
    check_out: datetime | None
    hours_worked: float | None
    status: AttendanceStatus
    notes: str | None
    source: str
    recorded_by: int
    created_at: datetime
    updated_at: datetime


def _out(row: RowMapping) -> AttendanceOut:
    return AttendanceOut.model_validate(dict(row))


def hours_between(check_in: datetime, check_out: datetime | None) -> float | None:
    """Hours from ``check_in`` to ``check_out``, to the hundredth (``None`` while open).

    Raises:
        RuleBroken: ``check_out`` is before ``check_in``.
    """
    if check_out is None:
        return None
    if check_out < check_in:
        raise RuleBroken(
            f"check_out {check_out.isoformat()} is before check_in {check_in.isoformat()}: "
            "a record must end on or after it starts"
        )
    return round((check_out - check_in).total_seconds() / 3600, 2)


# --------------------------------------------------------------------------- the routes


class AttendanceApi:
    """The routes of the attendance service (each write: row, domain event, audit event)."""

    def __init__(self, service: Service, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self.journal = Journal(
            service,
            SOURCE,
            service.settings.attendance_topic,
            "attendance",
            EventType.AUDIT_ATTENDANCE_ACTION,
        )

    def router(self) -> APIRouter:
        """The ``/attendance`` routes."""
        router = APIRouter(prefix="/attendance", tags=["attendance"])
        router.add_api_route("/check-in", self.check_in, methods=["POST"], status_code=201)
        router.add_api_route("/check-out", self.check_out, methods=["POST"])
        router.add_api_route("", self.manual, methods=["POST"], status_code=201)
        router.add_api_route("", self.listing, methods=["GET"])
        router.add_api_route("/{attendance_id}", self.get, methods=["GET"])
        router.add_api_route("/{attendance_id}", self.update, methods=["PATCH"])
        router.add_api_route("/{attendance_id}", self.delete, methods=["DELETE"], status_code=204)
        return router

    # -- routes -----------------------------------------------------------------------------
    async def check_in(self, principal: CurrentUser, body: Punch | None = None) -> AttendanceOut:
        """Check in now (oneself, or as a manager/admin anyone); 409 if already checked in."""
        employee_id = acting_employee(principal, body.employee_id if body else None, "check in")
        now = as_utc(self.clock())
        values = {
            "employee_id": employee_id,
            "attendance_date": now.date(),
            "check_in": now,
            "check_out": None,
            "hours_worked": None,
            "status": AttendanceStatus.PRESENT.value,
            "notes": None,
            "source": "check_in",
        }
        return await self._insert(principal, values, "CHECK_IN")

    async def check_out(self, principal: CurrentUser, body: Punch | None = None) -> AttendanceOut:
        """Check out now; 409 without an open check-in."""
        employee_id = acting_employee(principal, body.employee_id if body else None, "check out")
        now = as_utc(self.clock())
        tenant = principal.tenant_id
        async with self.service.transaction() as session:
            before = await _open_record(session, tenant, employee_id)
            if before is None:
                raise Conflict(f"employee {employee_id} has no open check-in")
            given = {"check_out": now, "hours_worked": hours_between(before["check_in"], now)}
            row = await update_row(
                session, attendance, before, "attendance", updated_at=now, **given
            )
            await self._record(
                session,
                principal,
                row,
                EventType.ATTENDANCE_UPDATED,
                "CHECK_OUT",
                changed(before, given),
            )
        return _out(row)

    async def manual(self, body: ManualEntry, principal: Manager) -> AttendanceOut:
        """Enter a record by hand (manager, admin)."""
        check_in = as_utc(body.check_in)
        check_out = as_utc(body.check_out) if body.check_out else None
        values = {
            "employee_id": body.employee_id,
            "attendance_date": body.attendance_date or check_in.date(),
            "check_in": check_in,
            "check_out": check_out,
            "hours_worked": hours_between(check_in, check_out),
            "status": body.status.value,
            "notes": body.notes,
            "source": "manual",
        }
        return await self._insert(principal, values, "CREATE")

    async def listing(
        self,
        principal: CurrentUser,
        page: Pagination,
        employee_id: Id | None = None,
        date_from: Annotated[date | None, Query(description="first working day")] = None,
        date_to: Annotated[date | None, Query(description="last working day")] = None,
    ) -> Page[AttendanceOut]:
        """A page of records, latest first; employees see only their own."""
        employee_id = scope_to_self(principal, employee_id, "attendance")
        if date_from and date_to and date_to < date_from:
            raise RuleBroken(f"date_to {date_to} is before date_from {date_from}")
        query = tenant_rows(attendance, principal.tenant_id, employee_id=employee_id)
        if date_from is not None:
            query = query.where(attendance.c.attendance_date >= date_from)
        if date_to is not None:
            query = query.where(attendance.c.attendance_date <= date_to)
        query = query.order_by(attendance.c.check_in.desc(), attendance.c.id.desc())
        return await read_page(self.service, query, page, _out)

    async def get(self, attendance_id: Id, principal: CurrentUser) -> AttendanceOut:
        """One record (its employee, or a manager/admin)."""
        row = await read_or_404(
            self.service, attendance, attendance_id, principal.tenant_id, "attendance"
        )
        ensure_can_act_for(principal, row["employee_id"], "read")
        return _out(row)

    async def update(
        self, attendance_id: Id, body: AttendanceChange, principal: Manager
    ) -> AttendanceOut:
        """Change a record (manager, admin); hours are worked out again."""
        given = body.model_dump(exclude_unset=True)
        refuse_clearing(given, ("check_in", "attendance_date", "status"))
        tenant = principal.tenant_id
        try:
            async with self.service.transaction() as session:
                before = await get_or_404(session, attendance, attendance_id, tenant, "attendance")
                merged = {**before, **given}
                given["hours_worked"] = hours_between(merged["check_in"], merged["check_out"])
                if merged["check_out"] is None and before["check_out"] is not None:
                    await _no_open_record(session, tenant, before["employee_id"])
                row, diff = await apply_changes(
                    session, attendance, before, given, "attendance", self.clock
                )
                if diff:
                    await self._record(
                        session, principal, row, EventType.ATTENDANCE_UPDATED, "UPDATE", diff
                    )
        except IntegrityError as exc:
            raise Conflict(_RACE) from exc
        return _out(row)

    async def delete(self, attendance_id: Id, principal: Manager) -> Response:
        """Delete a record (manager, admin)."""
        tenant = principal.tenant_id
        async with self.service.transaction() as session:
            row = await get_or_404(session, attendance, attendance_id, tenant, "attendance")
            await session.execute(delete(attendance).where(attendance.c.id == attendance_id))
            await self._record(session, principal, row, EventType.ATTENDANCE_DELETED, "DELETE", {})
        return Response(status_code=204)

    # -- helpers ----------------------------------------------------------------------------
    async def _insert(
        self, principal: Principal, values: dict[str, Any], action: str
    ) -> AttendanceOut:
        """A new record (open or closed) with its ``attendance.marked`` event."""
        tenant = principal.tenant_id
        now = self.clock()
        try:
            async with self.service.transaction() as session:
                if values["check_out"] is None:
                    await _no_open_record(session, tenant, values["employee_id"])
                row = await insert_row(
                    session,
                    attendance,
                    tenant,
                    "attendance",
                    recorded_by=principal.user_id,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                await self._record(
                    session,
                    principal,
                    row,
                    EventType.ATTENDANCE_MARKED,
                    action,
                    changed({}, values),
                )
        except IntegrityError as exc:
            raise Conflict(_RACE) from exc
        return _out(row)

    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RowMapping,
        event_type: EventType,
        action: str,
        changes: dict[str, Any],
    ) -> None:
        """The attendance event (the whole record) and its audit event."""
        event = create_attendance_event(
            source_service=SOURCE,
            employee_id=row["employee_id"],
            event_type=event_type,
            attendance_id=row["id"],
            attendance_date=row["attendance_date"],
            check_in=row["check_in"],
            check_out=row["check_out"],
            status=row["status"],
            hours_worked=row["hours_worked"],
            **event_ids(principal),
        )
        await self.journal.record(
            session, principal, event, action=action, resource_id=row["id"], changes=changes
        )


_RACE = "the employee already has an open check-in (taken by a concurrent write)"


async def _open_record(
    session: AsyncSession, tenant_id: str, employee_id: int
) -> RowMapping | None:
    query = select(attendance).where(
        attendance.c.tenant_id == tenant_id, attendance.c.employee_id == employee_id, _open
    )
    return (await session.execute(query)).mappings().first()


async def _no_open_record(session: AsyncSession, tenant_id: str, employee_id: int) -> None:
    """409 if the employee already has an open record."""
    row = await _open_record(session, tenant_id, employee_id)
    if row is not None:
        raise Conflict(
            f"employee {employee_id} already has an open check-in "
            f"(attendance {row['id']} since {row['check_in'].isoformat()})"
        )


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    clock: Clock = utcnow,
) -> Service:
    """Build the attendance service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        clock: the current time: check-in and check-out times come from it.
    """
    service = Service("attendance", metadata, settings=settings, kafka=kafka, transport=transport)
    service.include(AttendanceApi(service, clock).router())
    return service


__all__ = ["AttendanceApi", "AttendanceStatus", "attendance", "build", "hours_between", "metadata"]
