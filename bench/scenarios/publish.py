"""publish: how fast each client gets N envelopes acknowledged by the broker.

Timed: first send -> last acknowledgement. Each run has a fresh 3-partition topic and a
started, warmed-up client (one acknowledged record before the clock starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from bench.clients import (
    MIB,
    Transport,
    eventbus_producer,
    faststream_broker,
    handwritten_aiokafka,
    handwritten_confluent,
    stop_faststream,
)
from bench.envelope import hand_headers, hand_key
from bench.harness import BenchError, Comparison, Contender, Measurement, RunContext, Scenario

BATCH = 500

# -- eventbus ---------------------------------------------------------------------------


def _eventbus_send_event(transport: Transport) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        events = ctx.pool.take(ctx.n)
        async with eventbus_producer(ctx, transport) as producer:
            await producer.publish(ctx.topic, events[0])
            ctx.timer.start()
            for event in events:
                if not await producer.send_event(ctx.topic, event):
                    raise BenchError("send_event returned False")
            ctx.timer.stop()
        return ctx.timer.measurement(ctx.n)

    return run


def _eventbus_enqueue(transport: Transport) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        events = ctx.pool.take(ctx.n)
        async with eventbus_producer(ctx, transport) as producer:
            await producer.publish(ctx.topic, events[0])
            ctx.timer.start()
            futures = [await producer.enqueue(ctx.topic, event) for event in events]
            await asyncio.gather(*futures)
            ctx.timer.stop()
        return ctx.timer.measurement(ctx.n)

    return run


def _eventbus_send_batch(transport: Transport) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        events = ctx.pool.take(ctx.n)
        async with eventbus_producer(ctx, transport) as producer:
            await producer.publish(ctx.topic, events[0])
            ctx.timer.start()
            for i in range(0, len(events), BATCH):
                if not all(await producer.send_batch(ctx.topic, events[i : i + BATCH])):
                    raise BenchError("send_batch: a record was not acknowledged")
            ctx.timer.stop()
        return ctx.timer.measurement(ctx.n)

    return run


# -- raw aiokafka -----------------------------------------------------------------------


async def aiokafka_default(ctx: RunContext) -> Measurement:
    """``send()`` of pre-encoded bytes with a key, gather the futures; client defaults."""
    values, keys, size = ctx.pool.values, ctx.pool.keys, len(ctx.pool.values)
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(ctx.topic, values[0], key=keys[0])
        ctx.timer.start()
        futures = [
            await producer.send(ctx.topic, values[i % size], key=keys[i % size])
            for i in range(ctx.n)
        ]
        await asyncio.gather(*futures)
        ctx.timer.stop()
    finally:
        await producer.stop()
    return ctx.timer.measurement(ctx.n)


async def aiokafka_handwritten(ctx: RunContext) -> Measurement:
    """What eventbus does, by hand: model_dump_json + headers + key, eventbus's config."""
    options = handwritten_aiokafka(ctx)
    ctx.resolved.update(options)
    events = ctx.pool.take(ctx.n)
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, **options)
    await producer.start()
    try:
        first = events[0]
        await producer.send_and_wait(
            ctx.topic, first.model_dump_json().encode(), key=hand_key(first)
        )
        ctx.timer.start()
        futures = [
            await producer.send(
                ctx.topic,
                event.model_dump_json().encode(),
                key=hand_key(event),
                headers=hand_headers(event),
            )
            for event in events
        ]
        await asyncio.gather(*futures)
        ctx.timer.stop()
    finally:
        await producer.stop()
    return ctx.timer.measurement(ctx.n)


# -- raw confluent-kafka ----------------------------------------------------------------


class _Deliveries:
    """Counts delivery reports; a failed one fails the run."""

    def __init__(self) -> None:
        self.ok = 0
        self.errors: list[str] = []

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self.ok += 1
        else:
            self.errors.append(str(err))


def _produce(producer: Any, topic: str, value: bytes, key: bytes, cb: Any, **kw: Any) -> None:
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=cb, **kw)
            return
        except BufferError:  # local queue full (100k messages): let librdkafka drain it
            producer.poll(0.005)


