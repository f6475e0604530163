"""The notification service: notification events in, e-mails out.

It consumes ``notification-queue`` (:class:`~hrms.events.NotificationEvent`), renders
the event's template (``templates/<template_name>.txt``, plus ``.html`` when present,
autoescaped) with ``data.template_data`` and ``recipient_name``, and sends the e-mail
with aiosmtplib to ``SMTP_HOST:SMTP_PORT`` from ``SMTP_FROM``. Seed 001's HTTP fallback
``POST /notifications`` sends the same way.

Templates: ``welcome_email``, ``account_created``, ``password_changed``,
``account_suspended``, ``account_activated``, ``employee_welcome``,
``leave_requested``, ``leave_approved``, ``leave_rejected``, ``leave_cancelled``,
``compliance_alert``, ``compliance_violation``, ``low_stock_alert`` and ``generic``
(renders ``message``).

Delivery guarantee: **at least once, deduplicated by Message-ID.** SMTP is not
transactional, so a delivery log (one row per event id) is written around the send,
each write committed on its own: ``sending`` before the server is contacted, ``sent``
after it accepted the message. A redelivered event whose row says ``sent`` is skipped,
so the normal case is exactly one e-mail per event id. If the process dies between the
server's acceptance and the ``sent`` write, the row still says ``sending`` and the
redelivery sends the e-mail again, with the same ``Message-ID: <event-id@hrms>`` and
``Date`` (the event's), so the receiving server or the user's client can recognise the
duplicate. Nothing is ever silently dropped.

Failures: transient ones (server unreachable, timeouts, 4xx) are retried with
exponential backoff behind a circuit breaker (:class:`DeliveryPolicy`); when a delivery
runs out of tries it is handed back to the consumer's retry policy and, if that runs
out too, to ``notification-dlq`` (replay it with ``eventbus dlq replay`` when the
server is back: the log sends ``failed`` rows again). Permanent ones (5xx replies, an
unknown template, an address that cannot be written) are logged ``failed`` and sent to
``notification-dlq`` at once (:class:`eventbus.errors.DeadLetterNow`).

``POST /notifications`` accepts requests without a token: it is a service-to-service
path (the users service posts ``event.model_dump(mode="json")`` without one), scoped to
the event's own ``tenant_id``. It can only send the service's own templates, never
arbitrary content, but it must not be reachable from outside the cluster; deployments
that can give every caller a token build the service with ``allow_anonymous=False``.
With a token (any role) the event belongs to the caller's tenant.

Why the consumer is a batch consumer of size 1 and not the framework's single-event
consumer: the latter records the event in the inbox at the start of a transaction that
stays open while the handler runs, and on SQLite that transaction holds the database's
only write lock, so the log writes that must commit before the SMTP call (in a second
connection) would wait for it forever. The delivery log is this service's inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import KafkaSettings
from eventbus._transport.base import Transport
from eventbus.errors import DeadLetterNow, RetryLater
from hrms.events import NotificationEvent
from hrms.service import HrmsSettings, Service
from hrms.service import context as ctx
from hrms.services.notifications._api import routes
from hrms.services.notifications._errors import (
    CircuitOpenError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from hrms.services.notifications._log import DeliveryLog, Entry, Status, delivery_log, metadata
from hrms.services.notifications._mail import DeliveryPolicy, Mailer
from hrms.services.notifications._notifier import Notifier, Outcome, message_id
from hrms.services.notifications._templates import Templates

__all__ = [
    "CircuitOpenError",
    "DeliveryError",
    "DeliveryPolicy",
    "Entry",
    "Notifier",
    "Outcome",
    "PermanentDeliveryError",
    "Status",
    "TransientDeliveryError",
    "build",
    "message_id",
]


@contextlib.contextmanager
def _event_context(event: NotificationEvent) -> Iterator[None]:
    tokens = (
        ctx.correlation_id.set(event.correlation_id),
        ctx.causation_id.set(str(event.event_id)),
        ctx.event_id.set(str(event.event_id)),
    )
    try:
        yield
    finally:
        ctx.event_id.reset(tokens[2])
        ctx.causation_id.reset(tokens[1])
        ctx.correlation_id.reset(tokens[0])


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    delivery: DeliveryPolicy | None = None,
    allow_anonymous: bool = True,
) -> Service:
    """Build the notification service.

    Args:
        settings: HRMS settings (SMTP server, sender, topic); the environment by default.
        kafka: Kafka settings; the environment by default.
        transport: a broker transport (the in-memory broker in tests).
        delivery: retry, backoff and circuit-breaker settings.
        allow_anonymous: accept ``POST /notifications`` without a token.

    Returns:
        The service; ``service.app()`` serves it.
    """
    service = Service(
        "notifications", metadata, settings=settings, kafka=kafka, transport=transport
    )
    policy = delivery or DeliveryPolicy()
    log = DeliveryLog(delivery_log, service.sessions, service.engine.dialect.name)
    mailer = Mailer(service.settings.smtp_host, service.settings.smtp_port, policy)
    notifier = Notifier(
        log, mailer, Templates(), service.settings.mail_from, tracer=service.tracer(__name__)
    )

    async def smtp_state() -> dict[str, Any]:
        return mailer.state()

    service.readiness["smtp"] = smtp_state

    @service.consumer(service.settings.notification_topic, batch_size=1)
    async def on_notifications(events: list[NotificationEvent], session: AsyncSession) -> None:
        """Deliver each event (the framework's session is not used: see the docstring)."""
        for event in events:
            with _event_context(event):
                try:
                    await notifier.deliver(event, attempts=policy.attempts, wait_when_open=True)
                except PermanentDeliveryError as exc:
                    raise DeadLetterNow(str(exc)) from exc
                except TransientDeliveryError as exc:
                    raise RetryLater(str(exc)) from exc

    service.include(
        routes(notifier, allow_anonymous=allow_anonymous, http_attempts=policy.http_attempts)
    )
    return service
