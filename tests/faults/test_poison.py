"""Poison mixed into the stream, 10 % of it, of every kind, with key-ordered concurrency.

Broker: noida-db, aiokafka transport, ``concurrency=4`` (key-ordered lanes). The poison:

* values that cannot be handled at all: not JSON, truncated JSON, a JSON array, a JSON
  string, an empty value: dead-lettered as ``decode`` failures before any handler runs;
* events whose handler writes the effect and then raises ``DeadLetterNow``, or fails
  Pydantic validation (never retried): the effect must be rolled back with the inbox row,
  and the record dead-lettered once;
* and, as a control, ``flaky`` events that fail their first attempt after writing the
  effect (a transient error): retried in place, applied exactly once, never dead-lettered.

Half-way through, the consumer is stopped and a new one started (a deploy): the lanes
drain, the finished offsets are committed and nothing is dead-lettered twice. With more
than one lane the consumer writes dead letters without a transaction (atomic dead letters
need partition-serial consumption), which a graceful restart does not need.
"""

from __future__ import annotations

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
PARTITIONS = 3
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)


@pytest.mark.timeout(180)
async def test_poison_mixed_into_the_stream(
    noida: EmbeddedBroker, tmp_path: Path, tally: Tally
) -> None:
    started = time.monotonic()
    bootstrap = noida.bootstrap_servers
    s = settings(bootstrap, "noida", "aiokafka")
    topic = unique("inventory") + "-events"
    dlq = topic.removesuffix("-events") + "-dlq"
    await ensure_topics([TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)], settings=s)
    plan = make_plan(EVENTS, raw=150, dead_letter_now=75, bad_amount=75, flaky=100, seed=53)
    async with KafkaProducer(settings=s) as producer:
        await publish(producer, topic, plan.items)

    db = tmp_path / "effects.sqlite3"
    good = len(plan.good)
    effects = Effects(db)
    await effects.create()
    group = unique("stock")
    dead_lettered = retried = 0
    for incarnation, until in enumerate((good // 2, good)):
        consumer = KafkaConsumer(
            group_id=group,
            topics=[topic],
            settings=settings(bootstrap, "noida", "aiokafka", client_id=f"stock-{incarnation}"),
            retry=FAST_RETRY,
            concurrency=4,
        )
        consumer.use(effects.middleware())
        await consumer.start()
        task = consumer.start_background(effects.handle)
        try:
            await wait_for(
                lambda u=until, t=task: effect_total(db) >= u or t.done(),
                90,
                f"effects past {until}",
            )
            assert not task.done()
            if incarnation == 1:
                async with offsets_probe(bootstrap, group) as probe:
                    await wait_for_async(
                        lambda: caught_up(probe, topic, PARTITIONS), 60, "committed to the end"
                    )
        finally:
            await consumer.stop()  # the first stop is the deploy, mid-stream
            await task
        dead_lettered += consumer.stats.dead_lettered
        retried += consumer.stats.retried
    await effects.close()

    dead, _ = await read_to_end(bootstrap, dlq, read_committed=False)
    verdict = judge(plan, effect_counts(db), dead)
    tally.add(
        ScenarioResult(
            "poison 10 % + deploy",
            "noida/aiokafka 4 lanes",
            plan.events,
            sum(plan.poison.values()),
            faults={
                "poison": sum(plan.poison.values()),
                "transient error": plan.count("flaky"),
                "consumer restart": 1,
            },
            lost=len(verdict.lost),
            duplicated=verdict.duplicated_effects,
            dead_letters=sum(verdict.dead_letters.values()),
            dead_letters_expected=sum(plan.poison.values()),
            redelivered=effects.inbox.duplicates.total(),
            seconds=time.monotonic() - started,
        )
    )
    assert not verdict.lost, verdict.describe()
    assert not verdict.duplicated, verdict.describe()
    assert not verdict.unexpected, verdict.describe()
    assert not verdict.dead_letter_surplus, verdict.describe()
    assert not verdict.dead_letter_missing, verdict.describe()
    assert dead_lettered == sum(plan.poison.values())
    assert retried >= plan.count("flaky"), "every flaky event failed once and was retried"
    assert len(effects.failed_once) == plan.count("flaky")
