"""The notification service against a real SMTP server (aiosmtpd) and the in-memory broker."""

from __future__ import annotations

import asyncio
import email
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from eventbus import KafkaProducer
from hrms.events import EventType, NotificationEvent, create_notification_event
from hrms.service import Role
from hrms.services import notifications
from hrms.services.notifications import DeliveryPolicy, PermanentDeliveryError, Status
from hrms.services.notifications._templates import Templates
from tests.services.conftest import Harness, ServiceClient, eventually

FAST = DeliveryPolicy(
    attempts=200,
    http_attempts=2,
    backoff_s=0.01,
    max_backoff_s=0.05,
    breaker_failures=2,
    breaker_recovery_s=0.05,
    smtp_timeout_s=5,
)
"""Short waits so a down server is retried many times within a test."""


def free_port() -> int:
    """A TCP port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sink:
    """An aiosmtpd handler keeping every accepted message; it can refuse or defer some."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()
        self.defer_data = 0
        self.deferred = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.deferred < self.defer_data:
            self.deferred += 1
            return "451 4.3.0 try again later"
        msg = email.message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted"

    def with_id(self, event_id: object) -> list[EmailMessage]:
        """The messages whose Message-ID is that of ``event_id``."""
        return [m for m in self.messages if m["Message-ID"] == f"<{event_id}@hrms>"]


