"""A rebalance mid-batch: a second consumer joins while the first works through a poll
batch, takes some partitions, then leaves again; twice.

Broker: noida-db, **confluent transport, dynamic membership**. noida-db answers an
OffsetCommit made while a rebalance is preparing with ILLEGAL_GENERATION
(research/noida-db-compat.md §0, issue 2). aiokafka then drops its member id and rejoins
as a new member, leaving a dead member behind that noida-db never expires, and the group
wedges. librdkafka keeps its member id and recovers; the failed commit only means the
records are delivered again, which the inbox absorbs. Static membership is not an option
for this scenario: a static member does not send LeaveGroup when it stops, and noida-db
never expires it, so the partitions of the member that "left" would never come back.

noida-db has transactions, so dead letters are written atomically with their offset
commit, and a poison message redelivered by the rebalance is not dead-lettered twice.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from eventbus import KafkaConsumer, KafkaProducer, RetryPolicy, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from tests.faults.conftest import (
    ScenarioResult,
    Tally,
    caught_up,
    offsets_probe,
    read_to_end,
    settings,
    unique,
    wait_for,
    wait_for_async,
)
from tests.faults.workload import Effects, effect_counts, effect_total, judge, make_plan, publish

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EVENTS = 3000
PARTITIONS = 4
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)


@pytest.mark.timeout(240)
async def test_rebalance_mid_batch(noida: EmbeddedBroker, tmp_path: Path, tally: Tally) -> None:
    started = time.monotonic()
    bootstrap = noida.bootstrap_servers
    s = settings(bootstrap, "noida", "confluent")
    topic = unique("payments") + "-queue"
    dlq = topic.removesuffix("-queue") + "-dlq"
    await ensure_topics([TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)], settings=s)
    plan = make_plan(EVENTS, raw=30, dead_letter_now=30, bad_amount=20, seed=11)
    async with KafkaProducer(settings=s) as producer:
        await publish(producer, topic, plan.items)

    group = unique("ledger")
    db = tmp_path / "effects.sqlite3"
    good = len(plan.good)
    effects = Effects(db, worker="A")
    await effects.create()
    consumers: list[tuple[KafkaConsumer, asyncio.Task[None], Effects]] = []
    rebalances = 0

    async def member(name: str) -> tuple[KafkaConsumer, asyncio.Task[None], Effects]:
        fx = effects if name == "A" else Effects(db, worker=name)
        c = KafkaConsumer(
            group_id=group,
            topics=[topic],
            # Heartbeats every 0.5 s: the first member learns of the rebalance quickly, so
            # the second one gets its share while there is still work left.
            settings=settings(
                bootstrap,
                "noida",
                "confluent",
                client_id=f"ledger-{name}",
                consumer_heartbeat_interval_ms=500,
            ),
            retry=FAST_RETRY,
        )
        c.use(fx.middleware())
        await c.start()
        entry = (c, asyncio.create_task(c.consume(fx.handle)), fx)
        consumers.append(entry)
        return entry

    try:
        _, a_task, _ = await member("A")
        for n, threshold in enumerate((good // 5, good // 2)):
            await wait_for(lambda t=threshold: effect_total(db) >= t, 90, f"A applying {threshold}")
            assert effect_total(db) < good, "B must join while A is mid-stream"
            b, b_task, b_fx = await member(f"B{n + 1}")  # joins: A's partitions are revoked
            rebalances += 1
            await wait_for(
                lambda b=b: b.stats.processed + b.stats.dead_lettered >= 20 or a_task.done(),
                60,
                f"B{n + 1} receiving a share of the partitions",
            )
            assert not a_task.done()
            await b.stop()  # leaves: its partitions go back to A
            await b_task
            await b_fx.close()
            rebalances += 1
        await wait_for(lambda: effect_total(db) >= good, 120, "every effect applied")
        async with offsets_probe(bootstrap, group) as probe:
            await wait_for_async(
                lambda: caught_up(probe, topic, PARTITIONS), 60, "group committed to the end"
            )
    finally:
        for c, task, fx in reversed(consumers):
            await c.stop()
            await task
            if fx is not effects:
                await fx.close()
        redelivered = sum(fx.inbox.duplicates.total() for _, _, fx in consumers)
        commit_failures = sum(c.stats.commit_failures for c, _, _ in consumers)
        await effects.close()

    dead, _ = await read_to_end(bootstrap, dlq, read_committed=True)
    verdict = judge(plan, effect_counts(db), dead)
    tally.add(
        ScenarioResult(
            "rebalance mid-batch",
            "noida/confluent dynamic",
            plan.events,
            sum(plan.poison.values()),
            faults={"rebalance": rebalances},
            lost=len(verdict.lost),
            duplicated=verdict.duplicated_effects,
            dead_letters=sum(verdict.dead_letters.values()),
            dead_letters_expected=sum(plan.poison.values()),
            redelivered=redelivered,
            seconds=time.monotonic() - started,
        )
    )
    assert not verdict.lost, verdict.describe()
    assert not verdict.duplicated, verdict.describe()
    assert not verdict.unexpected, verdict.describe()
    assert not verdict.dead_letter_surplus, verdict.describe()
    assert not verdict.dead_letter_missing, verdict.describe()
    print(f"rebalance: {redelivered} redeliveries skipped, {commit_failures} commits refused")
