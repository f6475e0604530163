"""Observers on the in-memory broker: Prometheus metrics, stall detection, the fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from eventbus import (
    BaseEvent,
    ConfigurationError,
    DeadLetterNow,
    KafkaConsumer,
    KafkaProducer,
    RetryPolicy,
    StallDetector,
    TopicPartition,
    observe,
)
from eventbus.fastapi import EventBus
from eventbus.metrics import PrometheusMetrics, metrics_router
from eventbus.observe import Observer, PartitionProgress
from eventbus.testing import MemoryBroker
from tests.conftest import wait_until

FAST = RetryPolicy(attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter_s=0)
TOPIC = "obs-queue"


def ev(etype: str, tenant: str | None = "acme", **data: Any) -> BaseEvent:
    return BaseEvent(event_type=etype, tenant_id=tenant, data=data)


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(default_partitions=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_metrics_count_published_consumed_retried_and_dead_lettered(
    broker: MemoryBroker,
) -> None:
    metrics = PrometheusMetrics()
    async with KafkaProducer(transport=broker, observers=[metrics]) as producer:
        for i in range(3):
            assert await producer.send_event(TOPIC, ev("order.created", n=i))
        assert await producer.send_event(TOPIC, ev("order.poison", tenant="globex"))
    assert (
        sample(
            metrics,
            "eventbus_events_published_total",
            topic=TOPIC,
            event_type="order.created",
            tenant="acme",
        )
        == 3
    )
    assert (
        sample(
            metrics,
            "eventbus_events_published_total",
            topic=TOPIC,
            event_type="order.poison",
            tenant="globex",
        )
        == 1
    )
    assert sample(metrics, "eventbus_publish_latency_seconds_count", topic=TOPIC) == 4

    seen: list[str] = []

    async def handle(event: dict[str, Any]) -> None:
        if event["event_type"] == "order.poison":
            raise RuntimeError("cannot handle this one")
        seen.append(event["event_type"])

    consumer = KafkaConsumer(
        group_id="g-obs", topics=TOPIC, transport=broker, retry=FAST, observers=[metrics]
    )
    await consumer.start()
    task = consumer.start_background(handle)
    try:
        await wait_until(lambda: consumer.stats.dead_lettered == 1 and len(seen) == 3)
    finally:
        await consumer.stop()
        await task
    group = {"group": "g-obs", "topic": TOPIC}
    ok = {**group, "event_type": "order.created", "tenant": "acme"}
    bad = {**group, "event_type": "order.poison", "tenant": "globex"}
    assert sample(metrics, "eventbus_events_consumed_total", **ok) == 3
    assert sample(metrics, "eventbus_events_failed_total", **bad) == 1
    assert sample(metrics, "eventbus_events_retried_total", **bad) == 1  # 2 attempts
    assert sample(metrics, "eventbus_events_dead_lettered_total", **bad) == 1
    assert sample(metrics, "eventbus_events_consumed_total", **bad) == 0
    assert (
        sample(
            metrics,
            "eventbus_handler_duration_seconds_count",
            group="g-obs",
            topic=TOPIC,
            event_type="order.created",
        )
        == 3
    )


async def test_a_refused_send_counts_as_a_publish_error(broker: MemoryBroker) -> None:
    metrics = PrometheusMetrics()
    async with KafkaProducer(transport=broker, observers=[metrics]) as producer:
        broker.go_down()
        assert await producer.send_event(TOPIC, ev("order.created")) is False
        broker.come_back()
    labels = {"topic": TOPIC, "event_type": "order.created", "tenant": "acme"}
    assert sample(metrics, "eventbus_publish_errors_total", **labels) >= 1
    assert sample(metrics, "eventbus_events_published_total", **labels) == 0


async def test_batch_handling_is_timed_once_per_batch(broker: MemoryBroker) -> None:
    metrics = PrometheusMetrics()
    async with KafkaProducer(transport=broker) as producer:
        for i in range(5):
            await producer.send_event(TOPIC, ev("order.created", n=i))
    batches: list[int] = []
    consumer = KafkaConsumer(
        group_id="g-batch", topics=TOPIC, transport=broker, observers=[metrics]
    )

    async def handle(events: list[dict[str, Any]]) -> None:
        batches.append(len(events))

    await consumer.start()
    task = asyncio.create_task(consumer.consume_batch(handle, batch_size=5, max_wait=0.5))
    try:
        await wait_until(lambda: sum(batches) == 5)
    finally:
        await consumer.stop()
        await task
    duration = "eventbus_handler_duration_seconds_count"
    assert sample(metrics, duration, group="g-batch", topic=TOPIC, event_type="*") == len(batches)
    labels = {"group": "g-batch", "topic": TOPIC, "event_type": "order.created", "tenant": "acme"}
    assert sample(metrics, "eventbus_events_consumed_total", **labels) == 5


class Broken(Observer):
    """Every hook raises: the clients must not notice."""

    def outgoing(self, headers: list[tuple[str, bytes]]) -> None:
        raise RuntimeError("outgoing")

    def sending(self, topic: str, headers: list[tuple[str, bytes]]) -> None:
        raise RuntimeError("sending")

    def handling(self, group: str, records: Sequence[Any]) -> Any:
        raise RuntimeError("handling")

    def outcome(self, group: str, record: Any, outcome: Any) -> None:
        raise RuntimeError("outcome")


async def test_a_broken_observer_loses_nothing(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = PrometheusMetrics()
    observers = [Broken(), metrics]
    async with KafkaProducer(transport=broker, observers=observers) as producer:
        assert await producer.send_event(TOPIC, ev("order.created"))
    got: list[dict[str, Any]] = []
    consumer = KafkaConsumer(
        group_id="g-broken", topics=TOPIC, transport=broker, observers=observers
    )

    async def handle(event: dict[str, Any]) -> None:
        got.append(event)

    await consumer.start()
    task = consumer.start_background(handle)
    try:
        await wait_until(lambda: len(got) == 1)
    finally:
        await consumer.stop()
        await task
    labels = {"group": "g-broken", "topic": TOPIC, "event_type": "order.created", "tenant": "acme"}
    assert sample(metrics, "eventbus_events_consumed_total", **labels) == 1
    assert "observer" in caplog.text


async def test_installed_observers_serve_clients_given_none(broker: MemoryBroker) -> None:
    metrics = observe.install(PrometheusMetrics())
    try:
        assert metrics in observe.installed()
        async with KafkaProducer(transport=broker) as producer:
            await producer.send_event(TOPIC, ev("order.created"))
    finally:
        observe.uninstall(metrics)
    assert metrics not in observe.installed()
    labels = {"topic": TOPIC, "event_type": "order.created", "tenant": "acme"}
    assert sample(metrics, "eventbus_events_published_total", **labels) == 1  # type: ignore[arg-type]


def test_stall_detector_needs_a_standing_offset_and_growing_lag() -> None:
    clock = Clock()
    d = StallDetector(threshold_s=30, clock=clock)
    tp = ("g", TopicPartition("t", 0))
    assert d.check(tp, committed=10, lag=0) is False  # idle
    clock.now += 100
    assert d.check(tp, committed=10, lag=0) is False  # still idle: never a stall
    assert d.check(tp, committed=10, lag=5) is False  # work arrives
    clock.now += 31
    assert d.check(tp, committed=10, lag=5) is True  # 31 s and none of it finished
    assert d.check(tp, committed=12, lag=3) is False  # it moved: the clock restarts
    clock.now += 31
    assert d.check(tp, committed=12, lag=3) is False  # standing, but nothing new arrived
    assert d.check(tp, committed=12, lag=4) is True  # new work, and 31 s without a commit
    assert d.check(tp, committed=15, lag=1) is False
    clock.now += 29
    assert d.check(tp, committed=15, lag=9) is False  # under the threshold
    clock.now += 2
    assert d.check(tp, committed=15, lag=10) is True
    d.keep([])
    assert d.check(tp, committed=15, lag=11) is False  # forgotten: a new mark
    with pytest.raises(ConfigurationError):
        StallDetector(threshold_s=0)


async def test_a_stuck_handler_makes_the_bus_unhealthy_until_it_moves(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    metrics = PrometheusMetrics()
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(event: dict[str, Any]) -> None:
        if event["data"]["n"] == 0:
            await release.wait()
        handled.append(event["data"]["n"])

    consumer = KafkaConsumer(
        group_id="g-stuck", topics=TOPIC, transport=broker, consumer_commit_interval_ms=10
    )
    bus = EventBus(
        enable_producer=False,
        observers=[metrics],
        clock=clock,
        progress_interval_s=3600,  # sampled by hand below, on the fake clock
        consumer_stall_threshold_s=30,
    )
    bus.add_consumer(consumer, handle)
    app = FastAPI()
    app.include_router(bus.health_router())
    app.include_router(metrics_router(metrics))
    tp = TopicPartition(TOPIC, 0)
    async with KafkaProducer(transport=broker) as producer:
        await producer.send_event(TOPIC, ev("order.created", n=0))
        await bus.start()
        try:
            await wait_until(lambda: consumer.is_started and bool(broker.end_offset(tp)))
            await bus.check_progress()
            for n in range(1, 4):
                await producer.send_event(TOPIC, ev("order.created", n=n))
            clock.now += 31
            progress = await bus.check_progress()
            assert progress["g-stuck"][tp] == PartitionProgress(0, 4, 4, stalled=True)
            assert bus.stalled() == [
                {"group": "g-stuck", "topic": TOPIC, "partition": 0, "committed": 0, "lag": 4}
            ]
            assert "stalled on obs-queue[0]" in caplog.text
            labels = {"group": "g-stuck", "topic": TOPIC, "partition": "0"}
            assert sample(metrics, "eventbus_consumer_stalled", **labels) == 1
            assert sample(metrics, "eventbus_consumer_lag", **labels) == 4
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://bus") as http:
                health = await http.get("/health")
                assert health.status_code == 503
                assert health.json()["kafka"]["stalled"][0]["lag"] == 4
                scraped = (await http.get("/metrics")).text
                assert 'eventbus_consumer_stalled{group="g-stuck",partition="0"' in scraped
                release.set()
                await wait_until(lambda: len(handled) == 4)

                async def committed() -> bool:
                    return (await consumer.progress())[tp].committed == 4

                for _ in range(500):  # the commit loop runs every 10 ms
                    if await committed():
                        break
                    await asyncio.sleep(0.01)
                assert await committed()
                await bus.check_progress()
                assert bus.stalled() == []
                assert (await http.get("/health")).status_code == 200
            assert sample(metrics, "eventbus_consumer_stalled", **labels) == 0
            assert sample(metrics, "eventbus_consumer_lag", **labels) == 0
        finally:
            await bus.stop()


async def test_dead_letter_now_is_counted_once(broker: MemoryBroker) -> None:
    metrics = PrometheusMetrics()
    async with KafkaProducer(transport=broker) as producer:
        await producer.send_event(TOPIC, ev("order.created"))

    async def handle(event: dict[str, Any]) -> None:
        raise DeadLetterNow("not for us")

    consumer = KafkaConsumer(
        group_id="g-dln", topics=TOPIC, transport=broker, retry=FAST, observers=[metrics]
    )
    await consumer.start()
    task = consumer.start_background(handle)
    try:
        await wait_until(lambda: consumer.stats.dead_lettered == 1)
    finally:
        await consumer.stop()
        await task
    labels = {"group": "g-dln", "topic": TOPIC, "event_type": "order.created", "tenant": "acme"}
    assert sample(metrics, "eventbus_events_dead_lettered_total", **labels) == 1
    assert sample(metrics, "eventbus_events_retried_total", **labels) == 0
