"""The message side of an AsyncAPI document: headers, keys, payload schemas and messages.

Every header name comes from :mod:`eventbus.headers`; every payload schema is the
envelope model's own JSON Schema (pydantic, validation mode), with its ``$defs`` moved to
``components/schemas`` so that each ``$ref`` resolves inside the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from eventbus import headers as h
from eventbus._envelope import BaseEvent, EventPayload, Priority
from eventbus._registry import Registration

BINDING_VERSION: Final = "0.5.0"
"""The Kafka bindings' version (AsyncAPI 3.0.0 knows 0.3.0 to 0.5.0)."""
SCHEMAS: Final = "#/components/schemas/"
MESSAGES: Final = "#/components/messages/"
RAW_DEAD_LETTER: Final = "dead-letter.raw"
"""The message of a dead-letter topic that holds a record no model could read."""
_ID_CHARS: Final = re.compile(r"[^\w.\-]")


def component_id(text: str) -> str:
    """``text`` as a key of ``components`` or ``channels`` (letters, digits, ``._-``)."""
    return _ID_CHARS.sub("-", text)


def message_id(reg: Registration) -> str:
    """The message id of a registration: ``user.created.v1``, ``notification-queue.any-type.v1``."""
    if reg.event_type is None:
        return component_id(f"{reg.topic}.any-type.v{reg.version}")
    if reg.topic is None:
        return component_id(f"{reg.event_type}.v{reg.version}")
    return component_id(f"{reg.topic}.{reg.event_type}.v{reg.version}")


def _header(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **schema}


def envelope_headers(event_type: str | None, version: int | None) -> dict[str, dict[str, Any]]:
    """The headers eventbus writes beside every event (``eventbus._codec.event_headers``)."""
    return {
        h.EVENT_TYPE: _header(
            "the dotted event type",
            **({"const": event_type} if event_type is not None else {}),
        ),
        h.EVENT_ID: _header("the event id: a UUID when eventbus generated it"),
        h.EVENT_VERSION: _header(
            "the integer event version, as text",
            **({"const": str(version)} if version is not None else {"pattern": "^[1-9][0-9]*$"}),
        ),
        h.CONTENT_TYPE: _header("the value's media type", const=h.JSON),
        h.SOURCE_SERVICE: _header("the producing service"),
        h.PRIORITY: _header("the event's priority", enum=[p.value for p in Priority]),
        h.CORRELATION_ID: _header("the correlation id, when set"),
        h.CAUSATION_ID: _header("the id of the event that caused this one, when set"),
        h.TENANT_ID: _header("the tenant, when set"),
        h.TRACEPARENT: _header("W3C trace context of the writer's span, when traced"),
        h.TRACESTATE: _header("W3C trace state, when traced"),
    }


ENVELOPE_REQUIRED: Final = (
    h.EVENT_TYPE,
    h.EVENT_ID,
    h.EVENT_VERSION,
    h.CONTENT_TYPE,
    h.SOURCE_SERVICE,
    h.PRIORITY,
)

DEAD_LETTER_HEADERS: Final[dict[str, dict[str, Any]]] = {
    h.DLQ_ORIGINAL_TOPIC: _header("the topic the record failed on (a retry tier's main topic)"),
    h.DLQ_ORIGINAL_PARTITION: _header("its partition", pattern="^[0-9]+$"),
    h.DLQ_ORIGINAL_OFFSET: _header("its offset", pattern="^[0-9]+$"),
    h.DLQ_ORIGINAL_KEY: _header("its key, when it had one"),
    h.DLQ_EXCEPTION_TYPE: _header("the exception's class name"),
    h.DLQ_EXCEPTION_MESSAGE: _header("the exception's message (at most 1000 characters)"),
    h.DLQ_TRACEBACK_DIGEST: _header("a stable digest of where it was raised"),
    h.DLQ_REASON: _header("why it was dead-lettered"),
    h.DLQ_ATTEMPTS: _header("handler attempts made", pattern="^[0-9]+$"),
    h.DLQ_FIRST_FAILURE_AT: _header("the first failure (ISO 8601, UTC)", format="date-time"),
    h.DLQ_FAILED_AT: _header("the last failure (ISO 8601, UTC)", format="date-time"),
    h.DLQ_CONSUMER_GROUP: _header("the consumer group that gave up"),
}
"""The ``dlq.*`` headers of a dead-letter record (``eventbus._deadletter``)."""

RETRY_HEADERS: Final[dict[str, dict[str, Any]]] = {
    h.RETRY_TIER: _header("the 0-based retry tier", pattern="^[0-9]+$"),
    h.RETRY_DUE_AT: _header("when the record may be handled again (epoch seconds)"),
    h.RETRY_ORIGINAL_TOPIC: _header("the main topic the record belongs to"),
}
"""The ``retry.*`` headers of a retry-tier record (``eventbus._retrytopics``)."""


