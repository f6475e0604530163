"""The transactional outbox and its relay, on SQLite and on PostgreSQL, with the memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from eventbus import KafkaProducer, SerializationError
from eventbus._codec import header_value
from eventbus.errors import ConfigurationError
from eventbus.outbox import Outbox, OutboxRelay
from eventbus.testing import MemoryBroker
from tests.conftest import wait_until
from tests.db.conftest import FakeClock, make_engine
from tests.db.helpers import (
    TOPIC,
    by_key,
    event,
    event_ids,
    eventually,
    memory_producer,
    numbers,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(default_partitions=1)


@pytest.fixture
async def producer(broker: MemoryBroker) -> AsyncIterator[KafkaProducer]:
    async with memory_producer(broker, delivery_timeout_s=5.0) as p:
        yield p


@pytest.fixture
async def outbox(engine: AsyncEngine, clock: FakeClock) -> Outbox:
    box = Outbox(clock=clock)
    await box.create_tables(engine)
    return box


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def relay_for(
    outbox: Outbox, engine: AsyncEngine, producer: KafkaProducer, **kw: object
) -> OutboxRelay:
    options: dict[str, object] = {
        "poll_interval_s": 0.01,
        "backoff_s": (0.01, 0.05),
        "cleanup_interval_s": None,
    }
    options.update(kw)
    return OutboxRelay(outbox, engine, producer, **options)  # type: ignore[arg-type]


async def drain(relay: OutboxRelay, rounds: int = 20) -> int:
    """Run cycles until one delivers nothing; return the total delivered."""
    total = 0
    for _ in range(rounds):
        delivered = await relay.run_once()
        if not delivered:
            return total
        total += delivered
    raise AssertionError(f"still delivering after {rounds} cycles")


async def test_committed_rows_are_relayed_in_id_order(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    broker: MemoryBroker,
) -> None:
    async with sessions() as session, session.begin():
        ids = [await outbox.add(session, TOPIC, event(n), key=f"emp-{n % 3}") for n in range(10)]
        await outbox.add(
            session, TOPIC, event(10, key=None), headers=[("traceparent", TRACEPARENT)]
        )
    assert ids == sorted(ids)
    assert tuple(await outbox.backlog(engine)) == (11, 0.0)

    relay = relay_for(outbox, engine, producer)
    assert await relay.run_once() == 11
    assert await relay.run_once() == 0

    records = broker.records(TOPIC)
    assert numbers(records) == list(range(11))
    assert [r.key for r in records[:3]] == [b"emp-0", b"emp-1", b"emp-2"]
    assert records[10].key is None
    assert header_value(records[0].headers, "tenant_id") == "acme"
    assert header_value(records[10].headers, "traceparent") == TRACEPARENT
    assert tuple(await outbox.backlog(engine)) == (0, 0.0)
    assert relay.stats.delivered == 11

    c = outbox.table.c
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.table).order_by(c.id))).all()
    assert all(r.delivered_at == outbox.clock() for r in rows)
    assert all(r.attempts == 1 and r.last_error is None for r in rows)
    assert [r.tenant_id for r in rows] == ["acme"] * 11
    assert rows[10].traceparent == TRACEPARENT
    assert rows[0].event_type == "leave.approved"
    assert rows[0].event_id == event_ids(records)[0]


async def test_traceparent_argument_travels_as_a_header(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    broker: MemoryBroker,
) -> None:
    async with sessions() as session, session.begin():
        await outbox.add(session, TOPIC, event(0), key="k", traceparent=TRACEPARENT)
        await outbox.add_raw(session, TOPIC, {"raw": True}, key="k", headers=[("x", b"\xff")])
    await relay_for(outbox, engine, producer).run_once()
    first, raw = broker.records(TOPIC)
    assert header_value(first.headers, "traceparent") == TRACEPARENT
    assert raw.value == b'{"raw":true}'
    assert raw.headers == (("x", b"\xff"),)  # non-UTF-8 header bytes survive the JSON column


async def test_rolled_back_rows_are_never_relayed(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    broker: MemoryBroker,
) -> None:
    class Boom(Exception):
        pass

    async def change_that_fails() -> None:
        async with sessions() as session, session.begin():
            await outbox.add(session, TOPIC, event(1), key="a")
            raise Boom

    with pytest.raises(Boom):
        await change_that_fails()
    async with sessions() as session:
        await outbox.add(session, TOPIC, event(2), key="a")
        await session.rollback()
    assert tuple(await outbox.backlog(engine)) == (0, 0.0)
    assert await relay_for(outbox, engine, producer).run_once() == 0
    assert broker.records(TOPIC) == []


async def test_an_oversize_event_fails_in_the_callers_transaction(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    outbox = Outbox(max_message_bytes=400)
    await outbox.create_tables(engine)

    async def change_with_an_oversize_event() -> None:
        async with sessions() as session, session.begin():
            await outbox.add(session, TOPIC, event(1))
            await outbox.add(session, TOPIC, event(2, key="x" * 300))

    with pytest.raises(SerializationError, match="over the 400-byte limit"):
        await change_with_an_oversize_event()
    assert (await outbox.backlog(engine)).count == 0  # the whole transaction rolled back
    async with sessions() as session, session.begin():
        await outbox.add(session, TOPIC, event(1))
    assert (await outbox.backlog(engine)).count == 1


async def test_a_failure_holds_back_its_key_and_lets_other_keys_flow(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    broker: MemoryBroker,
) -> None:
    plan = [("a", 0), ("b", 1), ("a", 2), ("b", 3), ("a", 4), (None, 5), ("c", 6)]
    async with sessions() as session, session.begin():
        for key, n in plan:
            await outbox.add(session, TOPIC, event(n), key=key)
    broker.fail_sends = 1  # the first send (a:0) fails
    relay = relay_for(outbox, engine, producer)

    assert await relay.run_once() == 4  # b:1, b:3, None:5, c:6
    assert by_key(broker.records(TOPIC)) == {b"b": [1, 3], None: [5], b"c": [6]}
    c = outbox.table.c
    async with engine.connect() as conn:
        head = (await conn.execute(select(outbox.table).where(c.id == 1))).one()
        waiting = (
            await conn.execute(select(c.id, c.attempts).where(c.delivered_at.is_(None)))
        ).all()
    assert head.attempts == 1
    assert "injected send failure" in head.last_error
    assert [tuple(r) for r in waiting] == [(1, 1), (3, 0), (5, 0)]  # a:2, a:4 never sent
    assert (await outbox.backlog(engine)).count == 3

    assert await drain(relay) == 3
    records = broker.records(TOPIC)
    assert by_key(records) == {b"a": [0, 2, 4], b"b": [1, 3], None: [5], b"c": [6]}
    assert len(set(event_ids(records))) == len(records) == 7  # each exactly once


async def test_broker_down_rows_accumulate_then_drain_exactly_once_in_order(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    broker: MemoryBroker,
    clock: FakeClock,
) -> None:
    relay = relay_for(outbox, engine, producer)
    broker.go_down()
    for batch in range(3):
        async with sessions() as session, session.begin():
            for i in range(5):
                n = batch * 5 + i
                await outbox.add(session, TOPIC, event(n), key=f"emp-{n % 4}")
        clock.advance(10)
        assert await relay.run_once() == 0
    backlog = await outbox.backlog(engine)
    assert backlog.count == 15
    assert backlog.oldest_age_s == pytest.approx(30.0)
    count, age = backlog
    assert (count, age) == (15, 30.0)

    c = outbox.table.c
    async with engine.connect() as conn:
        first = (await conn.execute(select(outbox.table).where(c.id == 1))).one()
    assert first.attempts >= 2  # tried in every cycle (alone, once the broker looked down)
    assert "memory broker is down" in first.last_error
    assert relay.stats.failed >= 3
    assert broker.records(TOPIC) == []

    async def drained() -> bool:
        return (await outbox.backlog(engine)).count == 0

    broker.come_back()
    async with relay:
        await eventually(drained, what="backlog drained")
    records = broker.records(TOPIC)
    assert sorted(numbers(records)) == list(range(15))
    assert len(set(event_ids(records))) == 15
    for key, ns in by_key(records).items():
        assert ns == sorted(ns), key  # per-key order (not a global order: keys interleave)


async def test_relay_starts_the_producer_once_the_broker_is_reachable(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    broker: MemoryBroker,
) -> None:
    broker.go_down()
    producer = memory_producer(broker)
    try:
        async with sessions() as session, session.begin():
            await outbox.add(session, TOPIC, event(1), key="a")
        async with relay_for(outbox, engine, producer) as relay:
            await wait_until(lambda: relay.stats.errors >= 2)  # backing off, not giving up
            assert not producer.is_started
            broker.come_back()
            await wait_until(lambda: len(broker.records(TOPIC)) == 1)
    finally:
        await producer.stop()


async def test_background_relay_picks_up_new_rows(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    broker: MemoryBroker,
) -> None:
    async with relay_for(outbox, engine, producer, batch_size=7, poll_interval_s=5) as relay:
        for n in range(30):
            async with sessions() as session, session.begin():
                await outbox.add(session, TOPIC, event(n), key=f"k{n % 5}")
            relay.notify()
        await wait_until(lambda: len(broker.records(TOPIC)) >= 30)
    records = broker.records(TOPIC)
    assert sorted(numbers(records)) == list(range(30))
    for key, ns in by_key(records).items():
        assert ns == sorted(ns), key  # per key; keys may overtake each other


async def test_cleanup_deletes_only_old_delivered_rows(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    clock: FakeClock,
) -> None:
    relay = relay_for(outbox, engine, producer, cleanup_after_s=3600)
    async with sessions() as session, session.begin():
        for n in range(4):
            await outbox.add(session, TOPIC, event(n), key="old")
    assert await relay.run_once() == 4  # delivered at t0

    clock.advance(1800)
    async with sessions() as session, session.begin():
        await outbox.add(session, TOPIC, event(4), key="recent")
    assert await relay.run_once() == 1  # delivered at t0 + 30 min
    async with sessions() as session, session.begin():
        await outbox.add(session, TOPIC, event(5), key="waiting")  # never relayed

    clock.advance(3600)  # t0 + 1h30: only the first four were delivered over an hour ago
    assert await relay.cleanup() == 4
    c = outbox.table.c
    async with engine.connect() as conn:
        left = (await conn.execute(select(c.key).order_by(c.id))).scalars().all()
    assert left == ["recent", "waiting"]
    assert await outbox.cleanup(engine, 3600) == 0

    clock.advance(24 * 3600)
    assert await relay.cleanup() == 1  # "recent"; "waiting" is undelivered and stays
    backlog = await outbox.backlog(engine)
    assert backlog.count == 1
    assert backlog.oldest_age_s == pytest.approx(25 * 3600)


async def test_relay_cleans_up_on_its_schedule(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    producer: KafkaProducer,
    clock: FakeClock,
) -> None:
    async with sessions() as session, session.begin():
        await outbox.add(session, TOPIC, event(0), key="a")
    relay = relay_for(outbox, engine, producer, cleanup_after_s=60, cleanup_interval_s=0.01)
    assert await relay.run_once() == 1
    clock.advance(61)

    async def rows_left() -> int:
        async with engine.connect() as conn:
            return len((await conn.execute(select(outbox.table.c.id))).all())

    async with relay:
        counts: list[int] = []

        async def check() -> bool:
            counts.append(await rows_left())
            return counts[-1] == 0

        await eventually(check, what="cleanup by the relay")


async def test_sqlite_allows_one_running_relay(
    tmp_path: object, producer: KafkaProducer, clock: FakeClock
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/one.sqlite3")
    try:
        outbox = Outbox(clock=clock)
        await outbox.create_tables(engine)
        async with relay_for(outbox, engine, producer):
            with pytest.raises(ConfigurationError, match="single relay"):
                await relay_for(outbox, engine, producer).start()
        async with relay_for(outbox, engine, producer):  # free again after stop()
            pass
    finally:
        await engine.dispose()
