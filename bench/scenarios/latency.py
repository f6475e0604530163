"""latency: end-to-end delay at a fixed rate, produce -> handler, in one process.

Producer and consumer share one event loop. Each message is a fresh copy of the envelope
whose ``timestamp`` is set just before it is sent; the handler subtracts it from the clock
on arrival. The producer paces itself to the target rate (1000 msg/s, or 200 with
``--quick``) without awaiting acknowledgements. Before the clock starts, warm-up messages
are sent until the consumer has joined and received one.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaException, Producer

from bench.clients import (
    Transport,
    aiokafka_consumer_kwargs,
    confluent_consumer_config,
    eventbus_producer,
    faststream_broker,
    faststream_subscriber_kwargs,
    start_eventbus_consumer,
    stop_faststream,
)
from bench.envelope import fresh_event, hand_headers, hand_key
from bench.harness import BenchError, Comparison, Contender, Measurement, RunContext, Scenario
from hrms.events import AuditEvent

WARMUP_SOURCE = "bench-warmup"
RATE_QUICK, RATE_FULL = 200, 1000
SECONDS_QUICK, SECONDS_FULL = 2, 5

Send = Callable[[AuditEvent], Awaitable[Any]]


def _rate(ctx: RunContext) -> int:
    return RATE_QUICK if ctx.quick else RATE_FULL


class Latencies:
    """Collects produce->handler delays; knows when the warm-up and the run are over."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.samples: list[float] = []
        self.warm = asyncio.Event()
        self.done = asyncio.Event()

    def observe(self, event: AuditEvent) -> None:
        """Record one arrival (call first thing in the handler)."""
        now = time.time()
        if event.source_service == WARMUP_SOURCE:
            self.warm.set()
            return
        self.samples.append((now - event.timestamp.timestamp()) * 1000.0)
        if len(self.samples) >= self.expected:
            self.done.set()


async def drive(ctx: RunContext, send: Send, latencies: Latencies) -> Measurement:
    """Warm up, then send ``ctx.n`` fresh envelopes at the target rate and wait for all."""
    template = ctx.pool.events[0]
    warm = template.model_copy(update={"source_service": WARMUP_SOURCE})
    pending: list[Any] = []
    deadline = time.perf_counter() + 60
    while not latencies.warm.is_set():
        if time.perf_counter() > deadline:
            raise BenchError("the consumer received no warm-up message within 60 s")
        pending.append(await send(fresh_event(warm)))
        try:
            await asyncio.wait_for(latencies.warm.wait(), 0.25)
        except TimeoutError:
            continue
    await asyncio.gather(*(p for p in pending if p is not None))
    rate = _rate(ctx)
    interval = 1.0 / rate
    size = len(ctx.pool.events)
    pending = []
    ctx.timer.start()
    t_next = time.perf_counter()
    for i in range(ctx.n):
        delay = t_next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(await send(fresh_event(ctx.pool.events[i % size])))
        t_next += interval
    await asyncio.gather(*(p for p in pending if p is not None))
    try:
        await asyncio.wait_for(latencies.done.wait(), 30)
    except TimeoutError as exc:
        raise BenchError(f"{len(latencies.samples)} of {ctx.n} arrived within 30 s") from exc
    ctx.timer.stop()
    s = sorted(latencies.samples)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return ctx.timer.measurement(
        len(s),
        target_rate=float(rate),
        p50_ms=q[49],
        p90_ms=q[89],
        p99_ms=q[98],
        max_ms=s[-1],
        mean_ms=statistics.fmean(s),
    )


# -- contenders -------------------------------------------------------------------------


def _eventbus(transport: Transport, **overrides: Any) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        latencies = Latencies(ctx.n)

        async def handle(event: AuditEvent) -> None:
            latencies.observe(event)

        consumer = await start_eventbus_consumer(ctx, transport, f"g-{ctx.run_id}")
        task = asyncio.create_task(consumer.consume(handle))
        try:
            async with eventbus_producer(ctx, transport, **overrides) as producer:

                async def send(event: AuditEvent) -> Any:
                    return await producer.enqueue(ctx.topic, event)

                return await drive(ctx, send, latencies)
        finally:
            await consumer.stop()
            await task

    return run


async def aiokafka_raw(ctx: RunContext) -> Measurement:
    """Default producer, ``send()`` not awaited; consumer ``getmany`` + validate + commit."""
    latencies = Latencies(ctx.n)
    consumer = AIOKafkaConsumer(ctx.topic, **aiokafka_consumer_kwargs(ctx, f"g-{ctx.run_id}"))
    await consumer.start()

    async def consume() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                for record in records:
                    latencies.observe(AuditEvent.model_validate_json(record.value))
            if batches:
                await consumer.commit()

    task = asyncio.create_task(consume())
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap)
    await producer.start()
    try:

        async def send(event: AuditEvent) -> Any:
            return await producer.send(
                ctx.topic,
                event.model_dump_json().encode(),
                key=hand_key(event),
                headers=hand_headers(event),
            )

        return await drive(ctx, send, latencies)
    finally:
        await producer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()