def headers_schema(
    event_type: str | None, version: int | None, kind: str = "events"
) -> dict[str, Any]:
    """The JSON Schema of a record's Kafka headers (all values UTF-8 text).

    Args:
        event_type: the message's event type (its header is then a ``const``).
        version: the message's version (likewise).
        kind: ``events``; ``dead-letter`` adds the ``dlq.*`` headers; ``retry`` adds
            those and the ``retry.*`` headers.
    """
    properties = envelope_headers(event_type, version)
    required: list[str] = list(ENVELOPE_REQUIRED)
    if kind in ("dead-letter", "retry"):
        properties.update(DEAD_LETTER_HEADERS)
        # the original headers are kept as they were: a record that failed may lack them
        required = [n for n in DEAD_LETTER_HEADERS if n != h.DLQ_ORIGINAL_KEY]
    if kind == "retry":
        properties.update(RETRY_HEADERS)
        required += list(RETRY_HEADERS)
    return {"type": "object", "properties": properties, "required": required}


def key_schema(model: type[BaseEvent]) -> dict[str, Any]:
    """The Kafka key of ``model``'s records: its payload's aggregate id, if it declares one."""
    field = model.model_fields.get("data")
    payload = field.annotation if field is not None else None
    aggregate = (
        payload.aggregate_key
        if isinstance(payload, type) and issubclass(payload, EventPayload)
        else None
    )
    if aggregate is None:
        return {
            "type": ["string", "null"],
            "description": "the key the producer names; none by default",
        }
    return {
        "type": "string",
        "description": f"the payload's {aggregate} (UTF-8), unless the producer names another",
        "x-eventbus-aggregate-key": aggregate,
    }


def payload_schemas(
    models: Iterable[type[BaseEvent]],
) -> tuple[dict[type[BaseEvent], dict[str, Any]], dict[str, Any]]:
    """Each model's JSON Schema (inline) and the shared definitions they reference.

    Returns:
        ``(payloads, schemas)``: model -> its schema with ``$ref`` pointing into
        ``#/components/schemas/``; and the ``components/schemas`` they need (pydantic
        names colliding definitions apart).
    """
    unique = list(dict.fromkeys(models))
    if not unique:
        return {}, {}
    refs, top = models_json_schema(
        [(m, "validation") for m in unique], ref_template=SCHEMAS + "{model}"
    )
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    payloads: dict[type[BaseEvent], dict[str, Any]] = {}
    for model in unique:
        ref = refs[(model, "validation")]
        name = str(ref["$ref"]).removeprefix(SCHEMAS) if "$ref" in ref else None
        payloads[model] = dict(defs[name]) if name is not None else dict(ref)
    used = _referenced(payloads.values(), defs)
    return payloads, {name: defs[name] for name in sorted(used)}


def _referenced(roots: Iterable[Any], defs: Mapping[str, Any]) -> set[str]:
    """The definitions reachable through ``$ref`` from ``roots``."""
    found: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(SCHEMAS):
                name = ref.removeprefix(SCHEMAS)
                if name not in found and name in defs:
                    found.add(name)
                    todo.append(defs[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def event_message(
    reg: Registration, payload: dict[str, Any], kind: str = "events"
) -> dict[str, Any]:
    """The AsyncAPI message of one registration (``kind``: events, dead-letter, retry)."""
    what = reg.event_type or f"any event type on {reg.topic}"
    title = f"{what} v{reg.version}"
    description = (
        f"`{reg.model.__name__}`: {(reg.model.__doc__ or '').strip().splitlines()[0]}"
        if reg.model.__doc__
        else f"`{reg.model.__name__}`"
    )
    if kind == "dead-letter":
        title += " (dead letter)"
        description += (
            "\n\nA dead letter: the original key, value and headers, unchanged, plus the "
            "`dlq.*` headers saying why it failed."
        )
    elif kind == "retry":
        title += " (retry tier)"
        description += (
            "\n\nWaiting in a retry tier: the original record plus the `dlq.*` failure "
            "headers and the `retry.*` headers."
        )
    suffix = "" if kind == "events" else f".{kind}"
    return {
        "name": message_id(reg) + suffix,
        "title": title,
        "summary": f"{what}, version {reg.version} ({reg.model.__name__})",
        "description": description,
        "contentType": h.JSON,
        "headers": headers_schema(reg.event_type, reg.version, kind),
        "payload": payload,
        "correlationId": {"location": "$message.payload#/correlation_id"},
        "bindings": {"kafka": {"key": key_schema(reg.model), "bindingVersion": BINDING_VERSION}},
    }


def raw_dead_letter() -> dict[str, Any]:
    """A dead letter no model could read: any value, the ``dlq.*`` headers."""
    return {
        "name": RAW_DEAD_LETTER,
        "title": "undecodable record (dead letter)",
        "summary": "a record that failed before any model read it",
        "description": (
            "The original value unchanged (it may not be JSON, or not an event), its key "
            "and headers, plus the `dlq.*` headers."
        ),
        "headers": headers_schema(None, None, "dead-letter"),
        "payload": {"description": "the original record's value, as it was"},
        "bindings": {
            "kafka": {
                "key": {"type": ["string", "null"], "description": "the original key"},
                "bindingVersion": BINDING_VERSION,
            }
        },
    }