def _confluent_run(ctx: RunContext, config: dict[str, Any], handwritten: bool) -> Measurement:
    producer = Producer({"bootstrap.servers": ctx.bootstrap, **config})
    done = _Deliveries()
    events = ctx.pool.take(ctx.n)
    values, keys, size = ctx.pool.values, ctx.pool.keys, len(ctx.pool.values)
    _produce(producer, ctx.topic, values[0], keys[0], done)
    producer.flush(30)
    done.ok = 0
    ctx.timer.start()
    for i in range(ctx.n):
        if handwritten:
            event = events[i]
            _produce(
                producer,
                ctx.topic,
                event.model_dump_json().encode(),
                hand_key(event),
                done,
                headers=hand_headers(event),
            )
        else:
            _produce(producer, ctx.topic, values[i % size], keys[i % size], done)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    ctx.timer.stop()
    if remaining or done.errors or done.ok != ctx.n:
        raise BenchError(f"{remaining} undelivered, {done.ok} ok, errors: {done.errors[:3]}")
    return ctx.timer.measurement(ctx.n)


async def confluent_default(ctx: RunContext) -> Measurement:
    """``produce()`` of pre-encoded bytes with a key, poll(0) every 1000, flush; defaults."""
    return _confluent_run(ctx, {}, handwritten=False)


async def confluent_handwritten(ctx: RunContext) -> Measurement:
    """model_dump_json + headers + key, librdkafka configured as eventbus configures it."""
    config = handwritten_confluent(ctx)
    ctx.resolved.update(config)
    return _confluent_run(ctx, config, handwritten=True)


# -- FastStream -------------------------------------------------------------------------


async def faststream_publish(ctx: RunContext) -> Measurement:
    """``await broker.publish(model, topic, key=...)`` per message (waits for each ack)."""
    events = ctx.pool.take(ctx.n)
    broker = faststream_broker(ctx)
    await broker.start()
    try:
        await broker.publish(events[0], ctx.topic, key=hand_key(events[0]))
        ctx.timer.start()
        for event in events:
            await broker.publish(event, ctx.topic, key=hand_key(event))
        ctx.timer.stop()
    finally:
        await stop_faststream(broker)
    return ctx.timer.measurement(ctx.n)


async def faststream_publish_nowait(ctx: RunContext) -> Measurement:
    """``publish(..., no_confirm=True)`` for every message, then gather the futures."""
    events = ctx.pool.take(ctx.n)
    broker = faststream_broker(ctx)
    await broker.start()
    try:
        await broker.publish(events[0], ctx.topic, key=hand_key(events[0]))
        ctx.timer.start()
        futures = [
            await broker.publish(event, ctx.topic, key=hand_key(event), no_confirm=True)
            for event in events
        ]
        await asyncio.gather(*futures)
        ctx.timer.stop()
    finally:
        await stop_faststream(broker)
    return ctx.timer.measurement(ctx.n)


async def faststream_publish_batch(ctx: RunContext) -> Measurement:
    """``await broker.publish_batch(*500 KafkaResponse(model, key=...))`` per chunk."""
    from faststream.kafka import KafkaResponse

    events = ctx.pool.take(ctx.n)
    broker = faststream_broker(ctx, max_batch_size=MIB)
    await broker.start()
    try:
        await broker.publish(events[0], ctx.topic, key=hand_key(events[0]))
        ctx.timer.start()
        for i in range(0, len(events), BATCH):
            chunk = [KafkaResponse(e, key=hand_key(e)) for e in events[i : i + BATCH]]
            await broker.publish_batch(*chunk, topic=ctx.topic)
        ctx.timer.stop()
    finally:
        await stop_faststream(broker)
    return ctx.timer.measurement(ctx.n)


# -- the scenario -----------------------------------------------------------------------

_EB_NOTE = "eventbus defaults: acks=all, linger 5 ms, 1 MiB batches, idempotence per broker"


def _eventbus_contenders(transport: Transport) -> list[Contender]:
    settings = {"transport": transport, "broker_profile": "<broker kind>"}
    return [
        Contender(
            f"eventbus-{transport}-send_event",
            f"eventbus[{transport}] await send_event()",
            "eventbus",
            transport,
            _eventbus_send_event(transport),
            n_quick=100,
            n_full=500,
            settings=settings,
            notes="one awaited acknowledgement per message: latency-bound. " + _EB_NOTE,
        ),
        Contender(
            f"eventbus-{transport}-enqueue",
            f"eventbus[{transport}] enqueue() + gather",
            "eventbus",
            transport,
            _eventbus_enqueue(transport),
            n_quick=3000,
            n_full=100_000,
            settings=settings,
            notes="the unawaited send_event: every ack future collected, then gathered. "
            + _EB_NOTE,
        ),
        Contender(
            f"eventbus-{transport}-send_batch",
            f"eventbus[{transport}] send_batch(500)",
            "eventbus",
            transport,
            _eventbus_send_batch(transport),
            n_quick=3000,
            n_full=100_000,
            settings=settings,
            notes="chunks of 500 events, each chunk awaited. " + _EB_NOTE,
        ),
    ]


