"""The users service on the in-memory broker: accounts, login/logout, events, HTTP fallback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from eventbus import BaseEvent
from hrms.service import Role
from hrms.services.users import UsersService, bootstrap_admin, build
from tests.services.conftest import Harness, ServiceClient, eventually

ADMIN_PW = "admin-password-1"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""Real argon2 with low cost, where request latency is measured."""
USER_PW = "user-password-1"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def long_jwt_secret(harness: Harness) -> None:
    """A 32-byte HS256 key: PyJWT warns (an error here) about the harness's short one."""
    secret = SecretStr("users-service-test-secret-32-bytes!")
    harness.settings = harness.settings.model_copy(update={"jwt_secret": secret})


async def create_user(
    client: ServiceClient,
    email: str,
    *,
    role: str = "employee",
    tenant: str = "acme",
    password: str = USER_PW,
    cid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    headers = client.token(1, tenant, Role.ADMIN)
    if cid:
        headers["X-Correlation-ID"] = cid
    body = {
        "email": email,
        "name": email.split("@", maxsplit=1)[0].title(),
        "password": password,
        "role": role,
        **extra,
    }
    response = await client.http.post("/users", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(
    client: ServiceClient, email: str, password: str, tenant: str = "acme"
) -> httpx.Response:
    return await client.http.post(
        "/auth/login", json={"email": email, "password": password, "tenant_id": tenant}
    )


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def of_type(events: list[BaseEvent], event_type: str) -> list[BaseEvent]:
    return [e for e in events if e.event_type == event_type]


def field_names(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {str(err["loc"][-1]) for err in response.json()["detail"]}


# --------------------------------------------------------------------------- CRUD and events


async def test_crud_emits_user_events_with_the_request_correlation_id(harness: Harness) -> None:
    users = await harness.start("users")
    seen = await harness.collect("user-queue")
    admin = users.token(1, "acme", Role.ADMIN)

    created = await create_user(users, "Ada@Example.com", cid="cid-create", employee_id=7)
    assert created["email"] == "ada@example.com"  # stored lower-case
    assert created["role"] == "employee"
    assert created["status"] == "active"
    assert created["employee_id"] == 7
    assert "password" not in created
    assert "password_hash" not in created
    uid = created["id"]

    got = await users.http.get(f"/users/{uid}", headers=admin)
    assert got.status_code == 200
    assert got.json() == created

    patched = await users.http.patch(
        f"/users/{uid}",
        json={"name": "Ada Lovelace", "role": "manager"},
        headers={**admin, "X-Correlation-ID": "cid-update"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Ada Lovelace"
    assert patched.json()["role"] == "manager"
    assert "password_hash" not in patched.json()

    deleted = await users.http.delete(
        f"/users/{uid}", headers={**admin, "X-Correlation-ID": "cid-delete"}
    )
    assert deleted.status_code == 204
    assert (await users.http.get(f"/users/{uid}", headers=admin)).status_code == 404

    await eventually(lambda: len(seen) >= 3, what="three user events")
    assert [e.event_type for e in seen] == ["user.created", "user.updated", "user.deleted"]
    assert [e.correlation_id for e in seen] == ["cid-create", "cid-update", "cid-delete"]
    assert all(e.data.user_id == uid for e in seen)  # type: ignore[attr-defined]
    assert all(e.tenant_id == "acme" for e in seen)
    assert seen[0].data.email == "ada@example.com"  # type: ignore[attr-defined]
    assert seen[1].data.changes == {"name": "Ada Lovelace", "role": "manager"}  # type: ignore[attr-defined]
    assert seen[1].source_service == "user-management-service"
    assert "password" not in str(seen[0].model_dump()).replace("password_changed", "")


async def test_list_is_paginated_filtered_and_tenant_scoped(harness: Harness) -> None:
    users = await harness.start("users")
    for name in ("a", "b", "c"):
        await create_user(users, f"{name}@acme.test")
    await create_user(users, "m@acme.test", role="manager")
    await create_user(users, "x@globex.test", tenant="globex")

    manager = users.token(2, "acme", Role.MANAGER)
    first = await users.http.get("/users", params={"limit": 2, "offset": 0}, headers=manager)
    assert first.status_code == 200
    page = first.json()
    assert page["total"] == 4
    assert (page["limit"], page["offset"]) == (2, 0)
    assert [u["email"] for u in page["items"]] == ["a@acme.test", "b@acme.test"]
    rest = (await users.http.get("/users?limit=2&offset=2", headers=manager)).json()
    assert [u["email"] for u in rest["items"]] == ["c@acme.test", "m@acme.test"]
    managers = (await users.http.get("/users?role=manager", headers=manager)).json()
    assert [u["email"] for u in managers["items"]] == ["m@acme.test"]
    assert all("password_hash" not in u for u in page["items"])

    bad = await users.http.get("/users?limit=0", headers=manager)
    assert "limit" in field_names(bad)


async def test_auth_roles_and_tenants(harness: Harness) -> None:
    users = await harness.start("users")
    ada = await create_user(users, "ada@acme.test")
    bob = await create_user(users, "bob@acme.test")
    employee = users.token(ada["id"], "acme", Role.EMPLOYEE)

    assert (await users.http.get("/users")).status_code == 401
    assert (await users.http.get(f"/users/{ada['id']}")).status_code == 401
    garbage = {"Authorization": "Bearer not-a-jwt"}
    assert (await users.http.get("/auth/me", headers=garbage)).status_code == 401

    new = {"email": "eve@acme.test", "name": "Eve", "password": USER_PW}
    assert (await users.http.post("/users", json=new, headers=employee)).status_code == 403
    assert (await users.http.get("/users", headers=employee)).status_code == 403
    assert (await users.http.delete(f"/users/{bob['id']}", headers=employee)).status_code == 403
    for action in ("suspend", "activate"):
        r = await users.http.post(f"/users/{bob['id']}/{action}", headers=employee)
        assert r.status_code == 403
    assert (await users.http.get(f"/users/{bob['id']}", headers=employee)).status_code == 403
    assert (await users.http.get(f"/users/{ada['id']}", headers=employee)).status_code == 200

    # an employee may rename themself, but not change their role or someone else
    own = await users.http.patch(f"/users/{ada['id']}", json={"name": "Ada L."}, headers=employee)
    assert own.status_code == 200
    assert own.json()["name"] == "Ada L."
    promote = await users.http.patch(
        f"/users/{ada['id']}", json={"role": "admin"}, headers=employee
    )
    assert promote.status_code == 403
    other = await users.http.patch(f"/users/{bob['id']}", json={"name": "B"}, headers=employee)
    assert other.status_code == 403

    globex_admin = users.token(1, "globex", Role.ADMIN)
    assert (await users.http.get(f"/users/{ada['id']}", headers=globex_admin)).status_code == 404
    r = await users.http.patch(f"/users/{ada['id']}", json={"name": "X"}, headers=globex_admin)
    assert r.status_code == 404
    assert (await users.http.delete(f"/users/{ada['id']}", headers=globex_admin)).status_code == 404
    assert (await users.http.get("/users/999999", headers=users.token())).status_code == 404


async def test_validation_errors_name_the_fields_and_duplicates_conflict(harness: Harness) -> None:
    users = await harness.start("users")
    admin = users.token()
    bad = await users.http.post(
        "/users",
        json={"email": "not-an-email", "name": "", "password": "short", "role": "boss"},
        headers=admin,
    )
    assert field_names(bad) >= {"email", "name", "password", "role"}
    missing = await users.http.post("/users", json={}, headers=admin)
    assert field_names(missing) >= {"email", "name", "password"}
    extra = await users.http.post(
        "/users",
        json={"email": "a@b.test", "name": "A", "password": USER_PW, "status": "suspended"},
        headers=admin,
    )
    assert "status" in field_names(extra)
    bad_login = await users.http.post("/auth/login", json={"email": "a@b.test"})
    assert field_names(bad_login) >= {"password", "tenant_id"}

    await create_user(users, "dup@acme.test")
    again = await users.http.post(
        "/users",
        json={"email": "DUP@acme.test", "name": "Dup", "password": USER_PW},
        headers=admin,
    )
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    # the same e-mail in another tenant is another user
    await create_user(users, "dup@acme.test", tenant="globex")

    other = await create_user(users, "other@acme.test")
    clash = await users.http.patch(
        f"/users/{other['id']}", json={"email": "dup@acme.test"}, headers=admin
    )
    assert clash.status_code == 409
    pw_in_patch = await users.http.patch(
        f"/users/{other['id']}", json={"password": "whatever-123"}, headers=admin
    )
    assert "password" in field_names(pw_in_patch)


# --------------------------------------------------------------------------- login, logout


async def test_login_me_and_logout(harness: Harness) -> None:
    users = await harness.start("users")
    seen = await harness.collect("user-queue")
    ada = await create_user(users, "ada@acme.test", role="manager", employee_id=42)

    response = await login(users, "ADA@acme.test", USER_PW)
    body = response.json()
    assert response.status_code == 200, body
    assert body["token_type"] == "bearer"
    assert body["expires_at"]
    assert body["user"]["id"] == ada["id"]
    assert "password_hash" not in body["user"]
    headers = bearer(response)
    principal = users.service.tokens.verify(body["access_token"])
    assert (principal.user_id, principal.tenant_id, principal.role) == (
        ada["id"],
        "acme",
        "manager",
    )
    assert principal.employee_id == 42

    me = await users.http.get("/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == "ada@acme.test"
    assert (await users.http.get("/users", headers=headers)).status_code == 200  # a manager

    wrong = await login(users, "ada@acme.test", "wrong-password")
    unknown = await login(users, "nobody@acme.test", USER_PW)
    other_tenant = await login(users, "ada@acme.test", USER_PW, tenant="globex")
    assert wrong.status_code == unknown.status_code == other_tenant.status_code == 401
    assert wrong.json() == unknown.json() == other_tenant.json()

    assert (await users.http.post("/auth/logout", headers=headers)).status_code == 204
    refused = await users.http.get("/auth/me", headers=headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    fresh = bearer(await login(users, "ada@acme.test", USER_PW))
    assert (await users.http.get("/auth/me", headers=fresh)).status_code == 200

    # seed 002's user.login and user.logout; failed logins emit none (they are audited)
    await eventually(lambda: len(seen) >= 4, what="created, login, logout, login")
    assert [e.event_type for e in seen] == [
        "user.created",
        "user.login",
        "user.logout",
        "user.login",
    ]
    logged_in, logged_out = seen[1], seen[2]
    assert logged_in.data.user_id == logged_out.data.user_id == ada["id"]  # type: ignore[attr-defined]
    assert logged_in.data.role == "manager"  # type: ignore[attr-defined]
    assert logged_in.tenant_id == logged_out.tenant_id == "acme"
    assert logged_in.default_key() == str(ada["id"])  # one user's sessions stay in order
    # a replica started later loads the revoked tokens: the old token stays refused there
    # (SQLite allows one outbox relay per database, so the second replica does not produce)
    replica = await harness.start("users", enable_producer=False)
    assert (await replica.http.get("/auth/me", headers=headers)).status_code == 401


async def test_suspended_user_cannot_log_in_until_activated(harness: Harness) -> None:
    users = await harness.start("users")
    seen = await harness.collect("user-queue")
    admin = users.token()
    bob = await create_user(users, "bob@acme.test")

    suspended = await users.http.post(f"/users/{bob['id']}/suspend", headers=admin)
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    again = await users.http.post(f"/users/{bob['id']}/suspend", headers=admin)
    assert again.status_code == 409

    refused = await login(users, "bob@acme.test", USER_PW)
    assert refused.status_code == 403
    assert "suspended" in refused.json()["detail"]
    # a wrong password still says 401: the status is only told to who knows the password
    assert (await login(users, "bob@acme.test", "wrong-password")).status_code == 401

    activated = await users.http.post(f"/users/{bob['id']}/activate", headers=admin)
    assert activated.json()["status"] == "active"
    assert (await login(users, "bob@acme.test", USER_PW)).status_code == 200

    await eventually(lambda: len(seen) >= 4, what="created, suspended, activated, login")
    assert [e.event_type for e in seen] == [
        "user.created",
        "user.suspended",
        "user.activated",
        "user.login",  # the refused logins are audited, not user.login
    ]
    assert seen[1].data.status == "suspended"  # type: ignore[attr-defined]


async def test_tenant_keeps_an_active_admin(harness: Harness) -> None:
    users = await harness.start("users")
    boss_id = await bootstrap_admin(users.service, "acme", "boss@acme.test", ADMIN_PW)
    boss = bearer(await login(users, "boss@acme.test", ADMIN_PW))

    for attempt in (
        users.http.delete(f"/users/{boss_id}", headers=boss),
        users.http.post(f"/users/{boss_id}/suspend", headers=boss),
        users.http.patch(f"/users/{boss_id}", json={"role": "employee"}, headers=boss),
    ):
        response = await attempt
        assert response.status_code == 409
        assert "at least one active admin" in response.json()["detail"]

    await create_user(users, "second@acme.test", role="admin")
    demoted = await users.http.patch(f"/users/{boss_id}", json={"role": "manager"}, headers=boss)
    assert demoted.status_code == 200


# --------------------------------------------------------------------------- passwords


async def test_password_change_emits_event_and_notification(harness: Harness) -> None:
    users = await harness.start("users")
    user_events = await harness.collect("user-queue")
    notes = await harness.collect("notification-queue")
    ada = await create_user(users, "ada@acme.test")
    own = bearer(await login(users, "ada@acme.test", USER_PW))
    url = f"/users/{ada['id']}/password"

    no_current = await users.http.post(url, json={"new_password": "new-password-1"}, headers=own)
    assert no_current.status_code == 422
    assert "current_password" in no_current.json()["detail"]
    wrong = await users.http.post(
        url, json={"current_password": "nope-nope", "new_password": "new-password-1"}, headers=own
    )
    assert wrong.status_code == 403
    short = await users.http.post(
        url, json={"current_password": USER_PW, "new_password": "short"}, headers=own
    )
    assert "new_password" in field_names(short)

    changed = await users.http.post(
        url,
        json={"current_password": USER_PW, "new_password": "new-password-1"},
        headers={**own, "X-Correlation-ID": "cid-pw"},
    )
    assert changed.status_code == 204
    assert (await login(users, "ada@acme.test", USER_PW)).status_code == 401
    assert (await login(users, "ada@acme.test", "new-password-1")).status_code == 200

    bob = await create_user(users, "bob@acme.test")
    ada_on_bob = await users.http.post(
        f"/users/{bob['id']}/password", json={"new_password": "hijacked-123"}, headers=own
    )
    assert ada_on_bob.status_code == 403
    by_admin = await users.http.post(
        f"/users/{bob['id']}/password",
        json={"new_password": "reset-by-admin"},
        headers=users.token(),
    )
    assert by_admin.status_code == 204
    assert (await login(users, "bob@acme.test", "reset-by-admin")).status_code == 200

    await eventually(lambda: len(of_type(user_events, "user.password_changed")) >= 2)
    first, second = of_type(user_events, "user.password_changed")
    assert first.correlation_id == "cid-pw"
    assert (first.data.user_id, first.data.changed_by) == (ada["id"], "self")  # type: ignore[attr-defined]
    assert second.data.changed_by == "admin"  # type: ignore[attr-defined]

    def password_notes() -> list[BaseEvent]:
        return [n for n in notes if n.data.template_name == "password_changed"]  # type: ignore[attr-defined]

    await eventually(lambda: len(password_notes()) >= 2, what="password_changed notifications")
    note = password_notes()[0]
    assert note.correlation_id == "cid-pw"
    assert note.data.recipient_email == "ada@acme.test"  # type: ignore[attr-defined]
    assert note.data.recipient_name == "Ada"  # type: ignore[attr-defined]
    assert note.data.template_data["name"] == "Ada"  # type: ignore[attr-defined]
    assert "new-password-1" not in note.model_dump_json()


# --------------------------------------------------------------------------- audit, notifications


async def test_writes_and_logins_are_audited_and_welcomed(harness: Harness) -> None:
    users = await harness.start("users")
    audits = await harness.collect("audit-queue")
    notes = await harness.collect("notification-queue")
    admin = users.token(1, "acme", Role.ADMIN)

    ada = await create_user(users, "ada@acme.test", cid="cid-a1")
    await users.http.patch(
        f"/users/{ada['id']}",
        json={"name": "Ada B"},
        headers={**admin, "X-Correlation-ID": "cid-a2"},
    )
    token = bearer(await login(users, "ada@acme.test", USER_PW))
    await login(users, "ada@acme.test", "bad-password")
    await users.http.post("/auth/logout", headers=token)
    await users.http.post(f"/users/{ada['id']}/suspend", headers=admin)
    await users.http.delete(f"/users/{ada['id']}", headers=admin)

    expected = ["CREATE", "UPDATE", "LOGIN", "LOGIN_FAILED", "LOGOUT", "SUSPEND", "DELETE"]
    await eventually(lambda: len(audits) >= len(expected), what="audit records")
    assert [a.data.action for a in audits] == expected  # type: ignore[attr-defined]
    assert all(a.event_type == "audit.user.action" for a in audits)
    assert all(a.data.resource_type == "user" for a in audits)  # type: ignore[attr-defined]
    assert all(a.data.resource_id == ada["id"] for a in audits)  # type: ignore[attr-defined]
    assert all(a.tenant_id == "acme" for a in audits)
    create, update, logged_in = audits[:3]
    assert (create.correlation_id, update.correlation_id) == ("cid-a1", "cid-a2")
    assert create.data.user_id == 1  # type: ignore[attr-defined]  # the admin who did it
    assert update.data.changes == {"name": "Ada B"}  # type: ignore[attr-defined]
    assert logged_in.data.user_id == ada["id"]  # type: ignore[attr-defined]

    await eventually(lambda: notes, what="welcome notification")
    welcome = notes[0]
    assert welcome.event_type == "user.created"
    assert welcome.correlation_id == "cid-a1"
    # the notification service's template (seed 000's name)
    assert welcome.data.template_name == "welcome_email"  # type: ignore[attr-defined]
    assert welcome.data.recipient_email == "ada@acme.test"  # type: ignore[attr-defined]
    assert welcome.data.recipient_name == "Ada"  # type: ignore[attr-defined]
    assert welcome.data.template_data["role"] == "employee"  # type: ignore[attr-defined]


async def test_bootstrap_admin_is_idempotent_and_works_before_start(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # as ``hrms admin create`` does: the service is built but not started
    cold = build(settings=harness.settings, transport=harness.broker)
    try:
        first = await bootstrap_admin(cold, "acme", "Boss@Acme.test", ADMIN_PW, "The Boss")
        again = await bootstrap_admin(cold, "acme", "boss@acme.test", "another-password")
        assert first == again
    finally:
        await cold.engine.dispose()

    # the events waited in the outbox; the running service publishes them
    seen = await harness.collect("user-queue")
    users = await harness.start("users")
    assert await bootstrap_admin(users.service, "acme", "boss@acme.test", ADMIN_PW) == first
    token = bearer(await login(users, "boss@acme.test", ADMIN_PW))  # the first password stands
    me = (await users.http.get("/auth/me", headers=token)).json()
    assert (me["id"], me["role"], me["name"]) == (first, "admin", "The Boss")
    await eventually(lambda: len(seen) >= 2, what="user.created from the outbox, user.login")
    assert [e.event_type for e in seen] == ["user.created", "user.login"]

    await create_user(users, "emp@acme.test")
    with pytest.raises(Exception, match="not an admin"):
        await bootstrap_admin(users.service, "acme", "emp@acme.test", ADMIN_PW)
    with pytest.raises(Exception, match="password"):
        await bootstrap_admin(users.service, "acme", "new@acme.test", "short")


# --------------------------------------------------------------------------- HTTP fallback


class Recorder:
    """A stand-in audit and notification service: records POSTs, or fails on demand."""

    def __init__(self) -> None:
        self.audits: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.hits = 0
        self.mode = "ok"  # ok | error (500) | raise | hang
        self.app = FastAPI()
        self.app.post("/audit-logs")(self._receive)
        self.app.post("/notifications")(self._receive)

    async def _receive(self, request: Request) -> JSONResponse:
        self.hits += 1
        if self.mode == "error":
            return JSONResponse({"detail": "down"}, status_code=500)
        if self.mode == "raise":
            raise RuntimeError("audit service crashed")
        if self.mode == "hang":
            await asyncio.Event().wait()
        body = await request.json()
        target = self.audits if request.url.path == "/audit-logs" else self.notifications
        target.append(body)
        return JSONResponse({"status": "recorded"}, status_code=201)


@asynccontextmanager
async def fallback_users(
    harness: Harness, recorder: Recorder, **options: Any
) -> AsyncIterator[ServiceClient]:
    """The users service with Kafka producing off, its fallback POSTing to ``recorder``."""
    settings = harness.settings.model_copy(
        update={
            "enable_producer": False,
            "audit_url": "http://audit.test",
            "notification_url": "http://notifications.test",
        }
    )
    fallback_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=recorder.app))
    service = build(
        settings=settings,
        transport=harness.broker,
        http_client=fallback_client,
        password_hasher=CHEAP_HASHER,
        **options,
    )
    app = service.app()
    async with (
        fallback_client,
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://users") as http,
    ):
        yield ServiceClient(service, http)


async def test_without_kafka_audit_and_notifications_go_over_http(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hrms.users")
    recorder = Recorder()
    async with fallback_users(harness, recorder) as users:
        assert users.service.producer is None
        ada = await create_user(users, "ada@acme.test", cid="cid-http")
        response = await login(users, "ada@acme.test", USER_PW)
        assert response.status_code == 200
        await users.http.post(
            f"/users/{ada['id']}/password",
            json={"current_password": USER_PW, "new_password": "new-password-1"},
            headers=bearer(response),
        )

        await eventually(lambda: len(recorder.audits) >= 3, what="audits over HTTP")
        await eventually(lambda: len(recorder.notifications) >= 2, what="notifications over HTTP")
        assert [a["data"]["action"] for a in recorder.audits] == [
            "CREATE",
            "LOGIN",
            "PASSWORD_CHANGE",
        ]
        create = recorder.audits[0]
        assert create["event_type"] == "audit.user.action"
        assert create["correlation_id"] == "cid-http"
        assert create["data"]["resource_id"] == ada["id"]
        assert [n["data"]["template_name"] for n in recorder.notifications] == [
            "welcome_email",
            "password_changed",
        ]
        assert recorder.notifications[0]["data"]["recipient_email"] == "ada@acme.test"
        ready = (await users.http.get("/ready")).json()
        assert ready["http_fallback"]["audit"]["circuit"] == "closed"
        assert ready["http_fallback"]["audit"]["delivered"] == 3

    messages = [r.getMessage() for r in caplog.records]
    assert any(f"audit {create['event_id']} via http" in m for m in messages)
    assert not any("via kafka(outbox)" in m for m in messages)


async def test_kafka_path_logs_the_outbox_transport(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hrms.users")
    users = await harness.start("users")
    audits = await harness.collect("audit-queue")
    await create_user(users, "ada@acme.test")
    await eventually(lambda: audits, what="audit via kafka")
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"audit {audits[0].event_id} via kafka(outbox)" in m for m in messages)


@pytest.mark.parametrize("mode", ["error", "raise", "hang"])
async def test_failing_fallback_opens_the_circuit_and_requests_stay_fast(
    harness: Harness, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.INFO, logger="hrms.users")
    recorder = Recorder()
    recorder.mode = mode
    timeout = 0.5
    options = {"http_timeout_s": timeout, "breaker_fail_max": 3, "breaker_recovery_s": 60.0}
    async with fallback_users(harness, recorder, **options) as users:
        fallback = users.service.fallback  # type: ignore[attr-defined]
        durations = []
        for i in range(6):
            started = time.monotonic()
            await create_user(users, f"u{i}@acme.test")  # asserts 201
            durations.append(time.monotonic() - started)
        # the sends run after the response: no request waited for the failing service
        assert max(durations) < timeout, durations

        audit = fallback.targets["audit"]
        await eventually(lambda: audit.failed + audit.dropped == 6, what="six audits handled")
        assert fallback.state("audit") == "open"
        # three failures opened the circuit; the next three were skipped without a call
        assert (audit.failed, audit.dropped, audit.delivered) == (3, 3, 0)
        notes = fallback.targets["notification"]
        await eventually(lambda: notes.failed + notes.dropped == 6, what="six notifications")
        assert (notes.failed, notes.dropped) == (3, 3)
        assert recorder.hits == 6  # 3 audits + 3 notifications reached it, no more
        assert recorder.audits == []
        messages = [r.getMessage() for r in caplog.records]
        assert sum("dropped: circuit open" in m for m in messages) == 6
        ready = (await users.http.get("/ready")).json()
        assert ready["http_fallback"]["audit"]["circuit"] == "open"


async def test_open_circuit_closes_again_when_the_service_recovers(harness: Harness) -> None:
    recorder = Recorder()
    recorder.mode = "error"
    options = {"http_timeout_s": 0.5, "breaker_fail_max": 3, "breaker_recovery_s": 0.3}
    async with fallback_users(harness, recorder, **options) as users:
        fallback = users.service.fallback  # type: ignore[attr-defined]
        for i in range(3):
            await create_user(users, f"u{i}@acme.test")
        await eventually(lambda: fallback.state("audit") != "closed", what="audit circuit open")

        recorder.mode = "ok"
        await eventually(lambda: fallback.state("audit") == "half_open", what="half open")
        await create_user(users, "after@acme.test", cid="cid-after")
        await eventually(lambda: recorder.audits, what="audit delivered after recovery")
        assert fallback.state("audit") == "closed"
        assert recorder.audits[0]["correlation_id"] == "cid-after"
        assert recorder.audits[0]["data"]["changes"]["email"] == "after@acme.test"
        await eventually(lambda: recorder.notifications, what="welcome after recovery")


async def test_registry_builds_the_users_service(harness: Harness) -> None:
    users = await harness.start("users")
    assert isinstance(users.service, UsersService)
    assert users.service.producer is not None
    health = await users.http.get("/health")
    assert health.json()["service"] == "users"
