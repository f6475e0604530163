"""The HRMS/ERP topic layout, declared once: in ``hrms/catalog.toml``.

Seed 003's Strimzi table fixes ``notification-queue``, ``audit-queue`` and their
dead-letter topics; seed 001 names the domain queues (``employee-queue``,
``leave-queue``, ``attendance-queue``); seed 004 adds ``inventory-events`` and
``sales-events``; seed 002 the payroll, CRM, document and system domains. Every domain
topic has a dead-letter topic named by :func:`eventbus.dead_letter_topic`
(``<domain>-dlq``). The catalog file also lists each domain's event types, for the
event-type layout (see :mod:`hrms.routing`); this module gives the domain layout.

Example::

    from eventbus import ensure_topics
    from hrms.topics import topic_specs

    await ensure_topics(topic_specs(replication_factor=1))  # one embedded broker
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import tomllib
from typing import Final

from eventbus import ConfigurationError, TopicSpec, dead_letter_topic
from eventbus.catalog import Catalog, parse_catalog

__all__ = [
    "ATTENDANCE_TOPIC",
    "AUDIT_TOPIC",
    "COMPLIANCE_TOPIC",
    "CRM_TOPIC",
    "DEAD_LETTER_TOPICS",
    "DOCUMENT_TOPIC",
    "DOMAIN_TOPICS",
    "EMPLOYEE_TOPIC",
    "EVENT_DOMAIN_TOPICS",
    "INVENTORY_TOPIC",
    "LEAVE_TOPIC",
    "NOTIFICATION_TOPIC",
    "PAYROLL_TOPIC",
    "RETENTION_7_DAYS_MS",
    "RETENTION_30_DAYS_MS",
    "SALES_TOPIC",
    "SYSTEM_TOPIC",
    "TOPICS",
    "USER_TOPIC",
    "catalog",
    "topic_for",
    "topic_specs",
]

USER_TOPIC: Final = "user-queue"
"""User-management events (``user.*``)."""
EMPLOYEE_TOPIC: Final = "employee-queue"
"""Employee-management events (``employee.*``); seed 001's ``KAFKA_EMPLOYEE_TOPIC``."""
LEAVE_TOPIC: Final = "leave-queue"
"""Leave-management events (``leave.*``); seed 001's ``KAFKA_LEAVE_TOPIC``."""
ATTENDANCE_TOPIC: Final = "attendance-queue"
"""Attendance events (``attendance.*``); seed 001's ``KAFKA_ATTENDANCE_TOPIC``."""
COMPLIANCE_TOPIC: Final = "compliance-queue"
"""Compliance events (``compliance.*``)."""
NOTIFICATION_TOPIC: Final = "notification-queue"
"""Notifications for the notification service, whatever their event type (seed 003)."""
AUDIT_TOPIC: Final = "audit-queue"
"""Audit records for the audit service (``audit.*``, seed 003)."""
INVENTORY_TOPIC: Final = "inventory-events"
"""Inventory events such as ``inventory.low_stock`` (seed 004)."""
SALES_TOPIC: Final = "sales-events"
"""Sales events (seed 004)."""
PAYROLL_TOPIC: Final = "payroll-queue"
"""Payroll events (``payroll.*``, ``salary.calculated``; seed 002)."""
CRM_TOPIC: Final = "crm-events"
"""CRM events (``customer.*``, ``order.*``; seed 002)."""
DOCUMENT_TOPIC: Final = "document-queue"
"""Document events (``document.*``; seed 002)."""
SYSTEM_TOPIC: Final = "system-events"
"""System events: every service's heartbeat (``service.health``) and errors (seed 002)."""

RETENTION_7_DAYS_MS: Final = 7 * 24 * 60 * 60 * 1000
"""Seven days in milliseconds: the retention of the work queues."""
RETENTION_30_DAYS_MS: Final = 30 * 24 * 60 * 60 * 1000
"""Thirty days in milliseconds: the retention of ``audit-queue`` and of every DLQ."""