SCENARIO = Scenario(
    name="publish",
    title="publish: N envelopes acknowledged (msgs/s, higher is better)",
    description=(
        "Each contender sends N copies of the same ~460-byte AuditEvent envelope (keys = "
        "resource_id cycling over 1000 values) to a fresh 3-partition topic; timed from the "
        "first send to the last acknowledgement, after a warm-up record."
    ),
    metric="throughput",
    order=10,
    contenders=[
        *_eventbus_contenders("aiokafka"),
        *_eventbus_contenders("confluent"),
        Contender(
            "aiokafka-default",
            "aiokafka send() bytes + gather (defaults)",
            "aiokafka",
            "aiokafka",
            aiokafka_default,
            n_quick=3000,
            n_full=100_000,
            effective={"acks": 1, "linger_ms": 0, "max_batch_size": 16384},
            notes="pre-encoded values, key, no headers, client defaults",
        ),
        Contender(
            "aiokafka-handwritten",
            "aiokafka hand-written equivalent",
            "aiokafka",
            "aiokafka",
            aiokafka_handwritten,
            n_quick=3000,
            n_full=100_000,
            settings={
                "acks": "all",
                "enable_idempotence": "as eventbus resolves it",
                "linger_ms": 5,
                "max_batch_size": MIB,
            },
            notes="model_dump_json() + the same headers and key as eventbus, per message",
        ),
        Contender(
            "confluent-default",
            "confluent produce() bytes + flush (defaults)",
            "confluent",
            "confluent-kafka",
            confluent_default,
            n_quick=3000,
            n_full=500_000,
            effective={"acks": "all", "linger.ms": 5, "enable.idempotence": False},
            notes="pre-encoded values, key, no headers, poll(0) every 1000, one flush",
        ),
        Contender(
            "confluent-handwritten",
            "confluent hand-written equivalent",
            "confluent",
            "confluent-kafka",
            confluent_handwritten,
            n_quick=3000,
            n_full=200_000,
            settings={
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": "as eventbus resolves it",
                "partitioner": "murmur2_random",
            },
            notes="model_dump_json() + the same headers and key as eventbus, per message",
        ),
        Contender(
            "faststream-publish",
            "FastStream await publish()",
            "faststream",
            "aiokafka",
            faststream_publish,
            n_quick=300,
            n_full=7000,
            settings={"logger": None},
            effective={"acks": 1, "linger_ms": 0, "max_batch_size": 16384},
            notes="one awaited acknowledgement per message: latency-bound",
        ),
        Contender(
            "faststream-publish-nowait",
            "FastStream publish(no_confirm) + gather",
            "faststream",
            "aiokafka",
            faststream_publish_nowait,
            n_quick=3000,
            n_full=100_000,
            settings={"logger": None},
            effective={"acks": 1, "linger_ms": 0, "max_batch_size": 16384},
        ),
        Contender(
            "faststream-publish_batch",
            "FastStream publish_batch(500)",
            "faststream",
            "aiokafka",
            faststream_publish_batch,
            n_quick=3000,
            n_full=200_000,
            settings={"logger": None, "max_batch_size": MIB},
            effective={"acks": 1, "linger_ms": 0},
            notes="max_batch_size 1 MiB is required (16 KiB overflows at ~33 messages); a "
            "batch goes to one partition, whatever the keys",
        ),
    ],
    comparisons=[
        Comparison(
            "eventbus enqueue / hand-written (aiokafka)",
            "eventbus-aiokafka-enqueue",
            "aiokafka-handwritten",
        ),
        Comparison(
            "eventbus send_batch / hand-written (aiokafka)",
            "eventbus-aiokafka-send_batch",
            "aiokafka-handwritten",
        ),
        Comparison(
            "eventbus enqueue / hand-written (confluent)",
            "eventbus-confluent-enqueue",
            "confluent-handwritten",
        ),
        Comparison(
            "eventbus send_batch / hand-written (confluent)",
            "eventbus-confluent-send_batch",
            "confluent-handwritten",
        ),
        Comparison("eventbus fastest / raw aiokafka default", "best:eventbus", "aiokafka-default"),
        Comparison(
            "eventbus send_event / FastStream await publish",
            "eventbus-aiokafka-send_event",
            "faststream-publish",
        ),
        Comparison(
            "eventbus enqueue / FastStream publish no_confirm",
            "eventbus-aiokafka-enqueue",
            "faststream-publish-nowait",
        ),
        Comparison(
            "eventbus send_batch / FastStream publish_batch",
            "eventbus-aiokafka-send_batch",
            "faststream-publish_batch",
        ),
        Comparison("eventbus fastest / FastStream fastest", "best:eventbus", "best:faststream"),
    ],
)
