"""The rules at work: on each consumed event, and in the check for missing check-outs.

Event-driven rules run in the consumer's transaction (with the inbox), so a finding and
its events commit exactly once per event. The missing check-out rule is about an event
that never came, so a check finds it: on demand (``POST /compliance/checks``) or every
``check_interval_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, union
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent
from hrms.events import (
    AttendanceEvent,
    EmployeeEvent,
    EventType,
    LeaveEvent,
    create_audit_event,
    create_compliance_event,
)
from hrms.service import Service, ServiceContext, context
from hrms.services.compliance import projections
from hrms.services.compliance.findings import SOURCE, Finding, event_tenant, record
from hrms.services.compliance.rules import ComplianceRules, Rule, iso_week
from hrms.services.compliance.tables import attendance, employees, leaves

logger = logging.getLogger("hrms.compliance")

Clock = Callable[[], datetime]
"""Returns the current time (aware); injected so tests can move it."""


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass
class CheckResult:
    """What one check of one tenant found.

    Attributes:
        check_id: the check run (shared by the tenants of one run).
        tenant_id: the tenant checked.
        trigger: ``"manual"`` or ``"scheduled"``.
        checked_at: the clock's time of the check.
        open_check_ins: check-ins without a check-out.
        overdue: of those, open longer than the threshold.
        alerts_created: new ``missing_check_out`` alerts.
        finding_ids: the ids of the new findings.
    """

    check_id: str
    tenant_id: str
    trigger: str
    checked_at: datetime
    open_check_ins: int = 0
    overdue: int = 0
    alerts_created: int = 0
    finding_ids: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """The counts, as the check-completed event's details."""
        return {
            "check_id": self.check_id,
            "trigger": self.trigger,
            "checked_at": self.checked_at.isoformat(),
            "open_check_ins": self.open_check_ins,
            "overdue": self.overdue,
            "alerts_created": self.alerts_created,
            "already_reported": self.overdue - self.alerts_created,
            "finding_ids": self.finding_ids,
        }


