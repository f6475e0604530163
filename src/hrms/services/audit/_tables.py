"""The audit service's tables: the hash-chained log and its checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from eventbus._sql import UTCDateTime


@dataclass(frozen=True, slots=True)
class AuditTables:
    """The audit log and its checkpoints."""

    log: Table
    checkpoints: Table


def define_tables(metadata: MetaData) -> AuditTables:
    """Define the audit tables in ``metadata``.

    ``audit_log`` holds one row per audit event: the chained fields (hashed), the
    personal fields (``description``, ``ip_address``, ``user_agent``, ``changes``: stored
    but not hashed, so they can be erased), and ``seq``/``prev_hash``/``hash``.
    ``audit_checkpoint`` remembers the head of each tenant's chain now and then.
    """
    log = Table(
        "audit_log",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(255), nullable=False),
        Column("tenant_id", String(128), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("event_type", String(128), nullable=False),
        Column("source_service", String(128), nullable=False),
        Column("action", String(255), nullable=False),
        Column("resource_type", String(255), nullable=False),
        Column("resource_id", String(255), nullable=True),
        Column("user_id", String(255), nullable=True),
        Column("occurred_at", UTCDateTime, nullable=False),
        Column("correlation_id", String(255), nullable=True),
        Column("description", Text, nullable=True),
        Column("ip_address", String(64), nullable=True),
        Column("user_agent", Text, nullable=True),
        Column("changes", JSON(none_as_null=True), nullable=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Column("recorded_at", UTCDateTime, nullable=False),
        UniqueConstraint("event_id", name="uq_audit_log_event_id"),
        UniqueConstraint("tenant_id", "seq", name="uq_audit_log_tenant_seq"),
        Index("ix_audit_log_tenant_time", "tenant_id", "occurred_at"),
        Index("ix_audit_log_tenant_user", "tenant_id", "user_id"),
        Index("ix_audit_log_tenant_resource", "tenant_id", "resource_type", "resource_id"),
    )
    checkpoints = Table(
        "audit_checkpoint",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("tenant_id", String(128), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", String(64), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("tenant_id", "seq", name="uq_audit_checkpoint_tenant_seq"),
    )
    return AuditTables(log, checkpoints)


metadata = MetaData()
"""The audit service's tables (the framework copies them and adds the outbox and inbox)."""

TABLES = define_tables(metadata)
"""The tables queries use (SQL names them, so they serve every built service)."""
