"""Registry of event models: (topic, event type, version) -> envelope model, plus upcasters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from eventbus._envelope import BaseEvent
from eventbus.errors import ConfigurationError, UnknownEventTypeError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns version N's payload dict into version N+1's."""

_ANY = "*"


class Registration(NamedTuple):
    """One model registered in an :class:`EventRegistry` (see :meth:`~EventRegistry.registrations`).

    Attributes:
        event_type: the event type, or None for a topic-wide registration.
        topic: the topic, or None for a registration valid on any topic.
        version: the event version the model describes.
        model: the envelope model.
    """

    event_type: str | None
    topic: str | None
    version: int
    model: type[BaseEvent]


class EventRegistry:
    """Maps event types (and optionally topics) to envelope models.

    Lookup order for a record on ``topic`` with ``event_type``: the model registered for
    that topic and type, then the one registered for the topic alone (a topic that
    carries one model whatever the type, like ``notification-queue``), then the one
    registered for the type on any topic.

    Each (type, version) may have an upcaster to version+1; :meth:`parse` runs the chain
    so that an old event is read as the newest model.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], dict[int, type[BaseEvent]]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        model: type[BaseEvent],
        *,
        event_type: str | None = None,
        topic: str | None = None,
        version: int = 1,
        aliases: tuple[str, ...] = (),
    ) -> type[BaseEvent]:
        """Register ``model`` for an event type and/or a topic at ``version``."""
        if event_type is None and topic is None:
            raise ConfigurationError("register() needs an event_type, a topic, or both")
        if version < 1:
            raise ConfigurationError(f"event versions start at 1, got {version}")
        key = (topic or _ANY, str(event_type) if event_type is not None else _ANY)
        self._models.setdefault(key, {})[version] = model
        for alias in aliases:
            if event_type is not None:
                self._aliases[alias] = str(event_type)
        return model

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator registering a payload upcaster from ``from_version`` to the next."""

        def decorate(func: Upcaster) -> Upcaster:
            self._upcasters[(str(event_type), from_version)] = func
            return func

        return decorate

    def add_alias(self, alias: str, event_type: str) -> None:
        """Accept ``alias`` (e.g. ``USER_CREATED`` from kafkajs services) for ``event_type``."""
        self._aliases[alias] = str(event_type)

    def canonical_type(self, event_type: str) -> str:
        """Return the dotted event type for an alias such as ``USER_CREATED``."""
        if event_type in self._aliases:
            return self._aliases[event_type]
        if "." not in event_type and "_" in event_type and event_type.isupper():
            return event_type.lower().replace("_", ".")
        return event_type

    def _versions(self, topic: str | None, event_type: str) -> dict[int, type[BaseEvent]] | None:
        for key in ((topic or _ANY, event_type), (topic or _ANY, _ANY), (_ANY, event_type)):
            found = self._models.get(key)
            if found:
                return found
        return None

    def knows(self, event_type: str, topic: str | None = None) -> bool:
        """Whether a model is registered for ``event_type`` (on ``topic``)."""
        return self._versions(topic, event_type) is not None

    def model_for(
        self, event_type: str, version: int = 1, topic: str | None = None
    ) -> type[BaseEvent]:
        """Return the newest model for ``event_type``; raise :class:`UnknownEventTypeError`."""
        versions = self._versions(topic, event_type)
        if versions is None:
            raise UnknownEventTypeError(f"no model registered for event type {event_type!r}")
        return versions[max(versions)]

    def model_at(
        self, event_type: str, version: int, topic: str | None = None
    ) -> type[BaseEvent] | None:
        """The model for ``event_type`` if ``version`` is its newest version, else None."""
        versions = self._versions(topic, event_type)
        if versions is None or version != max(versions):
            return None
        return versions[version]

    def parse(self, envelope: dict[str, Any], topic: str | None = None) -> BaseEvent:
        """Validate a normalised envelope dict into the newest registered model."""
        event_type = str(envelope.get("event_type", ""))
        versions = self._versions(topic, event_type)
        if versions is None:
            raise UnknownEventTypeError(f"no model registered for event type {event_type!r}")
        newest = max(versions)
        version = int(envelope.get("event_version") or 1)
        if version > newest:
            raise UnknownEventTypeError(
                f"{event_type!r} version {version} is newer than the newest known ({newest})"
            )
        if version < newest:
            data = envelope.get("data")
            payload: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
            for step in range(version, newest):
                upcast = self._upcasters.get((event_type, step))
                if upcast is None and step + 1 not in versions:
                    raise UnknownEventTypeError(
                        f"no upcaster for {event_type!r} from version {step} to {step + 1}"
                    )
                if upcast is not None:
                    payload = upcast(payload)
            envelope = {**envelope, "data": payload, "event_version": newest}
        return versions[newest].model_validate(envelope)

    def registrations(self) -> list[Registration]:
        """Every registered model with its event type, topic and version, sorted.

        For documentation (``eventbus.asyncapi``): each version is listed, not only the
        newest one that :meth:`parse` returns.
        """
        out = [
            Registration(
                None if etype == _ANY else etype, None if topic == _ANY else topic, version, model
            )
            for (topic, etype), versions in self._models.items()
            for version, model in versions.items()
        ]
        return sorted(out, key=lambda r: (r.event_type or "", r.topic or "", r.version))

    def event_types(self) -> list[str]:
        """All registered event types (not topic-wide registrations)."""
        return sorted({etype for (_, etype) in self._models if etype != _ANY})


default_registry = EventRegistry()
"""The process-wide registry used when a client is given none."""