class ComplianceEngine:
    """Applies the rules to events and runs the checks.

    Args:
        service: the compliance service (settings, outbox, sessions).
        rules: the thresholds.
        clock: the current time.
    """

    def __init__(self, service: Service, rules: ComplianceRules, clock: Clock) -> None:
        self.service = service
        self.rules = rules
        self.clock = clock
        self._check_lock = asyncio.Lock()
        self._schedule: asyncio.Task[None] | None = None

    # -- events ------------------------------------------------------------------------------
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
        emp = (
            (
                await session.execute(
                    select(employees).where(
                        employees.c.tenant_id == tenant, employees.c.employee_id == employee_id
                    )
                )
            )
            .mappings()
            .first()
        )
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
                    f"who was terminated at {_iso(terminated_at)}"
                ),
                details={
                    "event_type": event.event_type,
                    "event_id": str(event.event_id),
                    "event_timestamp": event.timestamp.isoformat(),
                    "terminated_at": _iso(terminated_at),
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
                "work_date": _iso(row["work_date"]),
                "check_in": _iso(row["check_in"]),
                "leave_id": leave["leave_id"],
                "leave_start": _iso(leave["start_date"]),
                "leave_end": _iso(leave["end_date"]),
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

    # -- checks ------------------------------------------------------------------------------
    async def run_check(
        self,
        tenant_id: str | None = None,
        *,
        trigger: str = "scheduled",
        user_id: int | None = None,
    ) -> list[CheckResult]:
        """Rule 2: alert on check-ins without a check-out for too long.

        Checks ``tenant_id`` (every tenant the projections know when ``None``), one
        transaction per tenant, and emits ``compliance.check_completed`` with the counts.
        """
        async with self._check_lock:
            now = self.clock()
            check_id = str(uuid.uuid4())
            tenants = [tenant_id] if tenant_id is not None else await self._tenants()
            results = []
            for tenant in tenants:
                result = CheckResult(check_id, tenant, trigger, now)
                async with self.service.transaction() as session:
                    await self._missing_check_outs(session, result)
                    await self._announce(session, result, user_id)
                results.append(result)
            return results

    async def _tenants(self) -> list[str]:
        async with self.service.sessions() as session:
            query = union(select(employees.c.tenant_id), select(attendance.c.tenant_id))
            return sorted(str(t) for t in (await session.execute(query)).scalars())

    async def _missing_check_outs(self, session: AsyncSession, result: CheckResult) -> None:
        threshold = timedelta(hours=self.rules.missing_check_out_hours)
        rows = await session.execute(
            select(attendance)
            .where(
                attendance.c.tenant_id == result.tenant_id,
                attendance.c.check_in.is_not(None),
                attendance.c.check_out.is_(None),
            )
            .order_by(attendance.c.check_in)
        )
        for row in rows.mappings().all():
            result.open_check_ins += 1
            open_for = result.checked_at - row["check_in"]
            if open_for <= threshold:
                continue
            result.overdue += 1
            hours = open_for.total_seconds() / 3600
            finding_id = await self._record(
                session,
                Finding(
                    tenant_id=result.tenant_id,
                    employee_id=row["employee_id"],
                    rule=Rule.MISSING_CHECK_OUT,
                    subject=f"attendance:{row['record_key']}",
                    description=(
                        f"employee {row['employee_id']} checked in at {_iso(row['check_in'])} "
                        f"and has not checked out after {hours:.1f} hours"
                    ),
                    details={
                        "attendance_id": row["attendance_id"],
                        "work_date": _iso(row["work_date"]),
                        "check_in": _iso(row["check_in"]),
                        "hours_open": round(hours, 2),
                        "threshold_hours": self.rules.missing_check_out_hours,
                        "check_id": result.check_id,
                    },
                ),
                result.checked_at,
            )
            if finding_id is not None:
                result.alerts_created += 1
                result.finding_ids.append(finding_id)

    async def _announce(
        self, session: AsyncSession, result: CheckResult, user_id: int | None
    ) -> None:
        ids = ServiceContext(event_tenant(result.tenant_id)).ids()
        description = (
            f"{result.trigger} check: {result.overdue} of {result.open_check_ins} open "
            f"check-ins overdue, {result.alerts_created} new alerts"
        )
        await self.service.emit(
            session,
            self.service.settings.compliance_topic,
            create_compliance_event(
                SOURCE,
                EventType.COMPLIANCE_CHECK_COMPLETED,
                compliance_id=result.check_id,
                rule=Rule.MISSING_CHECK_OUT.value,
                status="completed",
                description=description,
                details=result.counts(),
                **ids,
            ),
        )
        if user_id is None:
            return  # the scheduled check: each new finding has its own audit record
        await self.service.emit(
            session,
            self.service.settings.audit_topic,
            create_audit_event(
                SOURCE,
                action="RUN_CHECK",
                resource_type="compliance_check",
                user_id=user_id,
                resource_id=result.check_id,
                description=description,
                changes=result.counts(),
                event_type=EventType.AUDIT_COMPLIANCE_ACTION,
                **ids,
            ),
        )

    # -- the schedule ------------------------------------------------------------------------
    async def start_schedule(self) -> None:
        """Start the periodic check (``on_start`` hook)."""
        if self._schedule is None:
            self._schedule = asyncio.create_task(self._every_interval(), name="compliance-check")

    async def stop_schedule(self) -> None:
        """Stop the periodic check (``on_stop`` hook)."""
        task, self._schedule = self._schedule, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.rules.check_interval_s)
            token = context.correlation_id.set(f"compliance-check-{uuid.uuid4()}")
            try:
                await self.run_check(trigger="scheduled")
            except Exception:  # the next run tries again; logged with its traceback
                logger.exception("scheduled compliance check failed")
            finally:
                context.correlation_id.reset(token)
