"""All envelope <-> Kafka record mapping lives here.

The writer emits seed 000's flat JSON shape and mirrors key attributes into headers. The
reader accepts three shapes and normalises them to the flat one:

* flat (seed 000): ``{"event_id", "event_type", ..., "data": {...}}``
* metadata/payload (seed 004): ``{"metadata": {"event_id", "event_version": "1.0", ...},
  "payload": {...}}``
* kafkajs ``createEvent`` (seed 002): ``{"type": "USER_CREATED", "data": {...},
  "metadata": {"eventId", "timestamp", "tenantId", "source"}}``
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from eventbus import headers as h
from eventbus._envelope import BaseEvent
from eventbus._registry import EventRegistry
from eventbus.errors import DecodeError, SerializationError

Headers = list[tuple[str, bytes]]

DEFAULT_MAX_VALUE_BYTES = 1_000_000
"""Kafka's default ``max.message.bytes`` is 1 MiB less overhead; we refuse earlier."""


def encode_event(
    event: BaseEvent, max_bytes: int = DEFAULT_MAX_VALUE_BYTES
) -> tuple[bytes, Headers]:
    """Encode ``event`` to its JSON value and mirror headers.

    Raises:
        SerializationError: the event cannot be serialised or is larger than ``max_bytes``.
    """
    try:
        value = event.model_dump_json().encode()
    except (ValueError, TypeError) as exc:  # pydantic raises PydanticSerializationError(ValueError)
        raise SerializationError(f"cannot encode {event.event_type}: {exc}") from exc
    if len(value) > max_bytes:
        raise SerializationError(
            f"event {event.event_id} ({event.event_type}) is {len(value)} bytes, "
            f"over the {max_bytes}-byte limit"
        )
    return value, event_headers(event)


def event_headers(event: BaseEvent) -> Headers:
    """The Kafka headers that mirror ``event``'s routing attributes."""
    out: Headers = [
        (h.EVENT_TYPE, event.event_type.encode()),
        (h.EVENT_ID, str(event.event_id).encode()),
        (h.EVENT_VERSION, str(event.event_version).encode()),
        (h.CONTENT_TYPE, h.JSON.encode()),
        (h.SOURCE_SERVICE, event.source_service.encode()),
        (h.PRIORITY, event.priority.value.encode()),
    ]
    if event.correlation_id:
        out.append((h.CORRELATION_ID, event.correlation_id.encode()))
    if event.causation_id:
        out.append((h.CAUSATION_ID, event.causation_id.encode()))
    if event.tenant_id:
        out.append((h.TENANT_ID, event.tenant_id.encode()))
    return out


def encode_raw(value: Any, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> bytes:
    """Encode a raw value (bytes, str or JSON-able object) for :meth:`send_raw`."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        try:
            data = json.dumps(value, default=str, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot encode raw value: {exc}") from exc
    if len(data) > max_bytes:
        raise SerializationError(f"value is {len(data)} bytes, over the {max_bytes}-byte limit")
    return data


def header_value(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """Return the last header ``name`` decoded as UTF-8, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


def decode_json(value: bytes | None) -> Any:
    """Parse a record value as JSON; raise :class:`DecodeError` with the reason."""
    if value is None or len(value) == 0:
        raise DecodeError("empty record value (a tombstone or an empty message)")
    try:
        return json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"record value is not JSON: {exc}") from exc


def _version(raw: Any) -> int:
    """Seed 004 writes versions like "1.0"; we keep the major number."""
    if raw is None:
        return 1
    try:
        return max(1, int(float(str(raw))))
    except ValueError as exc:
        raise DecodeError(f"event_version {raw!r} is not a number") from exc


def normalise(obj: Any, registry: EventRegistry | None = None) -> dict[str, Any]:
    """Turn any supported envelope shape into the flat seed-000 dict.

    Raises:
        DecodeError: ``obj`` is not an envelope of a known shape.
    """
    if not isinstance(obj, Mapping):
        raise DecodeError(f"event envelope must be a JSON object, got {type(obj).__name__}")
    meta = obj.get("metadata")
    if "event_type" in obj:
        out = dict(obj)
    elif isinstance(meta, Mapping) and "payload" in obj and "event_type" in meta:
        out = {k: v for k, v in meta.items() if k in _FLAT_FIELDS}
        out["data"] = obj["payload"]
    elif "type" in obj and "data" in obj:
        meta = meta if isinstance(meta, Mapping) else {}
        out = {
            "event_type": obj["type"],
            "data": obj["data"],
            "event_id": meta.get("eventId"),
            "timestamp": meta.get("timestamp"),
            "tenant_id": meta.get("tenantId"),
            "source_service": meta.get("source"),
            "correlation_id": meta.get("correlationId"),
        }
        out = {k: v for k, v in out.items() if v is not None}
    else:
        raise DecodeError("JSON object is not an event envelope (no event_type, metadata or type)")
    etype = out.get("event_type")
    if not isinstance(etype, str) or not etype:
        raise DecodeError(f"event_type must be a non-empty string, got {etype!r}")
    if registry is not None:
        out["event_type"] = registry.canonical_type(etype)
    out["event_version"] = _version(out.get("event_version"))
    return out


_FLAT_FIELDS = frozenset(BaseEvent.model_fields)


def decode_event(
    value: bytes | None,
    registry: EventRegistry,
    topic: str | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> BaseEvent:
    """Decode a record value into the registered typed event.

    Records written by eventbus (their ``event_type`` and ``event_version`` headers say
    so) at the newest registered version are validated straight from the bytes; anything
    else is parsed, normalised and upcast first.

    Raises:
        DecodeError: not JSON or not an envelope, or the payload does not match the model.
        UnknownEventTypeError: no model is registered for the type.
    """
    fast = _fast_model(registry, topic, headers)
    if fast is not None and value:
        try:
            return fast.model_validate_json(value)
        except ValidationError:
            pass  # fall through: the slow path gives the precise error
    env = normalise(decode_json(value), registry)
    try:
        return registry.parse(env, topic)
    except ValidationError as exc:
        raise DecodeError(f"{env['event_type']} does not match its model: {exc}") from exc


def _fast_model(
    registry: EventRegistry, topic: str | None, headers: Sequence[tuple[str, bytes]]
) -> type[BaseEvent] | None:
    etype = version = None
    for key, val in headers:
        if key == h.EVENT_TYPE:
            etype = val
        elif key == h.EVENT_VERSION:
            version = val
    if etype is None or version is None:
        return None
    try:
        return registry.model_at(etype.decode(), int(version), topic)
    except (ValueError, UnicodeDecodeError):
        return None


def decode_as(value: bytes | None, model: type[BaseEvent], registry: EventRegistry) -> BaseEvent:
    """Decode a record value into ``model`` regardless of the registry's mapping."""
    env = normalise(decode_json(value), registry)
    try:
        return model.model_validate(env)
    except ValidationError as exc:
        raise DecodeError(f"{env['event_type']} does not match {model.__name__}: {exc}") from exc
