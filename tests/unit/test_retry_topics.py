"""Non-blocking retry tiers with a fake clock: delays honoured, keys parked, order kept."""

from __future__ import annotations

import asyncio
from typing import Any

from eventbus import BaseEvent, RetryPolicy, RetryTopics
from eventbus import headers as h
from eventbus._codec import header_value
from eventbus._retrytopics import RETRY_DUE_AT, RETRY_TIER
from tests.conftest import Harness, wait_until

ONCE = RetryPolicy(attempts=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def ev(**data: Any) -> BaseEvent:
    return BaseEvent(event_type="order.placed", data=data)


async def test_failing_record_waits_in_tiers_then_dead_letters(memory: Harness) -> None:
    clock = Clock()
    tiers = RetryTopics(delays=(0.05, 0.1), clock=clock)
    async with memory.producer() as p:
        assert await p.send_event("orders-queue", ev(i=1), key="a")
    calls = 0

    async def always_fails(msg: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("downstream is down")

    c = memory.consumer(["orders-queue"], retry=ONCE, retry_topics=tiers)
    await c.start()
    task = c.start_background(always_fails)
    assert memory.memory is not None
    broker = memory.memory
    await wait_until(lambda: len(broker.records("orders-retry-50ms")) == 1)
    first = broker.records("orders-retry-50ms")[0]
    assert header_value(first.headers, RETRY_TIER) == "0"
    assert float(header_value(first.headers, RETRY_DUE_AT) or 0) == clock.now + 0.05
    assert calls == 1  # not due yet: the handler is not called again
    clock.now += 0.05
    await wait_until(lambda: len(broker.records("orders-retry-100ms")) == 1)
    assert calls == 2
    clock.now += 0.1
    await wait_until(lambda: c.stats.dead_lettered == 1)
    await c.stop()
    await task
    assert calls == 3
    (dead,) = broker.records("orders-dlq")
    assert header_value(dead.headers, h.DLQ_ORIGINAL_TOPIC) == "orders-queue"
    assert header_value(dead.headers, h.DLQ_ORIGINAL_OFFSET) == "0"
    assert dead.key == b"a"


async def test_same_key_is_parked_other_keys_flow_and_order_holds(memory: Harness) -> None:
    clock = Clock()
    tiers = RetryTopics(delays=(0.05,), clock=clock)
    async with memory.producer() as p:
        for i, key in enumerate(["a", "b", "a", "c", "a"]):
            assert await p.send_event("orders-queue", ev(i=i, k=key), key=key)
    handled: list[int] = []
    fail_first = True

    async def handle(msg: dict[str, Any]) -> None:
        nonlocal fail_first
        if msg["data"]["i"] == 0 and fail_first:
            fail_first = False
            raise TimeoutError("slow downstream")
        handled.append(msg["data"]["i"])

    c = memory.consumer(["orders-queue"], retry=ONCE, retry_topics=tiers)
    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: handled == [1, 3])  # b and c flow; a's later records wait
    assert memory.memory is not None
    tp_committed = memory.memory.committed(c.group_id, next(iter(c._assigned)))
    assert tp_committed in (None, 1)  # nothing past the first parked record is committed
    clock.now += 0.05
    await wait_until(lambda: handled == [1, 3, 0, 2, 4])
    await c.stop()
    await task
    assert c.stats.retried_later == 1


async def test_validation_errors_skip_the_tiers(memory: Harness) -> None:
    tiers = RetryTopics(delays=(60.0,))
    async with memory.producer() as p:
        assert await p.send_event("orders-queue", ev(i=1), key="a")

    async def bad(msg: dict[str, Any]) -> None:
        from eventbus import DeadLetterNow

        raise DeadLetterNow("not retryable")

    c = memory.consumer(["orders-queue"], retry=ONCE, retry_topics=tiers)
    await c.start()
    task = c.start_background(bad)
    await wait_until(lambda: c.stats.dead_lettered == 1)
    await c.stop()
    await task
    assert memory.memory is not None
    assert memory.memory.records("orders-retry-1m") == []
    assert asyncio.iscoroutinefunction(bad)
