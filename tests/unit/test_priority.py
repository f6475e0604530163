"""Priority lanes on the in-memory broker: naming, the weighting, buffers and pausing,
producer routing, and the consumer's options."""

from __future__ import annotations

import asyncio
from itertools import groupby
from typing import Any

import pytest

from eventbus import (
    BaseEvent,
    ConfigurationError,
    KafkaConsumer,
    KafkaProducer,
    Priority,
    PriorityLanes,
    RetryTopics,
    TopicPartition,
    TopicSpec,
    ensure_topics,
)
from eventbus import headers as h
from eventbus._priority import ensure_lane_topics
from eventbus._scheduler import MIN_BUFFERED, HandlingRate, LaneScheduler, WeightedTurns
from eventbus._transport.base import ConsumerConfig, Record
from eventbus.testing import MemoryBroker
from tests.conftest import Harness, wait_until

C, H, N, M, L = (
    Priority.CRITICAL,
    Priority.HIGH,
    Priority.NORMAL,
    Priority.MEDIUM,
    Priority.LOW,
)


def ev(priority: Priority, **data: Any) -> BaseEvent:
    return BaseEvent(event_type="stock.changed", priority=priority, data=data)


# -- naming -------------------------------------------------------------------------------


def test_lane_topics_and_their_logical_topic() -> None:
    lanes = PriorityLanes("inventory-events")
    assert lanes.lanes == (C, H, N, L)
    assert lanes.weights == {C: 8, H: 4, N: 2, L: 1}
    assert lanes.lane_topics("inventory-events") == {
        C: "inventory-events.critical",
        H: "inventory-events.high",
        N: "inventory-events",  # the base lane is the topic itself
        L: "inventory-events.low",
    }
    assert lanes.topic_for("inventory-events", "medium") == "inventory-events"
    assert lanes.topic_for("inventory-events", C) == "inventory-events.critical"
    assert lanes.topic_for("audit-queue", C) == "audit-queue"  # no lanes: untouched
    assert lanes.lane_of_topic("inventory-events.low") == ("inventory-events", L)
    assert lanes.lane_of_topic("inventory-events") == ("inventory-events", N)
    assert lanes.lane_of_topic("inventory-events.medium") is None
    assert lanes.logical_topic("inventory-events.high") == "inventory-events"
    assert lanes.logical_topic("other.high") == "other.high"
    with pytest.raises(ValueError, match="urgent"):
        lanes.topic_for("inventory-events", "urgent")


def test_unlisted_priorities_take_the_nearest_lane() -> None:
    lanes = PriorityLanes(["a", "b"], {"critical": 5, "normal": 1}, separator="-p-")
    assert lanes.lane_of(H) == C  # rank 3: nearer to critical (4) than to normal (1)
    assert lanes.lane_of(M) == N  # rank 2: a tie goes to the lower lane
    assert lanes.lane_of(L) == N
    assert lanes.topic_for("b", H) == "b-p-critical"
    assert lanes.topic_for("b", L) == "b"
    low_base = PriorityLanes("a", {C: 2, L: 1}, base=L)
    assert low_base.lane_topics("a") == {C: "a.critical", L: "a"}


