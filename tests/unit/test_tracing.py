"""Tracing: one trace from a request through the outbox, the relay and the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import create_async_engine

from eventbus import BaseEvent, ConfigurationError, KafkaConsumer, KafkaProducer, MessageContext
from eventbus import headers as h
from eventbus._codec import header_value
from eventbus.outbox import Outbox, OutboxRelay
from eventbus.testing import MemoryBroker
from eventbus.tracing import TracingObserver, configure_tracing
from tests.conftest import wait_until

TOPIC = "trace-queue"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def ev(n: int) -> BaseEvent:
    return BaseEvent(event_type="order.created", tenant_id="acme", data={"n": n})


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_one_trace_from_request_through_outbox_relay_and_consumer(
    spans: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path
) -> None:
    provider, exporter = spans
    tracing = [TracingObserver(provider)]
    broker = MemoryBroker(default_partitions=1)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    outbox = Outbox(observers=tracing)
    await outbox.create_tables(engine)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as request:
        async with engine.begin() as conn:
            await outbox.add(conn, TOPIC, ev(1))
    trace_id = request.get_span_context().trace_id

    seen: list[int] = []

    async def handle(event: dict[str, Any], ctx: MessageContext) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        assert header_value(ctx.record.headers, h.TRACEPARENT) is not None

    producer = KafkaProducer(transport=broker, observers=tracing)
    relay = OutboxRelay(outbox, engine, producer, poll_interval_s=0.01, observers=[])
    consumer = KafkaConsumer(group_id="g-trace", topics=TOPIC, transport=broker, observers=tracing)
    await relay.start()
    await consumer.start()
    task = consumer.start_background(handle)
    try:
        await wait_until(lambda: len(seen) == 1)
    finally:
        await consumer.stop()
        await task
        await relay.stop()
        await producer.stop()
        await engine.dispose()
    assert seen == [trace_id]
    await wait_until(lambda: bool(named(exporter, f"{TOPIC} process")))
    (publish,) = named(exporter, f"{TOPIC} publish")
    (process,) = named(exporter, f"{TOPIC} process")
    assert publish.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert publish.context is not None
    assert process.context is not None
    assert publish.context.trace_id == process.context.trace_id == trace_id
    assert publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "g-trace"


async def test_a_batch_span_links_every_record_it_handled(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracing = [TracingObserver(provider)]
    broker = MemoryBroker(default_partitions=1)
    tracer = provider.get_tracer("test")
    traces = []
    async with KafkaProducer(transport=broker, observers=tracing) as producer:
        for n in range(3):
            with tracer.start_as_current_span(f"request {n}") as span:
                await producer.publish(TOPIC, ev(n))
                traces.append(span.get_span_context().trace_id)
    assert len(set(traces)) == 3
    handled: list[int] = []

    async def handle(events: list[dict[str, Any]]) -> None:
        handled.append(len(events))

    consumer = KafkaConsumer(group_id="g-batch", topics=TOPIC, transport=broker, observers=tracing)
    await consumer.start()
    task = asyncio.create_task(consumer.consume_batch(handle, batch_size=3, max_wait=2.0))
    try:
        await wait_until(lambda: sum(handled) == 3)
    finally:
        await consumer.stop()
        await task
    batch_spans = named(exporter, f"{TOPIC} process")
    assert len(batch_spans) == len(handled)
    linked = {link.context.trace_id for s in batch_spans for link in s.links}
    assert linked == set(traces)
    assert batch_spans[0].context is not None
    assert batch_spans[0].context.trace_id == traces[0]


async def test_a_failed_send_ends_its_span_with_an_error(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    broker = MemoryBroker(default_partitions=1)
    async with KafkaProducer(
        transport=broker, observers=[TracingObserver(provider)], producer_retries=0
    ) as producer:
        broker.go_down()
        assert await producer.send_event(TOPIC, ev(1)) is False
        broker.come_back()
    failed = named(exporter, f"{TOPIC} publish")
    assert failed
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in failed)


def test_configure_tracing_follows_the_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    assert configure_tracing("svc") is None  # nothing asked for
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    provider = configure_tracing("svc")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "svc"
    provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = configure_tracing("svc")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "from-env"
    provider.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert configure_tracing("svc") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger-thrift")
    with pytest.raises(ConfigurationError, match="jaeger-thrift"):
        configure_tracing("svc")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_tracing("svc") is None