async def confluent_raw(ctx: RunContext) -> Measurement:
    """Default producer (``produce`` + ``poll(0)``); a ``poll()`` thread hands events to the loop.

    ``poll()`` returns as soon as one message is there; ``consume(n, timeout)`` would wait
    for n messages or the whole timeout.
    """
    latencies = Latencies(ctx.n)
    loop = asyncio.get_running_loop()
    consumer = Consumer(confluent_consumer_config(ctx, f"g-{ctx.run_id}"))
    consumer.subscribe([ctx.topic])
    stopping = threading.Event()

    def poll_loop() -> None:
        last_commit = time.perf_counter()
        while not stopping.is_set():
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                event = AuditEvent.model_validate_json(message.value() or b"")
                loop.call_soon_threadsafe(latencies.observe, event)
            if time.perf_counter() - last_commit > 0.1:
                with contextlib.suppress(KafkaException):  # nothing to commit yet
                    consumer.commit(asynchronous=True)
                last_commit = time.perf_counter()

    thread = threading.Thread(target=poll_loop, name="bench-confluent-consumer", daemon=True)
    thread.start()
    producer = Producer({"bootstrap.servers": ctx.bootstrap})
    try:

        async def send(event: AuditEvent) -> None:
            producer.produce(
                ctx.topic,
                event.model_dump_json().encode(),
                hand_key(event),
                headers=hand_headers(event),  # type: ignore[arg-type]
            )
            producer.poll(0)

        return await drive(ctx, send, latencies)
    finally:
        producer.flush(10)
        stopping.set()
        await asyncio.to_thread(thread.join, 10)
        consumer.close()


async def faststream_raw(ctx: RunContext) -> Measurement:
    """``publish(no_confirm=True)``; a per-message subscriber on the same broker object."""
    latencies = Latencies(ctx.n)
    broker = faststream_broker(ctx)

    @broker.subscriber(ctx.topic, **faststream_subscriber_kwargs(ctx, f"g-{ctx.run_id}"))  # type: ignore[untyped-decorator]
    async def handle(event: AuditEvent) -> None:
        latencies.observe(event)

    await broker.start()
    try:

        async def send(event: AuditEvent) -> Any:
            return await broker.publish(event, ctx.topic, key=hand_key(event), no_confirm=True)

        return await drive(ctx, send, latencies)
    finally:
        await stop_faststream(broker)


N_QUICK, N_FULL = RATE_QUICK * SECONDS_QUICK, RATE_FULL * SECONDS_FULL

SCENARIO = Scenario(
    name="latency",
    title="latency: produce -> handler at a fixed rate (ms, lower is better)",
    description=(
        "Producer and consumer in one process and event loop; the producer sends fresh "
        f"envelopes at {RATE_FULL} msg/s ({RATE_QUICK} with --quick) for {SECONDS_FULL} s "
        f"({SECONDS_QUICK} s) without awaiting acks; latency = handler clock - envelope "
        "timestamp. p50/p90/p99/max per run; the table shows the median over runs."
    ),
    metric="latency",
    order=30,
    contenders=[
        Contender(
            "eventbus-aiokafka",
            "eventbus[aiokafka] enqueue -> consume(handler)",
            "eventbus",
            "aiokafka",
            _eventbus("aiokafka"),
            settings={"transport": "aiokafka"},
            effective={"linger_ms": 5},
            notes="eventbus defaults (linger 5 ms)",
            n_quick=N_QUICK,
            n_full=N_FULL,
        ),
        Contender(
            "eventbus-aiokafka-linger0",
            "eventbus[aiokafka] linger 0",
            "eventbus",
            "aiokafka",
            _eventbus("aiokafka", producer_linger_ms=0),
            settings={"transport": "aiokafka", "producer_linger_ms": 0},
            notes="eventbus with KAFKA_PRODUCER_LINGER_MS=0, to show what the default costs",
            n_quick=N_QUICK,
            n_full=N_FULL,
        ),
        Contender(
            "eventbus-confluent",
            "eventbus[confluent] enqueue -> consume(handler)",
            "eventbus",
            "confluent",
            _eventbus("confluent"),
            settings={"transport": "confluent"},
            effective={"linger.ms": 5},
            notes="eventbus defaults (linger 5 ms)",
            n_quick=N_QUICK,
            n_full=N_FULL,
        ),
        Contender(
            "aiokafka-raw",
            "aiokafka send() -> getmany()",
            "aiokafka",
            "aiokafka",
            aiokafka_raw,
            settings={"enable_auto_commit": False, "max_poll_records": 500},
            effective={"acks": 1, "linger_ms": 0, "fetch_max_wait_ms": 500},
            notes="model_dump_json + headers + key; commit per batch",
            n_quick=N_QUICK,
            n_full=N_FULL,
        ),
        Contender(
            "confluent-raw",
            "confluent produce() -> poll() thread",
            "confluent",
            "confluent-kafka",
            confluent_raw,
            settings={"enable.auto.commit": False},
            effective={"acks": "all", "linger.ms": 5, "fetch.wait.max.ms": 500},
            notes="model_dump_json + headers + key; poll() on a thread, events handed to the "
            "event loop with call_soon_threadsafe; commit(asynchronous) every 100 ms",
            n_quick=N_QUICK,
            n_full=N_FULL,
        ),
        Contender(
            "faststream",
            "FastStream publish(no_confirm) -> subscriber",
            "faststream",
            "aiokafka",
            faststream_raw,
            settings={"logger": None},
            effective={"acks": 1, "linger_ms": 0},
            notes="default AckPolicy.ACK_FIRST",
            n_quick=N_QUICK,
            n_full=N_FULL,
        ),
    ],
    comparisons=[
        Comparison(
            "eventbus p50 / raw aiokafka p50", "eventbus-aiokafka", "aiokafka-raw", "p50_ms"
        ),
        Comparison(
            "eventbus p99 / raw aiokafka p99", "eventbus-aiokafka", "aiokafka-raw", "p99_ms"
        ),
        Comparison(
            "eventbus[confluent] p50 / raw confluent p50",
            "eventbus-confluent",
            "confluent-raw",
            "p50_ms",
        ),
        Comparison("eventbus p50 / FastStream p50", "eventbus-aiokafka", "faststream", "p50_ms"),
        Comparison("eventbus p99 / FastStream p99", "eventbus-aiokafka", "faststream", "p99_ms"),
    ],
)
