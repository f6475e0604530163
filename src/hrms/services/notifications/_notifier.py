"""One notification event in, at most one e-mail out per successful log write.

See the package docstring for the delivery guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

from opentelemetry import trace

from eventbus import headers as h
from eventbus.tracing import inject
from hrms.events import NotificationEvent
from hrms.services.notifications._errors import PermanentDeliveryError, TransientDeliveryError
from hrms.services.notifications._log import DeliveryLog, Status
from hrms.services.notifications._mail import Mailer, compose
from hrms.services.notifications._templates import Templates

_SAFE_ID = re.compile(r"^[A-Za-z0-9._+-]{1,200}$")
MAX_EVENT_ID = 255


class Outcome(StrEnum):
    """What a delivery did."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"


def message_id(event_id: str) -> str:
    """The Message-ID of ``event_id``'s e-mail: ``<event-id@hrms>``.

    Ids that are not safe in a header (other producers' free-form ids) are replaced by
    their SHA-256 prefix, which is as stable.
    """
    if not _SAFE_ID.match(event_id):
        event_id = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return f"<{event_id}@hrms>"


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Notifier:
    """Renders, logs and sends notification events.

    Args:
        log: the delivery log.
        mailer: the SMTP sender.
        templates: the body templates.
        sender: the From address.
        tracer: traces each SMTP conversation (a CLIENT span ``smtp send``, whose W3C
            ``traceparent`` the e-mail carries as a header); a no-op tracer by default.
    """

    def __init__(
        self,
        log: DeliveryLog,
        mailer: Mailer,
        templates: Templates,
        sender: str,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.tracer = tracer or trace.NoOpTracer()
        self.log = log
        self.mailer = mailer
        self.templates = templates
        self.sender = sender
        self._slots: dict[str, _Slot] = {}

    @contextlib.asynccontextmanager
    async def _exclusive(self, event_id: str) -> AsyncIterator[None]:
        """One delivery of an event id at a time in this process (Kafka and HTTP alike)."""
        slot = self._slots.setdefault(event_id, _Slot())
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                self._slots.pop(event_id, None)

    def compose(self, event: NotificationEvent) -> EmailMessage:
        """The e-mail of ``event``.

        Raises:
            PermanentDeliveryError: unknown template, or an address or subject that cannot be sent.
        """
        data = event.data
        values: dict[str, Any] = dict(data.template_data)
        if data.recipient_name is not None:
            values["recipient_name"] = data.recipient_name
        values.setdefault("subject", data.subject)
        body = self.templates.render(data.template_name, values)
        return compose(
            message_id=message_id(str(event.event_id)),
            sender=self.sender,
            recipient_email=data.recipient_email,
            recipient_name=data.recipient_name,
            subject=data.subject,
            body=body,
            date=event.timestamp,
        )

    async def deliver(
        self, event: NotificationEvent, *, attempts: int, wait_when_open: bool
    ) -> Outcome:
        """Send ``event``'s e-mail unless the log says it was sent.

        Args:
            event: the notification.
            attempts: SMTP tries for this delivery.
            wait_when_open: wait out an open circuit breaker (see :meth:`Mailer.send`).

        Returns:
            Whether it was sent now or had been sent before.

        Raises:
            PermanentDeliveryError: it can never be sent (logged ``failed``).
            TransientDeliveryError: it could not be sent now (logged ``failed``; a redelivery
                tries again).
        """
        event_id = str(event.event_id)
        if len(event_id) > MAX_EVENT_ID:
            raise PermanentDeliveryError(f"event id longer than {MAX_EVENT_ID} characters")
        async with self._exclusive(event_id):
            entry = await self.log.get(event_id)
            if entry is not None and entry.status is Status.SENT:
                return Outcome.ALREADY_SENT
            data = event.data
            record = functools.partial(
                self.log.start,
                event_id=event_id,
                tenant_id=event.tenant_id,
                recipient=data.recipient_email,
                template=data.template_name[:64],
                subject=data.subject,
            )
            try:
                message = self.compose(event)
            except PermanentDeliveryError as exc:
                await record(status=Status.FAILED, error=str(exc))
                raise
            await record()  # committed: "sending" before SMTP is contacted

            async def failed_try(_attempt: int, exc: TransientDeliveryError) -> None:
                await self.log.attempt_failed(event_id, str(exc))

            try:
                with self.tracer.start_as_current_span("smtp send", kind=trace.SpanKind.CLIENT):
                    _carry_trace(message)
                    await self.mailer.send(
                        message,
                        attempts=attempts,
                        wait_when_open=wait_when_open,
                        on_failure=failed_try,
                    )
            except PermanentDeliveryError as exc:
                await self.log.failed(event_id, str(exc), attempted=True)
                raise
            except TransientDeliveryError as exc:
                await self.log.failed(event_id, f"{exc} (a redelivery tries again)")
                raise
            await self.log.sent(event_id)
            return Outcome.SENT


def _carry_trace(message: EmailMessage) -> None:
    """Put the current span's W3C ``traceparent`` in ``message`` (if there is a span)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return
    carrier: list[tuple[str, bytes]] = []
    inject(carrier)
    for name, value in carrier:
        if name in (h.TRACEPARENT, h.TRACESTATE):
            del message[name]
            message[name] = value.decode()
