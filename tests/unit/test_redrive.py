"""Redrive on the in-memory broker: reading, filtering and replaying dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from eventbus import BaseEvent, KafkaSettings, MessageContext, RetryPolicy, encode_event
from eventbus import headers as h
from eventbus._codec import header_value
from eventbus._deadletter import Failure, dead_letter_headers
from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    ProducerConfig,
    Record,
    TopicPartition,
)
from eventbus.cli import app as cli_app
from eventbus.errors import BrokerError, ConfigurationError
from eventbus.inbox import record_event_id
from eventbus.redrive import (
    REPLAY_AT,
    REPLAY_COUNT,
    REPLAY_FROM,
    REPLAY_PREVIOUS_ATTEMPTS,
    DeadLetter,
    DeadLetterFilter,
    UnknownTopicError,
    parse_time,
    read_dead_letters,
    replay,
    replay_headers,
    select_offsets,
)
from eventbus.testing import MemoryBroker
from eventbus.testing._broker import MemoryAdmin, MemoryConsumer, MemoryProducer
from tests.conftest import Harness, wait_until

FAST = RetryPolicy(attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter_s=0)
T0 = datetime(2025, 11, 25, 18, 0, tzinfo=UTC)


def event(n: int, etype: str = "employee.updated", tenant: str | None = "acme") -> BaseEvent:
    return BaseEvent(event_type=etype, data={"n": n}, tenant_id=tenant)


def write_dead_letter(
    broker: MemoryBroker,
    dlq: str,
    *,
    topic: str = "employee-queue",
    n: int = 0,
    etype: str = "employee.updated",
    tenant: str | None = "acme",
    key: bytes | None = b"emp-0",
    error: BaseException | None = None,
    attempts: int = 3,
    failed_at: datetime = T0,
    offset: int = 0,
    extra_headers: Sequence[tuple[str, bytes]] = (),
) -> Record:
    """Write one dead letter as the consumer would, with a chosen failure time."""
    value, headers = encode_event(event(n, etype, tenant))
    original = Record(topic, 0, offset, key, value, (*headers, *extra_headers))
    failure = Failure(error or RuntimeError(f"boom {n}"), attempts, "handler", "svc-group")
    dlq_headers = [
        (k, failed_at.isoformat().replace("+00:00", "Z").encode() if k == h.DLQ_FAILED_AT else v)
        for k, v in dead_letter_headers(original, failure)
    ]
    md = broker.append(dlq, value, key, dlq_headers, None)
    return broker.topics[dlq][md.partition][md.offset]


def settings(**kw: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="memory:0", broker_profile="memory", **kw)


async def read(broker: Any, dlq: str, **kw: Any) -> list[DeadLetter]:
    return await read_dead_letters(dlq, settings=settings(), transport=broker, **kw)


async def dead_letter_by_consumer(memory: Harness, failing: set[int]) -> tuple[str, str]:
    """Publish events 0..9 keyed emp-N; the handler fails for ``failing``; return topics."""
    topic = await memory.topic(partitions=2)
    async with memory.producer() as p:
        for n in range(10):
            assert await p.send_event(
                topic, event(n, tenant="acme" if n % 2 else "globex"), key=f"emp-{n}"
            )
    consumer = memory.consumer([topic], retry=FAST)

    async def handle(msg: dict[str, Any]) -> None:
        n = msg["data"]["n"]
        if n in failing:
            raise (KeyError if n == max(failing) else RuntimeError)(f"boom {n}")

    await consumer.start()
    task = consumer.start_background(handle)
    await wait_until(lambda: consumer.stats.processed + consumer.stats.dead_lettered == 10)
    await consumer.stop()
    await task
    return topic, topic.removesuffix("-queue") + "-dlq"


# -- reading ---------------------------------------------------------------------------------


async def test_reads_what_a_failing_consumer_dead_lettered(memory: Harness) -> None:
    before = datetime.now(UTC)
    topic, dlq = await dead_letter_by_consumer(memory, {2, 5, 8})
    letters = await read(memory.memory, dlq)
    assert sorted(d.key_text or "" for d in letters) == ["emp-2", "emp-5", "emp-8"]
    assert memory.memory is not None
    originals = {r.key: r for r in memory.memory.records(topic)}
    for d in letters:
        src = originals[d.key]
        assert (d.original_topic, d.original_partition, d.original_offset) == (
            topic,
            src.partition,
            src.offset,
        )
        assert d.original == f"{topic}:{src.partition}@{src.offset}"
        assert d.value == src.value
        assert d.event_type == "employee.updated"
        assert d.event_id == header_value(src.headers, h.EVENT_ID)
        assert d.reason == "handler"
        assert d.attempts == 2
        assert d.consumer_group is not None
        assert before - timedelta(seconds=1) <= d.failed_at <= datetime.now(UTC)
        assert d.first_failed_at is not None
        assert d.original_headers == list(src.headers)
        assert d.replay_count == 0
    by_key = {d.key_text: d for d in letters}
    assert by_key["emp-2"].exception_type == "RuntimeError"
    assert by_key["emp-2"].exception_message == "boom 2"
    assert by_key["emp-8"].exception_type == "KeyError"
    assert (by_key["emp-5"].tenant_id, by_key["emp-2"].tenant_id) == ("acme", "globex")


@pytest.fixture
def broker() -> MemoryBroker:
    b = MemoryBroker()
    write_dead_letter(b, "x-dlq", n=0, key=b"emp-0", failed_at=T0)
    write_dead_letter(
        b,
        "x-dlq",
        n=1,
        key=b"emp-1",
        topic="leave-queue",
        etype="leave.approved",
        failed_at=T0 + timedelta(hours=1),
    )
    write_dead_letter(
        b,
        "x-dlq",
        n=2,
        key=b"emp-2",
        error=KeyError("k"),
        tenant="globex",
        failed_at=T0 + timedelta(hours=2),
    )
    write_dead_letter(
        b,
        "x-dlq",
        n=3,
        key=None,
        topic="leave-queue",
        etype="leave.rejected",
        error=ValueError("v"),
        tenant=None,
        failed_at=T0 + timedelta(hours=3),
    )
    return b


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({}, [0, 1, 2, 3]),
        ({"original_topic": "leave-queue"}, [1, 3]),
        ({"original_topic": "leave-*"}, [1, 3]),
        ({"original_topic": "nope-queue"}, []),
        ({"event_type": "leave.approved"}, [1]),
        ({"event_type": "leave.*"}, [1, 3]),
        ({"exception_type": "RuntimeError"}, [0, 1]),
        ({"exception_type": "KeyError"}, [2]),
        ({"key": "emp-2"}, [2]),
        ({"key": b"emp-1"}, [1]),
        ({"key": "emp-"}, []),
        ({"tenant_id": "acme"}, [0, 1]),
        ({"tenant_id": "globex"}, [2]),
        ({"original_topic": "leave-queue", "exception_type": "RuntimeError"}, [1]),
        ({"tenant_id": "acme", "key": "emp-2"}, []),
    ],
)
async def test_each_filter_and_their_conjunction(
    broker: MemoryBroker, criteria: dict[str, Any], expected: list[int]
) -> None:
    letters = await read(broker, "x-dlq", filters=DeadLetterFilter(**criteria))
    assert [d.dlq_offset for d in letters] == expected


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (T0 + timedelta(hours=1), None, [1, 2, 3]),  # since is inclusive
        (None, T0 + timedelta(hours=2), [0, 1]),  # until is exclusive
        (T0 + timedelta(minutes=30), T0 + timedelta(hours=2, minutes=30), [1, 2]),
        (datetime(2025, 11, 25, 19, 0), None, [1, 2, 3]),  # naive is UTC
        (datetime(2025, 11, 25, 21, 0, tzinfo=UTC) + timedelta(hours=1), None, []),
        (datetime.fromisoformat("2025-11-25T20:30:00+02:00"), None, [1, 2, 3]),
    ],
)
async def test_time_range_compares_failed_at(
    broker: MemoryBroker, since: datetime | None, until: datetime | None, expected: list[int]
) -> None:
    letters = await read(broker, "x-dlq", filters=DeadLetterFilter(since=since, until=until))
    assert [d.dlq_offset for d in letters] == expected


def test_a_time_range_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be before"):
        DeadLetterFilter(since=T0, until=T0 - timedelta(seconds=1))


async def test_limit_keeps_the_first_matches(broker: MemoryBroker) -> None:
    assert [d.dlq_offset for d in await read(broker, "x-dlq", limit=2)] == [0, 1]
    only_leave = await read(
        broker, "x-dlq", limit=1, filters=DeadLetterFilter(original_topic="leave-queue")
    )
    assert [d.dlq_offset for d in only_leave] == [1]
    assert await read(broker, "x-dlq", limit=0) == []
    with pytest.raises(ConfigurationError, match="limit"):
        await read(broker, "x-dlq", limit=-1)


async def test_empty_topic_and_empty_partitions() -> None:
    b = MemoryBroker()
    b.create_topic("empty-dlq", partitions=3)
    assert await read(b, "empty-dlq") == []
    b.create_topic("some-dlq", partitions=4)
    b.append("some-dlq", b"{}", None, [], 2)
    b.append("some-dlq", b"{}", None, [], 2)
    letters = await read(b, "some-dlq")
    assert [(d.dlq_partition, d.dlq_offset) for d in letters] == [(2, 0), (2, 1)]
    assert letters[0].original_topic is None  # not a dead-letter record: parsed leniently
    assert letters[0].original == "?"


async def test_records_from_every_partition_in_partition_then_offset_order() -> None:
    b = MemoryBroker()
    b.create_topic("p-dlq", partitions=3)
    for key in (b"a", b"b", b"c", b"d", b"e", b"f"):
        write_dead_letter(b, "p-dlq", key=key)
    letters = await read(b, "p-dlq")
    assert len(letters) == 6
    positions = [(d.dlq_partition, d.dlq_offset) for d in letters]
    assert positions == sorted(positions)
    assert len({d.dlq_partition for d in letters}) > 1


class _Wrapped:
    """A MemoryBroker transport whose consumer can be tampered with."""

    name = "wrapped"

    def __init__(self, broker: MemoryBroker, make: Any) -> None:
        self.broker = broker
        self.make = make

    def producer(self, config: ProducerConfig) -> MemoryProducer:
        return self.broker.producer(config)

    def consumer(self, config: ConsumerConfig) -> ConsumerTransport:
        inner: ConsumerTransport = self.broker.consumer(config)
        return self.make(inner)

    def admin(self) -> MemoryAdmin:
        return self.broker.admin()


class _Delegate:
    def __init__(self, inner: MemoryConsumer) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_reading_stops_at_the_high_watermark_of_when_it_began(
    broker: MemoryBroker,
) -> None:
    class AppendWhileReading(_Delegate):
        async def getmany(self, timeout_ms: int, max_records: int) -> list[Record]:
            write_dead_letter(broker, "x-dlq", n=99, key=b"late")  # dead-lettered meanwhile
            got = await self.inner.getmany(timeout_ms, max_records)
            assert got[-1].key == b"late"  # fetched, and must be left out
            return got

    letters = await read(_Wrapped(broker, AppendWhileReading), "x-dlq")
    assert [d.dlq_offset for d in letters] == [0, 1, 2, 3]
    assert len(broker.records("x-dlq")) > 4
    again = await read(broker, "x-dlq")  # a new call sees them
    assert len(again) == len(broker.records("x-dlq"))


async def test_partitions_whose_tail_holds_no_records_settle(broker: MemoryBroker) -> None:
    class MarkerAtTheEnd(_Delegate):  # e.g. a transaction commit marker after the last record
        def highwater(self, tp: TopicPartition) -> int | None:
            hw = self.inner.highwater(tp)
            return None if hw is None else hw + 1

    loop = asyncio.get_running_loop()
    started = loop.time()
    letters = await read(_Wrapped(broker, MarkerAtTheEnd), "x-dlq", settle_s=0.3)
    assert [d.dlq_offset for d in letters] == [0, 1, 2, 3]
    assert 0.3 <= loop.time() - started < 5


async def test_reading_gives_up_after_the_timeout_with_a_clear_error(
    broker: MemoryBroker,
) -> None:
    class NeverAssigned(_Delegate):
        def assignment(self) -> set[TopicPartition]:
            return set()

    with pytest.raises(BrokerError, match=r"'x-dlq' did not reach its end within 0.3s: 1 of 1"):
        await read(_Wrapped(broker, NeverAssigned), "x-dlq", timeout_s=0.3)
    assert not broker.groups or all(not g.members for g in broker.groups.values())


async def test_failing_polls_are_retried_and_never_taken_for_the_end(
    broker: MemoryBroker,
) -> None:
    fails = {"left": 3}

    class Flaky(_Delegate):
        async def getmany(self, timeout_ms: int, max_records: int) -> list[Record]:
            if fails["left"]:
                fails["left"] -= 1
                raise RuntimeError("connection reset")
            return await self.inner.getmany(timeout_ms, max_records)

    letters = await read(_Wrapped(broker, Flaky), "x-dlq", settle_s=0.1)
    assert [d.dlq_offset for d in letters] == [0, 1, 2, 3]

    fails["left"] = 1_000
    with pytest.raises(BrokerError, match=r"within 1s: .*last error: RuntimeError: connection"):
        await read(_Wrapped(broker, Flaky), "x-dlq", settle_s=0.1, timeout_s=1)


async def test_unknown_topic_is_a_clear_error_naming_the_dead_letter_topics(
    broker: MemoryBroker,
) -> None:
    with pytest.raises(UnknownTopicError, match=r"'nope-dlq' does not exist.*x-dlq"):
        await read(broker, "nope-dlq")
    assert "nope-dlq" not in broker.topics  # reading did not create it


async def test_an_unreachable_broker_is_a_broker_error(broker: MemoryBroker) -> None:
    broker.go_down()
    with pytest.raises(BrokerError, match="down"):
        await read(broker, "x-dlq")


# -- replaying -------------------------------------------------------------------------------


async def test_replay_restores_value_key_and_headers_plus_markers(memory: Harness) -> None:
    topic, dlq = await dead_letter_by_consumer(memory, {2, 5, 8})
    b = memory.memory
    assert b is not None
    originals = {r.key: r for r in b.records(topic)}
    letters = await read(b, dlq)
    calls: list[tuple[int, int]] = []
    before = datetime.now(UTC)
    result = await replay(
        letters, settings=settings(), transport=b, progress=lambda d, t: calls.append((d, t))
    )
    assert (result.replayed, result.failed, result.total, result.ok) == (3, 0, 3, True)
    assert calls[0] == (0, 3)
    assert calls[-1] == (3, 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(b.records(topic)) == 13
    by_key = {r.key: r for r in b.records(topic) if header_value(r.headers, REPLAY_COUNT)}
    assert set(by_key) == {b"emp-2", b"emp-5", b"emp-8"}
    for letter, outcome in zip(letters, result.outcomes, strict=True):
        assert outcome.ok
        assert outcome.metadata is not None
        assert outcome.topic == topic
        rec = b.topics[topic][outcome.metadata.partition][outcome.metadata.offset]
        src = originals[letter.key]
        assert rec.key == src.key
        assert rec.partition == src.partition  # the key maps to the same partition
        assert rec.value == src.value
        assert not [k for k, _ in rec.headers if k.startswith("dlq.")]
        assert rec.headers[: len(src.headers)] == src.headers  # originals kept, in order
        assert header_value(rec.headers, REPLAY_COUNT) == "1"
        assert header_value(rec.headers, REPLAY_FROM) == letter.ref
        assert header_value(rec.headers, REPLAY_PREVIOUS_ATTEMPTS) == "2"
        at = datetime.fromisoformat(header_value(rec.headers, REPLAY_AT) or "")
        assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
        # the inbox deduplicates by event id: unchanged, so an applied event is skipped
        assert header_value(rec.headers, h.EVENT_ID) == header_value(src.headers, h.EVENT_ID)
        assert record_event_id(rec) == record_event_id(src)


async def test_replaying_a_replayed_dead_letter_increments_replay_count(
    memory: Harness,
) -> None:
    topic = await memory.topic(partitions=1)
    dlq = topic.removesuffix("-queue") + "-dlq"
    async with memory.producer() as p:
        assert await p.send_event(topic, event(1), key="emp-1")
    consumer = memory.consumer([topic], retry=FAST)
    seen: list[str | None] = []

    async def always_fails(msg: dict[str, Any], ctx: MessageContext) -> None:
        seen.append(ctx.header(REPLAY_COUNT))
        raise RuntimeError("still broken")

    b = memory.memory
    assert b is not None
    await consumer.start()
    task = consumer.start_background(always_fails)
    try:
        await wait_until(lambda: len(b.records(dlq)) == 1)
        (first,) = await read(b, dlq)
        assert first.replay_count == 0
        assert (await replay([first], settings=settings(), transport=b)).replayed == 1
        await wait_until(lambda: len(b.records(dlq)) == 2)  # it failed again
        second = (await read(b, dlq))[1]
        assert second.replay_count == 1
        assert header_value(second.headers, REPLAY_FROM) == first.ref
        assert (await replay([second], settings=settings(), transport=b)).replayed == 1
        await wait_until(lambda: len(b.records(dlq)) == 3)
    finally:
        await consumer.stop()
        await task
    assert seen == [None, None, "1", "1", "2", "2"]  # 2 attempts per delivery
    third = (await read(b, dlq))[2]
    assert third.replay_count == 2
    assert header_value(replay_headers(third), REPLAY_COUNT) == "3"
    assert len([k for k, _ in replay_headers(third) if k == REPLAY_COUNT]) == 1
    assert third.event_id == first.event_id


async def test_an_inbox_skips_a_replay_of_an_event_it_already_applied(memory: Harness) -> None:
    """The same event was delivered twice; the first copy failed, the second succeeded."""
    topic = await memory.topic(partitions=1)
    dlq = topic.removesuffix("-queue") + "-dlq"
    twice = event(7)
    async with memory.producer() as p:
        assert await p.send_event(topic, twice, key="emp-7")
        assert await p.send_event(topic, twice, key="emp-7")  # e.g. a producer retry
    applied: dict[str, int] = {}
    skipped: list[str] = []
    deliveries = 0

    async def idempotent(msg: dict[str, Any], ctx: MessageContext) -> None:
        nonlocal deliveries
        deliveries += 1
        event_id = ctx.header(h.EVENT_ID) or ""
        if event_id in applied:  # what eventbus.inbox.Inbox does, in a database
            skipped.append(event_id)
            return
        if deliveries <= 2:  # the first copy fails both attempts
            raise RuntimeError("database was down")
        applied[event_id] = msg["data"]["n"]

    consumer = memory.consumer([topic], retry=FAST)
    b = memory.memory
    assert b is not None
    await consumer.start()
    task = consumer.start_background(idempotent)
    try:
        await wait_until(lambda: len(b.records(dlq)) == 1 and len(applied) == 1)
        result = await replay(await read(b, dlq), settings=settings(), transport=b)
        assert result.replayed == 1
        await wait_until(lambda: len(skipped) == 1)
    finally:
        await consumer.stop()
        await task
    assert applied == {str(twice.event_id): 7}  # applied once, not again by the replay
    assert skipped == [str(twice.event_id)]


async def test_replay_to_another_topic(broker: MemoryBroker) -> None:
    broker.create_topic("retry-here")
    letters = await read(broker, "x-dlq")
    result = await replay(letters, settings=settings(), transport=broker, target_topic="retry-here")
    assert result.replayed == 4
    assert {o.topic for o in result.outcomes} == {"retry-here"}
    assert [r.value for r in broker.records("retry-here")] == [d.value for d in letters]


async def test_dry_run_sends_nothing_but_checks_targets(broker: MemoryBroker) -> None:
    broker.create_topic("employee-queue")
    broker.create_topic("leave-queue")
    letters = await read(broker, "x-dlq")
    result = await replay(letters, settings=settings(), transport=broker, dry_run=True)
    assert (result.replayed, result.failed, result.dry_run, result.total) == (0, 0, True, 4)
    assert [o.topic for o in result.outcomes] == [
        "employee-queue",
        "leave-queue",
        "employee-queue",
        "leave-queue",
    ]
    assert not any(o.ok for o in result.outcomes)
    assert broker.records("employee-queue") == broker.records("leave-queue") == []


async def test_missing_target_topic_fails_before_sending_anything(broker: MemoryBroker) -> None:
    broker.create_topic("employee-queue")  # leave-queue is missing
    with pytest.raises(UnknownTopicError, match="'leave-queue' does not exist"):
        await replay(await read(broker, "x-dlq"), settings=settings(), transport=broker)
    assert broker.records("employee-queue") == []


async def test_records_without_an_original_topic_need_a_target() -> None:
    b = MemoryBroker()
    b.append("odd-dlq", b"{}", b"k", [], None)
    letters = await read(b, "odd-dlq")
    with pytest.raises(ConfigurationError, match=r"no dlq.original_topic header.*odd-dlq:0:0"):
        await replay(letters, settings=settings(), transport=b)
    b.create_topic("somewhere")
    assert (await replay(letters, settings=settings(), transport=b, target_topic="somewhere")).ok


async def test_unacknowledged_records_are_counted_failed_never_replayed(
    broker: MemoryBroker,
) -> None:
    broker.create_topic("employee-queue")
    broker.create_topic("leave-queue")
    letters = await read(broker, "x-dlq")
    broker.fail_sends = 1  # the first send is refused by the broker
    result = await replay(letters, settings=settings(), transport=broker)
    assert (result.replayed, result.failed, result.ok) == (3, 1, False)
    failed = [o for o in result.outcomes if not o.ok]
    assert [o.dead_letter.dlq_offset for o in failed] == [0]
    assert failed[0].error is not None
    assert "injected send failure" in failed[0].error
    assert failed[0].metadata is None
    assert len(broker.records("employee-queue")) + len(broker.records("leave-queue")) == 3


async def test_acknowledgements_that_never_come_count_as_failed(broker: MemoryBroker) -> None:
    broker.create_topic("employee-queue")
    broker.create_topic("leave-queue")

    class Silent(MemoryProducer):
        async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            return asyncio.get_running_loop().create_future()  # never resolved

    class SilentBroker(_Wrapped):
        def producer(self, config: ProducerConfig) -> MemoryProducer:
            return Silent(self.broker)

    letters = await read(broker, "x-dlq")
    result = await replay(
        letters,
        settings=settings(),
        transport=SilentBroker(broker, lambda c: c),
        delivery_timeout_s=0.2,
    )
    assert (result.replayed, result.failed) == (0, 4)
    assert all(o.error == "no acknowledgement within 0.2s" for o in result.outcomes)


async def test_replay_of_nothing_does_not_connect() -> None:
    b = MemoryBroker()
    b.go_down()
    result = await replay([], settings=settings(), transport=b)
    assert (result.replayed, result.failed, result.total) == (0, 0, 0)


def test_replay_headers_replace_earlier_markers() -> None:
    b = MemoryBroker()
    rec = write_dead_letter(
        b,
        "x-dlq",
        attempts=4,
        extra_headers=[
            (REPLAY_COUNT, b"2"),
            (REPLAY_AT, b"old"),
            (REPLAY_FROM, b"x-dlq:0:9"),
            ("retry.tier", b"2"),  # it last failed in a retry tier
            ("retry.due_at", b"1764093600.000"),
        ],
    )
    letter = DeadLetter.from_record(rec)
    out = replay_headers(letter, now=T0)
    names = [k for k, _ in out]
    assert names.count(REPLAY_COUNT) == names.count(REPLAY_AT) == names.count(REPLAY_FROM) == 1
    assert not [k for k in names if k.startswith(("dlq.", "retry."))]
    assert names[: names.index(REPLAY_COUNT)] == [k for k, _ in encode_event(event(0))[1]]
    assert dict(out)[REPLAY_COUNT] == b"3"
    assert dict(out)[REPLAY_AT] == b"2025-11-25T18:00:00Z"
    assert dict(out)[REPLAY_FROM] == b"x-dlq:0:0"
    assert dict(out)[REPLAY_PREVIOUS_ATTEMPTS] == b"4"


# -- parsing and selecting -------------------------------------------------------------------


def test_dead_letter_view_falls_back_to_the_envelope_and_record_time() -> None:
    ev = event(3, tenant="acme")
    value, _ = encode_event(ev)
    rec = Record(
        "x-dlq", 0, 5, None, value, ((h.DLQ_ORIGINAL_TOPIC, b"t-queue"),), 1_700_000_000_000
    )
    d = DeadLetter.from_record(rec)
    assert (d.event_type, d.event_id, d.tenant_id) == ("employee.updated", str(ev.event_id), "acme")
    assert d.failed_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert (d.attempts, d.original_partition, d.original) == (0, None, "t-queue:?@?")
    as_json = json.loads(json.dumps(d.to_dict()))
    assert as_json["value"]["data"] == {"n": 3}
    assert as_json["headers"] == {"dlq.original_topic": "t-queue"}
    binary = DeadLetter.from_record(replace(rec, value=b"\xff\x00", headers=(("b", b"\xff"),)))
    assert binary.to_dict()["value"] == "\ufffd\x00"
    assert binary.to_dict()["headers"] == {"b": "base64:/w=="}
    assert binary.event_type is None


def test_parse_time() -> None:
    assert parse_time("2025-11-25") == datetime(2025, 11, 25, tzinfo=UTC)
    assert parse_time("2025-11-25T18:00:00Z") == T0
    assert parse_time("2025-11-25T18:00") == T0
    assert parse_time("2025-11-25T20:00:00+02:00") == T0
    assert parse_time("2h", now=T0) == T0 - timedelta(hours=2)
    assert parse_time("30m", now=T0) == T0 - timedelta(minutes=30)
    assert parse_time("7d", now=T0) == T0 - timedelta(days=7)
    for bad in ("yesterday", "", "2025-13-01", "5 parsecs"):
        with pytest.raises(ConfigurationError, match="is not a time"):
            parse_time(bad)


def test_select_offsets() -> None:
    def at(p: int, o: int) -> DeadLetter:
        return DeadLetter.from_record(Record("x-dlq", p, o, None, b"{}"))

    letters = [at(0, 0), at(0, 1), at(1, 0), at(1, 5)]
    assert select_offsets(letters, ["1"]) == [letters[1]]
    assert select_offsets(letters, [5, "1:0", (0, 0)]) == [letters[0], letters[2], letters[3]]
    assert select_offsets(letters, ["0"], partition=1) == [letters[2]]
    assert select_offsets(letters, ["1", "1"]) == [letters[1]]
    with pytest.raises(ConfigurationError, match=r"offset 0 is in partitions 0, 1: give it as"):
        select_offsets(letters, ["0"])
    with pytest.raises(ConfigurationError, match="no dead letter at offset 9"):
        select_offsets(letters, ["9"])
    with pytest.raises(ConfigurationError, match="no dead letter at partition 1 offset 1"):
        select_offsets(letters, ["1:1"])
    with pytest.raises(ConfigurationError, match="is not an offset"):
        select_offsets(letters, ["last"])


# -- the command line on the in-memory broker -------------------------------------------------


@pytest.fixture
def cli(broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Make the CLI talk to ``broker``."""
    monkeypatch.setattr("eventbus.redrive.make_transport", lambda _s: broker)
    monkeypatch.setenv("KAFKA_BROKER_PROFILE", "memory")
    monkeypatch.setattr("eventbus.cli.console", Console(width=200))
    monkeypatch.setattr("eventbus.cli.err", Console(stderr=True, width=200))
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(cli_app, ["dlq", *args])


