"""Several relays sharing one PostgreSQL outbox, and the relay against a real broker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from eventbus import KafkaProducer, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from eventbus._features import NOIDA
from eventbus._transport.base import (
    ConsumerConfig,
    ProducerConfig,
    RecordMetadata,
)
from eventbus.outbox import Outbox, OutboxRelay
from eventbus.testing import MemoryBroker, MemoryProducer
from tests.conftest import Harness, wait_until
from tests.db.helpers import TOPIC, by_key, event, event_ids, eventually, numbers


class GatedBroker:
    """A transport on a :class:`MemoryBroker` whose sends wait until the gate opens."""

    name = "gated"

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.gate = asyncio.Event()
        self.waiting = False

    def producer(self, config: ProducerConfig) -> GatedProducer:
        return GatedProducer(self)

    def consumer(self, config: ConsumerConfig) -> object:
        return self.broker.consumer(config)

    def admin(self) -> object:
        return self.broker.admin()


class GatedProducer(MemoryProducer):
    def __init__(self, gated: GatedBroker) -> None:
        super().__init__(gated.broker)
        self._gated = gated

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        self._gated.waiting = True
        await self._gated.gate.wait()
        return await super().send(topic, value, key, headers, partition)


@pytest.fixture
async def outbox(pg_engine: AsyncEngine) -> Outbox:
    box = Outbox()
    await box.create_tables(pg_engine)
    return box


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(default_partitions=1)


@pytest.fixture
async def producers(broker: MemoryBroker) -> AsyncIterator[list[KafkaProducer]]:
    made = [
        KafkaProducer(bootstrap_servers="memory:0", broker_profile="memory", transport=broker)
        for _ in range(2)
    ]
    try:
        for p in made:
            await p.start()
        yield made
    finally:
        for p in made:
            await p.stop()


def relay(outbox: Outbox, engine: AsyncEngine, producer: KafkaProducer, **kw: int) -> OutboxRelay:
    return OutboxRelay(
        outbox,
        engine,
        producer,
        poll_interval_s=0.01,
        backoff_s=(0.01, 0.05),
        cleanup_interval_s=None,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_relay_skips_keys_another_relay_holds(
    pg_engine: AsyncEngine, outbox: Outbox, broker: MemoryBroker
) -> None:
    keys = ["a", "b", None, "a", "b", "a", None, "b", "a", "b"]  # ids 1-10: relay A's batch
    keys += ["c", "d", None, "c", "d", "a", "b", "c", None, "a"]  # ids 11-20
    sessions = async_sessionmaker(pg_engine)
    async with sessions() as session, session.begin():
        for n, key in enumerate(keys):
            await outbox.add(session, TOPIC, event(n), key=key)

    gated = GatedBroker(broker)
    async with (
        KafkaProducer(
            bootstrap_servers="memory:0", broker_profile="memory", transport=gated
        ) as slow,
        KafkaProducer(
            bootstrap_servers="memory:0", broker_profile="memory", transport=broker
        ) as fast,
    ):
        relay_a = relay(outbox, pg_engine, slow, batch_size=10)
        relay_b = relay(outbox, pg_engine, fast, batch_size=20)
        a_cycle = asyncio.create_task(relay_a.run_once())
        try:
            await wait_until(lambda: gated.waiting)  # A holds rows 1-10 (keys a, b) mid-send
            # B must not wait for A, must skip keys a and b entirely (even rows 16, 17, 20,
            # which A did not take), and must skip the keyless rows A locked (3 and 7).
            assert await relay_b.run_once() == 7
            assert sorted(numbers(broker.records(TOPIC))) == [10, 11, 12, 13, 14, 17, 18]
        finally:
            gated.gate.set()
            assert await a_cycle == 10
        assert await relay_b.run_once() == 3  # now a and b are free: 15, 16, 19
        assert await relay_b.run_once() == 0

    records = broker.records(TOPIC)
    assert sorted(numbers(records)) == list(range(20))
    assert by_key(records) == {
        b"a": [0, 3, 5, 8, 15, 19],
        b"b": [1, 4, 7, 9, 16],
        b"c": [10, 13, 17],
        b"d": [11, 14],
        None: [12, 18, 2, 6],
    }


async def test_two_relays_deliver_every_row_once_in_key_order(
    pg_engine: AsyncEngine,
    outbox: Outbox,
    broker: MemoryBroker,
    producers: list[KafkaProducer],
) -> None:
    total, writers = 1200, 4
    sessions = async_sessionmaker(pg_engine)
    rng = random.Random(7)
    # Each key has one writer (as an aggregate's lock would make it): ids are then in
    # commit order per key. Keyless rows come from every writer.
    plan = [(n, rng.choice([f"emp-{n % writers}-{rng.randrange(4)}", None])) for n in range(total)]
    relays = [relay(outbox, pg_engine, p, batch_size=40) for p in producers]

    async def write(part: int) -> None:
        mine = plan[part::writers]
        for i in range(0, len(mine), 10):
            async with sessions() as session, session.begin():
                for n, key in mine[i : i + 10]:
                    await outbox.add(session, TOPIC, event(n), key=key)
            if i == 100 and part == 0:
                broker.fail_sends = 5  # a few failures along the way

    for r in relays:
        await r.start()
    try:
        await asyncio.gather(*(write(p) for p in range(writers)))

        async def drained() -> bool:
            return (await outbox.backlog(pg_engine)).count == 0

        await eventually(drained, timeout=60, what="outbox drained by two relays")
    finally:
        for r in relays:
            await r.stop()

    records = broker.records(TOPIC)
    ids = event_ids(records)
    assert len(ids) == len(set(ids)) == total  # every row exactly once
    # Per key, the publishing order is the insert order: ids grow along each key's records.
    async with pg_engine.connect() as conn:
        rows = (await conn.execute(outbox.table.select())).all()
    id_of = {r.event_id: r.id for r in rows}
    for key, _ in by_key(records).items():
        if key is None:
            continue
        seq = [id_of[e] for r, e in zip(records, ids, strict=True) if r.key == key]
        assert seq == sorted(seq), key
    assert sum(r.stats.delivered for r in relays) == total
    assert all(r.attempts >= 1 for r in rows)


@pytest.mark.broker
async def test_relay_publishes_to_a_real_broker(
    engine: AsyncEngine, noida_broker: EmbeddedBroker
) -> None:
    servers = noida_broker.bootstrap_servers
    harness = Harness(
        "noida-aiokafka",
        NOIDA,
        bootstrap=servers,
        transport="aiokafka",
        settings_overrides={"transport": "aiokafka"},
    )
    topic = harness.unique("outbox") + "-queue"
    await ensure_topics([TopicSpec(topic, 3)], bootstrap_servers=servers)
    outbox = Outbox()
    await outbox.create_tables(engine)
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        for n in range(40):
            await outbox.add(session, topic, event(n), key=f"emp-{n % 5}")
    try:
        producer = harness.producer()
        await producer.start()
        async with relay(outbox, engine, producer, batch_size=16) as r:
            records = await harness.read(topic, 40)

            async def drained() -> bool:
                return (await outbox.backlog(engine)).count == 0

            await eventually(drained, what="backlog drained")
        assert r.stats.delivered == 40
    finally:
        await harness.close_all()
    assert sorted(numbers(records)) == list(range(40))
    assert len(set(event_ids(records))) == 40
    for key, ns in by_key(records).items():
        assert ns == sorted(ns), key
    assert len({r.partition for r in records}) > 1
