"""The users service's HTTP API: ``/users`` (accounts) and ``/auth`` (login, logout, me)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from hrms.service import Principal, Role
from hrms.service.auth import Admin, CurrentUser, Manager
from hrms.service.ids import Id
from hrms.services._common import Page, Pagination
from hrms.services.users.directory import Actor, Directory
from hrms.services.users.schemas import (
    LoginRequest,
    PasswordChange,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from hrms.services.users.tables import UserStatus


def _directory(request: Request) -> Directory:
    directory = getattr(request.app.state, "directory", None)
    if not isinstance(directory, Directory):
        raise RuntimeError("the users service's app has no directory")
    return directory


Users = Annotated[Directory, Depends(_directory)]


def _actor(principal: Principal, request: Request) -> Actor:
    ip = request.client.host if request.client else None
    return Actor.of(principal, ip, request.headers.get("user-agent"))


users_router = APIRouter(prefix="/users", tags=["users"])
auth_router = APIRouter(prefix="/auth", tags=["auth"])


@users_router.post("", status_code=201)
async def create_user(
    body: UserCreate, principal: Admin, users: Users, request: Request
) -> UserOut:
    """Create an account in the caller's tenant (admin); a welcome mail is sent."""
    return await users.create(_actor(principal, request), body)


@users_router.get("")
async def list_users(
    principal: Manager,
    users: Users,
    page: Pagination,
    request: Request,
    role: Annotated[Role | None, Query(description="only this role")] = None,
    status: Annotated[UserStatus | None, Query(description="only this status")] = None,
) -> Page[UserOut]:
    """List the tenant's accounts (admin, manager), ``limit``/``offset`` paginated."""
    return await users.list(_actor(principal, request), page, role, status)


@users_router.get("/{user_id}")
async def get_user(user_id: Id, principal: CurrentUser, users: Users, request: Request) -> UserOut:
    """One account (admin, manager, or the user themself)."""
    return await users.get(_actor(principal, request), user_id)


@users_router.patch("/{user_id}")
async def update_user(
    user_id: Id, body: UserUpdate, principal: CurrentUser, users: Users, request: Request
) -> UserOut:
    """Change an account (admin; the user themself may change only their name)."""
    return await users.update(_actor(principal, request), user_id, body)


@users_router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: Id, principal: Admin, users: Users, request: Request) -> Response:
    """Delete an account (admin); a tenant's last active admin cannot be deleted."""
    await users.delete(_actor(principal, request), user_id)
    return Response(status_code=204)


@users_router.post("/{user_id}/suspend")
async def suspend_user(user_id: Id, principal: Admin, users: Users, request: Request) -> UserOut:
    """Suspend an account (admin): it can no longer log in."""
    return await users.set_status(_actor(principal, request), user_id, UserStatus.SUSPENDED)


@users_router.post("/{user_id}/activate")
async def activate_user(user_id: Id, principal: Admin, users: Users, request: Request) -> UserOut:
    """Re-activate a suspended account (admin)."""
    return await users.set_status(_actor(principal, request), user_id, UserStatus.ACTIVE)


@users_router.post("/{user_id}/password", status_code=204)
async def change_password(
    user_id: Id, body: PasswordChange, principal: CurrentUser, users: Users, request: Request
) -> Response:
    """Change a password: one's own with ``current_password``, anyone's as an admin."""
    await users.change_password(
        _actor(principal, request), user_id, body.current_password, body.new_password
    )
    return Response(status_code=204)


@auth_router.post("/login")
async def login(body: LoginRequest, users: Users, request: Request) -> TokenOut:
    """Exchange e-mail and password for a bearer token (401 if wrong, 403 if suspended)."""
    ip = request.client.host if request.client else None
    token, expires_at, user = await users.login(
        body.tenant_id, body.email, body.password, ip, request.headers.get("user-agent")
    )
    return TokenOut(access_token=token, expires_at=expires_at, user=user)


@auth_router.post("/logout", status_code=204)
async def logout(principal: CurrentUser, users: Users, request: Request) -> Response:
    """Revoke the caller's token (the users service refuses it from now on)."""
    await users.logout(_actor(principal, request))
    return Response(status_code=204)


@auth_router.get("/me")
async def me(principal: CurrentUser, users: Users, request: Request) -> UserOut:
    """The caller's own account."""
    return await users.me(_actor(principal, request))
