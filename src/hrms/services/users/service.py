"""The users service: :func:`build` and :func:`bootstrap_admin`."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from argon2 import PasswordHasher
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from eventbus import KafkaSettings
from eventbus._transport.base import Transport
from hrms.service import Conflict, HrmsSettings, Role, RuleBroken, Service
from hrms.services.users.directory import Actor, Directory
from hrms.services.users.outbound import HttpFallback
from hrms.services.users.routes import auth_router, users_router
from hrms.services.users.schemas import Email, Name, Password, TenantId, UserCreate
from hrms.services.users.tables import metadata

logger = logging.getLogger("hrms.users")


class UsersService(Service):
    """The users service, with its :class:`Directory` and HTTP fallback.

    Its app sets ``app.state.revoked`` (the directory's revoked token ids), so
    :func:`hrms.service.auth.current_principal` refuses logged-out tokens here.
    """

    def __init__(
        self,
        *,
        settings: HrmsSettings | None = None,
        kafka: KafkaSettings | None = None,
        transport: Transport | None = None,
        http_client: httpx.AsyncClient | None = None,
        http_timeout_s: float = 2.0,
        breaker_fail_max: int = 3,
        breaker_recovery_s: float = 30.0,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        super().__init__(
            "users",
            metadata,
            settings=settings,
            kafka=kafka,
            transport=transport,
            title="HRMS user-management service",
        )
        self.fallback = HttpFallback(
            self.settings.audit_url,
            self.settings.notification_url,
            client=http_client,
            timeout_s=http_timeout_s,
            fail_max=breaker_fail_max,
            recovery_s=breaker_recovery_s,
        )
        self.directory = Directory(self, self.fallback, password_hasher)
        self.include(users_router)
        self.include(auth_router)
        self.on_start.append(self._started)
        self.on_stop.append(self.fallback.stop)
        if self.producer is None:
            self.readiness["http_fallback"] = self._fallback_status

    async def _started(self) -> None:
        await self.directory.load_revoked()
        if self.producer is None:
            await self.fallback.start()
            logger.info(
                "Kafka producer disabled (KAFKA_ENABLE_PRODUCER=false): audit and "
                "notifications go over HTTP"
            )

    async def _fallback_status(self) -> dict[str, Any]:
        return self.fallback.status()

    def app(self) -> FastAPI:
        """The FastAPI app, with the revoked-token set and the directory in its state."""
        app = super().app()
        app.state.revoked = self.directory.revoked
        app.state.directory = self.directory
        return app


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    http_client: httpx.AsyncClient | None = None,
    http_timeout_s: float = 2.0,
    breaker_fail_max: int = 3,
    breaker_recovery_s: float = 30.0,
    password_hasher: PasswordHasher | None = None,
) -> UsersService:
    """Build the users service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        http_client: the client of the HTTP fallback (``KAFKA_ENABLE_PRODUCER=false``);
            by default one is made at start and closed at stop.
        http_timeout_s: the most one fallback POST may take.
        breaker_fail_max: failures in a row that open a fallback target's circuit.
        breaker_recovery_s: how long an open circuit skips its target.
        password_hasher: the argon2 hasher (argon2-cffi's defaults when omitted; tests
            pass cheaper parameters).
    """
    return UsersService(
        settings=settings,
        kafka=kafka,
        transport=transport,
        http_client=http_client,
        http_timeout_s=http_timeout_s,
        breaker_fail_max=breaker_fail_max,
        breaker_recovery_s=breaker_recovery_s,
        password_hasher=password_hasher,
    )


class _Bootstrap(BaseModel):
    tenant_id: TenantId
    email: Email
    password: Password
    name: Name


async def bootstrap_admin(
    service: Service, tenant_id: str, email: str, password: str, name: str = "Administrator"
) -> int:
    """Create a tenant's first admin; return their user id.

    Idempotent: if ``email`` already has an admin account in the tenant, its id is
    returned and nothing changes (the password is not reset). Works on a service that is
    not started (the command line): the tables are created if missing, and the events
    wait in the outbox until the service runs (or, with the producer off, the audit
    record and welcome notification are POSTed at once).

    Raises:
        TypeError: ``service`` is not the users service.
        RuleBroken: an argument is invalid (e.g. a password under 8 characters).
        Conflict: ``email`` belongs to a user of the tenant who is not an admin.
    """
    if not isinstance(service, UsersService):
        raise TypeError(f"bootstrap_admin needs the users service, not {service.name!r}")
    try:
        given = _Bootstrap(tenant_id=tenant_id, email=email, password=password, name=name)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise RuleBroken(f"invalid admin ({fields}): {exc.errors()[0]['msg']}") from exc
    await service.migrate()
    directory = service.directory
    for attempt in range(2):
        existing = await directory.find(given.tenant_id, given.email)
        if existing is not None:
            if existing.role is not Role.ADMIN:
                raise Conflict(f"{given.email} is a {existing.role.value}, not an admin")
            logger.info("admin %s of %s already exists", existing.id, given.tenant_id)
            return existing.id
        try:
            user = await directory.create(
                Actor(given.tenant_id),
                UserCreate(
                    email=given.email, name=given.name, password=given.password, role=Role.ADMIN
                ),
            )
        except Conflict:
            if attempt:
                raise
            continue  # created concurrently: read it back
        logger.info("admin %s of %s created", user.id, given.tenant_id)
        return user.id
    raise AssertionError("unreachable")
