"""The compliance service: watches employee, leave and attendance events for broken rules.

It keeps local projections of employees, approved leaves and attendance, and records a
finding when

1. an employee works more than ``max_weekly_hours`` (48) in an ISO week
   (``max_weekly_hours``, a violation);
2. a check-in has no check-out after ``missing_check_out_hours`` (16) — found by a check,
   scheduled every ``check_interval_s`` or run with ``POST /compliance/checks``
   (``missing_check_out``, an alert);
3. an employee checks in during their approved leave (``check_in_during_leave``, a
   violation), whichever of the check-in and the approval arrives first;
4. an attendance or leave event concerns a terminated employee
   (``activity_after_termination``, a violation).

Each finding is stored once per ``(rule, subject)`` and announced with a
``compliance.violation`` or ``compliance.alert`` event, a notification to the employee's
manager and an audit record. Findings are served under ``/compliance``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent, KafkaSettings
from eventbus._transport.base import Transport
from hrms.service import HrmsSettings, Service
from hrms.services.compliance.api import router
from hrms.services.compliance.checks import CheckResult, Checks
from hrms.services.compliance.engine import EventRules
from hrms.services.compliance.rules import ComplianceRules, Kind, Rule
from hrms.services.compliance.tables import metadata

__all__ = [
    "CheckResult",
    "Checks",
    "ComplianceRules",
    "EventRules",
    "Kind",
    "Rule",
    "build",
    "metadata",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    clock: Callable[[], datetime] | None = None,
    rules: ComplianceRules | None = None,
) -> Service:
    """Build the compliance service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (the in-memory broker in tests).
        clock: the current time, aware (``datetime.now(UTC)`` when omitted).
        rules: thresholds and severities (``HRMS_COMPLIANCE_*`` variables when omitted).

    Returns:
        The service.
    """
    service = Service(
        "compliance",
        metadata,
        settings=settings,
        kafka=kafka,
        transport=transport,
        title="HRMS compliance service",
    )
    rules = rules or ComplianceRules()
    clock = clock or _utcnow
    events = EventRules(service, rules, clock)
    checks = Checks(service, rules, clock)
    settings = service.settings

    @service.consumer(settings.employee_topic, settings.leave_topic, settings.attendance_topic)
    async def on_event(event: BaseEvent, session: AsyncSession) -> None:
        """Apply an employee, leave or attendance event (once, in the inbox transaction)."""
        await events.handle(event, session)

    service.include(router(checks))
    service.on_start.append(checks.start_schedule)
    service.on_stop.append(checks.stop_schedule)
    return service