class SmtpServer:
    """A real SMTP server on ``port`` (started on demand)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sink = Sink()
        self.controller: Controller | None = None

    async def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self.controller.start)

    async def stop(self) -> None:
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
            self.controller = None


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def stack(harness: Harness) -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


@pytest.fixture
async def producer(harness: Harness) -> AsyncIterator[KafkaProducer]:
    p = KafkaProducer(transport=harness.broker)
    await p.start()
    yield p
    await p.stop()


async def start(harness: Harness, stack: AsyncExitStack, port: int, **kwargs: Any) -> ServiceClient:
    """Start the notification service sending to ``port`` (build kwargs pass through)."""
    update: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port}
    if "database_url" in kwargs:
        update["database_url"] = kwargs.pop("database_url")
    settings = harness.settings.model_copy(update=update)
    kwargs.setdefault("delivery", FAST)
    service = notifications.build(settings=settings, transport=harness.broker, **kwargs)
    app = service.app()
    await stack.enter_async_context(app.router.lifespan_context(app))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://notifications"
    )
    await stack.enter_async_context(client)
    return ServiceClient(service, client)


def notification(
    template: str = "welcome_email",
    to: str = "ann@example.com",
    tenant: str | None = "acme",
    **data: Any,
) -> NotificationEvent:
    return create_notification_event(
        source_service="users",
        recipient_email=to,
        recipient_name="Ann Lee",
        subject="Welcome to HRMS!",
        template_name=template,
        template_data=data or {"email": to},
        event_type=EventType.USER_CREATED,
        tenant_id=tenant,
        user_id=7,
    )


async def log_row(svc: ServiceClient, event_id: object) -> dict[str, Any] | None:
    table = svc.service.metadata.tables["delivery_log"]
    async with svc.service.engine.connect() as conn:
        row = (await conn.execute(select(table).where(table.c.event_id == str(event_id)))).first()
    return None if row is None else dict(row._mapping)


async def status_is(svc: ServiceClient, event_id: object, status: Status) -> dict[str, Any] | None:
    row = await log_row(svc, event_id)
    return row if row is not None and row["status"] == status.value else None


def text_part(msg: EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


# ------------------------------------------------------------------------------ Kafka path


async def test_email_is_sent_once_even_when_the_event_is_delivered_twice(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer, producer: KafkaProducer
) -> None:
    svc = await start(harness, stack, smtp.port)
    event = notification(email="ann@example.com", login_url="https://hrms/login")
    topic = svc.service.settings.notification_topic
    await producer.publish(topic, event)
    await producer.publish(topic, event)  # redelivered (e.g. the outbox published twice)
    marker = notification(to="bob@example.com")
    await producer.publish(topic, marker)  # same partition: handled after both copies

    await eventually(lambda: smtp.sink.with_id(marker.event_id), what="the marker e-mail")
    sent = smtp.sink.with_id(event.event_id)
    assert len(sent) == 1
    assert len(smtp.sink.messages) == 2
    msg = sent[0]
    assert msg["Subject"] == "Welcome to HRMS!"
    assert msg["To"] == "Ann Lee <ann@example.com>"
    assert msg["From"] == svc.service.settings.mail_from
    assert msg["Date"].datetime == event.timestamp.replace(microsecond=0)
    body = text_part(msg)
    assert "Hello Ann Lee," in body
    assert "https://hrms/login" in body
    row = await status_is(svc, event.event_id, Status.SENT)
    assert row is not None
    assert row["attempts"] == 1
    assert row["recipient"] == "ann@example.com"
    assert row["template"] == "welcome_email"
    assert row["tenant_id"] == "acme"
    assert row["sent_at"] is not None


async def test_html_part_is_autoescaped_and_text_part_is_not(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer, producer: KafkaProducer
) -> None:
    svc = await start(harness, stack, smtp.port)
    event = notification(email="<b>ann</b>@example.com")
    await producer.publish(svc.service.settings.notification_topic, event)
    [msg] = await eventually(lambda: smtp.sink.with_id(event.event_id))
    assert "for <b>ann</b>@example.com" in text_part(msg)
    html = text_part(msg, "html")
    assert "&lt;b&gt;ann&lt;/b&gt;@example.com" in html
    assert "<b>ann</b>" not in html


async def test_an_event_left_sending_by_a_crash_is_sent_again_with_the_same_message_id(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer, producer: KafkaProducer
) -> None:
    svc = await start(harness, stack, smtp.port)
    crashed, done = notification(), notification(to="bob@example.com")
    table = svc.service.metadata.tables["delivery_log"]
    now = datetime.now(UTC)
    common = {"tenant_id": "acme", "template": "welcome_email", "subject": "Welcome to HRMS!"}
    async with svc.service.engine.begin() as conn:
        await conn.execute(
            insert(table),
            [
                {
                    **common,
                    "event_id": str(crashed.event_id),
                    "recipient": "ann@example.com",
                    "status": "sending",  # the process died after marking, mid-send
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                },
                {
                    **common,
                    "event_id": str(done.event_id),
                    "recipient": "bob@example.com",
                    "status": "sent",  # sent before: never again
                    "attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                    "sent_at": now,
                },
            ],
        )
    topic = svc.service.settings.notification_topic
    await producer.publish(topic, done)
    await producer.publish(topic, crashed)
    await eventually(lambda: status_is(svc, crashed.event_id, Status.SENT))
    [msg] = smtp.sink.with_id(crashed.event_id)
    assert msg["Message-ID"] == f"<{crashed.event_id}@hrms>"
    assert smtp.sink.with_id(done.event_id) == []
    assert len(smtp.sink.messages) == 1


async def test_smtp_down_then_up_is_eventually_sent(
    harness: Harness, stack: AsyncExitStack, producer: KafkaProducer
) -> None:
    server = SmtpServer(free_port())  # nothing listens there yet
    stack.push_async_callback(server.stop)
    svc = await start(harness, stack, server.port)
    event = notification()
    await producer.publish(svc.service.settings.notification_topic, event)

    async def retried() -> bool:
        row = await log_row(svc, event.event_id)
        return row is not None and row["status"] == "sending" and row["attempts"] >= 3

    await eventually(retried, what="several failed tries")
    row = await log_row(svc, event.event_id)
    assert row is not None
    assert "unreachable" in row["error"] or "circuit open" in row["error"]
    breaker = await svc.service.readiness["smtp"]()
    assert breaker["failures"] >= 2  # the threshold: it has opened (and maybe half-opened)

    await server.start()
    await eventually(lambda: status_is(svc, event.event_id, Status.SENT), what="sent")
    assert len(server.sink.with_id(event.event_id)) == 1
    assert len(server.sink.messages) == 1
    assert (await svc.service.readiness["smtp"]())["breaker"] == "closed"


async def test_4xx_replies_are_retried(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer, producer: KafkaProducer
) -> None:
    smtp.sink.defer_data = 2
    svc = await start(harness, stack, smtp.port)
    event = notification()
    await producer.publish(svc.service.settings.notification_topic, event)
    row = await eventually(lambda: status_is(svc, event.event_id, Status.SENT))
    assert row["attempts"] == 3
    assert smtp.sink.deferred == 2
    assert len(smtp.sink.with_id(event.event_id)) == 1


async def test_5xx_reply_sends_the_event_to_the_dead_letter_topic(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer, producer: KafkaProducer
) -> None:
    smtp.sink.refuse.add("nobody@example.com")
    dlq = await harness.collect("notification-dlq")
    svc = await start(harness, stack, smtp.port)
    refused, fine = notification(to="nobody@example.com"), notification()
    topic = svc.service.settings.notification_topic
    await producer.publish(topic, refused)
    await producer.publish(topic, fine)

    await eventually(lambda: [e for e in dlq if e.event_id == refused.event_id], what="DLQ")
    row = await eventually(lambda: status_is(svc, refused.event_id, Status.FAILED))
    assert "550" in row["error"]
    assert row["attempts"] >= 1
    await eventually(lambda: smtp.sink.with_id(fine.event_id), what="the next event's e-mail")
    assert smtp.sink.with_id(refused.event_id) == []
    assert [e.event_id for e in dlq] == [refused.event_id]
    assert isinstance(dlq[0], NotificationEvent)


async def test_unknown_template_sends_the_event_to_the_dead_letter_topic(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer, producer: KafkaProducer
) -> None:
    dlq = await harness.collect("notification-dlq")
    svc = await start(harness, stack, smtp.port)
    event = notification(template="no_such_template")
    await producer.publish(svc.service.settings.notification_topic, event)
    await eventually(lambda: [e for e in dlq if e.event_id == event.event_id], what="DLQ")
    row = await status_is(svc, event.event_id, Status.FAILED)
    assert row is not None
    assert "unknown template 'no_such_template'" in row["error"]
    assert row["attempts"] == 0
    assert smtp.sink.messages == []


# ------------------------------------------------------------------------------- HTTP path


async def test_http_post_of_an_event_without_a_token_sends_it_once(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer
) -> None:
    svc = await start(harness, stack, smtp.port)
    event = notification(template="password_changed", changed_at="09:30")
    body = event.model_dump(mode="json")  # what the users service posts
    first = await svc.http.post("/notifications", json=body)
    assert first.status_code == 200, first.text
    assert first.json() == {"event_id": str(event.event_id), "status": "sent"}
    again = await svc.http.post("/notifications", json=body)
    assert again.json()["status"] == "already_sent"
    [msg] = smtp.sink.messages
    assert msg["Message-ID"] == f"<{event.event_id}@hrms>"
    assert "changed at 09:30" in text_part(msg)
    row = await log_row(svc, event.event_id)
    assert row is not None
    assert row["tenant_id"] == "acme"


async def test_http_post_of_the_flat_shape_with_a_token_takes_the_callers_tenant(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer
) -> None:
    svc = await start(harness, stack, smtp.port)
    event_id = str(uuid.uuid4())
    flat = {
        "event_id": event_id,
        "recipient_email": "cy@example.com",
        "recipient_name": "Cy",
        "subject": "Leave approved",
        "template_name": "leave_approved",
        "template_data": {"leave_type": "annual", "start_date": "2025-12-01"},
    }
    resp = await svc.http.post(
        "/notifications", json=flat, headers=svc.token(3, "globex", Role.EMPLOYEE, 3)
    )
    assert resp.status_code == 200, resp.text
    [msg] = smtp.sink.messages
    assert msg["Subject"] == "Leave approved"
    assert "annual leave from 2025-12-01 has been approved" in text_part(msg)
    row = await log_row(svc, event_id)
    assert row is not None
    assert row["tenant_id"] == "globex"

    other = {**flat, "event_id": str(uuid.uuid4()), "tenant_id": "acme"}
    denied = await svc.http.post("/notifications", json=other, headers=svc.token(3, "globex"))
    assert denied.status_code == 403
    bad_token = await svc.http.post(
        "/notifications", json=other, headers={"Authorization": "Bearer nope"}
    )
    assert bad_token.status_code == 401


async def test_http_post_rejects_bad_bodies_and_unsendable_events(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer
) -> None:
    svc = await start(harness, stack, smtp.port)
    missing = await svc.http.post("/notifications", json={"subject": "x"})
    assert missing.status_code == 422
    locs = {tuple(e["loc"]) for e in missing.json()["detail"]}
    assert ("body", "recipient_email") in locs
    assert ("body", "template_name") in locs
    bad_address = await svc.http.post(
        "/notifications",
        json={"recipient_email": "not-an-address", "subject": "x", "template_name": "generic"},
    )
    assert bad_address.status_code == 422
    unknown = notification(template="nope").model_dump(mode="json")
    resp = await svc.http.post("/notifications", json=unknown)
    assert resp.status_code == 422
    assert "unknown template 'nope'" in resp.json()["detail"]
    smtp.sink.refuse.add("gone@example.com")
    refused = notification(to="gone@example.com").model_dump(mode="json")
    resp = await svc.http.post("/notifications", json=refused)
    assert resp.status_code == 422
    assert "550" in resp.json()["detail"]
    assert smtp.sink.messages == []


async def test_http_post_answers_503_when_the_mail_server_is_down(
    harness: Harness, stack: AsyncExitStack
) -> None:
    svc = await start(harness, stack, free_port())
    event = notification()
    resp = await svc.http.post("/notifications", json=event.model_dump(mode="json"))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30"
    row = await log_row(svc, event.event_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["attempts"] == 2


async def test_anonymous_posts_can_be_switched_off(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer
) -> None:
    svc = await start(harness, stack, smtp.port, allow_anonymous=False)
    body = notification().model_dump(mode="json")
    assert (await svc.http.post("/notifications", json=body)).status_code == 401
    ok = await svc.http.post("/notifications", json=body, headers=svc.token(1, "acme"))
    assert ok.status_code == 200


async def test_delivery_log_is_for_admins_of_the_tenant_with_filters_and_pages(
    harness: Harness, stack: AsyncExitStack, smtp: SmtpServer
) -> None:
    svc = await start(harness, stack, smtp.port)
    smtp.sink.refuse.add("gone@example.com")
    for i in range(3):
        body = notification(to=f"p{i}@example.com").model_dump(mode="json")
        assert (await svc.http.post("/notifications", json=body)).status_code == 200
    gone = notification(to="gone@example.com").model_dump(mode="json")
    assert (await svc.http.post("/notifications", json=gone)).status_code == 422
    other = notification(tenant="globex").model_dump(mode="json")
    assert (await svc.http.post("/notifications", json=other)).status_code == 200

    admin = svc.token(1, "acme", Role.ADMIN)
    page = (await svc.http.get("/notifications", headers=admin)).json()
    assert page["total"] == 4
    assert {i["tenant_id"] for i in page["items"]} == {"acme"}
    failed = (await svc.http.get("/notifications?status=failed", headers=admin)).json()
    assert [i["recipient"] for i in failed["items"]] == ["gone@example.com"]
    assert "550" in failed["items"][0]["error"]
    one = (await svc.http.get("/notifications?recipient=P1@example.com", headers=admin)).json()
    assert [i["recipient"] for i in one["items"]] == ["p1@example.com"]
    assert one["items"][0]["status"] == "sent"
    first = (await svc.http.get("/notifications?limit=3", headers=admin)).json()
    rest = (await svc.http.get("/notifications?limit=3&offset=3", headers=admin)).json()
    assert (len(first["items"]), len(rest["items"]), rest["total"]) == (3, 1, 4)
    seen = {i["event_id"] for i in first["items"]} | {i["event_id"] for i in rest["items"]}
    assert len(seen) == 4
    globex = (await svc.http.get("/notifications", headers=svc.token(9, "globex"))).json()
    assert globex["total"] == 1

    employee = svc.token(2, "acme", Role.EMPLOYEE, 2)
    assert (await svc.http.get("/notifications", headers=employee)).status_code == 403
    assert (await svc.http.get("/notifications")).status_code == 401
    assert (await svc.http.get("/notifications?status=lost", headers=admin)).status_code == 422


async def test_on_postgresql_the_log_deduplicates_too(
    harness: Harness,
    stack: AsyncExitStack,
    smtp: SmtpServer,
    producer: KafkaProducer,
    pg_url: str,
) -> None:
    svc = await start(harness, stack, smtp.port, database_url=pg_url)
    assert svc.service.engine.dialect.name == "postgresql"
    event = notification()
    await producer.publish(svc.service.settings.notification_topic, event)
    await eventually(lambda: status_is(svc, event.event_id, Status.SENT))
    again = await svc.http.post("/notifications", json=event.model_dump(mode="json"))
    assert again.json()["status"] == "already_sent"
    assert len(smtp.sink.with_id(event.event_id)) == 1


# ------------------------------------------------------------------------------- templates


@pytest.mark.parametrize("name", Templates().names())
def test_every_template_renders_with_no_data(name: str) -> None:
    body = Templates().render(name, {})
    assert body.text.startswith("Hello there,")
    assert "None" not in body.text


def test_the_templates_the_other_services_name_exist() -> None:
    used = {
        "welcome_email",  # users
        "password_changed",  # users
        "employee_welcome",  # employees
        "leave_approved",  # leaves
        "leave_rejected",  # leaves
        "compliance_alert",  # compliance
        "compliance_violation",  # compliance
    }
    assert used <= set(Templates().names())


def test_template_names_cannot_leave_the_template_directory() -> None:
    with pytest.raises(PermanentDeliveryError, match="unknown template"):
        Templates().render("../__init__", {})
