"""The one envelope every contender sends: an HRMS audit event of about 460 bytes.

A pool of :data:`POOL_SIZE` events (``resource_id`` 0..999, so keys = aggregate ids
cycle over 1000 values) is built once, before anything is timed. Contenders that send
"pre-encoded bytes" use :attr:`EnvelopePool.values`; contenders that encode per message
call ``model_dump_json()`` on :attr:`EnvelopePool.events` inside the timed section.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from eventbus._codec import encode_event
from hrms.events import AuditEvent, EventType, create_audit_event

POOL_SIZE = 1000


def make_event(i: int) -> AuditEvent:
    """The benchmark envelope for resource ``i``: an ``audit.employee.action`` event."""
    return create_audit_event(
        source_service="employee-service",
        action="UPDATE",
        resource_type="employee",
        user_id=100_000 + i,
        resource_id=i,
        changes={"title": "Senior Engineer", "grade": "L5"},
        event_type=EventType.AUDIT_EMPLOYEE_ACTION,
    )


def fresh_event(template: AuditEvent) -> AuditEvent:
    """A copy of ``template`` with a new id and ``timestamp`` = now (for latency)."""
    return template.model_copy(update={"event_id": uuid.uuid4(), "timestamp": datetime.now(UTC)})


def hand_key(event: AuditEvent) -> bytes:
    """The key a hand-written producer would use: the aggregate (resource) id."""
    return str(event.data.resource_id).encode()


def hand_headers(event: AuditEvent) -> list[tuple[str, bytes]]:
    """The headers a careful hand-written producer would attach (the same set eventbus sends)."""
    headers = [
        ("event_type", event.event_type.encode()),
        ("event_id", str(event.event_id).encode()),
        ("event_version", str(event.event_version).encode()),
        ("content-type", b"application/json"),
        ("source_service", event.source_service.encode()),
        ("priority", event.priority.value.encode()),
    ]
    if event.correlation_id:
        headers.append(("correlation_id", event.correlation_id.encode()))
    if event.tenant_id:
        headers.append(("tenant_id", event.tenant_id.encode()))
    return headers


@dataclass(frozen=True)
class EnvelopePool:
    """The pre-built events, their encoded values and headers (eventbus's wire form), keys."""

    events: tuple[AuditEvent, ...]
    values: tuple[bytes, ...]
    headers: tuple[list[tuple[str, bytes]], ...]
    keys: tuple[bytes, ...]

    @classmethod
    def build(cls, size: int = POOL_SIZE) -> EnvelopePool:
        """Build the pool."""
        events = tuple(make_event(i) for i in range(size))
        encoded = [encode_event(e) for e in events]
        return cls(
            events=events,
            values=tuple(v for v, _ in encoded),
            headers=tuple(h for _, h in encoded),
            keys=tuple(hand_key(e) for e in events),
        )

    def take(self, n: int) -> list[AuditEvent]:
        """``n`` events, cycling through the pool."""
        size = len(self.events)
        return [self.events[i % size] for i in range(n)]

    @property
    def value_bytes(self) -> float:
        """Mean encoded size of an envelope."""
        return sum(len(v) for v in self.values) / len(self.values)

    @property
    def header_bytes(self) -> float:
        """Mean size of the headers eventbus attaches (names + values)."""
        return sum(sum(len(k) + len(v) for k, v in h) for h in self.headers) / len(self.headers)

    def describe(self) -> dict[str, object]:
        """What to record about the envelope."""
        return {
            "model": "hrms.events.AuditEvent",
            "event_type": self.events[0].event_type,
            "value_bytes_mean": round(self.value_bytes, 1),
            "header_bytes_mean": round(self.header_bytes, 1),
            "distinct_keys": len(set(self.keys)),
            "example": self.values[0].decode(),
        }
