"""Priority lanes on every broker: CRITICAL overtakes a LOW backlog, LOW is not starved,
order per key holds within a lane, failures dead-letter to the logical topic's DLQ.

Runs with the same :class:`~tests.conftest.Harness` as the conformance suite (the
in-memory broker, noida-db and Tansu, each with aiokafka and confluent-kafka).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from eventbus import (
    BaseEvent,
    KafkaConsumer,
    KafkaProducer,
    MessageContext,
    Priority,
    PriorityLanes,
    RetryPolicy,
    TopicSpec,
    ensure_topics,
)
from eventbus import headers as h
from eventbus._codec import header_value
from tests.conftest import Harness, wait_until

FAST = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)
LOW, HIGH, CRITICAL = Priority.LOW, Priority.HIGH, Priority.CRITICAL


def ev(priority: Priority, **data: Any) -> BaseEvent:
    return BaseEvent(
        event_type="stock.changed", source_service="conformance", priority=priority, data=data
    )


async def laned_topic(harness: Harness, partitions: int = 2) -> tuple[str, PriorityLanes]:
    """A fresh logical topic with its lane topics created."""
    topic = harness.unique() + "-events"
    lanes = PriorityLanes(topic)
    await ensure_topics(
        lanes.specs(TopicSpec(topic, partitions)),
        settings=harness.settings(),
        transport=harness.memory,
    )
    return topic, lanes


def producer(harness: Harness, lanes: PriorityLanes) -> KafkaProducer:
    p = KafkaProducer(settings=harness.settings(), transport=harness.memory, priority_lanes=lanes)
    harness._clients.append(p)
    return p


def consumer(harness: Harness, topic: str, lanes: PriorityLanes, **kw: Any) -> KafkaConsumer:
    c = KafkaConsumer(
        group_id=harness.unique("g"),
        topics=[topic],
        settings=harness.settings(),
        transport=harness.memory,
        priority_lanes=lanes,
        **kw,
    )
    harness._clients.append(c)
    return c


async def publish(p: KafkaProducer, topic: str, events: list[BaseEvent]) -> None:
    assert all(await p.send_batch(topic, events))


async def test_events_travel_in_their_priority_lane(harness: Harness) -> None:
    topic, lanes = await laned_topic(harness)
    async with producer(harness, lanes) as p:
        for priority in Priority:
            await publish(p, topic, [ev(priority, p=priority.value)])
    assert [r.topic for r in await harness.read(f"{topic}.critical", 1)] == [f"{topic}.critical"]
    assert len(await harness.read(f"{topic}.low", 1)) == 1
    base = await harness.read(topic, 2)  # NORMAL and MEDIUM share the base lane
    assert sorted(header_value(r.headers, h.PRIORITY) or "" for r in base) == ["medium", "normal"]


async def test_critical_overtakes_a_low_backlog(harness: Harness) -> None:
    """CRITICAL events published while a LOW backlog waits are handled before most of it.

    A LOW event costs 5 ms of work, so the backlog takes 1.5 s or more; the CRITICAL ones
    wait for a fetch (Tansu answers a fetch only after its wait, up to 500 ms: about 100
    LOW events), not for the backlog.
    """
    topic, lanes = await laned_topic(harness)
    backlog, urgent = 300, 20
    async with producer(harness, lanes) as p:
        await publish(p, topic, [ev(LOW, i=i) for i in range(backlog)])
        order: list[str] = []
        started = asyncio.Event()
        published = asyncio.Event()
        done = asyncio.Event()

        async def handle(msg: dict[str, Any]) -> None:
            if not started.is_set():  # the backlog is in hand before CRITICAL exists
                started.set()
                await published.wait()
            order.append(msg["priority"])
            if msg["priority"] == "low":
                await asyncio.sleep(0.005)  # the work a LOW event costs (a database write)
            if len(order) == backlog + urgent:
                done.set()

        c = consumer(harness, topic, lanes)
        await c.start()
        task = asyncio.create_task(c.consume(handle))
        try:
            await asyncio.wait_for(started.wait(), 30)
            await publish(p, topic, [ev(CRITICAL, i=i) for i in range(urgent)])
            published.set()
            await asyncio.wait_for(done.wait(), 60)
        finally:
            await c.stop()
            await task
    last_critical = max(i for i, priority in enumerate(order) if priority == "critical")
    low_before = order[:last_critical].count("low")
    assert low_before < backlog // 2, f"{low_before} of {backlog} LOW events went first"


async def test_low_keeps_its_share_of_a_critical_backlog(harness: Harness) -> None:
    """Both lanes backlogged: about 1 in 9 records handled is LOW (weights 8:1), never 0."""
    topic, lanes = await laned_topic(harness)
    async with producer(harness, lanes) as p:
        await publish(p, topic, [ev(LOW, i=i) for i in range(150)])
        await publish(p, topic, [ev(CRITICAL, i=i) for i in range(360)])
    order: list[str] = []
    done = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        order.append(msg["priority"])
        if len(order) == 510:
            done.set()

    c = consumer(harness, topic, lanes)
    await c.start()
    task = asyncio.create_task(c.consume(handle))
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await c.stop()
        await task
    last_critical = max(i for i, priority in enumerate(order) if priority == "critical")
    low_share = order[:last_critical].count("low") / last_critical
    # 1/9 = 0.11 when both buffers always hold records; more when a fetch brings LOW first
    assert 0.05 <= low_share <= 0.3, f"LOW share {low_share:.2f} while CRITICAL had a backlog"


async def test_low_progresses_while_critical_keeps_arriving(harness: Harness) -> None:
    """CRITICAL events keep arriving faster than they are handled; LOW still progresses.

    Each record costs 1 ms of work and CRITICAL events are published in batches of 50 to
    keep about 200-250 of them waiting, so the CRITICAL lane has records at (nearly)
    every turn; LOW must still get about one turn in nine.
    """
    topic, lanes = await laned_topic(harness)
    handled: dict[str, int] = defaultdict(int)
    progress = asyncio.Event()
    async with producer(harness, lanes) as p:
        await publish(p, topic, [ev(LOW, i=i) for i in range(200)])

        async def handle(msg: dict[str, Any]) -> None:
            handled[msg["priority"]] += 1
            progress.set()
            await asyncio.sleep(0.001)  # the work an event costs

        c = consumer(harness, topic, lanes)
        await c.start()
        task = asyncio.create_task(c.consume(handle))
        sent = 0
        try:
            while handled["low"] < 15:
                if sent - handled["critical"] < 200:
                    await publish(p, topic, [ev(CRITICAL, i=sent + i) for i in range(50)])
                    sent += 50
                    assert sent <= 3000, f"LOW starved: {dict(handled)} after {sent} CRITICAL"
                    continue
                progress.clear()
                await asyncio.wait_for(progress.wait(), 30)
        finally:
            await c.stop()
            await task
    assert handled["critical"] >= 3 * handled["low"], dict(handled)  # CRITICAL went first


async def test_order_per_key_within_a_lane(harness: Harness) -> None:
    """Keyed events of mixed priorities: each key's events of one lane in publish order."""
    topic, lanes = await laned_topic(harness, partitions=3)
    cycle = (LOW, CRITICAL, Priority.NORMAL, HIGH, LOW)
    async with producer(harness, lanes) as p:
        for seq in range(12):
            events = [ev(cycle[(seq + k) % len(cycle)], k=k, seq=seq) for k in range(10)]
            assert all(await p.send_batch(topic, events, key=None)) is True
            for k in range(10):  # the same, keyed: the key decides the partition
                event = ev(cycle[(seq + k) % len(cycle)], k=k, seq=100 + seq)
                assert await p.send_event(topic, event, key=f"key-{k}")
    seen: dict[tuple[int, str], list[int]] = defaultdict(list)
    done = asyncio.Event()
    count = 0

    async def handle(msg: dict[str, Any], ctx: MessageContext) -> None:
        nonlocal count
        await asyncio.sleep(0)
        if ctx.key is not None:
            seen[(msg["data"]["k"], ctx.topic)].append(msg["data"]["seq"])
        count += 1
        if count == 240:
            done.set()

    c = consumer(harness, topic, lanes, concurrency=4)
    await c.start()
    task = asyncio.create_task(c.consume(handle))
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await c.stop()
        await task
    assert {topic_ for _, topic_ in seen} == set(lanes.lane_topics(topic).values())
    for key_lane, seqs in seen.items():
        assert seqs == sorted(seqs), f"{key_lane} out of order: {seqs}"
    assert sum(len(s) for s in seen.values()) == 120


async def test_failed_lane_record_retries_then_goes_to_the_topic_dlq(harness: Harness) -> None:
    topic, lanes = await laned_topic(harness, partitions=1)
    dlq = topic.removesuffix("-events") + "-dlq"
    async with producer(harness, lanes) as p:
        await publish(p, topic, [ev(CRITICAL, i=0), ev(LOW, i=1), ev(CRITICAL, i=2)])
    calls: dict[int, int] = defaultdict(int)

    async def handle(msg: dict[str, Any]) -> None:
        calls[msg["data"]["i"]] += 1
        if msg["data"]["i"] == 2:
            raise RuntimeError("boom on 2")

    c = consumer(harness, topic, lanes, retry=FAST)
    await c.start()
    task = asyncio.create_task(c.consume(handle))
    try:
        await wait_until(lambda: c.stats.dead_lettered == 1 and c.stats.processed == 2)
    finally:
        await c.stop()
        await task
    assert dict(calls) == {0: 1, 1: 1, 2: 3}  # the retry policy's three attempts
    (dead,) = await harness.read(dlq, 1)
    assert header_value(dead.headers, h.DLQ_ORIGINAL_TOPIC) == f"{topic}.critical"
    assert header_value(dead.headers, h.PRIORITY) == "critical"
