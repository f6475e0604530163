"""priority: a CRITICAL event's latency under a LOW backlog, with and without priority lanes.

Every run has a fresh 3-partition topic. Each handler call awaits ``WORK_S`` (0.5 ms: an
I/O call), whatever the event's priority, so a backlog takes time to work through.

* ``*-backlog``: N LOW envelopes (10,000; 2,000 with ``--quick``) are published before the
  consumer starts (not timed). Once the consumer has handled ``WARM`` of them (it is
  working through the backlog), K CRITICAL envelopes (40; 10) are published one every
  ``INTERVAL_S`` (100 ms) without awaiting acknowledgements; the latency of each is the
  handler's clock minus the envelope's ``timestamp`` (set just before it is published).
* ``*-idle``: the same K CRITICAL envelopes on an idle system (warm-up messages until the
  consumer has received one, no backlog).

``eventbus-lanes-*`` use ``PriorityLanes(topic)`` on producer and consumer (the LOW backlog
waits in ``<topic>.low``, CRITICAL goes to ``<topic>.critical``); ``eventbus-one-topic-*``
publish everything to the one topic, where a CRITICAL event waits behind the LOW ones
fetched before it. Reported: p50/p90/p99/max of the K latencies, and how many LOW events
were still unhandled when the last CRITICAL one was handled (a lanes-backlog run fails if
the backlog ran out before that: it would not have measured what it claims).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bench.clients import (
    Transport,
    eventbus_resolved,
    eventbus_settings,
    start_eventbus_consumer,
)
from bench.envelope import fresh_event
from bench.harness import (
    BenchError,
    Comparison,
    Contender,
    Measurement,
    RunContext,
    Scenario,
    SkipContender,
)
from eventbus import (
    ConfigurationError,
    KafkaProducer,
    Priority,
    PriorityLanes,
    TopicSpec,
    ensure_topics,
)
from hrms.events import AuditEvent

WORK_S = 0.0005
INTERVAL_S = 0.1
WARM = 200
BACKLOG_FULL, BACKLOG_QUICK = 10_000, 2_000
SAMPLES_FULL, SAMPLES_QUICK = 40, 10
WARMUP_SOURCE = "bench-warmup"


def _backlog(ctx: RunContext) -> int:
    return BACKLOG_QUICK if ctx.quick else BACKLOG_FULL


class Tally:
    """Counts LOW events handled and records each CRITICAL event's latency."""

    def __init__(self, backlog: int, samples: int) -> None:
        self.backlog = backlog
        self.samples = samples
        self.low = 0
        self.latencies: list[float] = []
        self.low_left: list[int] = []
        self.warm = asyncio.Event()
        self.working = asyncio.Event()
        self.done = asyncio.Event()

    async def handle(self, event: AuditEvent) -> None:
        now = time.time()
        if event.source_service == WARMUP_SOURCE:
            self.warm.set()
        elif event.priority is Priority.CRITICAL:
            self.latencies.append((now - event.timestamp.timestamp()) * 1000.0)
            self.low_left.append(self.backlog - self.low)
            if len(self.latencies) >= self.samples:
                self.done.set()
        else:
            self.low += 1
            if self.low >= WARM:
                self.working.set()
        await asyncio.sleep(WORK_S)  # the I/O a handler does


async def _warm_up(ctx: RunContext, producer: Any, tally: Tally) -> None:
    """Send warm-up envelopes until the consumer has joined and received one."""
    warm = ctx.pool.events[0].model_copy(update={"source_service": WARMUP_SOURCE})
    deadline = time.perf_counter() + 60
    while not tally.warm.is_set():
        if time.perf_counter() > deadline:
            raise BenchError("the consumer received no warm-up message within 60 s")
        await producer.send_event(ctx.topic, fresh_event(warm))
        try:
            await asyncio.wait_for(tally.warm.wait(), 0.25)
        except TimeoutError:
            continue


@contextlib.asynccontextmanager
async def _producer(
    ctx: RunContext, transport: Transport, lanes: PriorityLanes | None
) -> AsyncIterator[KafkaProducer]:
    settings = eventbus_settings(ctx, transport)
    ctx.resolved.update(eventbus_resolved(settings))
    producer = KafkaProducer(settings=settings, priority_lanes=lanes)
    try:
        await producer.start()
    except ConfigurationError as exc:
        raise SkipContender(f"eventbus transport {transport!r} is not available: {exc}") from exc
    try:
        yield producer
    finally:
        await producer.stop()


