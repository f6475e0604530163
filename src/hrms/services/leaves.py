"""The leaves service: leave requests, their approval, and leave balances.

Endpoints (all scoped to the caller's tenant; another tenant's leave is a 404):

* ``POST /leaves``: request a leave, for oneself (``employee_id`` defaults to the caller's
  employee id) or, as a manager/admin, for anyone; ``leave.requested``.
* ``GET /leaves``: a page of leaves, filtered by ``employee_id`` and ``status``;
  employees see only their own.
* ``GET /leaves/{id}``: one leave (its employee, or a manager/admin).
* ``GET /leaves/balance/{employee_id}?year=``: allowance, approved, pending and remaining
  days per leave type (the employee, or a manager/admin).
* ``PATCH /leaves/{id}``: change a pending leave (its employee, or a manager/admin);
  ``leave.updated``.
* ``POST /leaves/{id}/approve`` and ``/reject`` (manager, admin; not one's own leave):
  ``leave.approved`` / ``leave.rejected`` and a notification to the employee
  (``leave_approved`` / ``leave_rejected``).
* ``POST /leaves/{id}/cancel``: a pending or approved leave that has not ended (its
  employee, or a manager/admin); ``leave.cancelled``.

A request and a cancellation also notify the employee's manager (``leave_requested``,
``leave_cancelled``), at the address the projection knows.

Rules: ``end_date`` on or after ``start_date`` (422); no overlap with the employee's other
pending or approved leaves (409, naming the leave); a yearly allowance per leave type
(:data:`ALLOWANCES`: annual 20 days, sick 10, unpaid unlimited), counted in calendar days,
both ends included, per calendar year; pending leaves count against it, so approving never
overdraws (422 ``insufficient annual balance: requested N, remaining M``).

Every write also emits an ``audit.leave.action`` event.

**Employee projection.** The service keeps a local copy of the employees it has heard of
(``employees`` table: e-mail, name, manager, status) by consuming ``employee-queue``. It
is eventually consistent: a leave for an employee the projection does not know (yet) is
accepted, since the employees service is the authority and its event may still be on the
way; a notification to an address the projection does not know is skipped with a log line.
Only an employee the projection knows as terminated is refused (422).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import KafkaSettings
from eventbus._sql import UTCDateTime
from eventbus._transport.base import Transport
from hrms.events import EmployeeEvent, EventType, create_leave_event
from hrms.service import Conflict, Forbidden, HrmsSettings, Principal, RuleBroken, Service
from hrms.service.auth import CurrentUser, Manager
from hrms.service.ids import Id
from hrms.services._common import (
    Clock,
    Journal,
    Page,
    Pagination,
    acting_employee,
    apply_changes,
    changed,
    ensure_can_act_for,
    event_ids,
    find_row,
    get_or_404,
    insert_row,
    jsonable,
    read_or_404,
    read_page,
    refuse_clearing,
    scope_to_self,
    tenant_rows,
    update_row,
    utcnow,
)

logger = logging.getLogger("hrms.services.leaves")

SOURCE = "leave-management-service"
"""The ``source_service`` of this service's events (seed 001's client id)."""


class LeaveType(StrEnum):
    """The kinds of leave."""

    ANNUAL = "annual"
    SICK = "sick"
    UNPAID = "unpaid"


class LeaveStatus(StrEnum):
    """Where a leave request stands; only pending and approved leaves are active."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


ACTIVE = (LeaveStatus.PENDING.value, LeaveStatus.APPROVED.value)
"""Statuses that occupy days (for overlaps) and use balance."""

ALLOWANCES: dict[LeaveType, int | None] = {
    LeaveType.ANNUAL: 20,
    LeaveType.SICK: 10,
    LeaveType.UNPAID: None,
}
"""Days per calendar year of each leave type (``None``: unlimited); ``build`` may override."""