def test_specs_give_every_lane_the_same_settings() -> None:
    lanes = PriorityLanes("orders-events")
    specs = lanes.specs(TopicSpec("orders-events", 6, 1, {"retention.ms": "1000"}))
    assert [s.name for s in specs] == [
        "orders-events.critical",
        "orders-events.high",
        "orders-events",
        "orders-events.low",
    ]
    assert {(s.partitions, s.configs["retention.ms"]) for s in specs} == {(6, "1000")}


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        ((), {"topics": []}, "topic"),
        (("t",), {"weights": {C: 0, N: 1}}, "positive"),
        (("t",), {"weights": {C: 2, L: 1}}, "base normal has no weight"),
        (("t",), {"weights": {"urgent": 2}}, "urgent"),
        (("t",), {"buffer_s": 0}, "buffer_s"),
        (("t",), {"max_buffered": 1}, "max_buffered"),
        (("t",), {"partitions": 0}, "partitions"),
        ((["t", "t.low"],), {}, "lanes of other topics"),
    ],
)
def test_bad_lanes_are_configuration_errors(
    args: tuple[Any, ...], kw: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        PriorityLanes(*args, **kw)


def test_lanes_are_immutable_values() -> None:
    a = PriorityLanes({"x", "y"})
    b = PriorityLanes(["y", "x"], {"critical": 8, "high": 4, "normal": 2, "low": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert a != PriorityLanes("x")
    assert "critical=8" in repr(a)
    with pytest.raises(AttributeError, match="immutable"):
        a.recheck_s = 1.0  # type: ignore[misc]


# -- weighting ----------------------------------------------------------------------------


def test_weighted_turns_share_by_weight_and_interleave() -> None:
    turns = WeightedTurns([8, 1])
    picks = [turns.pick([True, True]) for _ in range(90)]
    assert picks.count(0) == 80
    assert picks.count(1) == 10
    assert max(len(list(run)) for lane, run in groupby(picks) if lane == 0) <= 8
    for start in range(0, 90, 9):  # LOW gets exactly one turn in every nine
        assert picks[start : start + 9].count(1) == 1


def test_weighted_turns_over_four_lanes() -> None:
    turns = WeightedTurns([8, 4, 2, 1])
    picks = [turns.pick([True] * 4) for _ in range(150)]
    assert [picks.count(i) for i in range(4)] == [80, 40, 20, 10]


def test_only_ready_lanes_take_turns_and_empty_ones_save_no_credit() -> None:
    turns = WeightedTurns([8, 1])
    assert turns.pick([False, False]) == -1
    assert [turns.pick([False, True]) for _ in range(50)] == [1] * 50
    # CRITICAL arrives after LOW had the lane to itself: it is served at once, and LOW
    # did not bank the turns it took alone
    assert turns.pick([True, True]) == 0
    picks = [turns.pick([True, True]) for _ in range(17)]
    assert picks.count(1) == 2
    with pytest.raises(ValueError, match="positive"):
        WeightedTurns([1, 0])


def test_handling_rate_counts_busy_time_only() -> None:
    rate = HandlingRate(window_s=0.05)
    rate.observe(10, 0.01)
    assert rate.per_s is None  # not a full window yet
    rate.observe(40, 0.04)
    assert rate.per_s == pytest.approx(1000)
    rate.observe(200, 0.05)
    assert rate.per_s == pytest.approx(2500)  # smoothed: (1000 + 4000) / 2


# -- buffers and pausing ------------------------------------------------------------------


def rec(topic: str, offset: int, partition: int = 0) -> Record:
    return Record(topic, partition, offset, None, b"{}")


async def scheduler_on_memory(
    lanes: PriorityLanes, topic: str
) -> tuple[LaneScheduler, Any, list[Record]]:
    broker = MemoryBroker()
    client = broker.consumer(ConsumerConfig("g", tuple(lanes.lane_topics(topic).values())))
    fed: list[Record] = []

    async def poll(timeout_ms: int, max_records: int) -> list[Record]:
        out, fed[:] = fed[:max_records], fed[max_records:]
        return out

    sched = LaneScheduler(lanes, client.config.topics, client, poll, max_records=500)
    sched.assign({TopicPartition(t, 0) for t in client.config.topics})
    client.owned = {TopicPartition(t, 0) for t in client.config.topics}
    return sched, client, fed


async def test_a_full_lane_is_paused_and_resumed_at_sixty_percent() -> None:
    lanes = PriorityLanes("s-events", max_buffered=10)
    sched, client, fed = await scheduler_on_memory(lanes, "s-events")
    assert sched.high == 10  # no rate measured yet: the cap
    fed.extend(rec("s-events.low", i) for i in range(12))
    fed.append(rec("s-events.critical", 0))
    first = await sched.take(1, wait_ms=0)
    assert [r.topic for r in first] == ["s-events.critical"]
    assert sched.paused() == {L}
    assert client._paused == {TopicPartition("s-events.low", 0)}
    assert sched.buffered()[L] == 12
    taken = await sched.take(6, wait_ms=0)
    assert [r.offset for r in taken] == list(range(6))  # partition order kept
    assert sched.paused() == set()  # 6 left <= 60 % of 10
    assert client._paused == set()
    assert sched.taken == {C: 1, H: 0, N: 0, L: 6}


async def test_the_buffer_follows_the_handling_rate() -> None:
    lanes = PriorityLanes("r-events", buffer_s=2.0, max_buffered=5000)
    sched, _, _ = await scheduler_on_memory(lanes, "r-events")
    sched.rate.observe(1000, 1.0)
    assert sched.high == 2000  # two seconds at 1000/s
    sched.rate.per_s = 1.0  # a very slow handler: the floor
    assert sched.high == MIN_BUFFERED
    sched.rate.per_s = 1e6
    assert sched.high == 5000  # the cap


async def test_revoked_partitions_lose_their_buffered_records() -> None:
    lanes = PriorityLanes("v-events", max_buffered=4)
    sched, client, fed = await scheduler_on_memory(lanes, "v-events")
    fed.extend(rec("v-events.low", i) for i in range(6))
    fed.extend(rec("v-events", i) for i in range(2))
    await sched.take(0, wait_ms=0)
    assert sched.paused() == {L}
    sched.revoke({TopicPartition("v-events.low", 0)})
    assert sched.buffered() == {C: 0, H: 0, N: 2, L: 0}
    assert sched.paused() == set()
    sched.assign({TopicPartition("v-events.low", 0)})  # back, unpaused
    assert client._paused == set()
    assert len(sched) == 2


# -- producer routing ---------------------------------------------------------------------


async def test_producer_routes_every_send_path_and_creates_the_lanes(memory: Harness) -> None:
    assert memory.memory is not None
    broker = memory.memory
    broker.create_topic("p-events", 4)
    lanes = PriorityLanes("p-events")
    async with KafkaProducer(
        settings=memory.settings(), transport=broker, priority_lanes=lanes
    ) as p:
        assert {t: len(parts) for t, parts in broker.topics.items()} == {
            "p-events": 4,
            "p-events.critical": 4,
            "p-events.high": 4,
            "p-events.low": 4,
        }
        assert (await p.publish("p-events", ev(C))).topic == "p-events.critical"
        assert await p.send_event("p-events", ev(L), key="k")
        assert all(await p.send_batch("p-events", [ev(H), ev(M), ev(N)]))
        await (await p.enqueue("p-events", ev(C)))
        raw = [(h.PRIORITY, b"high")]
        await (await p.enqueue_raw("p-events", b"{}", "k", raw))  # the outbox relay's path
        assert await p.send_raw("p-events", {"x": 1}, headers=[(h.PRIORITY, b"low")])
        assert await p.send_raw("p-events", {"x": 2}, headers=[(h.PRIORITY, b"urgent")])
        assert await p.send_raw("p-events", {"x": 3})
        assert await p.send_event("other-events", ev(C))  # no lanes for this topic
        assert p.lane_topic("p-events", "medium") == "p-events"
    counts = {t: len(broker.records(t)) for t in broker.topics}
    assert counts == {
        "p-events.critical": 2,
        "p-events.high": 2,
        "p-events": 4,  # medium, normal, an unknown and a missing priority header
        "p-events.low": 2,
        "other-events": 1,
    }
    assert broker.records("p-events.low")[0].key == b"k"


async def test_ensure_lane_topics_creates_a_missing_logical_topic_too() -> None:
    broker = MemoryBroker()
    lanes = PriorityLanes(["a-events", "b-events"], partitions=2)
    broker.create_topic("a-events", 5)
    admin = broker.admin()
    created = await ensure_lane_topics(admin, lanes, ["a-events", "b-events", "c-events"])
    wanted = {*lanes.lane_topics("a-events").values(), *lanes.lane_topics("b-events").values()}
    assert sorted(created) == sorted(wanted - {"a-events"})
    assert len(broker.topics["a-events.low"]) == 5
    assert len(broker.topics["b-events.low"]) == 2
    assert await ensure_lane_topics(admin, lanes, ["a-events"]) == []
    assert await ensure_lane_topics(admin, lanes, ["c-events"]) == []


# -- consumer -----------------------------------------------------------------------------


def test_consumer_lanes_configuration_errors(memory: Harness) -> None:
    lanes = PriorityLanes("x-events")
    with pytest.raises(ConfigurationError, match="none of the topics"):
        KafkaConsumer(
            group_id="g", topics=["y-events"], transport=memory.memory, priority_lanes=lanes
        )
    with pytest.raises(ConfigurationError, match="retry_topics"):
        KafkaConsumer(
            group_id="g",
            topics=["x-events"],
            transport=memory.memory,
            priority_lanes=lanes,
            retry_topics=RetryTopics(delays=(1.0,)),
        )


async def test_consumer_reads_every_lane_and_plain_topics_as_base(memory: Harness) -> None:
    assert memory.memory is not None
    broker = memory.memory
    lanes = PriorityLanes("m-events")
    broker.create_topic("m-events", 2)
    async with KafkaProducer(
        settings=memory.settings(), transport=broker, priority_lanes=lanes
    ) as p:
        for priority in (L, L, N, C, H):
            assert await p.send_event("m-events", ev(priority))
        assert await p.send_event("plain-queue", ev(C))  # no lanes: read with the base lane
    seen: list[tuple[str, str]] = []

    async def handle(msg: dict[str, Any], ctx: Any) -> None:
        seen.append((ctx.topic, msg["priority"]))

    c = KafkaConsumer(
        group_id="g",
        topics=["m-events", "plain-queue"],
        settings=memory.settings(),
        transport=broker,
        priority_lanes=lanes,
    )
    await c.start()
    task = c.start_background(handle)
    try:
        await wait_until(lambda: len(seen) == 6)
    finally:
        await c.stop()
        await task
    assert seen[:2] == [("m-events.critical", "critical"), ("m-events.high", "high")]
    assert sorted(seen[2:]) == [
        ("m-events", "normal"),
        ("m-events.low", "low"),
        ("m-events.low", "low"),
        ("plain-queue", "critical"),
    ]
    assert len(broker.topics["m-events.low"]) == 2  # created with the topic's partitions
    for t in lanes.lane_topics("m-events").values():  # every lane offset was committed
        ends = {TopicPartition(t, i): broker.end_offset(TopicPartition(t, i)) for i in range(2)}
        assert {tp: broker.committed("g", tp) or 0 for tp in ends} == ends


async def test_consume_batch_fills_batches_by_weighted_turns(memory: Harness) -> None:
    assert memory.memory is not None
    broker = memory.memory
    lanes = PriorityLanes("b-events")
    await ensure_topics(lanes.specs(TopicSpec("b-events", 1)), transport=broker)
    async with KafkaProducer(
        settings=memory.settings(), transport=broker, priority_lanes=lanes
    ) as p:
        assert all(await p.send_batch("b-events", [ev(L, i=i) for i in range(40)]))
        assert all(await p.send_batch("b-events", [ev(C, i=i) for i in range(40)]))
    batches: list[list[str]] = []

    async def handle(messages: list[dict[str, Any]]) -> None:
        batches.append([m["priority"] for m in messages])

    c = KafkaConsumer(
        group_id="g",
        topics=["b-events"],
        settings=memory.settings(),
        transport=broker,
        priority_lanes=lanes,
    )
    await c.start()
    task = asyncio.create_task(c.consume_batch(handle, batch_size=18, max_wait=0.2))
    try:
        await wait_until(lambda: sum(map(len, batches)) == 80)
    finally:
        await c.stop()
        await task
    assert batches[0].count("critical") == 16  # 8 of every 9
    assert batches[0].count("low") == 2


async def test_rebalance_with_buffered_lanes_loses_nothing(memory: Harness) -> None:
    assert memory.memory is not None
    broker = memory.memory
    lanes = PriorityLanes("rb-events")
    await ensure_topics(lanes.specs(TopicSpec("rb-events", 2)), transport=broker)
    async with KafkaProducer(
        settings=memory.settings(), transport=broker, priority_lanes=lanes
    ) as p:
        assert all(await p.send_batch("rb-events", [ev(L, i=i) for i in range(200)]))
        assert all(await p.send_batch("rb-events", [ev(C, i=200 + i) for i in range(50)]))
    seen: set[int] = set()
    gate = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        if len(seen) == 20:
            await gate.wait()  # hold the first member with most of its backlog buffered
        seen.add(msg["data"]["i"])

    def member() -> KafkaConsumer:
        c = KafkaConsumer(
            group_id="g",
            topics=["rb-events"],
            settings=memory.settings(),
            transport=broker,
            priority_lanes=lanes,
        )
        memory._clients.append(c)
        return c

    a, b = member(), member()
    await a.start()
    ta = a.start_background(handle)
    await wait_until(lambda: len(seen) == 20)
    assert a._scheduler is not None
    assert len(a._scheduler) > 0
    join = asyncio.create_task(b.start())  # revokes a's partitions: its buffers are dropped
    gate.set()
    await join
    tb = b.start_background(handle)
    try:
        await wait_until(lambda: len(seen) == 250)
    finally:
        await a.stop()
        await b.stop()
        await asyncio.gather(ta, tb)
    assert seen == set(range(250))
