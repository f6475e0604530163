"""OpenTelemetry tracing: W3C trace context in Kafka headers, producer to consumer.

:class:`TracingObserver` makes one trace of an HTTP request and every event it caused:

* an event written to the outbox stores the current span's ``traceparent`` (and
  ``tracestate``) in its headers, so the relay's later publish joins the request's trace;
* every record sent gets a PRODUCER span ``<topic> publish``, a child of the context in
  its headers (or of the current span), and carries that span's context onward;
* every record handled gets a CONSUMER span ``<topic> process``, a child of the record's
  context, current while the handler runs (retries included), so what the handler
  emits or sends (another event, an e-mail) belongs to the same trace; a batch gets one
  span, a child of its first record's context, with a link to every record's;
* retry-tier and dead-letter records keep the original headers, so a redriven record
  still names the trace it came from.

:func:`configure_tracing` builds a tracer provider from the standard ``OTEL_*``
environment variables. Example::

    provider = configure_tracing("leave-service")      # None when tracing is off
    if provider is not None:
        observe.install(TracingObserver(provider))
        instrument_fastapi(app, provider)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.propagators.textmap import Getter, Setter
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError(
        "eventbus.tracing needs OpenTelemetry: pip install opentelemetry-api opentelemetry-sdk"
    ) from exc

from eventbus import headers as h
from eventbus._codec import header_value
from eventbus._transport.base import Record
from eventbus.errors import ConfigurationError
from eventbus.observe import Headers, Observer, Outcome, SendDone

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({h.TRACEPARENT, h.TRACESTATE})


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]]]):
    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        value = header_value(carrier, key)
        return None if value is None else [value]

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode()))


_GETTER = _HeaderGetter()
_SETTER = _HeaderSetter()


def extract(headers: Sequence[tuple[str, bytes]]) -> otel_context.Context:
    """The trace context carried in Kafka ``headers`` (an empty context if none)."""
    return _PROPAGATOR.extract(headers, getter=_GETTER)


def inject(headers: Headers, context: otel_context.Context | None = None) -> None:
    """Write ``context``'s (default: the current) trace context into ``headers``,
    replacing any there."""
    _PROPAGATOR.inject(headers, context=context, setter=_SETTER)


class TracingObserver(Observer):
    """Spans for every record sent and handled, linked through Kafka headers.

    Args:
        tracer_provider: where spans go; the global provider when omitted.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("eventbus", tracer_provider=tracer_provider)

    def outgoing(self, headers: Headers) -> None:
        if any(k == h.TRACEPARENT for k, _ in headers):
            return
        if trace.get_current_span().get_span_context().is_valid:
            inject(headers)

    def sending(self, topic: str, headers: Headers) -> SendDone | None:
        carried = any(k in _TRACE_HEADERS for k, _ in headers)
        parent = extract(headers) if carried else None
        span = self.tracer.start_span(
            f"{topic} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=_attributes(topic, headers, "publish"),
        )
        inject(headers, trace.set_span_in_context(span))

        def done(error: BaseException | None) -> None:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()

        return done

    @contextlib.contextmanager
    def handling(self, group: str, records: Sequence[Record]) -> Iterator[None]:
        first = records[0]
        links = [Link(c) for c in _span_contexts(records)] if len(records) > 1 else None
        attributes = _attributes(first.topic, first.headers, "process")
        attributes["messaging.consumer.group.name"] = group
        if len(records) > 1:
            attributes["messaging.batch.message_count"] = len(records)
        else:
            attributes["messaging.kafka.offset"] = first.offset
            attributes["messaging.destination.partition.id"] = str(first.partition)
        with self.tracer.start_as_current_span(
            f"{first.topic} process",
            context=extract(first.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ):
            yield

    def outcome(self, group: str, record: Record, outcome: Outcome) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.add_event(outcome, {"messaging.kafka.offset": record.offset})
        if outcome in ("failed", "dead_lettered"):
            span.set_status(Status(StatusCode.ERROR, outcome))


def _span_contexts(records: Sequence[Record]) -> list[trace.SpanContext]:
    found = (trace.get_current_span(extract(r.headers)).get_span_context() for r in records)
    return [c for c in found if c.is_valid]


def _attributes(
    topic: str, headers: Sequence[tuple[str, bytes]], operation: str
) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }
    event_id = header_value(headers, h.EVENT_ID)
    if event_id is not None:
        attributes["messaging.message.id"] = event_id
    event_type = header_value(headers, h.EVENT_TYPE)
    if event_type is not None:
        attributes["eventbus.event_type"] = event_type
    return attributes


def configure_tracing(service_name: str) -> SdkTracerProvider | None:
    """A tracer provider from the standard ``OTEL_*`` environment variables, or None.

    Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, the
    OTLP/HTTP protobuf exporter configured by ``OTEL_EXPORTER_OTLP_*``; ``console``), or
    when it is unset and an OTLP endpoint is (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_TRACES_EXPORTER=none`` turns it off. The resource's ``service.name`` is
    ``OTEL_SERVICE_NAME`` if set, else ``service_name``; ``OTEL_RESOURCE_ATTRIBUTES`` adds
    to it. Spans are exported in batches (``OTEL_BSP_*``). The provider is not made
    global: pass it to :class:`TracingObserver` and :func:`instrument_fastapi`, so that
    several services in one process each keep their own service name.

    Raises:
        ConfigurationError: ``OTEL_TRACES_EXPORTER`` names an exporter this function does not know.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    names = [n for n in names if n != "none"]
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporters: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported here: use otlp, console or none"
            )
    attributes = {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def instrument_fastapi(app: object, tracer_provider: TracerProvider | None = None) -> None:
    """Trace ``app``'s requests (a SERVER span each, continuing an incoming
    ``traceparent``) with OpenTelemetry's FastAPI instrumentation."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,  # type: ignore[arg-type]
        tracer_provider=tracer_provider,
        exclude_spans=["receive", "send"],
    )
