"""The broker stopped and restarted while a service writes through the transactional outbox.

Broker: **noida-db, aiokafka transport**, stopped gracefully (SIGINT) and started again on
the same port and data directory. Tansu cannot honour this scenario at all: it keeps
everything in memory, so after its restart the topic, the records the relay had delivered
and the consumer's offsets would all be gone.

noida-db honours it only with care, and the care is explicit here:

* **noida-db acknowledges writes while it shuts down, then drops them.** Its shutdown hook
  takes the snapshot it saves while the connection threads go on serving requests, so
  whatever it acknowledges between the snapshot and its exit is gone after the restart
  (``test_graceful_stop_keeps_acknowledged_writes``, xfail: 600-2,100 acknowledged
  records lost per stop under continuous produce). The outbox relay marks a row
  delivered once the broker acknowledged it, so such a row would be lost for good.
* Worse for the consumer: a dead-letter transaction the broker forgot leaves the
  transactional producer's sequence numbers ahead of the broker's; the next transaction
  fails with OutOfOrderSequenceNumber. eventbus replaces such a producer (same
  transactional.id, so the new one fences the old) and goes on
  (``test_consumer_survives_a_broker_crash``). But the consumer has finished, and
  commits past, a poison record whose dead letter the broker dropped: that dead letter
  is lost with the broker's last second, which no client can prevent.

So for the instant of the stop no producer may have a write in flight: the relay is
stopped (the cycle in hand finishes) and started again at once, while the broker is down,
and new dead-letter transactions are held back until the broker process is gone
(:class:`~tests.faults.workload.TxnGate`). Everything else runs through the outage: the
service writes business rows and their events in one SQLite transaction
(:meth:`Outbox.add`) before, during and after it; the relay (idempotent producer) fails,
backs off and probes while the broker is down and drains the backlog after the restart;
the consumer (static membership, so that its rejoin after the restart cannot wedge
noida-db's group) applies each event's effect once through the inbox and dead-letters
poison atomically with its offset commit.

The relay publishes at least once (docs/guarantees.md): a send that timed out during the
outage stays queued in aiokafka, which delivers it after the restart, and the relay sends
the row again. Good events published twice are absorbed by the inbox; a poison event
published twice is two poison records, and each is dead-lettered once (the inbox covers
effects, not dead letters). So this scenario checks dead letters per poison *record* of
the topic, and every poison event at least once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from eventbus import KafkaConsumer, KafkaProducer, RetryPolicy, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from eventbus.outbox import Outbox, OutboxRelay
from tests.faults.conftest import (
    ScenarioResult,
    Tally,
    caught_up,
    noida_snapshot_ends,
    offsets_probe,
    read_to_end,
    settings,
    unique,
    wait_for,
    wait_for_async,
)
from tests.faults.workload import (
    Effects,
    Item,
    TxnGate,
    effect_counts,
    effect_total,
    identity,
    judge,
    make_plan,
    poison_records,
    position,
    publish,
    sqlite_pragmas,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EVENTS = 2600
PARTITIONS = 4
ROWS_PER_TXN = 10
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)

service_md = MetaData()
orders = Table(
    "orders",
    service_md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("n", Integer, nullable=False),
    Column("ident", String(64), nullable=False),
)


def service_engine(path: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 60})
    event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


async def write_rows(engine: AsyncEngine, outbox: Outbox, topic: str, items: list[Item]) -> int:
    """The service: each transaction inserts business rows and their outbox rows."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    for start in range(0, len(items), ROWS_PER_TXN):
        async with sessions() as session, session.begin():
            for item in items[start : start + ROWS_PER_TXN]:
                await session.execute(insert(orders).values(n=item.n, ident=item.ident))
                if item.event is not None:
                    await outbox.add(session, topic, item.event, key=item.key)
                else:
                    await outbox.add_raw(
                        session, topic, item.raw, key=item.key, headers=item.headers()
                    )
        await asyncio.sleep(0)  # let the relay and the consumer run between transactions
    return len(items)


