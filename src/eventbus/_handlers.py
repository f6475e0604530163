"""Handler introspection and the per-message context handed to handlers."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from eventbus._codec import decode_event, decode_json, encode_event, header_value, normalise
from eventbus._envelope import BaseEvent
from eventbus._registry import EventRegistry
from eventbus._transport.base import OutgoingRecord, Record
from eventbus.errors import ConfigurationError, DecodeError


class PayloadKind(Enum):
    """What a handler asks to receive."""

    DICT = "dict"
    EVENT = "event"
    RAW = "raw"
    RECORD = "record"


@dataclass
class MessageContext:
    """Everything about the message being handled; ask for it with a ``ctx`` parameter.

    ``state`` is free for middleware, for example to carry a database session.
    """

    record: Record
    group_id: str
    attempt: int = 1
    state: dict[str, Any] = field(default_factory=dict)
    transactional: bool = False
    outputs: list[OutgoingRecord] = field(default_factory=list)

    def produce(self, topic: str, event: BaseEvent, key: str | bytes | None = None) -> None:
        """Queue ``event`` to be written atomically with this record's offset commit.

        Only in a ``KafkaConsumer(transactional=True)``: the events a handler produces
        and the consumed offset are committed in one Kafka transaction after the handler
        returns, or not at all (consume-transform-produce, exactly once).

        Raises:
            ConfigurationError: the consumer is not transactional.
        """
        if not self.transactional:
            raise ConfigurationError("ctx.produce() needs KafkaConsumer(transactional=True)")
        value, headers = encode_event(event)
        k = key if key is not None else event.default_key()
        self.outputs.append(
            OutgoingRecord(topic, value, k.encode() if isinstance(k, str) else k, tuple(headers))
        )

    @property
    def topic(self) -> str:
        """The record's topic."""
        return self.record.topic

    @property
    def partition(self) -> int:
        """The record's partition."""
        return self.record.partition

    @property
    def offset(self) -> int:
        """The record's offset."""
        return self.record.offset

    @property
    def key(self) -> bytes | None:
        """The record's key."""
        return self.record.key

    def header(self, name: str) -> str | None:
        """A header decoded as UTF-8, or None."""
        return header_value(self.record.headers, name)


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class HandlerSpec:
    """How to call a handler: what payload it wants and whether it wants the context."""

    func: Handler
    kind: PayloadKind
    model: type[BaseEvent] | None
    wants_ctx: bool

    def payload(self, record: Record, registry: EventRegistry) -> Any:
        """Decode ``record`` into what the handler asked for.

        Raises:
            DecodeError, UnknownEventTypeError: the record cannot be given to this handler.
        """
        if self.kind is PayloadKind.RECORD:
            return record
        if self.kind is PayloadKind.RAW:
            return record.value
        if self.kind is PayloadKind.DICT:
            obj = decode_json(record.value)
            if not isinstance(obj, dict):
                raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
            try:
                return normalise(obj, registry)
            except DecodeError:
                return obj  # any JSON object is fine for a dict handler
        event = decode_event(record.value, registry, record.topic, record.headers)
        if self.model is not None and not isinstance(event, self.model):
            raise DecodeError(
                f"{event.event_type} decodes to {type(event).__name__}, "
                f"not the handler's {self.model.__name__}"
            )
        return event

    async def call(self, payload: Any, ctx: MessageContext) -> None:
        """Invoke the handler."""
        if self.wants_ctx:
            await self.func(payload, ctx)
        else:
            await self.func(payload)


def _kind_of(annotation: Any) -> tuple[PayloadKind, type[BaseEvent] | None]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return PayloadKind.DICT, None
    origin = typing.get_origin(annotation) or annotation
    if origin is dict:
        return PayloadKind.DICT, None
    if annotation is bytes:
        return PayloadKind.RAW, None
    if annotation is Record:
        return PayloadKind.RECORD, None
    if isinstance(annotation, type) and issubclass(annotation, BaseEvent):
        return PayloadKind.EVENT, annotation
    raise ConfigurationError(
        f"handler parameter type {annotation!r} is not supported; use dict, bytes, Record "
        "or a BaseEvent subclass"
    )


def inspect_handler(func: Handler, *, batch: bool = False) -> HandlerSpec:
    """Read the handler's signature to learn what it wants.

    The first parameter's annotation picks the payload (``dict`` or none: the JSON
    object; a :class:`BaseEvent` subclass: the typed event; ``bytes``; ``Record``); for
    batch handlers, ``list[...]`` of one of those. A second parameter receives the
    :class:`MessageContext` (for batches: the list of contexts).
    """
    if not callable(func):
        raise ConfigurationError(f"handler {func!r} is not callable")
    if not inspect.iscoroutinefunction(func) and not inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects are fine
    ):
        raise ConfigurationError(f"handler {getattr(func, '__name__', func)!r} must be async")
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if not params:
        raise ConfigurationError("a handler takes the message as its first parameter")
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot resolve the annotations of handler {getattr(func, '__name__', func)!r} "
            f"({exc}); define its models at module level"
        ) from exc
    annotation = hints.get(params[0].name, inspect.Parameter.empty)
    if batch and annotation is not inspect.Parameter.empty:
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is not list or not args:
            raise ConfigurationError("a batch handler's parameter must be list[...]")
        annotation = args[0]
    kind, model = _kind_of(annotation)
    return HandlerSpec(func, kind, model, wants_ctx=len(params) > 1)
