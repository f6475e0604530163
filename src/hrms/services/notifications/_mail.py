"""SMTP delivery with aiosmtplib: retries with backoff behind a circuit breaker.

Transient failures (connection refused or lost, timeouts, 4xx replies) are retried with
exponential backoff; while the breaker is open (``breaker_failures`` transient failures
in a row) the server is not contacted until ``breaker_recovery_s`` has passed, so a dead
server is probed once per recovery period by all senders together instead of by each.
Permanent failures (5xx replies, an address or header that cannot be written) are
raised at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
from circuitbreaker import (
    STATE_CLOSED,
    CircuitBreaker,
)

from hrms.services.notifications._errors import (
    CircuitOpenError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from hrms.services.notifications._templates import Rendered

OnFailure = Callable[[int, TransientDeliveryError], Awaitable[None]]
"""Called after each failed try with the try's number and its error."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard the service tries to send one e-mail.

    Attributes:
        attempts: SMTP tries per delivery of an event from Kafka (then the consumer's own
            retry and dead-letter policy takes over).
        http_attempts: tries for a ``POST /notifications`` request (the caller waits).
        backoff_s: the wait after the first failed try; doubled after each one.
        max_backoff_s: the longest wait between tries.
        breaker_failures: transient failures in a row that open the circuit breaker.
        breaker_recovery_s: how long the breaker stays open before one probe.
        smtp_timeout_s: connect and command timeout of one SMTP conversation.
    """

    attempts: int = 8
    http_attempts: int = 2
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    breaker_failures: int = 5
    breaker_recovery_s: float = 30.0
    smtp_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.http_attempts < 1 or self.breaker_failures < 1:
            raise ValueError("attempts, http_attempts and breaker_failures must be at least 1")
        if min(self.backoff_s, self.max_backoff_s) < 0:
            raise ValueError("backoff_s and max_backoff_s must not be negative")
        if self.breaker_recovery_s <= 0 or self.smtp_timeout_s <= 0:
            raise ValueError("breaker_recovery_s and smtp_timeout_s must be positive")

    def wait_after(self, attempt: int) -> float:
        """The wait after failed try number ``attempt`` (1-based), with 10% jitter."""
        base = float(min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1)))
        return base + random.uniform(0, base / 10)


def compose(
    *,
    message_id: str,
    sender: str,
    recipient_email: str,
    recipient_name: str | None,
    subject: str,
    body: Rendered,
    date: datetime,
) -> EmailMessage:
    """Build the e-mail of one notification event.

    ``message_id`` is derived from the event id and the Date is the event's time, so every
    send of one event produces the same message and receivers can deduplicate it.

    Raises:
        PermanentDeliveryError: the address, name or subject cannot be put in a header.
    """
    msg = EmailMessage()
    try:
        local, _, domain = recipient_email.rpartition("@")
        msg["From"] = sender
        msg["To"] = Address(display_name=recipient_name or "", username=local, domain=domain)
        msg["Subject"] = subject
    except (ValueError, IndexError, TypeError) as exc:
        raise PermanentDeliveryError(f"invalid recipient or subject: {exc}") from exc
    if not local or not domain:
        raise PermanentDeliveryError("invalid recipient address")
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(date)
    msg.set_content(body.text)
    if body.html is not None:
        msg.add_alternative(body.html, subtype="html")
    return msg


def _classify(exc: Exception) -> TransientDeliveryError | PermanentDeliveryError:
    """Map an aiosmtplib (or socket) error to a transient or permanent failure."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if codes and all(c >= 500 for c in codes):
            return PermanentDeliveryError(f"recipient refused: {text}")
        return TransientDeliveryError(f"recipient deferred: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
        if exc.code >= 500:
            return PermanentDeliveryError(f"SMTP server refused: {text}")
        return TransientDeliveryError(f"SMTP server deferred: {text}")
    return TransientDeliveryError(f"SMTP unreachable: {type(exc).__name__}: {exc}")


class Mailer:
    """Sends e-mails to one SMTP server under a :class:`DeliveryPolicy`."""

    def __init__(self, host: str, port: int, policy: DeliveryPolicy) -> None:
        self.host = host
        self.port = port
        self.policy = policy
        self.breaker = CircuitBreaker(
            failure_threshold=policy.breaker_failures,
            recovery_timeout=policy.breaker_recovery_s,
            expected_exception=TransientDeliveryError,
            name=f"smtp {host}:{port}",
        )

    def state(self) -> dict[str, object]:
        """The breaker's state for the readiness report."""
        return {
            "server": f"{self.host}:{self.port}",
            "breaker": str(self.breaker.state),
            "failures": int(self.breaker.failure_count),
        }

    async def _once(self, message: EmailMessage) -> None:
        if self.breaker.opened:
            raise CircuitOpenError(f"SMTP circuit open after {self.breaker.failure_count} failures")
        with self.breaker:  # counts TransientDeliveryError only; anything else closes it again
            try:
                await aiosmtplib.send(
                    message,
                    hostname=self.host,
                    port=self.port,
                    timeout=self.policy.smtp_timeout_s,
                    start_tls=False,
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise _classify(exc) from exc
            except ValueError as exc:  # an address aiosmtplib will not write (control chars)
                raise PermanentDeliveryError(f"recipient address cannot be sent: {exc}") from exc

    def _open_wait(self) -> float:
        remaining = float(self.breaker.open_remaining)  # whole seconds, rounded up
        return max(0.0, min(remaining, self.policy.breaker_recovery_s))

    async def send(
        self,
        message: EmailMessage,
        *,
        attempts: int,
        wait_when_open: bool,
        on_failure: OnFailure,
    ) -> None:
        """Send ``message``, retrying transient failures up to ``attempts`` tries in all.

        Args:
            message: the e-mail.
            attempts: tries in all (waiting out an open breaker counts as one).
            wait_when_open: wait for an open breaker to half-open (consumers); when
                False an open breaker fails at once (HTTP callers should not wait).
            on_failure: called after each failed conversation with the server.

        Raises:
            PermanentDeliveryError: the server refused the message for good.
            TransientDeliveryError: every try failed for now (the last failure).
        """
        last: TransientDeliveryError | None = None
        for attempt in range(1, attempts + 1):
            try:
                await self._once(message)
            except CircuitOpenError as exc:
                if not wait_when_open:
                    raise
                last = exc
                if attempt < attempts:
                    await asyncio.sleep(max(self._open_wait(), self.policy.wait_after(1)))
                continue
            except TransientDeliveryError as exc:
                await on_failure(attempt, exc)
                last = exc
                if attempt < attempts:
                    await asyncio.sleep(self.policy.wait_after(attempt))
                continue
            return
        assert last is not None
        raise last

    @property
    def closed(self) -> bool:
        """Whether the breaker is closed (the server is believed reachable)."""
        return bool(self.breaker.state == STATE_CLOSED)
