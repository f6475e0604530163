"""The compliance service's tables: its projections of other services' data and its findings.

The projections hold only what the rules need: employees (status, manager), approved
leaves and attendance records, per tenant. Findings are unique per
``(tenant, rule, subject)``, so a redelivered event or a repeated check adds nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from eventbus._sql import UTCDateTime

metadata = MetaData()
"""The compliance service's tables (the framework adds the outbox and inbox)."""


employees = Table(
    "compliance_employees",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("employee_id", String(128), primary_key=True),
    Column("status", String(64)),
    Column("email", String(320)),
    Column("name", String(256)),
    Column("manager_id", String(128)),
    Column("manager_email", String(320)),
    Column("terminated_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

leaves = Table(
    "compliance_leaves",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("leave_id", String(128), primary_key=True),
    Column("employee_id", String(128), nullable=False),
    Column("start_date", Date),
    Column("end_date", Date),
    Column("status", String(64)),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_compliance_leaves_employee", "tenant_id", "employee_id"),
)

attendance = Table(
    "compliance_attendance",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("record_key", String(256), primary_key=True),
    Column("attendance_id", String(128)),
    Column("employee_id", String(128), nullable=False),
    Column("work_date", Date),
    Column("check_in", UTCDateTime()),
    Column("check_out", UTCDateTime()),
    Column("hours", Float),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_compliance_attendance_employee_date", "tenant_id", "employee_id", "work_date"),
    Index("ix_compliance_attendance_open", "check_out", "check_in"),
)

findings = Table(
    "compliance_findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(128), nullable=False),
    Column("employee_id", String(128)),
    Column("rule", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("description", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("source_event_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime()),
    Column("resolved_by", Integer),
    Column("resolution_note", Text),
    UniqueConstraint("tenant_id", "rule", "subject", name="uq_compliance_findings_subject"),
    Index("ix_compliance_findings_tenant_status", "tenant_id", "status", "id"),
    Index("ix_compliance_findings_tenant_employee", "tenant_id", "employee_id"),
)