@functools.cache
def catalog() -> Catalog:
    """The system's topic catalog, read from ``hrms/catalog.toml`` (once)."""
    text = importlib.resources.files("hrms").joinpath("catalog.toml").read_text("utf-8")
    return parse_catalog(tomllib.loads(text), "hrms/catalog.toml")


DOMAIN_TOPICS: Final[list[str]] = [d.topic for d in catalog().domains.values()]
"""Every topic that carries business events (each has a dead-letter topic)."""

DEAD_LETTER_TOPICS: Final[dict[str, str]] = {
    topic: dead_letter_topic(topic) for topic in DOMAIN_TOPICS
}
"""Domain topic -> its dead-letter topic, e.g. ``user-queue`` -> ``user-dlq``."""

EVENT_DOMAIN_TOPICS: Final[dict[str, str]] = {
    "user": USER_TOPIC,
    "employee": EMPLOYEE_TOPIC,
    "leave": LEAVE_TOPIC,
    "attendance": ATTENDANCE_TOPIC,
    "compliance": COMPLIANCE_TOPIC,
    "audit": AUDIT_TOPIC,
    "inventory": INVENTORY_TOPIC,
    "sales": SALES_TOPIC,
    "payroll": PAYROLL_TOPIC,
    "salary": PAYROLL_TOPIC,
    "customer": CRM_TOPIC,
    "order": CRM_TOPIC,
    "document": DOCUMENT_TOPIC,
    "service": SYSTEM_TOPIC,
}
"""Event-type domain (the part of the wire value before the first dot) -> its topic."""


TOPICS: Final[dict[str, TopicSpec]] = {s.name: s for s in catalog().specs("domain")}
"""Every topic of the domain layout by name, with seed 003's partitions, replicas and retention.

``notification-queue``: 3 partitions, 2 replicas, 7 days; ``audit-queue``: 5 partitions,
3 replicas, 30 days; every ``<domain>-dlq``: 1 partition, 2 replicas, 30 days; the other
domain topics: 3 partitions, 3 replicas, 7 days (as ``hrms/catalog.toml`` declares them).
Treat it as read-only; use :func:`topic_specs` to get specs to create.
"""


def topic_for(event_type: str) -> str:
    """Return the domain topic an event type is published to.

    The domain is the part of the dotted wire value before the first dot, so
    ``employee.status_changed`` goes to ``employee-queue`` and ``audit.user.action`` to
    ``audit-queue``. Notifications are not routed by type: whatever their event type, they
    are sent to :data:`NOTIFICATION_TOPIC` explicitly.

    Args:
        event_type: an ``hrms.events.EventType`` member or its dotted wire value.

    Returns:
        The topic name, e.g. ``"user-queue"``.

    Raises:
        ValueError: the event type belongs to no known domain.
    """
    domain, dot, _ = str(event_type).partition(".")
    topic = EVENT_DOMAIN_TOPICS.get(domain) if dot else None
    if topic is None:
        raise ValueError(f"no topic for event type {str(event_type)!r}")
    return topic


def topic_specs(replication_factor: int | None = None) -> list[TopicSpec]:
    """Return fresh specs for every topic, optionally capping replication.

    Args:
        replication_factor: the most replicas any topic may ask for, e.g. ``1`` for a
            single embedded broker. ``None`` keeps seed 003's factors.

    Returns:
        One :class:`~eventbus.TopicSpec` per topic (domain topics first, then their
        dead-letter topics); each has its own ``configs`` dict, so callers may change it.

    Raises:
        ConfigurationError: ``replication_factor`` is less than 1.
    """
    if replication_factor is not None and replication_factor < 1:
        raise ConfigurationError(f"replication_factor must be at least 1, got {replication_factor}")
    out: list[TopicSpec] = []
    for spec in TOPICS.values():
        replicas = spec.replication_factor
        if replication_factor is not None:
            replicas = min(replicas, replication_factor)
        out.append(
            dataclasses.replace(spec, replication_factor=replicas, configs=dict(spec.configs))
        )
    return out
