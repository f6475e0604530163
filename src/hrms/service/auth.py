"""JWT authentication with roles and a tenant claim.

The users service issues tokens (:meth:`TokenIssuer.issue`); every service verifies them
with the same key (``HRMS_JWT_SECRET``). A token carries the user id (``sub``), the
tenant (``tid``), the role and, for employees, their employee id (``emp``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ALGORITHM = "HS256"


class Role(StrEnum):
    """What a user may do: admins everything in their tenant, managers approve."""

    ADMIN = "admin"
    MANAGER = "manager"
    EMPLOYEE = "employee"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: int
    tenant_id: str
    role: Role
    employee_id: int | None = None
    token_id: str | None = None

    def can_act_for(self, employee_id: int) -> bool:
        """Whether the caller may act on ``employee_id``'s records (their own, or a manager)."""
        return self.role in (Role.ADMIN, Role.MANAGER) or self.employee_id == employee_id


class TokenIssuer:
    """Signs and verifies the services' JWTs."""

    def __init__(self, secret: str, ttl_s: int = 8 * 3600) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(
        self, user_id: int, tenant_id: str, role: Role | str, employee_id: int | None = None
    ) -> tuple[str, str, int]:
        """Return ``(token, token id, expiry as a Unix time)``."""
        now = int(time.time())
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "tid": tenant_id,
            "role": str(Role(role)),
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": jti,
        }
        if employee_id is not None:
            claims["emp"] = employee_id
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), jti, now + self.ttl_s

    def verify(self, token: str) -> Principal:
        """Decode ``token``; raise :class:`jwt.InvalidTokenError` if it is not valid."""
        claims = jwt.decode(
            token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "tid"]}
        )
        try:
            role = Role(str(claims.get("role")))
            emp = claims.get("emp")
            return Principal(
                user_id=int(claims["sub"]),
                tenant_id=str(claims["tid"]),
                role=role,
                employee_id=int(emp) if emp is not None else None,
                token_id=claims.get("jti"),
            )
        except (ValueError, TypeError) as exc:
            raise jwt.InvalidTokenError(f"bad claims: {exc}") from exc


_bearer = HTTPBearer(auto_error=False)


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """FastAPI dependency: the caller of a request, or 401."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    issuer: TokenIssuer = request.app.state.tokens
    try:
        principal = issuer.verify(credentials.credentials)
    except jwt.InvalidTokenError as exc:
        raise HTTPException(
            401, f"invalid token: {exc}", headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    revoked = getattr(request.app.state, "revoked", None)
    if revoked is not None and principal.token_id in revoked:
        raise HTTPException(401, "token revoked (logged out)")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
"""A route parameter that is the authenticated caller."""


def require(*roles: Role) -> Any:
    """A dependency that lets only ``roles`` through (403 for the others)."""

    def check(principal: CurrentUser) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise HTTPException(
                403, f"role {principal.role.value!r} may not do this ({allowed} only)"
            )
        return principal

    return Depends(check)


Admin = Annotated[Principal, require(Role.ADMIN)]
"""A route parameter: the caller, who must be an admin."""
Manager = Annotated[Principal, require(Role.ADMIN, Role.MANAGER)]
"""A route parameter: the caller, who must be a manager or an admin."""
