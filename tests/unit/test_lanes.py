"""Key-ordered concurrency: order per key, overlap across keys, contiguous commits."""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from typing import Any

import pytest

from eventbus import BaseEvent, ConfigurationError, TopicPartition
from eventbus._offsets import OffsetTracker
from eventbus._transport.base import Record
from tests.conftest import Harness, wait_until


def rec(offset: int, partition: int = 0) -> Record:
    return Record("t", partition, offset, None, b"{}")


def test_offset_tracker_commits_only_the_contiguous_prefix() -> None:
    t = OffsetTracker()
    for o in range(5):
        t.begin(rec(o))
    t.finish(rec(1))
    t.finish(rec(2))
    assert t.committable == {}
    t.finish(rec(0))
    assert t.committable == {TopicPartition("t", 0): 3}
    t.finish(rec(4))
    assert t.committable == {TopicPartition("t", 0): 3}
    assert t.in_flight() == 2
    t.finish(rec(3))
    assert t.committable == {TopicPartition("t", 0): 5}
    assert t.in_flight() == 0
    t.forget({TopicPartition("t", 0)})
    t.finish(rec(5))  # a late finish after revoke is ignored
    assert t.committable == {}


async def test_lanes_keep_key_order_and_overlap_keys(memory: Harness) -> None:
    async with memory.producer() as p:
        for seq in range(5):
            for k in range(40):
                assert await p.send_event(
                    "lanes-queue",
                    BaseEvent(event_type="x.y", data={"k": k, "seq": seq}),
                    key=f"k{k}",
                )
    seen: dict[int, list[int]] = defaultdict(list)
    running = 0
    peak = 0

    async def handle(msg: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # yield, so other lanes get to run meanwhile
        await asyncio.sleep(0)
        seen[msg["data"]["k"]].append(msg["data"]["seq"])
        running -= 1

    c = memory.consumer(["lanes-queue"])
    c.concurrency = 8
    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: c.stats.processed == 200)
    await c.stop()
    await task
    assert all(v == [0, 1, 2, 3, 4] for v in seen.values())
    assert len(seen) == 40
    assert peak > 1
    assert memory.memory is not None
    assert memory.memory.committed(c.group_id, TopicPartition("lanes-queue", 0)) == 200


async def test_a_slow_key_holds_back_the_commit_but_not_other_keys(memory: Harness) -> None:
    async with memory.producer() as p:
        assert await p.send_event(
            "slow-queue", BaseEvent(event_type="x.y", data={"i": 0}), key="slow"
        )
        for i in range(1, 20):
            assert await p.send_event(
                "slow-queue", BaseEvent(event_type="x.y", data={"i": i}), key=f"fast{i}"
            )
    gate = asyncio.Event()
    done: list[int] = []

    async def handle(msg: dict[str, Any]) -> None:
        if msg["data"]["i"] == 0:
            await gate.wait()
        done.append(msg["data"]["i"])

    c = memory.consumer(["slow-queue"], consumer_commit_interval_ms=10)
    c.concurrency = 4
    await c.start()
    task = c.start_background(handle)
    assert memory.memory is not None
    broker = memory.memory

    def lane(key: str) -> int:
        return zlib.crc32(key.encode()) % 4

    free = {i for i in range(1, 20) if lane(f"fast{i}") != lane("slow")}
    assert free  # keys hashed to other lanes are not stuck behind the slow one
    await wait_until(lambda: free <= set(done))
    tp = TopicPartition("slow-queue", 0)
    await c._commit()  # force a commit round now
    assert broker.committed(c.group_id, tp) is None  # offset 0 is not finished
    gate.set()
    await wait_until(lambda: len(done) == 20)
    await c.stop()
    await task
    assert broker.committed(c.group_id, tp) == 20


def test_concurrency_must_be_positive_and_not_batched(memory: Harness) -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        memory.consumer(["x"], concurrency=0)


async def test_a_batch_of_one_is_not_run_twice_before_dead_lettering(memory: Harness) -> None:
    from eventbus import DeadLetterNow, RetryPolicy

    async with memory.producer() as p:
        await p.send_event("single-queue", BaseEvent(event_type="x.y", data={"n": 1}))
    calls = 0

    async def handle(batch: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        raise DeadLetterNow("refused")

    policy = RetryPolicy(attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001, jitter_s=0)
    c = memory.consumer(["single-queue"], retry=policy)
    await c.start()
    task = asyncio.create_task(c.consume_batch(handle, batch_size=1, max_wait=0.1))
    await wait_until(lambda: c.stats.dead_lettered == 1)
    await c.stop()
    await task
    assert calls == 1  # DeadLetterNow is final: one call, no isolation re-run
