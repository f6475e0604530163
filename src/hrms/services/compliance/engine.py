"""The event-driven rules, applied in the consumer's transaction (with the inbox).

Each employee, leave or attendance event first updates the projections, then the rules it
may break are evaluated: more than ``max_weekly_hours`` in an ISO week, a check-in during
approved leave (whichever of the two arrives first), and activity of a terminated
employee. A finding and its events commit exactly once per event.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent
from hrms.events import AttendanceEvent, EmployeeEvent, LeaveEvent
from hrms.service import Service
from hrms.services._common import find_row
from hrms.services.compliance import projections
from hrms.services.compliance.findings import Finding, iso, record
from hrms.services.compliance.rules import Clock, ComplianceRules, Rule, iso_week
from hrms.services.compliance.tables import attendance, employees, leaves

logger = logging.getLogger("hrms.compliance")


class EventRules:
    """Applies rules 1, 3 and 4 to each consumed event.

    Args:
        service: the compliance service (settings, outbox).
        rules: the thresholds.
        clock: the current time.
    """

    def __init__(self, service: Service, rules: ComplianceRules, clock: Clock) -> None:
        self.service = service
        self.rules = rules
        self.clock = clock

    async def handle(self, event: BaseEvent, session: AsyncSession) -> None:
        """Update the projections with ``event`` and apply the rules it may trigger."""
        now = self.clock()
        if isinstance(event, EmployeeEvent):
            await projections.apply_employee(session, event, now)
        elif isinstance(event, LeaveEvent):
            await self._on_leave(session, event, now)
        elif isinstance(event, AttendanceEvent):
            await self._on_attendance(session, event, now)
        else:
            logger.debug("ignoring %s %s", event.event_type, event.event_id)

    async def _on_leave(self, session: AsyncSession, event: LeaveEvent, now: datetime) -> None:
        leave = await projections.apply_leave(session, event, now)
        await self._after_termination(session, event, str(event.data.employee_id), now)
        if leave["status"] != projections.APPROVED or leave["start_date"] is None:
            return
        end = leave["end_date"] or leave["start_date"]
        rows = await session.execute(
            select(attendance).where(
                attendance.c.tenant_id == leave["tenant_id"],
                attendance.c.employee_id == leave["employee_id"],
                attendance.c.check_in.is_not(None),
                attendance.c.work_date >= leave["start_date"],
                attendance.c.work_date <= end,
            )
        )
        for row in rows.mappings().all():
            await self._record(session, self._leave_finding(row, leave, event), now)

    async def _on_attendance(
        self, session: AsyncSession, event: AttendanceEvent, now: datetime
    ) -> None:
        row = await projections.apply_attendance(session, event, now)
        await self._after_termination(session, event, str(event.data.employee_id), now)
        if row is None or row["work_date"] is None:
            return
        if row["check_in"] is not None:
            await self._check_in_during_leave(session, row, event, now)
        await self._weekly_hours(session, row, event, now)

    async def _record(self, session: AsyncSession, finding: Finding, now: datetime) -> int | None:
        return await record(self.service, session, self.rules, finding, now)

    async def _after_termination(
        self, session: AsyncSession, event: BaseEvent, employee_id: str, now: datetime
    ) -> None:
        """Rule 4: activity (an attendance or leave event) of a terminated employee."""
        if event.event_type in self.rules.termination_ignored_events:
            return
        tenant = projections.tenant_of(event.tenant_id)
        emp = await find_row(session, employees, tenant_id=tenant, employee_id=employee_id)
        if emp is None or emp["status"] != projections.TERMINATED:
            return
        terminated_at = emp["terminated_at"]
        if terminated_at is not None and event.timestamp < terminated_at:
            return  # the activity happened before the termination; it only arrived late
        await self._record(
            session,
            Finding(
                tenant_id=tenant,
                employee_id=employee_id,
                rule=Rule.ACTIVITY_AFTER_TERMINATION,
                subject=f"event:{event.event_id}",
                description=(
                    f"{event.event_type} for employee {employee_id}, "
                    f"who was terminated at {iso(terminated_at)}"
                ),
                details={
                    "event_type": event.event_type,
                    "event_id": str(event.event_id),
                    "event_timestamp": event.timestamp.isoformat(),
                    "terminated_at": iso(terminated_at),
                },
                source_event_id=str(event.event_id),
            ),
            now,
        )

    async def _check_in_during_leave(
        self, session: AsyncSession, row: RowMapping, event: BaseEvent, now: datetime
    ) -> None:
        """Rule 3: a check-in on a day of the employee's approved leave."""
        leave = (
            (
                await session.execute(
                    select(leaves)
                    .where(
                        leaves.c.tenant_id == row["tenant_id"],
                        leaves.c.employee_id == row["employee_id"],
                        leaves.c.status == projections.APPROVED,
                        leaves.c.start_date <= row["work_date"],
                        or_(
                            leaves.c.end_date >= row["work_date"],
                            (leaves.c.end_date.is_(None))
                            & (leaves.c.start_date == row["work_date"]),
                        ),
                    )
                    .order_by(leaves.c.start_date)
                )
            )
            .mappings()
            .first()
        )
        if leave is not None:
            await self._record(session, self._leave_finding(row, leave, event), now)

    @staticmethod
    def _leave_finding(row: RowMapping, leave: RowMapping, event: BaseEvent) -> Finding:
        return Finding(
            tenant_id=row["tenant_id"],
            employee_id=row["employee_id"],
            rule=Rule.CHECK_IN_DURING_LEAVE,
            subject=f"attendance:{row['record_key']}",
            description=(
                f"employee {row['employee_id']} checked in on {row['work_date']} during "
                f"approved leave {leave['leave_id']} ({leave['start_date']} to "
                f"{leave['end_date'] or leave['start_date']})"
            ),
            details={
                "attendance_id": row["attendance_id"],
                "work_date": iso(row["work_date"]),
                "check_in": iso(row["check_in"]),
                "leave_id": leave["leave_id"],
                "leave_start": iso(leave["start_date"]),
                "leave_end": iso(leave["end_date"]),
            },
            source_event_id=str(event.event_id),
        )

    async def _weekly_hours(
        self, session: AsyncSession, row: RowMapping, event: BaseEvent, now: datetime
    ) -> None:
        """Rule 1: more than ``max_weekly_hours`` in the ISO week of the record."""
        label, monday, sunday = iso_week(row["work_date"])
        total, records = (
            await session.execute(
                select(func.coalesce(func.sum(attendance.c.hours), 0.0), func.count()).where(
                    attendance.c.tenant_id == row["tenant_id"],
                    attendance.c.employee_id == row["employee_id"],
                    attendance.c.work_date >= monday,
                    attendance.c.work_date <= sunday,
                    attendance.c.hours.is_not(None),
                )
            )
        ).one()
        limit = self.rules.max_weekly_hours
        if float(total) <= limit:
            return
        await self._record(
            session,
            Finding(
                tenant_id=row["tenant_id"],
                employee_id=row["employee_id"],
                rule=Rule.MAX_WEEKLY_HOURS,
                subject=f"{row['employee_id']}:{label}",
                description=(
                    f"employee {row['employee_id']} worked {float(total):g} hours in {label}, "
                    f"more than the maximum of {limit:g}"
                ),
                details={
                    "week": label,
                    "week_start": monday.isoformat(),
                    "week_end": sunday.isoformat(),
                    "total_hours": round(float(total), 4),
                    "max_weekly_hours": limit,
                    "records": int(records),
                },
                source_event_id=str(event.event_id),
            ),
            now,
        )
