"""Audit records and notifications of the users service: Kafka via the outbox, or HTTP.

With the producer on, they go into the transactional outbox with the domain event, so
they are published exactly when the write commits ("via kafka(outbox)" in the logs).

With ``KAFKA_ENABLE_PRODUCER=false`` (seed 001's fallback) they are POSTed, after the
commit, to ``{audit_url}/audit-logs`` and ``{notification_url}/notifications`` by one
background sender (so they arrive in commit order), with a short timeout and a circuit
breaker per target: after ``fail_max`` failures in a row a target is skipped at once
("dropped: circuit open") until ``recovery_s`` have passed, then tried again. Sending
never fails or delays the user's request; what cannot be sent is logged and dropped, as
the seed's services did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from circuitbreaker import (
    STATE_CLOSED,
    CircuitBreaker,
    CircuitBreakerError,
)
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent
from hrms.events import AuditEvent, NotificationEvent, UserEvent
from hrms.service import Service
from hrms.service import context as service_context

logger = logging.getLogger("hrms.users.outbound")

Kind = Literal["audit", "notification"]
"""What is sent: an audit record or a notification."""


@dataclass
class _Target:
    url: str
    breaker: Any  # circuitbreaker.CircuitBreaker (untyped)
    post: Callable[[str, dict[str, Any]], Awaitable[None]]
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


class HttpFallback:
    """Sends audit records and notifications over HTTP when Kafka is switched off.

    Args:
        audit_url: the audit service's base URL (``/audit-logs`` is appended).
        notification_url: the notification service's base URL (``/notifications``).
        client: the HTTP client to use; by default one is made at :meth:`start` and
            closed at :meth:`stop` (tests pass a client bound to an ASGI app).
        timeout_s: the most one POST may take.
        fail_max: failures in a row that open a target's circuit.
        recovery_s: how long an open circuit skips its target before trying again.
        queue_size: the most records waiting to be sent; more are dropped (and logged).
    """

    def __init__(
        self,
        audit_url: str,
        notification_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 2.0,
        fail_max: int = 3,
        recovery_s: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        self.client = client
        self._owns_client = client is None
        self.timeout_s = timeout_s
        self.targets: dict[Kind, _Target] = {}
        urls: tuple[tuple[Kind, str], ...] = (
            ("audit", f"{audit_url.rstrip('/')}/audit-logs"),
            ("notification", f"{notification_url.rstrip('/')}/notifications"),
        )
        for kind, url in urls:
            breaker = CircuitBreaker(
                failure_threshold=fail_max,
                recovery_timeout=recovery_s,
                name=f"hrms-users-{kind}-http-{id(self):x}",
            )
            self.targets[kind] = _Target(url, breaker, breaker.decorate(self._post))
        self._queue: asyncio.Queue[tuple[Kind, BaseEvent]] = asyncio.Queue(queue_size)
        self._worker: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background sender (and make the HTTP client if none was given)."""
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout_s)
            self._owns_client = True
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="hrms-users-http-fallback")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Send what is queued (for at most ``drain_s``), then stop and close the client."""
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._queue.join(), drain_s)
            except TimeoutError:
                logger.warning("http fallback: %d record(s) dropped at stop", self._queue.qsize())
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._owns_client and self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- sending ------------------------------------------------------------------------------
    async def submit(self, kind: Kind, event: BaseEvent) -> None:
        """Hand ``event`` to the sender; never raises.

        When the sender is not running (a command-line bootstrap that does not start the
        service) the record is sent now, with a short-lived client if need be.
        """
        if self._worker is not None:
            try:
                self._queue.put_nowait((kind, event))
            except asyncio.QueueFull:
                self.targets[kind].dropped += 1
                logger.warning("%s %s dropped: http fallback queue full", kind, event.event_id)
            return
        if self.client is not None:
            await self.send(kind, event)
            return
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            self.client = client
            try:
                await self.send(kind, event)
            finally:
                self.client = None

    async def send(self, kind: Kind, event: BaseEvent) -> bool:
        """POST ``event`` to its target behind the circuit breaker; True if delivered.

        Never raises: a failure or an open circuit is logged and counted.
        """
        target = self.targets[kind]
        tokens = (
            service_context.correlation_id.set(event.correlation_id),
            service_context.event_id.set(str(event.event_id)),
        )
        try:
            await target.post(target.url, event.model_dump(mode="json"))
        except CircuitBreakerError:
            target.dropped += 1
            logger.warning("%s %s dropped: circuit open (%s)", kind, event.event_id, target.url)
            return False
        except Exception as exc:  # noqa: BLE001 - the user's request must never fail
            target.failed += 1
            logger.warning(
                "%s %s not delivered via http (%s): %s",
                kind,
                event.event_id,
                target.url,
                exc.__class__.__name__ if not str(exc) else exc,
            )
            return False
        else:
            target.delivered += 1
            logger.info("%s %s via http", kind, event.event_id)
            return True
        finally:
            service_context.event_id.reset(tokens[1])
            service_context.correlation_id.reset(tokens[0])

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        client = self.client
        if client is None:
            raise RuntimeError("http fallback has no client (not started)")
        async with asyncio.timeout(self.timeout_s):
            response = await client.post(url, json=body, timeout=self.timeout_s)
        response.raise_for_status()

    async def _run(self) -> None:
        while True:
            kind, event = await self._queue.get()
            try:
                await self.send(kind, event)
            finally:
                self._queue.task_done()

    # -- state --------------------------------------------------------------------------------
    def state(self, kind: Kind) -> str:
        """The circuit state of a target: ``closed``, ``open`` or ``half_open``."""
        state: str = self.targets[kind].breaker.state
        return state

    def status(self) -> dict[str, Any]:
        """Per target: URL, circuit state and counts (for the readiness report)."""
        return {
            kind: {
                "url": t.url,
                "circuit": self.state(kind),
                "delivered": t.delivered,
                "failed": t.failed,
                "dropped": t.dropped,
            }
            for kind, t in self.targets.items()
        }

    def healthy(self) -> bool:
        """Whether every circuit is closed."""
        return all(self.state(kind) == STATE_CLOSED for kind in self.targets)


@dataclass
class Unit:
    """One write's transaction and what it sends: the domain event, audit, notifications."""

    service: Service
    session: AsyncSession
    fallback: HttpFallback
    after_commit: list[tuple[Kind, BaseEvent]] = field(default_factory=list)

    async def emit(self, event: UserEvent) -> None:
        """Add a ``user.*`` event to the outbox (``user-queue``)."""
        await self.service.emit(self.session, self.service.settings.user_topic, event)

    async def audit(self, event: AuditEvent) -> None:
        """Record an audit event: the outbox, or HTTP after the commit."""
        await self._side("audit", self.service.settings.audit_topic, event)

    async def notify(self, event: NotificationEvent) -> None:
        """Request a notification: the outbox, or HTTP after the commit."""
        await self._side("notification", self.service.settings.notification_topic, event)

    async def _side(self, kind: Kind, topic: str, event: BaseEvent) -> None:
        if self.service.producer is not None:
            await self.service.emit(self.session, topic, event)
            logger.info("%s %s via kafka(outbox)", kind, event.event_id)
        else:
            self.after_commit.append((kind, event))


@contextlib.asynccontextmanager
async def unit_of_work(service: Service, fallback: HttpFallback) -> AsyncIterator[Unit]:
    """A transaction whose HTTP-bound records are sent only once it has committed."""
    async with service.transaction() as session:
        unit = Unit(service, session, fallback)
        yield unit
    for kind, event in unit.after_commit:
        await fallback.submit(kind, event)