metadata = MetaData()
leaves = Table(
    "leaves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False, index=True),
    Column("employee_id", Integer, nullable=False, index=True),
    Column("leave_type", String(20), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("days", Integer, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("reason", String(1000), nullable=True),
    Column("approver_id", Integer, nullable=True),
    Column("decision_note", String(1000), nullable=True),
    Column("requested_by", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
employees = Table(
    "employees",
    metadata,
    Column("tenant_id", String(100), primary_key=True),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(320), nullable=True),
    Column("name", String(200), nullable=True),
    Column("user_id", Integer, nullable=True),
    Column("manager_id", Integer, nullable=True),
    Column("manager_email", String(320), nullable=True),
    Column("status", String(20), nullable=True),
    Column("event_at", UTCDateTime, nullable=False),
)
"""The projection of ``employee-queue``: what this service knows of each employee."""


# --------------------------------------------------------------------------- bodies

Reason = Annotated[str, Field(max_length=1000)]


class LeaveRequest(BaseModel):
    """A new leave request."""

    employee_id: Id | None = None
    leave_type: LeaveType
    start_date: date
    end_date: date
    reason: Reason | None = None


class LeaveChange(BaseModel):
    """Changes to a pending leave; omitted fields stay."""

    leave_type: LeaveType | None = None
    start_date: date | None = None
    end_date: date | None = None
    reason: Reason | None = None


class Decision(BaseModel):
    """An approval or rejection, with an optional note for the employee."""

    note: Reason | None = None


class LeaveOut(BaseModel):
    """A leave request."""

    id: int
    tenant_id: str
    employee_id: int
    leave_type: LeaveType
    start_date: date
    end_date: date
    days: int
    status: LeaveStatus
    reason: str | None
    approver_id: int | None
    decision_note: str | None
    requested_by: int
    created_at: datetime
    updated_at: datetime


class Balance(BaseModel):
    """One leave type's balance in a year (``allowance``/``remaining`` ``None``: unlimited)."""

    leave_type: LeaveType
    allowance: int | None
    approved: int
    pending: int
    remaining: int | None


class Balances(BaseModel):
    """An employee's balances in a year."""

    employee_id: int
    year: int
    balances: list[Balance]


def _out(row: RowMapping) -> LeaveOut:
    return LeaveOut.model_validate(dict(row))


def days_in_year(start: date, end: date, year: int) -> int:
    """Calendar days of ``start``..``end`` (both included) that fall in ``year``."""
    lo = max(start, date(year, 1, 1))
    hi = min(end, date(year, 12, 31))
    return max((hi - lo).days + 1, 0)


# --------------------------------------------------------------------------- the routes


class LeavesApi:
    """The routes of the leaves service (each write: row, domain event, audit event)."""

    def __init__(
        self, service: Service, clock: Clock, allowances: Mapping[LeaveType, int | None]
    ) -> None:
        self.service = service
        self.clock = clock
        self.allowances = dict(allowances)
        self.journal = Journal(
            service, SOURCE, service.settings.leave_topic, "leave", EventType.AUDIT_LEAVE_ACTION
        )

    def router(self) -> APIRouter:
        """The ``/leaves`` routes."""
        router = APIRouter(prefix="/leaves", tags=["leaves"])
        router.add_api_route("", self.request, methods=["POST"], status_code=201)
        router.add_api_route("", self.listing, methods=["GET"])
        router.add_api_route("/balance/{employee_id}", self.balance, methods=["GET"])
        router.add_api_route("/{leave_id}", self.get, methods=["GET"])
        router.add_api_route("/{leave_id}", self.update, methods=["PATCH"])
        router.add_api_route("/{leave_id}/approve", self.approve, methods=["POST"])
        router.add_api_route("/{leave_id}/reject", self.reject, methods=["POST"])
        router.add_api_route("/{leave_id}/cancel", self.cancel, methods=["POST"])
        return router

    # -- routes -----------------------------------------------------------------------------
    async def request(self, body: LeaveRequest, principal: CurrentUser) -> LeaveOut:
        """Request a leave (for oneself, or as a manager/admin for anyone)."""
        employee_id = acting_employee(principal, body.employee_id, "request leave for")
        now = self.clock()
        tenant = principal.tenant_id
        async with self.service.transaction() as session:
            await _check_not_terminated(session, tenant, employee_id)
            await self._check_rules(
                session, tenant, employee_id, body.leave_type, body.start_date, body.end_date
            )
            values = {
                "employee_id": employee_id,
                "leave_type": body.leave_type.value,
                "start_date": body.start_date,
                "end_date": body.end_date,
                "days": (body.end_date - body.start_date).days + 1,
                "status": LeaveStatus.PENDING.value,
                "reason": body.reason,
            }
            row = await insert_row(
                session,
                leaves,
                tenant,
                "leave",
                requested_by=principal.user_id,
                created_at=now,
                updated_at=now,
                **values,
            )
            await self._record(
                session, principal, row, EventType.LEAVE_REQUESTED, "REQUEST", changed({}, values)
            )
            await self._notify(session, principal, row, EventType.LEAVE_REQUESTED, to_manager=True)
        return _out(row)

    async def listing(
        self,
        principal: CurrentUser,
        page: Pagination,
        employee_id: Id | None = None,
        status: LeaveStatus | None = None,
    ) -> Page[LeaveOut]:
        """A page of leaves, latest first; employees see only their own."""
        employee_id = scope_to_self(principal, employee_id, "leaves")
        query = tenant_rows(
            leaves, principal.tenant_id, employee_id=employee_id, status=status
        ).order_by(leaves.c.start_date.desc(), leaves.c.id.desc())
        return await read_page(self.service, query, page, _out)

    async def balance(
        self,
        employee_id: Id,
        principal: CurrentUser,
        year: Annotated[int | None, Query(ge=1900, le=9999)] = None,
    ) -> Balances:
        """Leave balances of an employee in ``year`` (this year by default)."""
        ensure_can_act_for(principal, employee_id, "read the balance of")
        year = year or self.clock().date().year
        async with self.service.sessions() as session:
            rows = await _active_in_years(session, principal.tenant_id, employee_id, year, year)
        out = []
        for leave_type in LeaveType:
            days = dict.fromkeys(ACTIVE, 0)
            for r in rows:
                if r["leave_type"] == leave_type.value:
                    days[r["status"]] += days_in_year(r["start_date"], r["end_date"], year)
            approved, pending = days[LeaveStatus.APPROVED.value], days[LeaveStatus.PENDING.value]
            allowance = self.allowances.get(leave_type)
            remaining = None if allowance is None else max(allowance - approved - pending, 0)
            out.append(
                Balance(
                    leave_type=leave_type,
                    allowance=allowance,
                    approved=approved,
                    pending=pending,
                    remaining=remaining,
                )
            )
        return Balances(employee_id=employee_id, year=year, balances=out)

    async def get(self, leave_id: Id, principal: CurrentUser) -> LeaveOut:
        """One leave (its employee, or a manager/admin)."""
        row = await read_or_404(self.service, leaves, leave_id, principal.tenant_id, "leave")
        ensure_can_act_for(principal, row["employee_id"], "read")
        return _out(row)

    async def update(self, leave_id: Id, body: LeaveChange, principal: CurrentUser) -> LeaveOut:
        """Change a pending leave (its employee, or a manager/admin)."""
        given = body.model_dump(exclude_unset=True)
        refuse_clearing(given, ("leave_type", "start_date", "end_date"))
        tenant = principal.tenant_id
        async with self.service.transaction() as session:
            before = await get_or_404(session, leaves, leave_id, tenant, "leave")
            ensure_can_act_for(principal, before["employee_id"], "change")
            _require_pending(before, "updated")
            merged = {**before, **given}
            leave_type = LeaveType(merged["leave_type"])
            start, end = merged["start_date"], merged["end_date"]
            await self._check_rules(
                session, tenant, before["employee_id"], leave_type, start, end, exclude=leave_id
            )
            given["days"] = (end - start).days + 1
            if "leave_type" in given:
                given["leave_type"] = leave_type.value
            row, diff = await apply_changes(session, leaves, before, given, "leave", self.clock)
            if diff:
                await self._record(session, principal, row, EventType.LEAVE_UPDATED, "UPDATE", diff)
        return _out(row)

    async def approve(
        self, leave_id: Id, principal: Manager, body: Decision | None = None
    ) -> LeaveOut:
        """Approve a pending leave (manager, admin) and tell the employee."""
        return await self._decide(leave_id, principal, body, LeaveStatus.APPROVED)

    async def reject(
        self, leave_id: Id, principal: Manager, body: Decision | None = None
    ) -> LeaveOut:
        """Reject a pending leave (manager, admin) and tell the employee."""
        return await self._decide(leave_id, principal, body, LeaveStatus.REJECTED)

    async def cancel(self, leave_id: Id, principal: CurrentUser) -> LeaveOut:
        """Cancel a pending or approved leave that has not ended (its employee, or a manager)."""
        async with self.service.transaction() as session:
            before = await get_or_404(session, leaves, leave_id, principal.tenant_id, "leave")
            ensure_can_act_for(principal, before["employee_id"], "cancel")
            if before["status"] not in ACTIVE:
                raise Conflict(
                    f"leave {leave_id} is {before['status']}: "
                    "only pending or approved leaves can be cancelled"
                )
            if before["end_date"] < self.clock().date():
                raise Conflict(
                    f"leave {leave_id} ended on {before['end_date']}: "
                    "past leaves cannot be cancelled"
                )
            row = await self._set_status(session, before, LeaveStatus.CANCELLED, {})
            await self._record(
                session,
                principal,
                row,
                EventType.LEAVE_CANCELLED,
                "CANCEL",
                {"status": row["status"], "previous_status": before["status"]},
            )
            await self._notify(session, principal, row, EventType.LEAVE_CANCELLED, to_manager=True)
        return _out(row)

    # -- rules ------------------------------------------------------------------------------
    async def _check_rules(
        self,
        session: AsyncSession,
        tenant_id: str,
        employee_id: int,
        leave_type: LeaveType,
        start: date,
        end: date,
        exclude: int | None = None,
    ) -> None:
        """Dates in order (422), no overlap (409), enough balance (422)."""
        if end < start:
            raise RuleBroken(
                f"end_date {end} is before start_date {start}: "
                "a leave must end on or after the day it starts"
            )
        others = [
            r
            for r in await _active_in_years(session, tenant_id, employee_id, start.year, end.year)
            if r["id"] != exclude
        ]
        clash = next((r for r in others if r["start_date"] <= end and r["end_date"] >= start), None)
        if clash is not None:
            raise Conflict(
                f"overlaps leave {clash['id']} ({clash['start_date']} to {clash['end_date']}, "
                f"{clash['status']})"
            )
        allowance = self.allowances.get(leave_type)
        if allowance is None:
            return
        same_type = [r for r in others if r["leave_type"] == leave_type.value]
        for year in range(start.year, end.year + 1):
            requested = days_in_year(start, end, year)
            used = sum(days_in_year(r["start_date"], r["end_date"], year) for r in same_type)
            remaining = max(allowance - used, 0)
            if requested > remaining:
                where = f" in {year}" if start.year != end.year else ""
                raise RuleBroken(
                    f"insufficient {leave_type.value} balance{where}: "
                    f"requested {requested}, remaining {remaining}"
                )

    # -- helpers ----------------------------------------------------------------------------
    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RowMapping,
        event_type: EventType,
        action: str,
        changes: dict[str, Any],
    ) -> None:
        """The leave event (the whole request) and its audit event."""
        event = create_leave_event(
            source_service=SOURCE,
            leave_id=row["id"],
            employee_id=row["employee_id"],
            event_type=event_type,
            leave_type=row["leave_type"],
            start_date=row["start_date"],
            end_date=row["end_date"],
            status=row["status"],
            reason=row["reason"],
            approver_id=row["approver_id"],
            days=row["days"],
            **event_ids(principal),
        )
        await self.journal.record(
            session, principal, event, action=action, resource_id=row["id"], changes=changes
        )

    async def _set_status(
        self, session: AsyncSession, before: RowMapping, new: LeaveStatus, extra: dict[str, Any]
    ) -> RowMapping:
        return await update_row(
            session, leaves, before, "leave", status=new.value, updated_at=self.clock(), **extra
        )

    async def _decide(
        self, leave_id: int, principal: Principal, body: Decision | None, new: LeaveStatus
    ) -> LeaveOut:
        approved = new is LeaveStatus.APPROVED
        verb = "approved" if approved else "rejected"
        note = body.note if body else None
        async with self.service.transaction() as session:
            before = await get_or_404(session, leaves, leave_id, principal.tenant_id, "leave")
            _require_pending(before, verb)
            if principal.employee_id == before["employee_id"]:
                raise Forbidden(f"a leave cannot be {verb} by the employee who requested it")
            row = await self._set_status(
                session,
                before,
                new,
                {"approver_id": principal.user_id, "decision_note": note},
            )
            event_type = EventType.LEAVE_APPROVED if approved else EventType.LEAVE_REJECTED
            await self._record(
                session,
                principal,
                row,
                event_type,
                "APPROVE" if approved else "REJECT",
                {"status": row["status"], "decision_note": note},
            )
            await self._notify(session, principal, row, event_type, to_manager=False)
        return _out(row)

    async def _notify(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RowMapping,
        event_type: EventType,
        *,
        to_manager: bool,
    ) -> None:
        """Tell the employee (a decision) or their manager (a request, a cancellation).

        Addresses come from the employee projection; when it does not know the address
        (yet), the notification is skipped with a log line.
        """
        tenant = row["tenant_id"]
        who = await _projected(session, tenant, row["employee_id"])
        recipient = who
        email = who["email"] if who else None
        if to_manager:
            boss = await _projected(session, tenant, who["manager_id"]) if who else None
            recipient = boss
            email = (boss["email"] if boss else None) or (who["manager_email"] if who else None)
        template = _TEMPLATES[event_type]
        if not email:
            logger.info(
                "no e-mail known for %semployee %s (projection not caught up?): "
                "%s notification of leave %s skipped",
                "the manager of " if to_manager else "",
                row["employee_id"],
                template,
                row["id"],
            )
            return
        name = who["name"] if who else None
        await self.journal.notify(
            session,
            principal,
            event_type=event_type,
            recipient_email=email,
            recipient_name=recipient["name"] if recipient else None,
            subject=_SUBJECTS[event_type].format(leave_type=row["leave_type"], name=name),
            template_name=template,
            template_data={
                "name": name,
                "employee_name": name,
                "leave_id": row["id"],
                "leave_type": row["leave_type"],
                "start_date": jsonable(row["start_date"]),
                "end_date": jsonable(row["end_date"]),
                "days": row["days"],
                "reason": row["reason"],
                "note": row["decision_note"],
            },
            user_id=recipient["user_id"] if recipient else None,
        )


_TEMPLATES = {
    EventType.LEAVE_REQUESTED: "leave_requested",
    EventType.LEAVE_APPROVED: "leave_approved",
    EventType.LEAVE_REJECTED: "leave_rejected",
    EventType.LEAVE_CANCELLED: "leave_cancelled",
}
_SUBJECTS = {
    EventType.LEAVE_REQUESTED: "{name} requested {leave_type} leave",
    EventType.LEAVE_APPROVED: "Your {leave_type} leave was approved",
    EventType.LEAVE_REJECTED: "Your {leave_type} leave was rejected",
    EventType.LEAVE_CANCELLED: "{name}'s {leave_type} leave was cancelled",
}


async def _projected(
    session: AsyncSession, tenant_id: str, employee_id: int | None
) -> RowMapping | None:
    """The projection's row of an employee, if it knows them."""
    if employee_id is None:
        return None
    return await find_row(session, employees, tenant_id=tenant_id, id=employee_id)


def _require_pending(row: RowMapping, verb: str) -> None:
    if row["status"] != LeaveStatus.PENDING:
        raise Conflict(f"leave {row['id']} is {row['status']}: only pending leaves can be {verb}")


async def _active_in_years(
    session: AsyncSession, tenant_id: str, employee_id: int, first: int, last: int
) -> list[RowMapping]:
    """The employee's pending and approved leaves touching years ``first``..``last``."""
    query = select(leaves).where(
        leaves.c.tenant_id == tenant_id,
        leaves.c.employee_id == employee_id,
        leaves.c.status.in_(ACTIVE),
        leaves.c.end_date >= date(first, 1, 1),
        leaves.c.start_date <= date(last, 12, 31),
    )
    return list((await session.execute(query.order_by(leaves.c.start_date))).mappings().all())


async def _check_not_terminated(session: AsyncSession, tenant_id: str, employee_id: int) -> None:
    known = await _projected(session, tenant_id, employee_id)
    if known is not None and known["status"] == "terminated":
        raise RuleBroken(f"employee {employee_id} is terminated: no new leave can be requested")


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    clock: Clock = utcnow,
    allowances: Mapping[LeaveType, int | None] | None = None,
) -> Service:
    """Build the leaves service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        clock: the current time ("today" for cancellations; timestamps).
        allowances: days per year per leave type, over :data:`ALLOWANCES`.
    """
    service = Service("leaves", metadata, settings=settings, kafka=kafka, transport=transport)
    api = LeavesApi(service, clock, {**ALLOWANCES, **(allowances or {})})
    service.include(api.router())

    @service.consumer(service.settings.employee_topic)
    async def on_employee(event: EmployeeEvent, session: AsyncSession) -> None:
        """Keep the local copy of the employee up to date (last event wins)."""
        await project_employee(session, event)

    return service


_PROJECTED = ("email", "name", "user_id", "manager_id", "manager_email", "status")


def _as_int(value: object) -> int | None:
    try:
        return None if value is None else int(str(value))
    except ValueError:
        return None


async def project_employee(session: AsyncSession, event: EmployeeEvent) -> None:
    """Upsert the employee of ``event`` into the projection.

    Only the payload fields the event carries are written (a producer that sends only the
    name does not clear the e-mail); an event older than the one last applied is ignored.
    """
    data = event.data
    employee_id = _as_int(data.employee_id)
    if event.tenant_id is None or employee_id is None:
        logger.warning(
            "%s %s skipped: no tenant or no integer employee id",
            event.event_type,
            event.event_id,
        )
        return
    values: dict[str, Any] = {}
    for name in _PROJECTED:
        if name in data.model_fields_set:
            value = getattr(data, name)
            values[name] = _as_int(value) if name in ("user_id", "manager_id") else value
    key = (employees.c.tenant_id == event.tenant_id) & (employees.c.id == employee_id)
    last = await session.scalar(select(employees.c.event_at).where(key))
    if last is None:
        await session.execute(
            insert(employees).values(
                tenant_id=event.tenant_id, id=employee_id, event_at=event.timestamp, **values
            )
        )
    elif last <= event.timestamp:
        await session.execute(
            update(employees).where(key).values(event_at=event.timestamp, **values)
        )
    else:
        logger.info("%s %s is older than the projection: ignored", event.event_type, event.event_id)


__all__ = [
    "ALLOWANCES",
    "LeaveStatus",
    "LeaveType",
    "LeavesApi",
    "build",
    "days_in_year",
    "employees",
    "leaves",
    "metadata",
    "project_employee",
]