@pytest.mark.timeout(240)
async def test_broker_restarted_under_the_outbox(
    noida: EmbeddedBroker, tmp_path: Path, tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    bootstrap = noida.bootstrap_servers
    s = settings(bootstrap, "noida", "aiokafka", connect_timeout_s=3.0)
    topic = unique("leave") + "-queue"
    dlq = topic.removesuffix("-queue") + "-dlq"
    await ensure_topics([TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)], settings=s)
    plan = make_plan(EVENTS, raw=25, dead_letter_now=25, bad_amount=20, seed=31)
    items = plan.items
    before, during = EVENTS // 3, 2 * EVENTS // 3  # rows written before / by the outage's end
    holding = False
    gate = TxnGate(hold=lambda: holding)
    gate.install(monkeypatch.setattr)

    engine = service_engine(tmp_path / "service.sqlite3")
    async with engine.begin() as conn:
        await conn.run_sync(service_md.create_all)
    outbox = Outbox()
    await outbox.create_tables(engine)

    db = tmp_path / "effects.sqlite3"
    good = len(plan.good)
    effects = Effects(db)
    await effects.create()
    group = unique("payroll")
    consumer = KafkaConsumer(
        group_id=group,
        topics=[topic],
        settings=settings(bootstrap, "noida", "aiokafka", consumer_group_instance_id=f"{group}-0"),
        retry=FAST_RETRY,
    )
    consumer.use(effects.middleware())
    producer = KafkaProducer(settings=s, delivery_timeout_s=5.0)
    relay = OutboxRelay(
        outbox, engine, producer, poll_interval_s=0.05, backoff_s=(0.1, 1.0),
        cleanup_interval_s=None,
    )  # fmt: skip
    down, up = asyncio.Event(), asyncio.Event()

    async def service() -> int:
        """Writes before, during and after the outage, never waiting for the relay."""
        written = await write_rows(engine, outbox, topic, items[:before])
        await down.wait()
        written += await write_rows(engine, outbox, topic, items[before:during])
        await up.wait()
        return written + await write_rows(engine, outbox, topic, items[during:])

    await consumer.start()
    consume = consumer.start_background(effects.handle)
    await relay.start()
    writer = asyncio.create_task(service())
    try:
        # The outage starts while the relay is mid-backlog and the consumer mid-stream.
        await wait_for(lambda: relay.stats.delivered >= before // 2, 60, "relay under way")
        assert effect_total(db) < good
        holding = True  # no write in flight at the stop's instant (see the docstring)
        await relay.stop()
        await wait_for(lambda: not gate.in_txn, 30, "no dead-letter transaction in flight")
        await asyncio.to_thread(noida.stop)
        holding = False
        await relay.start()
        failures = relay.stats.failed + relay.stats.errors
        down.set()
        await wait_for(
            lambda: relay.stats.failed + relay.stats.errors >= failures + 2,
            60,
            "the relay failing against the stopped broker",
        )
        backlog_at_restart = 0

        async def outage_rows_written() -> bool:
            nonlocal backlog_at_restart
            backlog_at_restart = (await outbox.backlog(engine)).count
            return backlog_at_restart >= during - before

        await wait_for_async(outage_rows_written, 60, "the service writing during the outage")
        await asyncio.to_thread(noida.start)
        assert noida.bootstrap_servers == bootstrap
        up.set()
        assert await asyncio.wait_for(writer, 60) == EVENTS

        async def drained() -> bool:
            return (await outbox.backlog(engine)).count == 0

        await wait_for_async(drained, 90, "the outbox backlog draining after the restart")
        await wait_for(lambda: effect_total(db) >= good or consume.done(), 90, "every effect")
        async with offsets_probe(bootstrap, group) as probe:
            await wait_for_async(
                lambda: caught_up(probe, topic, PARTITIONS), 60, "group committed to the end"
            )
    finally:
        down.set()
        up.set()
        holding = False
        await relay.stop()
        await producer.stop()
        await consumer.stop()
        await consume
        if not writer.done():
            writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await effects.close()
        await engine.dispose()

    dead, _ = await read_to_end(bootstrap, dlq, read_committed=True)
    source, _ = await read_to_end(bootstrap, topic, read_committed=False)
    verdict = judge(plan, effect_counts(db), dead)
    # The relay publishes at least once: a row whose send timed out in the outage may have
    # been delivered after the restart by the client's own retries *and* sent again by the
    # relay. Each copy of a poison event is a poison record of its own and must be
    # dead-lettered exactly once; every poison event at least once.
    expected = poison_records(plan, source)
    found = Counter(position(r) for r in dead)
    republished = len(source) - len({identity(r) for r in source})
    tally.add(
        ScenarioResult(
            "broker stop/restart",
            "noida/aiokafka outbox",
            plan.events,
            sum(plan.poison.values()),
            faults={"broker stop+start": 1},
            lost=len(verdict.lost),
            duplicated=verdict.duplicated_effects,
            dead_letters=len(dead),
            dead_letters_expected=sum(expected.values()),
            redelivered=effects.inbox.duplicates.total(),
            seconds=time.monotonic() - started,
        )
    )
    assert not verdict.lost, verdict.describe()
    assert not verdict.duplicated, verdict.describe()
    assert not verdict.unexpected, verdict.describe()
    assert set(verdict.dead_letters) == set(plan.poison), verdict.describe()
    assert found == expected, (found - expected, expected - found)
    print(
        f"broker restart: {backlog_at_restart} rows waited out the outage; the relay "
        f"published {republished} rows twice; {relay.stats}"
    )


@pytest.mark.xfail(
    strict=True,
    reason="noida-db 0.2.3 deviation: on SIGINT/SIGTERM its shutdown hook saves a snapshot "
    "while the connection threads keep serving requests, so writes it acknowledges between "
    "the snapshot and the exit are lost across a graceful restart",
)
@pytest.mark.timeout(90)
async def test_graceful_stop_keeps_acknowledged_writes(noida: EmbeddedBroker) -> None:
    """Producing continuously, the broker is stopped gracefully (up to three times)."""
    bootstrap = noida.bootstrap_servers
    s = settings(bootstrap, "noida", "aiokafka")
    topic = unique("probe") + "-queue"
    await ensure_topics([TopicSpec(topic, 1)], settings=s)
    acked: set[int] = set()
    lost: list[int] = []
    for cycle in range(3):  # the loss is a race with the snapshot: give it a few chances
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1, request_timeout_ms=3000)
        await producer.start()
        stop = asyncio.Event()

        async def pump(
            lane: int, producer: AIOKafkaProducer = producer, stop: asyncio.Event = stop
        ) -> None:
            n = lane
            while not stop.is_set():
                sent = []
                for _ in range(50):
                    sent.append((n, await producer.send(topic, str(n).encode())))
                    n += 4
                for i, fut in sent:
                    try:
                        await fut
                        acked.add(i)
                    except Exception:  # the broker went away: not acknowledged
                        continue

        pumps = [asyncio.create_task(pump(lane + 4_000_000 * cycle)) for lane in range(4)]
        try:
            floor = len(acked) + 10_000
            await wait_for(lambda f=floor: len(acked) >= f, 30, "steady produce")
            await asyncio.to_thread(noida.stop)  # graceful, under continuous produce
        finally:
            stop.set()
            await asyncio.gather(*pumps, return_exceptions=True)
            await producer.stop()
        await asyncio.to_thread(noida.start)
        records, _ = await read_to_end(bootstrap, topic, read_committed=False)
        kept = {int(r.value or b"-1") for r in records}
        lost = sorted(acked - kept)
        if lost:
            break
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost: {lost[:5]}..."


