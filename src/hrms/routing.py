"""Which topic an event goes to, and which topics a consumer reads, under the deployment's layout.

``KAFKA_TOPIC_LAYOUT`` picks the layout of a deployment:

* ``domain`` (the default): one topic per domain, ``user-queue``, ``leave-queue``...;
* ``event-type``: seed 002's layout, one topic per event type, ``user.created``,
  ``attendance.checkin``...; the domain topics stay for types not declared yet and for
  requests on work queues (``notification-queue``).

Services need not know which: :class:`hrms.service.Service` routes what it emits
through :meth:`TopicRouter.route` and subscribes its consumers to
:meth:`TopicRouter.topics_for` of the topics they name, so the code that says
``service.emit(session, settings.user_topic, event)`` and
``@service.consumer(settings.employee_topic)`` runs unchanged on both layouts.
The layouts' topics come from ``hrms/catalog.toml`` (:func:`hrms.topics.catalog`), with
the topic names the settings give (``KAFKA_USER_TOPIC``...).

Example::

    router = TopicRouter.from_settings(HrmsSettings(KAFKA_TOPIC_LAYOUT="event-type"))
    router.route(event, "user-queue")      # "user.login" for a user.login event
    router.topics_for(["employee"])        # ["employee.created", ..., "employee-queue"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from eventbus import BaseEvent, TopicSpec
from eventbus.catalog import Catalog, Layout
from hrms import topics

if TYPE_CHECKING:  # hrms.service imports this module
    from hrms.service.settings import HrmsSettings

__all__ = ["SETTINGS_TOPICS", "TopicRouter", "route", "topics_for"]

SETTINGS_TOPICS: Final[dict[str, str]] = {
    "user": "user_topic",
    "employee": "employee_topic",
    "leave": "leave_topic",
    "attendance": "attendance_topic",
    "compliance": "compliance_topic",
    "notification": "notification_topic",
    "audit": "audit_topic",
}
"""Catalog domain -> the :class:`HrmsSettings` field that may rename its topic."""


class TopicRouter:
    """Routes events to topics and consumers to topics under one layout.

    Args:
        layout: ``"domain"`` or ``"event-type"``.
        catalog: the topic catalog (the system's, :func:`hrms.topics.catalog`, by default).
    """

    def __init__(self, layout: Layout = "domain", catalog: Catalog | None = None) -> None:
        self.layout: Layout = layout
        self.catalog = catalog if catalog is not None else topics.catalog()

    @classmethod
    def from_settings(cls, settings: HrmsSettings) -> TopicRouter:
        """The router of a deployment: its layout and its (possibly renamed) topics."""
        renamed = {domain: getattr(settings, name) for domain, name in SETTINGS_TOPICS.items()}
        return cls(settings.topic_layout, topics.catalog().with_topics(renamed))

    def route(self, event: BaseEvent, topic: str | None = None) -> str:
        """The topic ``event`` is published to.

        Args:
            event: the event.
            topic: the topic the producer names, usually its domain topic
                (``settings.user_topic``); without one, the event type's domain topic.

        Returns:
            Under ``domain``: ``topic`` (or the domain topic). Under ``event-type``: the
            event type's own topic when the type belongs to ``topic``'s domain; else
            ``topic`` unchanged (a notification request of type ``user.created`` stays
            on ``notification-queue``, a type not in the catalog on its domain topic).

        Raises:
            eventbus.ConfigurationError: no ``topic``, and the type is in no domain.
        """
        return self.catalog.route(event.event_type, topic, self.layout)

    def topics_for(self, names: Iterable[str]) -> list[str]:
        """The topics a consumer of ``names`` reads under this layout.

        Args:
            names: domain names (``"user"``), domain topics (``settings.user_topic``) or
                event types (``"user.login"``); other names are topics of their own.

        Returns:
            Each name's topics, once each: the domain topic (``domain``), or the
            domain's event topics and its domain topic (``event-type``).
        """
        return self.catalog.topics_for(names, self.layout)

    def dead_letter_topic(self, topic: str) -> str:
        """Where a consumer of ``topic`` dead-letters: its domain's ``<domain>-dlq``.

        One dead-letter topic per domain in both layouts (``user.created`` -> ``user-dlq``).
        """
        return self.catalog.dead_letter_topic(topic)

    def specs(self, replication_factor: int | None = None) -> list[TopicSpec]:
        """Every topic of this layout, to create (see :meth:`eventbus.catalog.Catalog.specs`)."""
        return self.catalog.specs(self.layout, replication_factor)


def route(event: BaseEvent, settings: HrmsSettings, topic: str | None = None) -> str:
    """The topic ``event`` goes to in the deployment of ``settings`` (:meth:`TopicRouter.route`)."""
    return TopicRouter.from_settings(settings).route(event, topic)


def topics_for(
    domain_or_types: str | Iterable[str],
    layout: Layout = "domain",
    settings: HrmsSettings | None = None,
) -> list[str]:
    """The topics to subscribe to for domains, domain topics or event types under ``layout``.

    Args:
        domain_or_types: one name or several (see :meth:`TopicRouter.topics_for`).
        layout: ``"domain"`` or ``"event-type"``.
        settings: the deployment's settings, for renamed domain topics (the catalog's
            names when omitted).

    Example::

        topics_for("attendance", "event-type")
        # ["attendance.checkin", ..., "attendance.deleted", "attendance-queue"]
    """
    names = [domain_or_types] if isinstance(domain_or_types, str) else list(domain_or_types)
    catalog = topics.catalog()
    if settings is not None:
        renamed = {domain: getattr(settings, name) for domain, name in SETTINGS_TOPICS.items()}
        catalog = catalog.with_topics(renamed)
    return TopicRouter(layout, catalog).topics_for(names)
