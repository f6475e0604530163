"""Connections cut, refused and paused mid-produce and mid-consume, through a TCP proxy.

Broker: **Tansu, confluent transport**, every connection through :class:`FaultProxy`.

* Tansu, because it can advertise the proxy's address (``--advertised-listener-url``), so
  bootstrap *and* every metadata-advertised connection cross the proxy. noida-db has no
  advertised-listener option: its clients would reach it directly after the first
  metadata response, and the faults would miss them.
* confluent (librdkafka), because on Tansu only librdkafka's idempotent producer works
  (aiokafka's InitProducerId fails there). A connection cut while a produce request is
  in flight makes the client send that batch again; without idempotence the retry can
  write the record twice, and a poison record written twice to the topic, or a dead
  letter written twice, would break "each poison dead-lettered exactly once".

What Tansu cannot honour, and how this scenario stays inside what it can:

* Tansu has no transactions, so dead letters are not written atomically with their
  offset commit, and a poison record redelivered after a rebalance is dead-lettered a
  second time. So the group must never rebalance here: faults come one at a time (the
  next one only after the consumer has committed again), and the session timeout (20 s)
  outlasts any fault plus the reconnect. librdkafka's reconnect backoff doubles up to
  ``reconnect.backoff.max.ms`` (10 s) as long as reconnects come less than 10 s apart,
  so after a cut, a pause and a 2 s refusal in quick succession its group coordinator
  connection stayed down for about 10 s. With a 10 s session Tansu expired the member
  (the next commit got UNKNOWN_MEMBER_ID), the group rebalanced, the records after the
  last commit were delivered again, and 9-15 poison records were dead-lettered twice.
  (Dead letters surviving a consumer crash are the subject of the SIGKILL scenario, on
  noida-db, which has transactions.)
* Tansu's ListOffsets is wrong after batched produce: "the end" of a topic is taken from
  the high watermark of fetch responses instead.
* Tansu keeps everything in memory; nothing here restarts it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from eventbus import KafkaConsumer, KafkaProducer, RetryPolicy, TopicSpec, ensure_topics
from tests.faults.conftest import (
    ScenarioResult,
    Tally,
    TansuBehindProxy,
    caught_up,
    committed_total,
    offsets_probe,
    read_to_end,
    settings,
    unique,
    wait_for,
    wait_for_async,
)
from tests.faults.workload import (
    Effects,
    effect_counts,
    effect_total,
    identity,
    judge,
    make_plan,
    publish,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EVENTS = 2600
PARTITIONS = 3
CHUNK = 200
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)


class CommitWatch:
    """Whether the group committed again (100 offsets more) since the watch began.

    The probe's own connection crosses the proxy too: a read that fails on a cut
    connection is retried at the next poll.
    """

    def __init__(self, probe: Any, topic: str) -> None:
        self.probe = probe
        self.topic = topic
        self.base: int | None = None

    async def advanced(self) -> bool:
        try:
            now = await committed_total(self.probe, self.topic, PARTITIONS)
        except KafkaError:
            return False
        if self.base is None:
            self.base = now
        return now >= self.base + 100


async def _caught_up(probe: Any, topic: str, ends: dict[int, int]) -> bool:
    try:
        return await caught_up(probe, topic, PARTITIONS, ends)
    except KafkaError:
        return False


@pytest.mark.timeout(240)
async def test_connections_cut_refused_and_paused(
    tansu_proxy: TansuBehindProxy, tmp_path: Path, tally: Tally
) -> None:
    started = time.monotonic()
    proxy = tansu_proxy.proxy
    bootstrap = tansu_proxy.bootstrap
    s = settings(bootstrap, "tansu", "confluent")
    assert s.idempotence(), "the scenario relies on librdkafka's idempotent producer"
    topic = unique("invoices") + "-queue"
    dlq = topic.removesuffix("-queue") + "-dlq"
    await ensure_topics([TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)], settings=s)
    plan = make_plan(EVENTS, raw=30, dead_letter_now=30, bad_amount=20, seed=23)

    # -- mid-produce: each fault hits a chunk whose records are in flight ------------------
    produce_faults = {
        3: proxy.cut,
        6: lambda: proxy.refuse(2.0),
        9: lambda: proxy.pause(3.0),
        11: proxy.cut,
    }
    resent = 0
    async with KafkaProducer(settings=s, delivery_timeout_s=60.0) as producer:
        for n, start in enumerate(range(0, EVENTS, CHUNK)):
            chunk = plan.items[start : start + CHUNK]
            resent += await publish(producer, topic, chunk, in_flight=produce_faults.get(n))
    source, ends = await read_to_end(bootstrap, topic, read_committed=False, tansu=True)
    copies = Counter(identity(r) for r in source)
    assert set(copies) == {i.ident for i in plan.items}, "an acknowledged record is missing"
    assert all(c == 1 for c in copies.values()), (
        f"the idempotent producer wrote {sum(copies.values()) - len(copies)} records twice"
    )

    # -- mid-consume: faults at effect-count thresholds while the consumer works ------------
    db = tmp_path / "effects.sqlite3"
    good = len(plan.good)
    effects = Effects(db)
    await effects.create()
    consumer = KafkaConsumer(
        group_id=unique("billing"), topics=[topic], settings=s, retry=FAST_RETRY
    )
    consumer.use(effects.middleware())
    consume_faults = [
        (good // 6, proxy.cut),
        (2 * good // 6, lambda: proxy.pause(3.0)),
        (3 * good // 6, lambda: proxy.refuse(2.0)),
        (4 * good // 6, proxy.cut),
    ]
    await consumer.start()
    task = consumer.start_background(effects.handle)
    try:
        async with offsets_probe(bootstrap, consumer.group_id) as probe:
            for threshold, fault in consume_faults:
                # One fault at a time: the previous one is over and the consumer has
                # committed since (so its group coordinator connection is back and its
                # heartbeats get answers), so no fault window nears the session timeout.
                await wait_for(lambda: not proxy.faulted, 30, "the previous fault ending")
                await wait_for_async(
                    CommitWatch(probe, topic).advanced, 60, "a commit after the previous fault"
                )
                await wait_for(
                    lambda t=threshold: effect_total(db) >= t or task.done(),
                    90,
                    f"effects past {threshold}",
                )
                assert not task.done()
                assert effect_total(db) < good, "the fault must hit a consumer that is mid-stream"
                fault()
            await wait_for(lambda: effect_total(db) >= good or task.done(), 120, "every effect")
            await wait_for_async(lambda: _caught_up(probe, topic, ends), 60, "committed to the end")
    finally:
        await consumer.stop()
        await task
        await effects.close()

    dead, _ = await read_to_end(bootstrap, dlq, read_committed=False, tansu=True)
    verdict = judge(plan, effect_counts(db), dead)
    tally.add(
        ScenarioResult(
            "proxy cut/refuse/pause",
            "tansu/confluent idemp.",
            plan.events,
            sum(plan.poison.values()),
            faults=proxy.faults.copy(),
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
    print(f"proxy: {resent} sends repeated, {proxy.connections} connections accepted")
