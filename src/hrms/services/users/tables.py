"""The users service's tables: accounts and revoked tokens (logout)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Column, Integer, MetaData, String, Table, UniqueConstraint

from eventbus._sql import UTCDateTime

metadata = MetaData()
"""The service's tables (the framework copies them and adds the outbox and inbox)."""


class UserStatus(StrEnum):
    """Whether an account may log in."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False, default=UserStatus.ACTIVE.value),
    Column("password_hash", String(255), nullable=False),
    Column("employee_id", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
    # ids are never reused on SQLite: events and audit records name deleted users by id
    sqlite_autoincrement=True,
)
"""User accounts; the e-mail (stored lower-case) is unique within a tenant."""

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)
"""Token ids revoked by logout, kept until the token would have expired anyway."""
