"""Publishing events given as JSON: parsed, validated against a registry, acknowledged."""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from eventbus._codec import normalise
from eventbus._envelope import BaseEvent
from eventbus._producer import KafkaProducer
from eventbus._registry import EventRegistry, default_registry
from eventbus._transport.base import RecordMetadata
from eventbus.errors import ConfigurationError, EventBusError
from eventbus.ops._admin import Admin


class InvalidEventError(ConfigurationError):
    """An event given to publish is not JSON, not an envelope, or fails its model.

    Attributes:
        problems: one line per problem, each naming the event and the field.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__("; ".join(self.problems[:5]) + more)


def parse_events(text: str, source: str = "input") -> list[dict[str, Any]]:
    """Parse one JSON object, a JSON array of objects, or JSON lines (one object a line).

    Raises:
        InvalidEventError: the text is empty or not JSON, or an item is not an object;
            the message names the line (and column) or the item.
    """
    if not text.strip():
        raise InvalidEventError([f"{source}: no JSON given"])
    try:
        document = json.loads(text)
    except json.JSONDecodeError as whole:
        first = next(line for line in text.splitlines() if line.strip())
        try:
            json.loads(first)
        except json.JSONDecodeError:  # not JSON lines either: report the document's error
            raise InvalidEventError(
                [f"{source}: not JSON: {whole.msg} at line {whole.lineno} column {whole.colno}"]
            ) from None
        items = _json_lines(text, source)
    else:
        items = document if isinstance(document, list) else [document]
    bad = [i for i, item in enumerate(items, 1) if not isinstance(item, dict)]
    if bad:
        raise InvalidEventError(
            [
                f"{source}: event {i} is not a JSON object ({type(items[i - 1]).__name__})"
                for i in bad
            ]
        )
    return items


def _json_lines(text: str, source: str) -> list[Any]:
    items: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidEventError(
                [f"{source}: line {number}: not JSON: {exc.msg} at column {exc.colno}"]
            ) from None
    return items


def build_events(
    objects: Sequence[dict[str, Any]],
    registry: EventRegistry,
    topic: str | None = None,
    *,
    validate: bool = True,
) -> list[BaseEvent]:
    """Turn envelope dicts into events, every one checked before any is returned.

    Any envelope shape :func:`eventbus.normalise` reads is accepted; ``event_id`` and
    ``timestamp`` are filled in when missing. With ``validate`` each event must match the
    model the registry has for its type (on ``topic``); without, only the envelope is
    checked.

    Raises:
        InvalidEventError: every problem found, each naming the event and the field.
    """
    events: list[BaseEvent] = []
    problems: list[str] = []
    for number, obj in enumerate(objects, 1):
        try:
            envelope = normalise(obj, registry)
        except EventBusError as exc:
            problems.append(f"event {number}: {exc}")
            continue
        what = f"event {number} ({envelope['event_type']})"
        if validate and not registry.knows(envelope["event_type"], topic):
            problems.append(f"{what}: no model is registered for this event type{_known(registry)}")
            continue
        try:
            event = (
                registry.parse(envelope, topic) if validate else BaseEvent.model_validate(envelope)
            )
        except ValidationError as exc:
            problems.extend(f"{what}: {problem}" for problem in field_problems(exc))
            continue
        except EventBusError as exc:
            problems.append(f"{what}: {exc}")
            continue
        events.append(event)
    if problems:
        raise InvalidEventError(problems)
    return events


def field_problems(exc: ValidationError) -> list[str]:
    """``data.employee_id: Field required``-style lines, one per error."""
    return [
        f"{'.'.join(str(part) for part in error['loc']) or '(event)'}: {error['msg']}"
        for error in exc.errors()
    ]


def _known(registry: EventRegistry) -> str:
    types = registry.event_types()
    if not types:
        return " (the registry is empty: pass --registry MODULE[:ATTR])"
    shown = ", ".join(types[:8])
    return f" (known: {shown}{', ...' if len(types) > 8 else ''})"


def load_registry(specs: Sequence[str] = ()) -> EventRegistry:
    """The registry events are validated against.

    Each spec is ``module`` (imported, for the models it registers in
    :data:`eventbus.default_registry`) or ``module:attr``: an :class:`EventRegistry`, or a
    callable returning one (``hrms.events:register_catalog``). The last registry named
    wins; without one, the default registry. With no spec at all, ``hrms.events`` is
    imported when it is installed, which registers the HR/ERP catalog.

    Raises:
        ConfigurationError: a module cannot be imported or an attribute is not a registry.
    """
    if not specs:
        with contextlib.suppress(ImportError):  # the HR/ERP catalog, when installed
            importlib.import_module("hrms.events")
        return default_registry
    registry = default_registry
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"--registry {spec}: cannot import {module_name}: {exc}"
            ) from exc
        if not attr:
            continue
        found: Any = getattr(module, attr, None)
        if found is None:
            raise ConfigurationError(f"--registry {spec}: {module_name} has no {attr!r}")
        if callable(found) and not isinstance(found, EventRegistry):
            found = found()
        if not isinstance(found, EventRegistry):
            raise ConfigurationError(
                f"--registry {spec}: {type(found).__name__} is not an EventRegistry"
            )
        registry = found
    return registry


@dataclass(frozen=True, slots=True)
class Published:
    """An acknowledged event and where the broker stored it."""

    event: BaseEvent
    metadata: RecordMetadata


async def publish_events(
    admin: Admin,
    topic: str,
    events: Sequence[BaseEvent],
    *,
    key: str | None = None,
    on_published: Callable[[Published], None] | None = None,
    delivery_timeout_s: float = 30.0,
) -> list[Published]:
    """Publish ``events`` to ``topic`` one after another, each once acknowledged.

    The key is ``key`` when given, else each event's own (its aggregate id). Events are
    sent in order and each waits for its acknowledgement, so a failure leaves the ones
    before it published and the ones after it unsent.

    Raises:
        UnknownTopicError: the topic does not exist (nothing is sent).
        PublishError: an event was not acknowledged.
    """
    await admin.partitions(topic)
    done: list[Published] = []
    producer = KafkaProducer(
        settings=admin.settings, transport=admin.transport, delivery_timeout_s=delivery_timeout_s
    )
    await producer.start()
    try:
        for event in events:
            published = Published(event, await producer.publish(topic, event, key))
            done.append(published)
            if on_published is not None:
                on_published(published)
    finally:
        await producer.stop()
    return done
