"""consume: how fast each client reads, validates and commits N envelopes.

One 3-partition topic is pre-filled once (raw confluent producer, eventbus's wire form:
JSON value + headers + key). Each run joins a new consumer group, reads from the beginning
and stops after its N-th message. Timed: first message handed to the application -> N-th
message handled. Joining the group (start -> first message) is reported as ``join_s``.

The topic holds at most :data:`MAX_PREFILL` envelopes (about 65 MB on the wire): noida-db
answers a Fetch with everything from the fetch offset to the end of each partition, ignoring
the requested maximum sizes, and librdkafka rejects responses over 100 MB
(``receive.message.max.bytes``). Every contender therefore reads at most that many.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer
from faststream import AckPolicy

from bench.brokers import BrokerSession
from bench.clients import (
    Transport,
    aiokafka_consumer_kwargs,
    confluent_consumer_config,
    faststream_broker,
    faststream_subscriber_kwargs,
    start_eventbus_consumer,
    stop_faststream,
)
from bench.envelope import EnvelopePool
from bench.harness import BenchError, Comparison, Contender, Measurement, RunContext, Scenario
from hrms.events import AuditEvent

BATCH = 500
MAX_PREFILL = 100_000


def _deadline(ctx: RunContext) -> float:
    return 60.0 if ctx.quick else 180.0


async def prefill(
    broker: BrokerSession, pool: EnvelopePool, contenders: Sequence[Contender], quick: bool
) -> dict[str, Any]:
    """Create the topic and fill it with as many envelopes as the hungriest contender reads."""
    n = max(c.n(quick) for c in contenders)
    if n > MAX_PREFILL:
        raise BenchError(f"a contender wants {n} envelopes; the topic holds {MAX_PREFILL}")
    topic = "bench-consume"
    broker.create_topic(topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    size = len(pool.values)
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(
                    topic,
                    pool.values[i % size],
                    pool.keys[i % size],
                    headers=pool.headers[i % size],  # type: ignore[arg-type]
                )
                break
            except BufferError:
                producer.poll(0.005)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise BenchError("pre-fill: records left undelivered")
    del producer
    fill_s = time.perf_counter() - t0
    settle_s = await broker.settle(max_wait_s=30.0)
    print(f"  pre-filled {topic} with {n:,} envelopes in {fill_s:.2f} s (settled {settle_s:.1f} s)")
    return {"topic": topic, "prefilled": n, "prefill_s": round(fill_s, 3)}


class _Counter:
    """Counts handled messages; starts the timer at the first, stops it at the N-th."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.count = 0
        self.done = asyncio.Event()
        self.t_start = time.perf_counter()
        self.join_s = 0.0
        self.measured = 0

    def first(self) -> None:
        if self.count == 0:
            self.join_s = time.perf_counter() - self.t_start
            self.ctx.timer.start()

    async def add(self, k: int) -> None:
        self.count += k
        if self.done.is_set():
            # Past N: yield, so the waiting task can stop the consumer. A consume loop fed
            # from a large prefetched buffer (noida-db answers a Fetch with whole partitions)
            # may otherwise never yield, starve the heartbeat and lose its group membership.
            await asyncio.sleep(0)
        elif self.count >= self.ctx.n:
            self.ctx.timer.stop()
            self.measured = self.count
            self.done.set()
            await asyncio.sleep(0)

    def measurement(self) -> Measurement:
        return self.ctx.timer.measurement(self.measured, join_s=self.join_s)


# -- eventbus ---------------------------------------------------------------------------