def test_cli_list_table_and_json(cli: CliRunner) -> None:
    out = invoke(cli, "list", "x-dlq", "--topic", "leave-queue")
    assert out.exit_code == 0, out.output
    assert "x-dlq: 2 dead letter(s)" in out.stdout
    assert "leave-queue:0@0" in out.stdout
    assert "leave.approved" in out.stdout
    assert "2025-11-25 19:00:00" in out.stdout
    assert "employee.updated" not in out.stdout
    as_json = json.loads(invoke(cli, "list", "x-dlq", "--json", "--exception", "KeyError").stdout)
    assert [d["dlq_offset"] for d in as_json] == [2]
    assert as_json[0]["headers"]["dlq.exception_type"] == "KeyError"
    none = invoke(cli, "list", "x-dlq", "--tenant", "nobody")
    assert none.exit_code == 0
    assert "no dead letters in x-dlq match" in none.stdout


def test_cli_show(cli: CliRunner) -> None:
    out = invoke(cli, "show", "x-dlq", "2")
    assert out.exit_code == 0, out.output
    for text in ("x-dlq:0:2", "dlq.exception_type", "KeyError", "globex", '"n": 2'):
        assert text in out.stdout
    missing = invoke(cli, "show", "x-dlq", "9")
    assert missing.exit_code == 1
    assert "x-dlq: no dead letter at offset 9" in missing.stderr


