"""lanes: key-ordered concurrency versus partition-serial, with a slow (I/O-bound) handler.

Every run gets a fresh **one-partition** topic, pre-filled (not timed) with N envelopes whose
keys cycle over :data:`KEYS` distinct aggregate ids (``resource_id`` 0..99). A new consumer
group reads it from the beginning with ``async def handler(event)`` that awaits
``asyncio.sleep(HANDLER_SLEEP_S)`` (5 ms: a database or HTTP call). Timed: the first
handler call -> the N-th handler completion.

* ``eventbus-serial``: ``KafkaConsumer(...)`` with its default ``concurrency=1``: one
  record at a time per partition, so at most ~1/5 ms = 200 records/s on one partition.
* ``eventbus-lanes-<L>``: ``KafkaConsumer(..., concurrency=L)``: L lanes, records of one
  key in order on one lane (``crc32(key) % L``), other keys concurrently.

Every run also checks per-key order: each envelope carries its sequence number in
``correlation_id`` and the handler fails the run if a key's sequence goes backwards.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.clients import eventbus_producer, start_eventbus_consumer
from bench.harness import BenchError, Comparison, Contender, Measurement, RunContext, Scenario
from hrms.events import AuditEvent

KEYS = 100
HANDLER_SLEEP_S = 0.005
HEADLINE_LANES = 64


def lane_spread(lanes: int) -> tuple[int, int]:
    """(lanes that get at least one of the keys, most keys on one lane) for ``lanes``.

    eventbus puts a key on lane ``crc32(key) % lanes``; the busiest lane bounds the
    throughput at ``KEYS / busiest`` times the partition-serial rate.
    """
    spread = Counter(zlib.crc32(str(k).encode()) % lanes for k in range(KEYS))
    return len(spread), max(spread.values())


async def prefill(ctx: RunContext) -> None:
    """N envelopes on the run's topic, keys cycling over KEYS, sequence in correlation_id."""
    templates = ctx.pool.events[:KEYS]
    events = [
        templates[i % KEYS].model_copy(update={"correlation_id": str(i)}) for i in range(ctx.n)
    ]
    async with eventbus_producer(ctx, "aiokafka") as producer:
        futures = [await producer.enqueue(ctx.topic, event) for event in events]
        await asyncio.gather(*futures)


class _Progress:
    """Counts finished handler calls; checks per-key order; times first call -> N-th."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.finished = 0
        self.done = asyncio.Event()
        self.last_seq: dict[str, int] = {}
        self.disorder = 0
        self.t_created = time.perf_counter()
        self.join_s = 0.0
        self.peak_running = 0
        self.running = 0

    def begin(self, event: AuditEvent) -> None:
        if self.ctx.timer.t0 is None:
            self.join_s = time.perf_counter() - self.t_created
            self.ctx.timer.start()
        key = event.default_key() or ""
        seq = int(event.correlation_id or -1)
        if seq <= self.last_seq.get(key, -1):
            self.disorder += 1
        self.last_seq[key] = seq
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)

    def end(self) -> None:
        self.running -= 1
        self.finished += 1
        if self.finished >= self.ctx.n:
            self.ctx.timer.stop()
            self.done.set()


def _eventbus(lanes: int) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        await prefill(ctx)
        progress = _Progress(ctx)

        async def handle(event: AuditEvent) -> None:
            progress.begin(event)
            await asyncio.sleep(HANDLER_SLEEP_S)
            progress.end()

        options = {"concurrency": lanes} if lanes > 1 else {}
        consumer = await start_eventbus_consumer(
            ctx, "aiokafka", f"g-{ctx.run_id}", consumer_options=options
        )
        ctx.resolved["concurrency"] = consumer.concurrency
        task = asyncio.create_task(consumer.consume(handle))
        try:
            waiter = asyncio.create_task(progress.done.wait())
            await asyncio.wait(
                {task, waiter}, timeout=60.0 if ctx.quick else 180.0, return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
            if task.done():
                task.result()
                raise BenchError("the consume loop ended early")
            if not progress.done.is_set():
                raise BenchError(f"only {progress.finished} of {ctx.n} handled in time")
        finally:
            await consumer.stop()
            await task
        if progress.disorder:
            raise BenchError(f"{progress.disorder} records out of order within their key")
        if consumer.stats.dead_lettered or consumer.stats.failed:
            raise BenchError(f"consumer stats: {consumer.stats}")
        used, busiest = lane_spread(lanes)
        return ctx.timer.measurement(
            progress.finished,
            join_s=progress.join_s,
            lanes=float(lanes),
            lanes_with_keys=float(used),
            keys_on_busiest_lane=float(busiest),
            peak_concurrent_handlers=float(progress.peak_running),
        )

    return run


def _lanes_contender(lanes: int, n_quick: int, n_full: int) -> Contender:
    used, busiest = lane_spread(lanes)
    return Contender(
        f"eventbus-lanes-{lanes}",
        f"eventbus consume(), concurrency={lanes}",
        "eventbus",
        "aiokafka",
        _eventbus(lanes),
        n_quick=n_quick,
        n_full=n_full,
        settings={"concurrency": lanes},
        effective={
            "max_in_flight": max(lanes * 4, 500),
            "lanes_with_keys": used,
            "keys_on_busiest_lane": busiest,
        },
        notes=f"{KEYS} keys on {used} of {lanes} lanes (crc32(key) % {lanes}); the busiest "
        f"lane holds {busiest} keys, so the ceiling is {KEYS // busiest}x partition-serial",
    )


SCENARIO = Scenario(
    name="lanes",
    title="lanes: 5 ms handler, one partition, 100 keys (msgs/s, higher is better)",
    description=(
        f"A fresh 1-partition topic per run, pre-filled with N envelopes keyed over {KEYS} "
        f"distinct aggregate ids; a new group reads it with a handler that awaits "
        f"asyncio.sleep({HANDLER_SLEEP_S}). Timed: first handler call -> N-th handler "
        "completion. Partition-serial (concurrency=1, the default) versus key-ordered lanes "
        "(concurrency=L); per-key order is checked in every run."
    ),
    metric="throughput",
    order=40,
    partitions=1,
    columns=[("keys_on_busiest_lane", "keys/busiest lane"), ("peak_concurrent_handlers", "peak")],
    contenders=[
        Contender(
            "eventbus-serial",
            "eventbus consume(), partition-serial",
            "eventbus",
            "aiokafka",
            _eventbus(1),
            n_quick=100,
            n_full=600,
            settings={"concurrency": 1},
            notes="the default: one record at a time per partition",
        ),
        _lanes_contender(HEADLINE_LANES, n_quick=2000, n_full=20_000),
        _lanes_contender(100, n_quick=2000, n_full=20_000),
        _lanes_contender(128, n_quick=2000, n_full=20_000),
    ],
    comparisons=[
        Comparison(
            f"lanes({HEADLINE_LANES}) / partition-serial (target >= 10x)",
            f"eventbus-lanes-{HEADLINE_LANES}",
            "eventbus-serial",
        ),
        Comparison("lanes(100) / partition-serial", "eventbus-lanes-100", "eventbus-serial"),
        Comparison("lanes(128) / partition-serial", "eventbus-lanes-128", "eventbus-serial"),
    ],
)