def _eventbus(transport: Transport, batch: bool) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        counter = _Counter(ctx)

        async def handle(event: AuditEvent) -> None:
            counter.first()
            await counter.add(1)

        async def handle_batch(events: list[AuditEvent]) -> None:
            counter.first()
            await counter.add(len(events))

        consumer = await start_eventbus_consumer(ctx, transport, f"g-{ctx.run_id}")
        try:
            if batch:
                task = asyncio.create_task(consumer.consume_batch(handle_batch, batch_size=BATCH))
            else:
                task = asyncio.create_task(consumer.consume(handle))
            waiter = asyncio.create_task(counter.done.wait())
            await asyncio.wait(
                {task, waiter}, timeout=_deadline(ctx), return_when="FIRST_COMPLETED"
            )
            if task.done():
                task.result()  # raises what killed the consume loop
                raise BenchError("the consume loop ended early")
            if not counter.done.is_set():
                raise BenchError(f"only {counter.count} of {ctx.n} messages in time")
        finally:
            await consumer.stop()
        await task
        if consumer.stats.dead_lettered or consumer.stats.failed:
            raise BenchError(f"consumer stats: {consumer.stats}")
        return counter.measurement()

    return run


# -- raw clients ------------------------------------------------------------------------


async def aiokafka_getmany(ctx: RunContext) -> Measurement:
    """``getmany(max_records=500)`` + ``AuditEvent.model_validate_json`` + commit per batch."""
    counter = _Counter(ctx)
    consumer = AIOKafkaConsumer(ctx.topic, **aiokafka_consumer_kwargs(ctx, f"g-{ctx.run_id}"))
    await consumer.start()
    try:
        deadline = time.perf_counter() + _deadline(ctx)
        while not counter.done.is_set():
            if time.perf_counter() > deadline:
                raise BenchError(f"only {counter.count} of {ctx.n} messages in time")
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batches:
                continue
            counter.first()
            k = 0
            for records in batches.values():
                for record in records:
                    AuditEvent.model_validate_json(record.value)
                k += len(records)
            await consumer.commit()
            await counter.add(k)
    finally:
        await consumer.stop()
    return counter.measurement()


async def confluent_consume(ctx: RunContext) -> Measurement:
    """``consume(1000)`` + ``model_validate_json`` + ``commit(asynchronous=True)`` per batch."""
    counter = _Counter(ctx)
    consumer = Consumer(confluent_consumer_config(ctx, f"g-{ctx.run_id}"))
    consumer.subscribe([ctx.topic])
    try:
        deadline = time.perf_counter() + _deadline(ctx)
        while not counter.done.is_set():
            if time.perf_counter() > deadline:
                raise BenchError(f"only {counter.count} of {ctx.n} messages in time")
            messages = consumer.consume(1000, timeout=0.2)
            if not messages:
                continue
            counter.first()
            for message in messages:
                if message.error() is not None:
                    raise BenchError(f"consume error: {message.error()}")
                AuditEvent.model_validate_json(message.value() or b"")
            consumer.commit(asynchronous=True)
            await counter.add(len(messages))
    finally:
        consumer.close()
    return counter.measurement()


# -- FastStream -------------------------------------------------------------------------


def _faststream(batch: bool, **subscriber: Any) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        counter = _Counter(ctx)
        broker = faststream_broker(ctx)
        options = {**faststream_subscriber_kwargs(ctx, f"g-{ctx.run_id}"), **subscriber}
        if batch:

            @broker.subscriber(ctx.topic, batch=True, max_records=BATCH, **options)  # type: ignore[untyped-decorator]
            async def handle_batch(events: list[AuditEvent]) -> None:
                counter.first()
                await counter.add(len(events))

        else:

            @broker.subscriber(ctx.topic, **options)  # type: ignore[untyped-decorator]
            async def handle(event: AuditEvent) -> None:
                counter.first()
                await counter.add(1)

        counter.t_start = time.perf_counter()
        await broker.start()
        try:
            await asyncio.wait_for(counter.done.wait(), _deadline(ctx))
        except TimeoutError as exc:
            raise BenchError(f"only {counter.count} of {ctx.n} messages in time") from exc
        finally:
            await stop_faststream(broker)
        return counter.measurement()

    return run


# -- the scenario -----------------------------------------------------------------------


