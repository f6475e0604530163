"""One behaviour suite, run on the in-memory broker and on each embedded real broker.

A broker's known gap is declared in its :class:`~eventbus.Features` and turned into an
explicit xfail here, never a silent skip.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from eventbus import BaseEvent, DeadLetterNow, MessageContext, Record, RetryPolicy, RetryTopics
from eventbus import headers as h
from eventbus._codec import header_value
from eventbus.errors import UnsupportedFeatureError
from tests.conftest import Harness, wait_until

FAST = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)


def ev(etype: str = "order.created", **data: Any) -> BaseEvent:
    return BaseEvent(event_type=etype, source_service="conformance", data=data)


async def run_until(
    consumer: Any, handler: Any, done: asyncio.Event, timeout: float = 30.0, **kw: Any
) -> None:
    """Start ``consumer``, consume with ``handler`` until ``done`` is set, then stop it."""
    await consumer.start()
    task = asyncio.create_task(consumer.consume(handler, **kw))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await consumer.stop()
        await task


async def test_produce_consume_typed_round_trip(harness: Harness) -> None:
    topic = await harness.topic()
    sent = [ev(n=i) for i in range(10)]
    async with harness.producer() as p:
        for e in sent:
            assert await p.send_event(topic, e) is True
    got: list[BaseEvent] = []
    done = asyncio.Event()

    async def handle(event: BaseEvent, ctx: MessageContext) -> None:
        got.append(event)
        assert ctx.header(h.EVENT_TYPE) == "order.created"
        if len(got) == 10:
            done.set()

    from eventbus import EventRegistry

    registry = EventRegistry()
    registry.register(BaseEvent, event_type="order.created")
    await run_until(harness.consumer([topic], registry=registry), handle, done)
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in sent)
    assert {e.data["n"] for e in got} == set(range(10))


async def test_keys_keep_per_key_order(harness: Harness) -> None:
    topic = await harness.topic(partitions=3)
    async with harness.producer() as p:
        for seq in range(20):
            results = await p.send_batch(topic, [ev(k=k, seq=seq) for k in range(5)], key=None)
            assert all(results)
            for k in range(5):
                assert await p.send_event(topic, ev(k=k, seq=100 + seq), key=f"key-{k}")
    records = await harness.read(topic, 200)
    by_key: dict[bytes, list[Record]] = defaultdict(list)
    for r in records:
        if r.key is not None:
            by_key[r.key].append(r)
    assert len(by_key) == 5
    for key, recs in by_key.items():
        assert len({r.partition for r in recs}) == 1, f"{key!r} spread over partitions"
        seqs = [int(r.value.split(b'"seq":')[1].split(b"}")[0]) for r in recs]  # type: ignore[union-attr]
        assert seqs == sorted(seqs)


async def test_headers_mirror_envelope_and_raw_headers_survive(harness: Harness) -> None:
    topic = await harness.topic(partitions=1)
    e = BaseEvent(
        event_type="user.created",
        tenant_id="t-1",
        correlation_id="c-1",
        source_service="users",
        data={"user_id": 7},
    )
    async with harness.producer() as p:
        assert await p.send_event(topic, e)
        assert await p.send_raw(
            topic,
            b"\x00\x01binary",
            key="k",
            headers=[("x-bin", b"\xff\x00"), ("x-text", b"hello")],
        )
    first, second = await harness.read(topic, 2)
    assert header_value(first.headers, h.EVENT_TYPE) == "user.created"
    assert header_value(first.headers, h.EVENT_ID) == str(e.event_id)
    assert header_value(first.headers, h.EVENT_VERSION) == "1"
    assert header_value(first.headers, h.TENANT_ID) == "t-1"
    assert header_value(first.headers, h.CORRELATION_ID) == "c-1"
    assert header_value(first.headers, h.CONTENT_TYPE) == "application/json"
    assert dict(second.headers) == {"x-bin": b"\xff\x00", "x-text": b"hello"}
    assert second.value == b"\x00\x01binary"
    assert second.key == b"k"


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "snappy"])
async def test_compression(harness: Harness, codec: str) -> None:
    topic = await harness.topic(partitions=1)
    async with harness.producer(producer_compression=codec) as p:
        assert all(await p.send_batch(topic, [ev(i=i, pad="x" * 200) for i in range(20)]))
    records = await harness.read(topic, 20)
    assert len(records) == 20
    assert all(b'"pad":"' in (r.value or b"") for r in records)


async def test_consumer_group_splits_partitions(harness: Harness) -> None:
    topic = await harness.topic(partitions=4)
    group = harness.unique("g")
    async with harness.producer() as p:
        assert all(await p.send_batch(topic, [ev(i=i) for i in range(40)]))
    seen: dict[str, list[int]] = {"a": [], "b": []}
    done = asyncio.Event()

    def handler(name: str) -> Any:
        async def handle(msg: dict[str, Any]) -> None:
            seen[name].append(msg["data"]["i"])
            if len(seen["a"]) + len(seen["b"]) >= 40:
                done.set()

        return handle

    # noida + aiokafka: dynamic members can wedge a rebalance (see the rebalance test);
    # static membership is the documented remedy there.
    static = not harness.features.commit_during_rebalance and harness.transport == "aiokafka"
    a = harness.consumer(
        [topic], group=group, **({"consumer_group_instance_id": f"{group}-a"} if static else {})
    )
    b = harness.consumer(
        [topic], group=group, **({"consumer_group_instance_id": f"{group}-b"} if static else {})
    )
    await a.start()
    await b.start()
    ta = asyncio.create_task(a.consume(handler("a")))
    tb = asyncio.create_task(b.consume(handler("b")))
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await a.stop()
        await b.stop()
        await asyncio.gather(ta, tb)
    assert sorted(seen["a"] + seen["b"]) == list(range(40))


@pytest.mark.parametrize("membership", ["dynamic", "static"])
async def test_rebalance_mid_stream_loses_nothing(
    harness: Harness, membership: str, request: pytest.FixtureRequest
) -> None:
    expect_wedge = (
        membership == "dynamic"
        and not harness.features.commit_during_rebalance
        and harness.transport == "aiokafka"  # librdkafka keeps its member id and recovers
    )
    # Tansu's JoinGroup waits half the session timeout per round; give rejoins room.
    wait_s = 8.0 if expect_wedge else (60.0 if harness.features.name == "tansu" else 30.0)
    if expect_wedge:
        request.applymarker(
            pytest.mark.xfail(
                reason=f"{harness.features.name} answers OffsetCommit during a rebalance with "
                "ILLEGAL_GENERATION; aiokafka then rejoins as a new member and the group wedges "
                "(research/noida-db-compat.md §3.2). Static membership avoids it.",
                strict=False,
            )
        )
    if harness.name == "tansu-confluent" and membership == "static":
        request.applymarker(
            pytest.mark.xfail(
                reason="intermittent (3 of 7 full runs in the 2026-12-04 session): the two "
                "static librdkafka members on Tansu rebalance in a loop, each assignment "
                "revoked and given again for the whole 60 s wait, so the second half is never "
                "consumed; whether Tansu's static-member handling or our confluent transport "
                "causes it is not known yet (never seen alone, nor in 3 runs of the previous "
                "commit)",
                strict=False,
            )
        )
    topic = await harness.topic(partitions=4)
    group = harness.unique("g")
    total = 60
    seen: set[int] = set()
    done = asyncio.Event()
    first_half = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        seen.add(msg["data"]["i"])
        if len(seen) >= total // 2:
            first_half.set()
        if len(seen) >= total:
            done.set()

    def member(n: int) -> Any:
        kw = {"consumer_group_instance_id": f"{group}-{n}"} if membership == "static" else {}
        return harness.consumer([topic], group=group, **kw)

    async with harness.producer() as p:
        assert all(await p.send_batch(topic, [ev(i=i) for i in range(total // 2)]))
        a = member(1)
        await a.start()
        ta = asyncio.create_task(a.consume(handle))
        b = member(2)
        tb: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(first_half.wait(), 30)
            await asyncio.wait_for(b.start(), wait_s)
            tb = asyncio.create_task(b.consume(handle))
            assert all(await p.send_batch(topic, [ev(i=i) for i in range(total // 2, total)]))
            await asyncio.wait_for(done.wait(), wait_s)
        finally:
            await b.stop()
            await a.stop()
            await ta
            if tb is not None:
                await tb
    assert seen == set(range(total))


async def test_committed_offsets_resume_and_uncommitted_redeliver(harness: Harness) -> None:
    topic = await harness.topic(partitions=1)
    group = harness.unique("g")
    async with harness.producer() as p:
        assert all(await p.send_batch(topic, [ev(i=i) for i in range(10)]))
    first: list[int] = []
    blocked = asyncio.Event()

    async def stuck_at_five(msg: dict[str, Any]) -> None:
        if msg["data"]["i"] == 5:
            blocked.set()
            await asyncio.Event().wait()  # never finishes: stop() must cancel it
        first.append(msg["data"]["i"])

    c1 = harness.consumer([topic], group=group, drain_timeout_s=0.5)
    await c1.start()
    t1 = asyncio.create_task(c1.consume(stuck_at_five))
    await asyncio.wait_for(blocked.wait(), 30)
    await c1.stop()
    with pytest.raises(asyncio.CancelledError):
        await t1
    assert first == [0, 1, 2, 3, 4]

    second: list[int] = []
    done = asyncio.Event()

    async def rest(msg: dict[str, Any]) -> None:
        second.append(msg["data"]["i"])
        if msg["data"]["i"] == 9:
            done.set()

    await run_until(harness.consumer([topic], group=group), rest, done)
    assert second == [5, 6, 7, 8, 9]


async def test_consume_batch(harness: Harness) -> None:
    topic = await harness.topic(partitions=2)
    async with harness.producer() as p:
        assert all(await p.send_batch(topic, [ev(i=i) for i in range(55)]))
    batches: list[list[dict[str, Any]]] = []
    done = asyncio.Event()

    async def handle(messages: list[dict[str, Any]]) -> None:
        batches.append(messages)
        if sum(len(b) for b in batches) >= 55:
            done.set()

    c = harness.consumer([topic])
    await c.start()
    task = asyncio.create_task(c.consume_batch(handle, batch_size=20, max_wait=0.5))
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await c.stop()
        await task
    assert all(len(b) <= 20 for b in batches)
    assert sorted(m["data"]["i"] for b in batches for m in b) == list(range(55))


async def test_routing_by_event_type(harness: Harness) -> None:
    topic = await harness.topic(partitions=1)
    async with harness.producer() as p:
        for i in range(6):
            etype = ("user.created", "user.deleted", "user.ignored")[i % 3]
            assert await p.send_event(topic, ev(etype, i=i))
    created: list[int] = []
    deleted: list[int] = []
    done = asyncio.Event()
    c = harness.consumer([topic])

    @c.on("user.created")
    async def on_created(msg: dict[str, Any]) -> None:
        created.append(msg["data"]["i"])

    @c.on("USER_DELETED")  # kafkajs-style names are aliases of the dotted type
    async def on_deleted(msg: dict[str, Any]) -> None:
        deleted.append(msg["data"]["i"])
        if msg["data"]["i"] == 4:
            done.set()

    await c.start()
    task = asyncio.create_task(c.consume())
    try:
        await asyncio.wait_for(done.wait(), 30)
        await wait_until(lambda: c.stats.skipped == 2)
    finally:
        await c.stop()
        await task
    assert created == [0, 3]
    assert deleted == [1, 4]


async def test_failing_handler_is_dead_lettered_with_headers(harness: Harness) -> None:
    topic = await harness.topic(partitions=1)
    dlq = topic.removesuffix("-queue") + "-dlq"
    async with harness.producer() as p:
        for i in range(4):
            assert await p.send_event(topic, ev(i=i), key=f"k{i}")
        assert await p.send_raw(topic, b"{not json")
    calls: dict[int, int] = defaultdict(int)
    ok: list[int] = []
    done = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        i = msg["data"]["i"]
        calls[i] += 1
        if i == 1:
            raise RuntimeError("boom on 1")
        if i == 2:
            raise DeadLetterNow("no retry for 2")
        ok.append(i)

    c = harness.consumer([topic], retry=FAST)
    await c.start()
    task = asyncio.create_task(c.consume(handle))
    try:
        await wait_until(lambda: c.stats.dead_lettered == 3, timeout=30)
    finally:
        done.set()
        await c.stop()
        await task
    assert ok == [0, 3]
    assert calls[1] == 3  # the retry policy's three attempts
    assert calls[2] == 1  # DeadLetterNow is not retried
    dead = await harness.read(dlq, 3)
    by_offset = {int(header_value(r.headers, h.DLQ_ORIGINAL_OFFSET) or -1): r for r in dead}
    assert sorted(by_offset) == [1, 2, 4]
    boom = by_offset[1]
    assert header_value(boom.headers, h.DLQ_ORIGINAL_TOPIC) == topic
    assert header_value(boom.headers, h.DLQ_EXCEPTION_TYPE) == "RuntimeError"
    assert header_value(boom.headers, h.DLQ_EXCEPTION_MESSAGE) == "boom on 1"
    assert header_value(boom.headers, h.DLQ_ATTEMPTS) == "3"
    assert header_value(boom.headers, h.EVENT_TYPE) == "order.created"  # original headers kept
    assert boom.key == b"k1"
    assert header_value(by_offset[4].headers, h.DLQ_REASON) == "decode"
    assert by_offset[4].value == b"{not json"


async def test_seed_style_dlq_handler_fires_within_the_retry_window(harness: Harness) -> None:
    topic = await harness.topic(partitions=1)
    async with harness.producer() as p:
        assert await p.send_event(topic, ev(i=1))
    got: list[tuple[dict[str, Any], BaseException]] = []
    done = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        raise ValueError("cannot process")

    async def dlq_handler(message: dict[str, Any], error: Exception) -> None:
        got.append((message, error))
        done.set()

    await run_until(harness.consumer([topic], retry=FAST), handle, done, dlq_handler=dlq_handler)
    message, error = got[0]
    assert message["data"] == {"i": 1}
    assert isinstance(error, ValueError)


async def test_batch_failure_isolates_the_poison_record(harness: Harness) -> None:
    topic = await harness.topic(partitions=1)
    dlq = topic.removesuffix("-queue") + "-dlq"
    async with harness.producer() as p:
        assert all(await p.send_batch(topic, [ev(i=i) for i in range(16)]))
    stored: set[int] = set()

    async def bulk_insert(messages: list[dict[str, Any]]) -> None:
        if any(m["data"]["i"] == 11 for m in messages):
            raise RuntimeError("constraint violated by 11")
        stored.update(m["data"]["i"] for m in messages)

    c = harness.consumer([topic], retry=FAST)
    await c.start()
    task = asyncio.create_task(c.consume_batch(bulk_insert, batch_size=16, max_wait=1.0))
    try:
        await wait_until(lambda: c.stats.dead_lettered == 1 and len(stored) == 15, timeout=30)
    finally:
        await c.stop()
        await task
    assert stored == set(range(16)) - {11}
    (dead,) = await harness.read(dlq, 1)
    assert header_value(dead.headers, h.DLQ_ORIGINAL_OFFSET) == "11"


async def test_key_ordered_lanes(harness: Harness) -> None:
    topic = await harness.topic(partitions=2)
    group = harness.unique("g")
    async with harness.producer() as p:
        for seq in range(4):
            for k in range(25):
                assert await p.send_event(topic, ev(k=k, seq=seq), key=f"k{k}")
    seen: dict[int, list[int]] = defaultdict(list)
    done = asyncio.Event()
    count = 0

    async def handle(msg: dict[str, Any]) -> None:
        nonlocal count
        await asyncio.sleep(0)
        seen[msg["data"]["k"]].append(msg["data"]["seq"])
        count += 1
        if count == 100:
            done.set()

    await run_until(harness.consumer([topic], group=group, concurrency=6), handle, done)
    assert dict(seen) == {k: [0, 1, 2, 3] for k in range(25)}
    # everything was committed: a new member of the group gets nothing more
    again: list[Any] = []
    c = harness.consumer([topic], group=group)
    async with harness.producer() as p:
        assert await p.send_event(topic, ev(k=99, seq=0), key="marker")
    marker = asyncio.Event()

    async def until_marker(msg: dict[str, Any]) -> None:
        again.append(msg)
        if msg["data"]["k"] == 99:
            marker.set()

    await run_until(c, until_marker, marker)
    assert [m["data"]["k"] for m in again] == [99]


async def test_consume_transform_produce_exactly_once(harness: Harness) -> None:
    source = await harness.topic(partitions=1)
    sink = await harness.topic(partitions=1)
    async with harness.producer() as p:
        assert all(await p.send_batch(source, [ev(i=i) for i in range(10)]))
    consumer = harness.consumer([source], transactional=True, retry=FAST)
    if not harness.features.transactions:
        with pytest.raises(UnsupportedFeatureError, match="transactions"):
            await consumer.start()
        return
    failed_once: set[int] = set()

    async def transform(msg: dict[str, Any], ctx: MessageContext) -> None:
        i = msg["data"]["i"]
        ctx.produce(sink, ev("order.doubled", i=i, doubled=2 * i))
        if i % 3 == 0 and i not in failed_once:
            failed_once.add(i)
            raise RuntimeError("fail after producing: the output must be aborted")

    await consumer.start()
    task = asyncio.create_task(consumer.consume(transform))
    try:
        await wait_until(lambda: consumer.stats.processed == 10, timeout=60)
    finally:
        await consumer.stop()
        await task
    reader = harness.consumer([sink], consumer_isolation_level="read_committed")
    out: list[int] = []
    done = asyncio.Event()

    async def collect(msg: dict[str, Any]) -> None:
        out.append(msg["data"]["i"])
        if len(out) == 10:
            done.set()

    await run_until(reader, collect, done)
    assert out == list(range(10))  # each output once, aborted attempts invisible
    assert consumer.stats.retried == 4  # 0, 3, 6, 9 failed once each
    # the offsets were committed in the same transactions: nothing is left to consume
    left: list[Any] = []
    marker_seen = asyncio.Event()
    async with harness.producer() as p:
        assert await p.send_event(source, ev(i=99))

    async def rest(msg: dict[str, Any]) -> None:
        left.append(msg["data"]["i"])
        marker_seen.set()

    await run_until(harness.consumer([source], group=consumer.group_id), rest, marker_seen)
    assert left == [99]


async def test_retry_tiers_park_the_key_and_keep_order(harness: Harness) -> None:
    topic = await harness.topic(partitions=2)
    tiers = RetryTopics(delays=(0.2, 0.4))
    async with harness.producer() as p:
        for i, key in enumerate(["a", "b", "a", "c", "a", "b"]):
            assert await p.send_event(topic, ev(i=i, k=key), key=key)
    handled: list[int] = []
    failures = {0: 2}  # record 0 fails twice: tier 1, then tier 2, then succeeds
    done = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        i = msg["data"]["i"]
        if failures.get(i, 0) > 0:
            failures[i] -= 1
            raise ConnectionError("not yet")
        handled.append(i)
        if len(handled) == 6:
            done.set()

    consumer = harness.consumer([topic], retry=RetryPolicy(attempts=1), retry_topics=tiers)
    await run_until(consumer, handle, done, timeout=60)
    by_key = {
        k: [i for i in handled if i in idx]
        for k, idx in {"a": {0, 2, 4}, "b": {1, 5}, "c": {3}}.items()
    }
    assert by_key == {"a": [0, 2, 4], "b": [1, 5], "c": [3]}
    assert handled.index(1) < handled.index(0)  # b did not wait for a's retries
    assert consumer.stats.retried_later == 2
    assert consumer.stats.dead_lettered == 0
