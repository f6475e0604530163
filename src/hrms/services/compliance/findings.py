"""Recording a finding once, and announcing it: compliance event, manager notification, audit.

A finding is unique per ``(tenant, rule, subject)``: the insert ignores a conflict, and
only a finding actually inserted is announced, so a redelivered event or a repeated
check adds neither a row nor events. The events go through the outbox in the caller's
transaction, so the finding and its events commit together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from hrms.events import (
    EntityId,
    EventType,
    create_audit_event,
    create_compliance_event,
    create_notification_event,
)
from hrms.service import Service, ServiceContext
from hrms.services._common import find_row
from hrms.services.compliance.rules import KIND, ComplianceRules, Kind, Rule
from hrms.services.compliance.tables import employees, findings

logger = logging.getLogger("hrms.compliance")

SOURCE = "compliance-service"
"""The ``source_service`` of the events this service emits."""

OPEN = "open"
RESOLVED = "resolved"

_EVENT_TYPE = {
    Kind.VIOLATION: EventType.COMPLIANCE_VIOLATION,
    Kind.ALERT: EventType.COMPLIANCE_ALERT,
}
_TEMPLATE = {Kind.VIOLATION: "compliance_violation", Kind.ALERT: "compliance_alert"}


def entity_id(value: str | None) -> EntityId | None:
    """A stored id as the catalog's ``int | str`` (digits become an int again)."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def iso(value: datetime | date | None) -> str | None:
    """``value`` in ISO 8601 (for JSON details), or ``None``."""
    return None if value is None else value.isoformat()


def event_tenant(tenant: str) -> str | None:
    """The ``tenant_id`` of an emitted event (``None`` for rows of tenant-less events)."""
    return tenant or None


@dataclass(frozen=True)
class Finding:
    """A rule broken (or to look at), before it is recorded.

    Attributes:
        tenant_id: the tenant (``""`` when the triggering event had none).
        employee_id: the employee concerned.
        rule: the rule.
        subject: what the finding is about, unique per rule (a week, a record, an event).
        description: a human-readable summary.
        details: structured details (JSON).
        source_event_id: the event that revealed it (``None`` for checks).
    """

    tenant_id: str
    employee_id: str | None
    rule: Rule
    subject: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)
    source_event_id: str | None = None


async def _insert_once(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert a finding unless its ``(tenant, rule, subject)`` exists; its id, or ``None``."""
    dialect = session.get_bind().dialect.name
    keys = ["tenant_id", "rule", "subject"]
    if dialect in ("sqlite", "postgresql"):
        builder = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = (
            builder(findings)
            .values(**values)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(findings.c.id)
        )
        inserted: int | None = (await session.execute(stmt)).scalar_one_or_none()
        return inserted
    existing = await session.execute(
        select(findings.c.id).where(*(findings.c[k] == values[k] for k in keys))
    )
    if existing.first() is not None:
        return None
    result = await session.execute(insert(findings).values(**values).returning(findings.c.id))
    new_id: int = result.scalar_one()
    return new_id


async def manager_email(session: AsyncSession, tenant: str, employee_id: str | None) -> str | None:
    """Where the employee's manager gets notifications: the recorded manager e-mail, else
    the e-mail of the manager's own employee record."""
    if employee_id is None:
        return None
    emp = await find_row(session, employees, tenant_id=tenant, employee_id=employee_id)
    if emp is None:
        return None
    if emp["manager_email"]:
        return str(emp["manager_email"])
    if emp["manager_id"] is None:
        return None
    email = await session.scalar(
        select(employees.c.email).where(
            employees.c.tenant_id == tenant, employees.c.employee_id == emp["manager_id"]
        )
    )
    return str(email) if email else None


async def record(
    service: Service,
    session: AsyncSession,
    rules: ComplianceRules,
    finding: Finding,
    now: datetime,
) -> int | None:
    """Store ``finding`` once and emit its events; return its id (``None`` if known already)."""
    kind = KIND[finding.rule]
    severity = rules.severity(finding.rule)
    finding_id = await _insert_once(
        session,
        {
            "tenant_id": finding.tenant_id,
            "employee_id": finding.employee_id,
            "rule": finding.rule.value,
            "kind": kind.value,
            "severity": severity,
            "description": finding.description,
            "details": finding.details,
            "subject": finding.subject,
            "source_event_id": finding.source_event_id,
            "status": OPEN,
            "created_at": now,
        },
    )
    if finding_id is None:
        logger.info("%s for %s already recorded", finding.rule.value, finding.subject)
        return None
    ids = ServiceContext(event_tenant(finding.tenant_id)).ids()
    employee = entity_id(finding.employee_id)
    compliance_topic = service.settings.compliance_topic
    await service.emit(
        session,
        compliance_topic,
        create_compliance_event(
            SOURCE,
            _EVENT_TYPE[kind],
            employee_id=employee,
            compliance_id=finding_id,
            rule=finding.rule.value,
            severity=severity,
            status=OPEN,
            description=finding.description,
            details={**finding.details, "source_event_id": finding.source_event_id},
            **ids,
        ),
    )
    await _notify_manager(service, session, finding, finding_id, kind, severity, now)
    await service.emit(
        session,
        service.settings.audit_topic,
        create_audit_event(
            SOURCE,
            action="CREATE",
            resource_type="compliance_finding",
            resource_id=finding_id,
            description=f"{kind.value} {finding.rule.value} recorded for employee {employee}",
            changes={
                "rule": finding.rule.value,
                "kind": kind.value,
                "severity": severity,
                "status": OPEN,
                "employee_id": employee,
                "source_event_id": finding.source_event_id,
            },
            event_type=EventType.AUDIT_COMPLIANCE_ACTION,
            **ids,
        ),
    )
    logger.info("%s %s recorded (finding %s)", kind.value, finding.rule.value, finding_id)
    return finding_id


async def _notify_manager(
    service: Service,
    session: AsyncSession,
    finding: Finding,
    finding_id: int,
    kind: Kind,
    severity: str,
    now: datetime,
) -> None:
    recipient = await manager_email(session, finding.tenant_id, finding.employee_id)
    employee = entity_id(finding.employee_id)
    if recipient is None:
        logger.info(
            "no manager e-mail known for employee %s: %s %s not notified",
            employee,
            kind.value,
            finding.rule.value,
        )
        return
    name = await session.scalar(
        select(employees.c.name).where(
            employees.c.tenant_id == finding.tenant_id,
            employees.c.employee_id == finding.employee_id,
        )
    )
    await service.emit(
        session,
        service.settings.notification_topic,
        create_notification_event(
            SOURCE,
            recipient_email=recipient,
            subject=f"Compliance {kind.value}: {finding.rule.value} (employee {employee})",
            template_name=_TEMPLATE[kind],
            template_data={
                "finding_id": finding_id,
                "employee_id": employee,
                "employee_name": name,
                "rule": finding.rule.value,
                "kind": kind.value,
                "severity": severity,
                "description": finding.description,
                "details": finding.details,
                "detected_at": now.isoformat(),
            },
            event_type=_EVENT_TYPE[kind],
            priority="high" if severity in ("high", "critical") else "normal",
            **ServiceContext(event_tenant(finding.tenant_id)).ids(),
        ),
    )


def as_finding_row(row: RowMapping) -> dict[str, Any]:
    """A findings row as the API's response fields."""
    out = dict(row)
    out["employee_id"] = entity_id(row["employee_id"])
    return out
