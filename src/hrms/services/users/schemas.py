"""Request and response bodies of the users service (password hashes never leave it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from hrms.service import Role
from hrms.service.ids import Id
from hrms.services._common import EMAIL_PATTERN
from hrms.services.users.tables import UserStatus

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, min_length=3, max_length=254, pattern=EMAIL_PATTERN
    ),
]
"""An e-mail address, compared and stored lower-case."""
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
"""A new password: at least 8 characters."""
TenantId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"
    ),
]
EmployeeId = Id


class UserCreate(BaseModel):
    """A new account in the admin's tenant."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    name: Name
    password: Password
    role: Role = Role.EMPLOYEE
    employee_id: EmployeeId | None = None


class UserUpdate(BaseModel):
    """Fields to change; only those sent are changed (``employee_id: null`` unlinks).

    An admin may change any of them; a user changing their own account only ``name``.
    """

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    name: Name | None = None
    role: Role | None = None
    employee_id: EmployeeId | None = None


class PasswordChange(BaseModel):
    """A new password; ``current_password`` is required when changing one's own."""

    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[str, StringConstraints(max_length=1024)] | None = None
    new_password: Password


class LoginRequest(BaseModel):
    """Credentials of one tenant's user."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    tenant_id: TenantId


class UserOut(BaseModel):
    """An account as the API shows it (no password hash)."""

    id: int
    tenant_id: str
    email: str
    name: str
    role: Role
    status: UserStatus
    employee_id: int | None
    created_at: datetime
    updated_at: datetime


class TokenOut(BaseModel):
    """A bearer token and when it expires."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - not a secret
    expires_at: datetime
    user: UserOut