def _eventbus_contenders(transport: Transport) -> list[Contender]:
    settings = {"transport": transport, "broker_profile": "<broker kind>"}
    note = (
        "at-least-once: offsets stored after the handler, committed every 1 s and on stop; "
        "typed decode (json + normalise + model_validate) per record"
    )
    return [
        Contender(
            f"eventbus-{transport}-consume",
            f"eventbus[{transport}] consume(handler)",
            "eventbus",
            transport,
            _eventbus(transport, batch=False),
            n_quick=2000,
            n_full=50_000,
            settings=settings,
            notes="handler(event: AuditEvent) per message; " + note,
        ),
        Contender(
            f"eventbus-{transport}-consume_batch",
            f"eventbus[{transport}] consume_batch(500)",
            "eventbus",
            transport,
            _eventbus(transport, batch=True),
            n_quick=2000,
            n_full=100_000,
            settings=settings,
            notes="handler(events: list[AuditEvent]), batch_size 500; " + note,
        ),
    ]


_FS_NOTE = (
    "handler(event: AuditEvent); default AckPolicy.ACK_FIRST = aiokafka auto-commit every 5 s"
)

SCENARIO = Scenario(
    name="consume",
    title="consume: N envelopes read, validated and committed (msgs/s, higher is better)",
    description=(
        "A 3-partition topic pre-filled with the ~460-byte AuditEvent envelope (eventbus's "
        "wire form); each contender joins its own group, reads from the beginning, decodes "
        "each record into AuditEvent, commits, and stops after N. Timed from the first "
        "message to the N-th; group join is reported separately as join_s."
    ),
    metric="throughput",
    order=20,
    topic_per_run=False,
    setup=prefill,
    contenders=[
        *_eventbus_contenders("aiokafka"),
        *_eventbus_contenders("confluent"),
        Contender(
            "aiokafka-getmany",
            "aiokafka getmany(500) + validate + commit",
            "aiokafka",
            "aiokafka",
            aiokafka_getmany,
            n_quick=2000,
            n_full=100_000,
            settings={"enable_auto_commit": False, "max_poll_records": 500},
            notes="commit() after every batch",
        ),
        Contender(
            "confluent-consume",
            "confluent consume(1000) + validate + commit",
            "confluent",
            "confluent-kafka",
            confluent_consume,
            n_quick=2000,
            n_full=100_000,
            settings={"enable.auto.commit": False},
            notes="commit(asynchronous=True) after every batch",
        ),
        Contender(
            "faststream-subscriber",
            "FastStream subscriber (per message)",
            "faststream",
            "aiokafka",
            _faststream(batch=False),
            n_quick=2000,
            n_full=30_000,
            settings={"logger": None},
            notes=_FS_NOTE,
        ),
        Contender(
            "faststream-subscriber-batch",
            "FastStream subscriber batch=True (500)",
            "faststream",
            "aiokafka",
            _faststream(batch=True),
            n_quick=2000,
            n_full=100_000,
            settings={"logger": None, "batch": True, "max_records": 500},
            notes="handler(events: list[AuditEvent]); ACK_FIRST (auto-commit)",
        ),
        Contender(
            "faststream-subscriber-ack",
            "FastStream subscriber ack_policy=ACK",
            "faststream",
            "aiokafka",
            _faststream(batch=False, ack_policy=AckPolicy.ACK),
            n_quick=500,
            n_full=7000,
            settings={"logger": None, "ack_policy": "AckPolicy.ACK"},
            notes="at-least-once like eventbus: commits after each handled message",
        ),
    ],
    comparisons=[
        Comparison(
            "eventbus consume / FastStream subscriber",
            "eventbus-aiokafka-consume",
            "faststream-subscriber",
        ),
        Comparison(
            "eventbus consume_batch / FastStream batch subscriber",
            "eventbus-aiokafka-consume_batch",
            "faststream-subscriber-batch",
        ),
        Comparison(
            "eventbus consume_batch / raw aiokafka getmany",
            "eventbus-aiokafka-consume_batch",
            "aiokafka-getmany",
        ),
        Comparison(
            "eventbus[confluent] consume_batch / raw confluent",
            "eventbus-confluent-consume_batch",
            "confluent-consume",
        ),
        Comparison("eventbus fastest / raw aiokafka getmany", "best:eventbus", "aiokafka-getmany"),
        Comparison("eventbus fastest / FastStream fastest", "best:eventbus", "best:faststream"),
    ],
)
