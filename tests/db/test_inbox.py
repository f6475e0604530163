"""The inbox (idempotent consumer), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from eventbus import BaseEvent, MessageContext
from eventbus._codec import encode_event
from eventbus._features import MEMORY
from eventbus._transport.base import Record
from eventbus.inbox import Inbox, event_id_of, record_event_id
from eventbus.testing import MemoryBroker
from tests.conftest import Harness, wait_until
from tests.db.conftest import FakeClock
from tests.db.helpers import event, eventually

GROUP = "payroll-service-group"

effects_md = MetaData()
effects = Table(
    "effects",
    effects_md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("n", Integer, nullable=False),
)


@pytest.fixture
async def inbox(engine: AsyncEngine, clock: FakeClock) -> Inbox:
    box = Inbox(clock=clock)
    await box.create_tables(engine)
    async with engine.begin() as conn:
        await conn.run_sync(effects_md.create_all)
    return box


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def context(ev: BaseEvent, offset: int = 0, group: str = GROUP) -> MessageContext:
    value, headers = encode_event(ev)
    return MessageContext(Record("leave-queue", 0, offset, b"k", value, tuple(headers)), group)


async def effect_rows(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(effects.c.event_id, effects.c.n).order_by(effects.c.id))
        return [(r.event_id, r.n) for r in rows]


async def test_decorated_handler_applies_a_duplicate_once(
    engine: AsyncEngine, inbox: Inbox, sessions: async_sessionmaker[AsyncSession]
) -> None:
    seen: list[int] = []

    @inbox.idempotent(sessions)
    async def on_approved(payload: dict[str, Any], ctx: MessageContext) -> None:
        session: AsyncSession = ctx.state["session"]
        n = payload["data"]["n"]
        await session.execute(insert(effects).values(event_id=payload["event_id"], n=n))
        seen.append(n)

    first, second = event(1), event(2)
    for offset, ev in enumerate([first, first, second, first]):  # redeliveries
        await on_approved(ev.model_dump(mode="json"), context(ev, offset))

    assert seen == [1, 2]
    assert await effect_rows(engine) == [(str(first.event_id), 1), (str(second.event_id), 2)]
    assert inbox.duplicates[GROUP] == 2
    assert inbox.duplicates.total() == 2
    assert inbox.processed[GROUP] == 2
    assert await inbox.seen(engine, GROUP, str(first.event_id))
    assert not await inbox.seen(engine, "another-group", str(first.event_id))


async def test_a_failing_handler_rolls_back_its_effects_and_the_inbox_row(
    engine: AsyncEngine, inbox: Inbox, sessions: async_sessionmaker[AsyncSession]
) -> None:
    attempts = 0

    @inbox.idempotent(sessions)
    async def on_approved(ev: BaseEvent, ctx: MessageContext) -> None:
        nonlocal attempts
        attempts += 1
        await ctx.state["session"].execute(
            insert(effects).values(event_id=str(ev.event_id), n=attempts)
        )
        if attempts == 1:
            raise RuntimeError("the database said no")

    ev = event(1)
    with pytest.raises(RuntimeError, match="said no"):
        await on_approved(ev, context(ev))
    assert await effect_rows(engine) == []
    assert not await inbox.seen(engine, GROUP, str(ev.event_id))  # so a retry can apply it

    await on_approved(ev, context(ev))  # the retry
    await on_approved(ev, context(ev))  # and a later redelivery
    assert await effect_rows(engine) == [(str(ev.event_id), 2)]
    assert attempts == 2
    assert inbox.duplicates[GROUP] == 1


async def test_the_decorator_fits_the_consumers_handler_signatures(
    engine: AsyncEngine, inbox: Inbox, sessions: async_sessionmaker[AsyncSession]
) -> None:
    broker = MemoryBroker(default_partitions=1)
    harness = Harness("memory", MEMORY, memory=broker)
    topic = await harness.topic(partitions=1)
    consumer = harness.consumer([topic], group=GROUP)
    got: list[int] = []

    @consumer.on("leave.approved")
    @inbox.idempotent(sessions)
    async def on_approved(payload: dict[str, Any]) -> None:  # no ctx: the wrapper takes it
        got.append(payload["data"]["n"])

    producer = harness.producer()
    await producer.start()
    ev = event(7)
    for _ in range(3):
        assert await producer.send_event(topic, ev)
    await consumer.start()
    task = consumer.start_background()
    try:
        await wait_until(lambda: inbox.duplicates[GROUP] == 2)
    finally:
        await harness.close_all()
        await task
    assert got == [7]
    assert inbox.processed[GROUP] == 1


async def test_middleware_deduplicates_for_every_handler(
    engine: AsyncEngine, inbox: Inbox, sessions: async_sessionmaker[AsyncSession]
) -> None:
    harness = Harness("memory", MEMORY, memory=MemoryBroker(default_partitions=1))
    topic = await harness.topic(partitions=1)
    consumer = harness.consumer([topic], group=GROUP)
    consumer.use(inbox.middleware(sessions))
    failures = {"left": 1}

    async def handle(payload: dict[str, Any], ctx: MessageContext) -> None:
        session: AsyncSession = ctx.state["session"]
        await session.execute(
            insert(effects).values(event_id=payload["event_id"], n=payload["data"]["n"])
        )
        if payload["data"]["n"] == 2 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("transient")  # retried by the consumer: applied once in the end

    producer = harness.producer()
    await producer.start()
    one, two = event(1), event(2)
    for ev in (one, two, one, two, one):
        assert await producer.send_event(topic, ev)
    await consumer.start()
    task = consumer.start_background(handle)
    try:
        await wait_until(lambda: inbox.processed[GROUP] + inbox.duplicates[GROUP] == 5)
    finally:
        await harness.close_all()
        await task
    assert sorted(await effect_rows(engine)) == sorted(
        [(str(one.event_id), 1), (str(two.event_id), 2)]
    )
    assert inbox.duplicates[GROUP] == 3
    assert failures["left"] == 0


async def test_guard_in_the_callers_transaction(
    engine: AsyncEngine, inbox: Inbox, sessions: async_sessionmaker[AsyncSession]
) -> None:
    eid = str(uuid.uuid4())

    async def apply(commit: bool) -> bool:
        async with sessions() as session:
            async with inbox.guard(session, GROUP, eid) as fresh:
                if fresh:
                    await session.execute(insert(effects).values(event_id=eid, n=1))
            if commit:
                await session.commit()
            else:
                await session.rollback()
            return fresh

    assert await apply(commit=False) is True  # rolled back: the id is not recorded
    assert await apply(commit=True) is True
    assert await apply(commit=True) is False
    assert await effect_rows(engine) == [(eid, 1)]
    assert inbox.duplicates[GROUP] == 1


async def test_groups_are_independent_and_old_ids_are_cleaned_up(
    engine: AsyncEngine, inbox: Inbox, clock: FakeClock
) -> None:
    async with engine.begin() as conn:
        assert await inbox.claim(conn, "a", "e1")
        assert await inbox.claim(conn, "b", "e1")
        assert not await inbox.claim(conn, "a", "e1")
    clock.advance(3600)
    async with engine.begin() as conn:
        assert await inbox.claim(conn, "a", "e2")
        long_id = "x" * 1000
        assert await inbox.claim(conn, "a", long_id)  # stored as a digest
        assert not await inbox.claim(conn, "a", long_id)
    assert await inbox.cleanup(engine, older_than_s=1800) == 2
    assert not await inbox.seen(engine, "a", "e1")
    assert await inbox.seen(engine, "a", "e2")
    assert await inbox.seen(engine, "a", long_id)


async def test_concurrent_duplicate_waits_for_the_first_then_is_skipped(
    pg_engine: AsyncEngine,
) -> None:
    inbox = Inbox()
    await inbox.create_tables(pg_engine)
    sessions = async_sessionmaker(pg_engine)

    async def waiting_on_a_lock() -> bool:
        async with pg_engine.connect() as conn:
            n = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            return bool(n)

    for first_commits in (False, True):
        eid = f"race-{first_commits}"
        async with sessions() as first, sessions() as second:
            assert await inbox.claim(first, GROUP, eid)
            racing = asyncio.create_task(inbox.claim(second, GROUP, eid))
            await eventually(waiting_on_a_lock, what="second claim blocked on the first")
            assert not racing.done()
            if first_commits:
                await first.commit()
            else:
                await first.rollback()
            fresh = await racing
            await second.commit()
        # the second wins only if the first rolled back
        assert fresh is (not first_commits)
    assert inbox.duplicates[GROUP] == 1
    async with pg_engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(inbox.table)) == 2


def test_event_id_comes_from_header_then_envelope_then_position() -> None:
    ev = event(1)
    value, headers = encode_event(ev)
    with_header = Record("t", 2, 40, None, value, tuple(headers))
    assert record_event_id(with_header) == str(ev.event_id)
    body_only = Record("t", 2, 41, None, value, ())
    assert record_event_id(body_only) == str(ev.event_id)
    seed004 = json.dumps({"metadata": {"event_id": "evt-123456", "event_type": "x.y"},
                          "payload": {}}).encode()  # fmt: skip
    assert record_event_id(Record("t", 2, 42, None, seed004, ())) == "evt-123456"
    assert record_event_id(Record("t", 2, 43, None, b"not json", ())) == "t:2:43"
    ctx = MessageContext(Record("t", 2, 44, None, b"{}", ()), GROUP)
    assert event_id_of(ev, ctx) == str(ev.event_id)
    assert event_id_of({"event_id": "abc"}, ctx) == "abc"
    assert event_id_of(b"raw", ctx) == "t:2:44"
