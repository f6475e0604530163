"""Producer and consumer behaviour on the in-memory broker, and bad input of every kind."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest

from eventbus import (
    BaseEvent,
    BrokerUnavailableError,
    ConfigurationError,
    EventRegistry,
    KafkaConsumer,
    KafkaProducer,
    MessageContext,
    RetryPolicy,
    SerializationError,
)
from eventbus import headers as h
from eventbus._codec import header_value
from eventbus.errors import LifecycleError
from tests.conftest import Harness, wait_until

FAST = RetryPolicy(attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter_s=0)


class Good(BaseEvent):
    data: dict[str, int]


def ev(etype: str = "thing.happened", **data: Any) -> BaseEvent:
    return BaseEvent(event_type=etype, data=data)


async def test_send_event_reports_false_when_broker_is_gone(
    memory: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    p = memory.producer()
    await p.start()
    assert memory.memory is not None
    memory.memory.go_down()
    with caplog.at_level(logging.ERROR, logger="eventbus.producer"):
        assert await p.send_event("x-queue", ev()) is False
        assert await p.send_raw("x-queue", {"a": 1}) is False
    assert "failed to send event" in caplog.text
    memory.memory.come_back()
    assert await p.send_event("x-queue", ev()) is True


async def test_send_before_start_is_false_and_publish_raises(memory: Harness) -> None:
    p = memory.producer()
    assert await p.send_event("x-queue", ev()) is False
    with pytest.raises(LifecycleError, match=r"call await producer\.start"):
        await p.publish("x-queue", ev())


async def test_oversize_event_is_a_clear_error_on_send(memory: Harness) -> None:
    async with memory.producer(max_message_bytes=10_000) as p:
        with pytest.raises(SerializationError, match="over the 10000-byte limit"):
            await p.send_event("x-queue", ev(blob="x" * 20_000))
        with pytest.raises(SerializationError):
            await p.send_batch("x-queue", [ev(), ev(blob="y" * 20_000)])
        assert memory.memory is not None
        assert memory.memory.records("x-queue") == []  # nothing half-sent


async def test_unreachable_broker_fails_fast_with_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    started = time.monotonic()
    p = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", connect_timeout_s=3)
    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}"):
        await p.start()
    assert not p.is_started
    c = KafkaConsumer(f"127.0.0.1:{port}", "g", ["t"], connect_timeout_s=3)
    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}"):
        await c.start()
    assert time.monotonic() - started < 30  # bounded by connect_timeout_s, never a hang


def test_consumer_needs_group_and_topics() -> None:
    with pytest.raises(ConfigurationError, match="group_id"):
        KafkaConsumer(topics=["t"])
    with pytest.raises(ConfigurationError, match="topic"):
        KafkaConsumer(group_id="g", topics=[])


async def test_handler_signatures_are_checked(memory: Harness) -> None:
    c = memory.consumer(["x-queue"])

    def not_async(msg: dict[str, Any]) -> None: ...

    async def bad_type(msg: int) -> None: ...

    with pytest.raises(ConfigurationError, match="must be async"):
        c.register("a.b", not_async)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not supported"):
        c.register("a.b", bad_type)
    await c.start()
    with pytest.raises(ConfigurationError, match="needs a handler"):
        await c.consume()


async def test_typed_handler_dead_letters_unknown_types_wrong_payloads_and_empty_values(
    memory: Harness,
) -> None:
    registry = EventRegistry()
    registry.register(Good, event_type="good.one")
    async with memory.producer() as p:
        assert await p.send_event("in-queue", ev("good.one", n=1))
        assert await p.send_event("in-queue", ev("unknown.one", n=2))
        assert await p.send_event("in-queue", ev("good.one", n="not-int"))  # type: ignore[arg-type]
        assert await p.send_raw("in-queue", b"")
        assert await p.send_raw("in-queue", b"not json at all")
    got: list[Good] = []

    async def handle(event: Good) -> None:
        got.append(event)

    c = memory.consumer(["in-queue"], registry=registry)
    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: c.stats.dead_lettered == 4)
    await c.stop()
    await task
    assert [e.data for e in got] == [{"n": 1}]
    assert memory.memory is not None
    reasons = [
        header_value(r.headers, h.DLQ_EXCEPTION_TYPE) for r in memory.memory.records("in-dlq")
    ]
    assert reasons == ["UnknownEventTypeError", "DecodeError", "DecodeError", "DecodeError"]


async def test_dict_handler_accepts_any_json_object_like_seed_dlq_records(memory: Harness) -> None:
    async with memory.producer() as p:
        assert await p.send_raw(
            "notification-dlq", {"original_message": {"a": 1}, "error": "boom", "timestamp": "t"}
        )
    got: list[dict[str, Any]] = []
    c = memory.consumer(["notification-dlq"])

    async def handle(msg: dict[str, Any]) -> None:
        got.append(msg)

    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: len(got) == 1)
    await c.stop()
    await task
    assert got == [{"original_message": {"a": 1}, "error": "boom", "timestamp": "t"}]


async def test_middleware_and_context(memory: Harness) -> None:
    async with memory.producer() as p:
        assert await p.send_event("mw-queue", ev(n=1), key="k")
    order: list[str] = []
    seen: list[MessageContext] = []

    async def outer(ctx: MessageContext, call_next: Any) -> None:
        order.append("outer-in")
        ctx.state["session"] = "db-session"
        await call_next()
        order.append("outer-out")

    async def inner(ctx: MessageContext, call_next: Any) -> None:
        order.append("inner")
        await call_next()

    async def handle(msg: dict[str, Any], ctx: MessageContext) -> None:
        order.append("handler")
        seen.append(ctx)

    c = memory.consumer(["mw-queue"])
    c.use(outer)
    c.use(inner)
    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: c.stats.processed == 1)
    await c.stop()
    await task
    assert order == ["outer-in", "inner", "handler", "outer-out"]
    (ctx,) = seen
    assert ctx.state["session"] == "db-session"
    assert ctx.key == b"k"
    assert ctx.attempt == 1
    assert ctx.header(h.EVENT_TYPE) == "thing.happened"


async def test_a_dead_letter_write_waits_for_the_broker_and_loses_nothing(
    memory: Harness,
) -> None:
    assert memory.memory is not None
    broker = memory.memory
    async with memory.producer() as p:
        assert await p.send_event("p-queue", ev(n=1))
    failing = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        raise RuntimeError("poison")

    async def down_before_dead_letter(ctx: MessageContext, call_next: Any) -> None:
        try:
            await call_next()
        finally:
            if ctx.attempt == FAST.attempts:  # last attempt: the dead-letter write comes next
                broker.go_down()
                failing.set()

    c = memory.consumer(["p-queue"], retry=FAST)
    c.use(down_before_dead_letter)
    await c.start()
    task = c.start_background(handle)
    await asyncio.wait_for(failing.wait(), 10)
    assert broker.records("p-dlq") == []
    broker.come_back()
    await wait_until(lambda: len(broker.records("p-dlq")) == 1)
    await c.stop()
    await task
    assert broker.committed(c.group_id, next(iter(broker.groups[c.group_id].committed))) == 1


async def test_consumer_keeps_running_after_handler_errors(memory: Harness) -> None:
    async with memory.producer() as p:
        assert all(await p.send_batch("e-queue", [ev(n=i) for i in range(20)]))
    seen: list[int] = []

    async def handle(msg: dict[str, Any]) -> None:
        n = msg["data"]["n"]
        seen.append(n)
        if n % 3 == 0:
            raise KeyError(n)

    c = memory.consumer(["e-queue"], retry=FAST)
    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: c.stats.processed + c.stats.dead_lettered == 20)
    await c.stop()
    await task
    assert c.stats.dead_lettered == 7
    assert c.stats.retried == 7
    assert sorted(set(seen)) == list(range(20))


async def test_oversize_record_on_receive_is_dead_lettered(memory: Harness) -> None:
    async with memory.producer() as p:  # a producer with the broker's own, larger limit
        assert await p.send_raw("big-queue", b'{"blob": "' + b"x" * 5_000 + b'"}')
        assert await p.send_event("big-queue", ev(n=1))
    handled: list[dict[str, Any]] = []

    async def handle(msg: dict[str, Any]) -> None:
        handled.append(msg)

    c = memory.consumer(["big-queue"], max_message_bytes=1_000)
    await c.start()
    task = c.start_background(handle)
    await wait_until(lambda: c.stats.dead_lettered == 1 and len(handled) == 1)
    await c.stop()
    await task
    assert memory.memory is not None
    (dead,) = memory.memory.records("big-dlq")
    assert header_value(dead.headers, h.DLQ_REASON) == "oversize"
    assert "exceeds KAFKA_MAX_MESSAGE_BYTES" in (
        header_value(dead.headers, h.DLQ_EXCEPTION_MESSAGE) or ""
    )
