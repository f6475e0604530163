"""The check for missing check-outs (rule 2), on demand and on a schedule.

A missing check-out is an event that never came, so no consumed event reveals it: a check
looks for check-ins without a check-out older than ``missing_check_out_hours``. It runs
every ``check_interval_s`` seconds (started and stopped with the service) and on
``POST /compliance/checks``, and ends with a ``compliance.check_completed`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession

from hrms.events import EventType, create_audit_event, create_compliance_event
from hrms.service import Service, ServiceContext, context
from hrms.services.compliance.findings import SOURCE, Finding, event_tenant, iso, record
from hrms.services.compliance.rules import Clock, ComplianceRules, Rule
from hrms.services.compliance.tables import attendance, employees

logger = logging.getLogger("hrms.compliance")


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


class Checks:
    """Runs the missing check-out check, now or every ``check_interval_s`` seconds.

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
            finding_id = await record(
                self.service,
                session,
                self.rules,
                Finding(
                    tenant_id=result.tenant_id,
                    employee_id=row["employee_id"],
                    rule=Rule.MISSING_CHECK_OUT,
                    subject=f"attendance:{row['record_key']}",
                    description=(
                        f"employee {row['employee_id']} checked in at {iso(row['check_in'])} "
                        f"and has not checked out after {hours:.1f} hours"
                    ),
                    details={
                        "attendance_id": row["attendance_id"],
                        "work_date": iso(row["work_date"]),
                        "check_in": iso(row["check_in"]),
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
