"""What the users service does: accounts, passwords, login and logout.

Every write runs in one transaction that also holds its ``user.*`` event (``user-queue``),
its audit record and its notifications (see :mod:`hrms.services.users.outbound`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hrms.events import (
    EventType,
    UserEvent,
    create_audit_event,
    create_notification_event,
    create_user_event,
)
from hrms.service import (
    Conflict,
    Forbidden,
    NotFound,
    Principal,
    Role,
    RuleBroken,
    Service,
    ServiceContext,
)
from hrms.service.errors import ServiceError
from hrms.services._common import (
    Page,
    PageParams,
    find_row,
    get_or_404,
    insert_row,
    read_or_404,
    read_page,
    tenant_rows,
    update_row,
    utcnow,
)
from hrms.services.users.outbound import HttpFallback, Unit, unit_of_work
from hrms.services.users.schemas import UserCreate, UserOut, UserUpdate
from hrms.services.users.tables import UserStatus, revoked_tokens, users

logger = logging.getLogger("hrms.users")

SOURCE = "user-management-service"
"""The ``source_service`` of the events (seed 001's name)."""

WELCOME_TEMPLATE = "welcome_email"
"""The notification service's template for a new account (seed 000's name)."""
PASSWORD_CHANGED_TEMPLATE = "password_changed"  # noqa: S105 - a template name
"""The notification service's template for a changed password."""

LAST_ADMIN = "a tenant must keep at least one active admin"


class CredentialsError(ServiceError):
    """Bad credentials (401)."""

    status = 401


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does something, and from where (for the audit record)."""

    tenant_id: str
    user_id: int | None = None
    role: Role | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    token_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, ip: str | None = None, agent: str | None = None) -> Actor:
        """The actor of an authenticated request."""
        return cls(
            principal.tenant_id,
            principal.user_id,
            principal.role,
            ip,
            agent,
            principal.token_id,
        )

    @property
    def is_admin(self) -> bool:
        """Whether the actor is an admin of their tenant."""
        return self.role is Role.ADMIN


def to_out(row: RowMapping) -> UserOut:
    """The API view of a ``users`` row."""
    return UserOut.model_validate({k: v for k, v in row.items() if k != "password_hash"})


class Directory:
    """The accounts of every tenant, with the revoked-token list.

    Revoked tokens are kept in the ``revoked_tokens`` table and, for the checks each
    request makes, in the in-memory set :attr:`revoked` (loaded at start, added to on
    logout). A logout on one replica is therefore not seen by another replica of the
    users service until that one restarts; the other services do not see logouts at all
    and accept a token until it expires (``HRMS_JWT_TTL``).
    """

    def __init__(
        self, service: Service, fallback: HttpFallback, hasher: PasswordHasher | None = None
    ) -> None:
        self.service = service
        self.fallback = fallback
        self.hasher = hasher or PasswordHasher()
        self.revoked: set[str] = set()
        self._dummy_hash: str | None = None

    # -- passwords ----------------------------------------------------------------------------
    async def hash(self, password: str) -> str:
        """The argon2 hash of ``password`` (computed off the event loop)."""
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``."""

        def check() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    # -- reading ------------------------------------------------------------------------------
    @staticmethod
    async def _by_email(session: AsyncSession, tenant_id: str, email: str) -> RowMapping | None:
        return await find_row(session, users, tenant_id=tenant_id, email=email)

    async def get(self, actor: Actor, user_id: int) -> UserOut:
        """One account: admins and managers read any of their tenant, others only their own."""
        if actor.role not in (Role.ADMIN, Role.MANAGER) and actor.user_id != user_id:
            raise Forbidden("employees may read only their own account")
        return to_out(await read_or_404(self.service, users, user_id, actor.tenant_id, "user"))

    async def list(
        self, actor: Actor, page: PageParams, role: Role | None, status: UserStatus | None
    ) -> Page[UserOut]:
        """A page of the tenant's accounts, ordered by id, optionally by role and status."""
        query = tenant_rows(users, actor.tenant_id, role=role, status=status)
        return await read_page(self.service, query.order_by(users.c.id), page, to_out)

    # -- events -------------------------------------------------------------------------------
    @staticmethod
    def _user_event(
        row: RowMapping, event_type: EventType, status: str | None = None, **extra: Any
    ) -> UserEvent:
        return create_user_event(
            SOURCE,
            row["id"],
            event_type,
            email=row["email"],
            name=row["name"],
            role=row["role"],
            status=status or row["status"],
            employee_id=row["employee_id"],
            **ServiceContext(row["tenant_id"]).ids(),
            **extra,
        )

    @staticmethod
    async def _audit(
        unit: Unit,
        actor: Actor,
        action: str,
        resource_id: int | None,
        description: str,
        changes: dict[str, Any] | None = None,
    ) -> None:
        await unit.audit(
            create_audit_event(
                SOURCE,
                action,
                "user",
                user_id=actor.user_id,
                resource_id=resource_id,
                description=description,
                ip_address=actor.ip_address,
                user_agent=actor.user_agent,
                changes=changes,
                event_type=EventType.AUDIT_USER_ACTION,
                **ServiceContext(actor.tenant_id).ids(),
            )
        )

    @staticmethod
    async def _notify(
        unit: Unit,
        row: RowMapping,
        event_type: EventType,
        subject: str,
        template: str,
        data: dict[str, Any],
    ) -> None:
        ids = ServiceContext(row["tenant_id"])
        await unit.notify(
            create_notification_event(
                SOURCE,
                recipient_email=row["email"],
                subject=subject,
                template_name=template,
                template_data={"name": row["name"], **data},
                event_type=event_type,
                recipient_name=row["name"],
                user_id=row["id"],
                correlation_id=ids.correlation_id,
                causation_id=ids.causation_id,
                tenant_id=ids.tenant_id,
            )
        )

    # -- rules --------------------------------------------------------------------------------
    @staticmethod
    async def _other_active_admins(session: AsyncSession, tenant_id: str, user_id: int) -> int:
        count = await session.scalar(
            select(func.count())
            .select_from(users)
            .where(
                users.c.tenant_id == tenant_id,
                users.c.role == Role.ADMIN.value,
                users.c.status == UserStatus.ACTIVE.value,
                users.c.id != user_id,
            )
        )
        return int(count or 0)

    async def _keep_an_admin(self, session: AsyncSession, row: RowMapping) -> None:
        """Raise :class:`Conflict` if ``row`` is its tenant's last active admin."""
        active_admin = row["role"] == Role.ADMIN.value and row["status"] == UserStatus.ACTIVE.value
        if active_admin and not await self._other_active_admins(
            session, row["tenant_id"], row["id"]
        ):
            raise Conflict(LAST_ADMIN)

    @staticmethod
    async def _unique(
        session: AsyncSession,
        tenant_id: str,
        user_id: int | None,
        email: str | None,
        employee_id: int | None,
    ) -> None:
        """Raise :class:`Conflict` if another account has ``email`` or ``employee_id``."""
        if email is not None:
            query = select(users.c.id).where(users.c.tenant_id == tenant_id, users.c.email == email)
            other = await session.scalar(query)
            if other is not None and other != user_id:
                raise Conflict(f"a user with e-mail {email} already exists in this tenant")
        if employee_id is not None:
            query = select(users.c.id).where(
                users.c.tenant_id == tenant_id, users.c.employee_id == employee_id
            )
            other = await session.scalar(query)
            if other is not None and other != user_id:
                raise Conflict(f"employee {employee_id} is already linked to user {other}")

    # -- writing ------------------------------------------------------------------------------
    async def create(self, actor: Actor, body: UserCreate) -> UserOut:
        """Create an account in the actor's tenant; a welcome notification goes out.

        Raises:
            Conflict: the e-mail (or employee) already has an account in the tenant.
        """
        password_hash = await self.hash(body.password)
        now = utcnow()
        try:
            async with unit_of_work(self.service, self.fallback) as unit:
                await self._unique(
                    unit.session, actor.tenant_id, None, body.email, body.employee_id
                )
                row = await insert_row(
                    unit.session,
                    users,
                    actor.tenant_id,
                    "user",
                    email=body.email,
                    name=body.name,
                    role=body.role.value,
                    status=UserStatus.ACTIVE.value,
                    password_hash=password_hash,
                    employee_id=body.employee_id,
                    created_at=now,
                    updated_at=now,
                )
                await unit.emit(self._user_event(row, EventType.USER_CREATED))
                await self._audit(
                    unit,
                    actor,
                    "CREATE",
                    row["id"],
                    f"created user {row['id']} ({row['role']})",
                    {
                        "email": row["email"],
                        "name": row["name"],
                        "role": row["role"],
                        "employee_id": row["employee_id"],
                    },
                )
                await self._notify(
                    unit,
                    row,
                    EventType.USER_CREATED,
                    "Welcome to HRMS",
                    WELCOME_TEMPLATE,
                    {"email": row["email"], "role": row["role"], "tenant_id": row["tenant_id"]},
                )
        except IntegrityError as exc:  # a concurrent create won the race
            raise Conflict(
                f"a user with e-mail {body.email} already exists in this tenant"
            ) from exc
        logger.info("user %s created in %s", row["id"], actor.tenant_id)
        return to_out(row)

    async def update(self, actor: Actor, user_id: int, body: UserUpdate) -> UserOut:
        """Change the fields sent; admins any of them, a user only their own name.

        Raises:
            Forbidden: a non-admin changes someone else or more than their name.
            Conflict: the new e-mail or employee is taken, or the last admin is demoted.
        """
        fields = body.model_dump(include=body.model_fields_set)
        if not actor.is_admin:
            if actor.user_id != user_id:
                raise Forbidden("only admins may change other users")
            if set(fields) - {"name"}:
                raise Forbidden("you may change only your own name")
        for name in ("email", "name", "role"):
            if name in fields and fields[name] is None:
                raise RuleBroken(f"{name} cannot be null")
        if "role" in fields:
            fields["role"] = Role(fields["role"]).value
        try:
            async with unit_of_work(self.service, self.fallback) as unit:
                before = await get_or_404(unit.session, users, user_id, actor.tenant_id, "user")
                changes = {k: v for k, v in fields.items() if before[k] != v}
                if not changes:
                    return to_out(before)
                if changes.get("role", Role.ADMIN.value) != Role.ADMIN.value:
                    await self._keep_an_admin(unit.session, before)
                await self._unique(
                    unit.session,
                    actor.tenant_id,
                    user_id,
                    changes.get("email"),
                    changes.get("employee_id"),
                )
                row = await update_row(
                    unit.session, users, before, "user", **changes, updated_at=utcnow()
                )
                await unit.emit(self._user_event(row, EventType.USER_UPDATED, changes=changes))
                await self._audit(
                    unit,
                    actor,
                    "UPDATE",
                    user_id,
                    f"updated user {user_id}: {', '.join(changes)}",
                    changes,
                )
        except IntegrityError as exc:
            raise Conflict(f"a user with e-mail {fields.get('email')} already exists") from exc
        return to_out(row)

    async def delete(self, actor: Actor, user_id: int) -> None:
        """Delete an account (its id is not reused).

        Raises:
            Conflict: it is the tenant's last active admin.
        """
        async with unit_of_work(self.service, self.fallback) as unit:
            row = await get_or_404(unit.session, users, user_id, actor.tenant_id, "user")
            await self._keep_an_admin(unit.session, row)
            await unit.session.execute(delete(users).where(users.c.id == user_id))
            await unit.emit(self._user_event(row, EventType.USER_DELETED, status="deleted"))
            await self._audit(unit, actor, "DELETE", user_id, f"deleted user {user_id}")

    async def set_status(self, actor: Actor, user_id: int, status: UserStatus) -> UserOut:
        """Suspend or activate an account.

        Raises:
            Conflict: it already has that status, or it is the last active admin.
        """
        async with unit_of_work(self.service, self.fallback) as unit:
            before = await get_or_404(unit.session, users, user_id, actor.tenant_id, "user")
            if before["status"] == status.value:
                raise Conflict(f"user {user_id} is already {status.value}")
            if status is UserStatus.SUSPENDED:
                await self._keep_an_admin(unit.session, before)
            row = await update_row(
                unit.session, users, before, "user", status=status.value, updated_at=utcnow()
            )
            suspended = status is UserStatus.SUSPENDED
            event_type = EventType.USER_SUSPENDED if suspended else EventType.USER_ACTIVATED
            action = "SUSPEND" if suspended else "ACTIVATE"
            await unit.emit(self._user_event(row, event_type))
            await self._audit(
                unit,
                actor,
                action,
                user_id,
                f"{status.value} user {user_id}",
                {"status": status.value},
            )
        return to_out(row)

    async def change_password(
        self, actor: Actor, user_id: int, current: str | None, new: str
    ) -> None:
        """Set a new password: one's own with the current one, anyone's as an admin.

        Raises:
            Forbidden: someone else's account as a non-admin, or a wrong current password.
            RuleBroken: one's own password without the current one.
        """
        own = actor.user_id == user_id
        if not own and not actor.is_admin:
            raise Forbidden("only admins may change other users' passwords")
        async with self.service.sessions() as session:
            row = await get_or_404(session, users, user_id, actor.tenant_id, "user")
        if own:
            if current is None:
                raise RuleBroken("current_password is required to change your own password")
            if not await self.verify(row["password_hash"], current):
                raise Forbidden("current password is wrong")
        password_hash = await self.hash(new)
        async with unit_of_work(self.service, self.fallback) as unit:
            row = await get_or_404(unit.session, users, user_id, actor.tenant_id, "user")
            await unit.session.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(password_hash=password_hash, updated_at=utcnow())
            )
            by = "self" if own else "admin"
            await unit.emit(self._user_event(row, EventType.USER_PASSWORD_CHANGED, changed_by=by))
            await self._audit(
                unit,
                actor,
                "PASSWORD_CHANGE",
                user_id,
                f"password of user {user_id} changed by {by}",
            )
            await self._notify(
                unit,
                row,
                EventType.USER_PASSWORD_CHANGED,
                "Your HRMS password was changed",
                PASSWORD_CHANGED_TEMPLATE,
                {"changed_by": by, "changed_at": utcnow().isoformat()},
            )

    # -- sessions -----------------------------------------------------------------------------
    async def login(
        self, tenant_id: str, email: str, password: str, ip: str | None, agent: str | None
    ) -> tuple[str, datetime, UserOut]:
        """Check credentials and issue a token: ``(token, expiry, user)``.

        Raises:
            Unauthorized: unknown e-mail or wrong password (one message for both).
            Forbidden: the account is suspended.
        """
        async with self.service.sessions() as session:
            row = await self._by_email(session, tenant_id, email)
        if row is None:
            await self.verify(await self._dummy(), password)  # same time as a wrong password
            raise CredentialsError("invalid e-mail or password")
        actor = Actor(tenant_id, row["id"], Role(row["role"]), ip, agent)
        if not await self.verify(row["password_hash"], password):
            async with unit_of_work(self.service, self.fallback) as unit:
                await self._audit(unit, actor, "LOGIN_FAILED", row["id"], "wrong password")
            raise CredentialsError("invalid e-mail or password")
        if row["status"] != UserStatus.ACTIVE.value:
            async with unit_of_work(self.service, self.fallback) as unit:
                await self._audit(unit, actor, "LOGIN_REFUSED", row["id"], "account suspended")
            raise Forbidden("this account is suspended")
        token, jti, expires = self.service.tokens.issue(
            row["id"], tenant_id, row["role"], row["employee_id"]
        )
        rehash = self.hasher.check_needs_rehash(row["password_hash"])
        new_hash = await self.hash(password) if rehash else None
        async with unit_of_work(self.service, self.fallback) as unit:
            if new_hash is not None:
                await unit.session.execute(
                    update(users).where(users.c.id == row["id"]).values(password_hash=new_hash)
                )
            await unit.emit(self._user_event(row, EventType.USER_LOGIN))
            await self._audit(unit, actor, "LOGIN", row["id"], f"login (token {jti})")
        return token, datetime.fromtimestamp(expires, tz=UTC), to_out(row)

    async def logout(self, actor: Actor) -> None:
        """Revoke the actor's token (until it would have expired anyway).

        Raises:
            RuleBroken: the token has no id (``jti``), so it cannot be revoked.
        """
        jti = actor.token_id
        if jti is None:
            raise RuleBroken("this token has no id (jti) and cannot be revoked")
        expires_at = utcnow() + timedelta(seconds=self.service.tokens.ttl_s)
        async with unit_of_work(self.service, self.fallback) as unit:
            exists = await unit.session.scalar(
                select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)
            )
            if exists is None:
                await unit.session.execute(
                    insert(revoked_tokens).values(jti=jti, expires_at=expires_at)
                )
            if actor.user_id is not None:
                await unit.emit(
                    create_user_event(
                        SOURCE,
                        actor.user_id,
                        EventType.USER_LOGOUT,
                        role=actor.role.value if actor.role else None,
                        **ServiceContext(actor.tenant_id).ids(),
                    )
                )
            await self._audit(unit, actor, "LOGOUT", actor.user_id, "logout")
        self.revoked.add(jti)

    async def me(self, actor: Actor) -> UserOut:
        """The caller's own account."""
        if actor.user_id is None:
            raise NotFound("no user")
        return to_out(
            await read_or_404(self.service, users, actor.user_id, actor.tenant_id, "user")
        )

    async def load_revoked(self) -> None:
        """Forget expired revocations and load the others into :attr:`revoked`."""
        async with self.service.transaction() as session:
            await session.execute(
                delete(revoked_tokens).where(revoked_tokens.c.expires_at < utcnow())
            )
            jtis = (await session.scalars(select(revoked_tokens.c.jti))).all()
        self.revoked.update(jtis)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not a password of anyone")
        return self._dummy_hash

    # -- bootstrap ----------------------------------------------------------------------------
    async def find(self, tenant_id: str, email: str) -> UserOut | None:
        """The account with ``email`` in ``tenant_id``, if any."""
        async with self.service.sessions() as session:
            row = await self._by_email(session, tenant_id, email)
        return None if row is None else to_out(row)