@pytest.mark.timeout(240)
async def test_consumer_survives_a_broker_crash(
    noida: EmbeddedBroker, tmp_path: Path, tally: Tally
) -> None:
    """Dead-lettering continuously, the broker is SIGKILLed and restarted at once.

    noida-db is not crash-durable: it loses its last ~1 s of acknowledged writes, the
    dead-letter transactions of that second included, so dead letters cannot be checked
    here (the consumer had finished those records and moves on from them). What must
    hold is liveness and the effects: the source topic was in noida-db's snapshot before
    the crash and the inbox lives in SQLite, so every good event's effect must still be
    applied exactly once after the restart.
    """
    started = time.monotonic()
    bootstrap = noida.bootstrap_servers
    s = settings(bootstrap, "noida", "aiokafka", connect_timeout_s=3.0)
    topic = unique("claims") + "-queue"
    dlq = topic.removesuffix("-queue") + "-dlq"
    await ensure_topics([TopicSpec(topic, 2), TopicSpec(dlq, 1)], settings=s)
    plan = make_plan(1000, raw=100, dead_letter_now=300, seed=41)
    async with KafkaProducer(settings=s) as producer:
        await publish(producer, topic, plan.items)
    _, ends = await read_to_end(bootstrap, topic, read_committed=False)
    snapshot = noida.data_dir / "kafka.json"

    def in_snapshot() -> bool:
        saved = noida_snapshot_ends(snapshot, topic)
        return all(saved.get(p, -1) >= end for p, end in ends.items())

    # the source records are in noida-db's snapshot before the crash
    await wait_for(in_snapshot, 30, f"{topic} up to {ends} in {snapshot}", poll=0.1)
    db = tmp_path / "effects.sqlite3"
    effects = Effects(db)
    await effects.create()
    group = unique("claims")
    consumer = KafkaConsumer(
        group_id=group,
        topics=[topic],
        settings=settings(bootstrap, "noida", "aiokafka", consumer_group_instance_id=f"{group}-0"),
        retry=FAST_RETRY,
    )
    consumer.use(effects.middleware())
    await consumer.start()
    consume = consumer.start_background(effects.handle)
    recovered = False
    try:
        await wait_for(lambda: consumer.stats.dead_lettered >= 60, 60, "dead-lettering")
        await asyncio.to_thread(noida.kill)
        await asyncio.to_thread(noida.start)
        try:
            # liveness, not speed: on a loaded machine each dead-letter transaction on noida
            # takes a while, and some hundred are left after the restart
            await wait_for(lambda: effect_total(db) >= len(plan.good), 90, "every effect")
            recovered = True
        except AssertionError:
            pass
    finally:
        await consumer.stop()
        await consume
        await effects.close()
    dead, _ = await read_to_end(bootstrap, dlq, read_committed=True)
    verdict = judge(plan, effect_counts(db), dead)
    tally.add(
        ScenarioResult(
            "consumer vs broker crash",
            "noida/aiokafka static",
            plan.events,
            sum(plan.poison.values()),
            faults={"broker SIGKILL+start": 1},
            lost=len(verdict.lost),
            duplicated=verdict.duplicated_effects,
            dead_letters=sum(verdict.dead_letters.values()),
            dead_letters_expected=sum(plan.poison.values()),
            redelivered=effects.inbox.duplicates.total(),
            seconds=time.monotonic() - started,
            note=("the consumer recovered" if recovered else "the consumer wedged")
            + "; dead letters not checked (noida-db is not crash-durable)",
        )
    )
    assert recovered, f"the consumer never got past the crash: {consumer.stats}"
    assert not verdict.lost, verdict.describe()
    assert not verdict.duplicated, verdict.describe()
    assert not verdict.unexpected, verdict.describe()