def _run(transport: Transport, lanes: bool, backlog: bool) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        samples = SAMPLES_QUICK if ctx.quick else SAMPLES_FULL
        size = _backlog(ctx) if backlog else 0
        tally = Tally(size, samples)
        policy = PriorityLanes(ctx.topic) if lanes else None
        options: dict[str, Any] = {"priority_lanes": policy} if policy else {}
        if policy is not None:
            ctx.resolved["lane_topics"] = list(policy.lane_topics(ctx.topic).values())
            await ensure_topics(
                policy.specs(TopicSpec(ctx.topic, 3)),
                settings=eventbus_settings(ctx, transport),
            )
        pool = ctx.pool.events
        try:
            async with _producer(ctx, transport, policy) as producer:
                if size:
                    low = [e.model_copy(update={"priority": Priority.LOW}) for e in pool]
                    futures = [
                        await producer.enqueue(ctx.topic, low[i % len(low)]) for i in range(size)
                    ]
                    await asyncio.gather(*futures)
                consumer = await start_eventbus_consumer(
                    ctx, transport, f"g-{ctx.run_id}", consumer_options=options
                )
                task = asyncio.create_task(consumer.consume(tally.handle))
                try:
                    if size:
                        await asyncio.wait_for(tally.working.wait(), 60)
                    else:
                        await _warm_up(ctx, producer, tally)
                    critical = [e.model_copy(update={"priority": Priority.CRITICAL}) for e in pool]
                    pending = []
                    ctx.timer.start()
                    for i in range(samples):
                        pending.append(await producer.enqueue(ctx.topic, fresh_event(critical[i])))
                        await asyncio.sleep(INTERVAL_S)  # pacing, as a real sender would
                    await asyncio.gather(*pending)
                    await asyncio.wait_for(tally.done.wait(), 120)
                    ctx.timer.stop()
                finally:
                    await consumer.stop()
                    await task
        finally:
            if policy is not None:
                for name in policy.lane_topics(ctx.topic).values():
                    if name != ctx.topic:
                        ctx.broker.delete_topic(name)
        if lanes and backlog and tally.low_left[-1] <= 0:
            raise BenchError("the LOW backlog ran out before the last CRITICAL event")
        s = sorted(tally.latencies)
        q = statistics.quantiles(s, n=100, method="inclusive")
        return ctx.timer.measurement(
            len(s),
            p50_ms=q[49],
            p90_ms=q[89],
            p99_ms=q[98],
            max_ms=s[-1],
            mean_ms=statistics.fmean(s),
            backlog=float(size),
            low_left_at_last=float(tally.low_left[-1] if size else 0),
        )

    return run


def _contender(transport: Transport, lanes: bool, backlog: bool) -> Contender:
    family = "lanes" if lanes else "one-topic"
    where = "a LOW backlog" if backlog else "an idle system"
    how = "with PriorityLanes" if lanes else "one topic, no lanes"
    return Contender(
        f"eventbus-{transport}-{family}-{'backlog' if backlog else 'idle'}",
        f"eventbus[{transport}] CRITICAL, {where}, {how}",
        "eventbus",
        transport,
        _run(transport, lanes, backlog),
        n_quick=SAMPLES_QUICK,
        n_full=SAMPLES_FULL,
        settings={
            "transport": transport,
            **({"priority_lanes": "PriorityLanes(topic)"} if lanes else {}),
        },
        effective={"weights": "critical 8, high 4, normal 2, low 1"} if lanes else {},
        notes=(
            f"{BACKLOG_FULL} LOW ({BACKLOG_QUICK} quick) published first; "
            if backlog
            else "no backlog; "
        )
        + f"handler awaits {WORK_S * 1000:g} ms per event; CRITICAL every {INTERVAL_S * 1000:g} ms",
    )


def _limit(ctx: RunContext) -> float:
    return 90.0 if ctx.quick else 240.0


SCENARIO = Scenario(
    name="priority",
    title="priority: CRITICAL latency under a LOW backlog vs idle (ms, lower is better)",
    description=(
        f"A fresh 3-partition topic per run; every handler call awaits {WORK_S * 1000:g} ms. "
        f"Backlog runs publish {BACKLOG_FULL} LOW envelopes ({BACKLOG_QUICK} with --quick) "
        f"before the consumer starts; once it has handled {WARM}, {SAMPLES_FULL} CRITICAL "
        f"envelopes ({SAMPLES_QUICK}) are published {INTERVAL_S * 1000:g} ms apart; idle "
        "runs publish the same CRITICAL envelopes with no backlog. Latency = handler clock - "
        "envelope timestamp. With PriorityLanes versus one topic without lanes."
    ),
    metric="latency",
    order=45,
    run_limit_s=_limit,
    columns=[("backlog", "LOW backlog"), ("low_left_at_last", "LOW left at last CRITICAL")],
    contenders=[
        _contender("aiokafka", lanes=True, backlog=False),
        _contender("aiokafka", lanes=True, backlog=True),
        _contender("aiokafka", lanes=False, backlog=False),
        _contender("aiokafka", lanes=False, backlog=True),
        _contender("confluent", lanes=True, backlog=False),
        _contender("confluent", lanes=True, backlog=True),
    ],
    comparisons=[
        Comparison(
            "lanes[aiokafka]: CRITICAL p50 under backlog / idle (target <= 2x)",
            "eventbus-aiokafka-lanes-backlog",
            "eventbus-aiokafka-lanes-idle",
            "p50_ms",
        ),
        Comparison(
            "lanes[aiokafka]: CRITICAL p99 under backlog / idle",
            "eventbus-aiokafka-lanes-backlog",
            "eventbus-aiokafka-lanes-idle",
            "p99_ms",
        ),
        Comparison(
            "lanes[confluent]: CRITICAL p50 under backlog / idle (target <= 2x)",
            "eventbus-confluent-lanes-backlog",
            "eventbus-confluent-lanes-idle",
            "p50_ms",
        ),
        Comparison(
            "lanes[confluent]: CRITICAL p99 under backlog / idle",
            "eventbus-confluent-lanes-backlog",
            "eventbus-confluent-lanes-idle",
            "p99_ms",
        ),
        Comparison(
            "no lanes[aiokafka]: CRITICAL p50 under backlog / idle",
            "eventbus-aiokafka-one-topic-backlog",
            "eventbus-aiokafka-one-topic-idle",
            "p50_ms",
        ),
        Comparison(
            "under backlog: CRITICAL p50 without lanes / with lanes",
            "eventbus-aiokafka-one-topic-backlog",
            "eventbus-aiokafka-lanes-backlog",
            "p50_ms",
        ),
    ],
)
