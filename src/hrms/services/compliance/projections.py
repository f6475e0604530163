"""Local projections of employees, leaves and attendance, kept from the services' events.

Each event is merged into the row it concerns: a field the event leaves out (``None``)
keeps its previous value, so partial updates (a check-out alone) do not erase data.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, insert, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from hrms.events import AttendanceEvent, EmployeeEvent, EventType, LeaveEvent
from hrms.services._common import find_row
from hrms.services.compliance.tables import attendance, employees, leaves

TERMINATED = "terminated"
APPROVED = "approved"

_LEAVE_STATUS: dict[str, str] = {
    EventType.LEAVE_REQUESTED.value: "pending",
    EventType.LEAVE_APPROVED.value: APPROVED,
    EventType.LEAVE_REJECTED.value: "rejected",
    EventType.LEAVE_CANCELLED.value: "cancelled",
}


def tenant_of(tenant_id: str | None) -> str:
    """The tenant column value of an event's tenant (``""`` for events without one)."""
    return tenant_id or ""


def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the ``None`` ones (the fields an event left out)."""
    return {k: v for k, v in values.items() if v is not None}


def _where(table: Table, keys: dict[str, Any]) -> list[ColumnElement[bool]]:
    return [table.c[k] == v for k, v in keys.items()]


async def _set(
    session: AsyncSession, table: Table, keys: dict[str, Any], values: dict[str, Any]
) -> RowMapping:
    """Update the row at ``keys`` with ``values`` and return it."""
    await session.execute(update(table).where(*_where(table, keys)).values(**values))
    row = await find_row(session, table, **keys)
    assert row is not None
    return row


async def _upsert(
    session: AsyncSession, table: Table, keys: dict[str, Any], values: dict[str, Any]
) -> RowMapping:
    """Insert the row at ``keys``, or merge ``values`` into it; return it."""
    old = await find_row(session, table, **keys)
    if old is None:
        await session.execute(insert(table).values(**keys, **values))
        row = await find_row(session, table, **keys)
        assert row is not None
        return row
    return await _set(session, table, keys, _given(values))


async def apply_employee(session: AsyncSession, event: EmployeeEvent, now: datetime) -> RowMapping:
    """Merge an ``employee.*`` event into the employee projection; return the row."""
    data = event.data
    status = data.status.lower() if data.status else None
    if event.event_type == EventType.EMPLOYEE_TERMINATED.value:
        status = TERMINATED
    values: dict[str, Any] = {
        "status": status,
        "email": data.email,
        "name": data.name,
        "manager_id": None if data.manager_id is None else str(data.manager_id),
        "manager_email": data.manager_email,
        "updated_at": now,
    }
    keys = {"tenant_id": tenant_of(event.tenant_id), "employee_id": str(data.employee_id)}
    row = await _upsert(session, employees, keys, values)
    if row["status"] == TERMINATED and row["terminated_at"] is None:
        row = await _set(session, employees, keys, {"terminated_at": event.timestamp})
    elif row["status"] != TERMINATED and row["terminated_at"] is not None:
        row = await _set(session, employees, keys, {"terminated_at": None})
    return row


async def apply_leave(session: AsyncSession, event: LeaveEvent, now: datetime) -> RowMapping:
    """Merge a ``leave.*`` event into the leave projection; return the row."""
    data = event.data
    status = _LEAVE_STATUS.get(event.event_type)
    if status is None and data.status:
        status = data.status.lower()
    values: dict[str, Any] = {
        "employee_id": str(data.employee_id),
        "start_date": data.start_date,
        "end_date": data.end_date,
        "status": status,
        "updated_at": now,
    }
    keys = {"tenant_id": tenant_of(event.tenant_id), "leave_id": str(data.leave_id)}
    return await _upsert(session, leaves, keys, values)


def attendance_key(event: AttendanceEvent) -> str | None:
    """The projection key of an attendance event's record (its id, else employee and day)."""
    data = event.data
    if data.attendance_id is not None:
        return str(data.attendance_id)
    day = data.attendance_date or (data.check_in.date() if data.check_in else None)
    if day is None:
        return None
    return f"{data.employee_id}@{day.isoformat()}"


async def apply_attendance(
    session: AsyncSession, event: AttendanceEvent, now: datetime
) -> RowMapping | None:
    """Merge an ``attendance.*`` event into the projection.

    Returns the row, or ``None`` when the record was deleted or cannot be identified.
    """
    data = event.data
    key = attendance_key(event)
    if key is None:
        return None
    keys = {"tenant_id": tenant_of(event.tenant_id), "record_key": key}
    if event.event_type == EventType.ATTENDANCE_DELETED.value:
        await session.execute(delete(attendance).where(*_where(attendance, keys)))
        return None
    work_date: date | None = data.attendance_date or (
        data.check_in.date() if data.check_in else None
    )
    values: dict[str, Any] = {
        "attendance_id": None if data.attendance_id is None else str(data.attendance_id),
        "employee_id": str(data.employee_id),
        "work_date": work_date,
        "check_in": utc(data.check_in),
        "check_out": utc(data.check_out),
        "hours": data.hours_worked,
        "updated_at": now,
    }
    row = await _upsert(session, attendance, keys, values)
    if row["hours"] is None and row["check_in"] is not None and row["check_out"] is not None:
        hours = (row["check_out"] - row["check_in"]).total_seconds() / 3600
        row = await _set(session, attendance, keys, {"hours": round(hours, 4)})
    return row