def test_cli_replay_dry_run_selected_offsets_and_confirmation(
    cli: CliRunner, broker: MemoryBroker
) -> None:
    broker.create_topic("employee-queue")
    broker.create_topic("leave-queue")
    dry = invoke(cli, "replay", "x-dlq", "--offset", "0", "--offset", "2", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: would replay 2 to employee-queue" in dry.stdout
    assert broker.records("employee-queue") == []
    refused = cli.invoke(cli_app, ["dlq", "replay", "x-dlq", "--offset", "0"], input="n\n")
    assert refused.exit_code == 1
    assert "not replayed" in refused.stderr
    assert broker.records("employee-queue") == []
    done = invoke(cli, "replay", "x-dlq", "--type", "leave.*", "--yes")
    assert done.exit_code == 0, done.output
    assert "replayed 2 of 2 dead letter(s) to leave-queue (0 failed)" in done.stdout
    assert len(broker.records("leave-queue")) == 2


def test_cli_replay_reports_failures_with_exit_1(cli: CliRunner, broker: MemoryBroker) -> None:
    broker.create_topic("employee-queue")
    broker.fail_sends = 1
    out = invoke(cli, "replay", "x-dlq", "--topic", "employee-queue", "--yes")
    assert out.exit_code == 1
    assert "replayed 1 of 2 dead letter(s) to employee-queue (1 failed)" in out.stdout
    assert "failed: x-dlq:0:0 -> employee-queue: PublishError: injected send failure" in out.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["list", "x-dlq", "--since", "yesterday"], 2, "--since: 'yesterday' is not a time"),
        (["list", "x-dlq", "--until", "soon"], 2, "--until: 'soon' is not a time"),
        (["list", "x-dlq", "--since", "1h", "--until", "2h"], 2, "must be before"),
        (["list", "nope-dlq"], 1, "topic 'nope-dlq' does not exist"),
        (["replay", "x-dlq", "--offset", "x", "--yes"], 1, "'x' is not an offset"),
        (["list", "x-dlq", "--broker-profile", "kafak"], 1, "invalid Kafka settings"),
        (["replay", "x-dlq", "--to", "nowhere", "--yes"], 1, "topic 'nowhere' does not exist"),
    ],
)
def test_cli_user_mistakes_are_one_line(
    cli: CliRunner, args: list[str], code: int, message: str
) -> None:
    out = invoke(cli, *args)
    assert out.exit_code == code, out.output
    assert message in out.stderr
    assert out.stderr.startswith("error: ")
    assert out.exception is None or isinstance(out.exception, SystemExit)
