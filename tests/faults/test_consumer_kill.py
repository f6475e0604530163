"""A consumer process SIGKILLed mid-batch, twice, and restarted each time.

Broker: noida-db, aiokafka transport, **static membership**. noida-db never expires a
group member that died without leaving (research/noida-db-compat.md §0, issue 1): a
SIGKILLed *dynamic* member stays in the group forever, so its partitions are never
reassigned and a replacement never gets an assignment. A static member that comes back
with the same ``group.instance.id`` (``KAFKA_CONSUMER_GROUP_INSTANCE_ID``) replaces the
dead one at once, which is also what a restarted replica does on Kubernetes. (The
confluent transport would not help here: the dead member wedges librdkafka's group too.)

noida-db has transactions, so the consumer dead-letters atomically (the dead-letter record
and the commit of its offset are one Kafka transaction): a poison message redelivered after
the kill is not dead-lettered a second time. Effects go to a SQLite file through the inbox,
so the events the killed process applied but had not committed are skipped when the new
process receives them again.

The kills land wherever the worker happens to be, a dead-letter transaction included. The
second test kills the worker *inside* one on purpose: the restarted worker must fence and
abort the dead one's open transaction. It can because the transactional id is stable per
replica (derived from ``KAFKA_CONSUMER_GROUP_INSTANCE_ID``); with the random id eventbus
used before, the open transaction was never aborted (noida-db never times a transaction
out) and the dead-letter topic could not be read past it, by read_committed readers, ever.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eventbus import KafkaProducer, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from tests.faults.conftest import (
    ScenarioResult,
    Tally,
    caught_up,
    offsets_probe,
    read_to_end,
    settings,
    stop_process,
    unique,
    wait_for,
    wait_for_async,
)
from tests.faults.workload import Plan, effect_counts, effect_total, judge, make_plan, publish

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 2600
PARTITIONS = 4


class Workers:
    """Consumer worker processes of one group, each a new incarnation of one replica."""

    def __init__(self, bootstrap: str, topic: str, group: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.tmp = tmp
        self.db = tmp / "effects.sqlite3"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        name = f"w{len(self.procs) + 1}"
        with (self.tmp / f"worker-{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "tests.faults.worker",
                    "--bootstrap", self.bootstrap, "--topic", self.topic,
                    "--group", self.group, "--db", str(self.db),
                    "--progress", str(self.tmp / f"progress-{name}.json"), "--name", name,
                    # the same instance id for every incarnation: see the module docstring
                    "--instance-id", f"{self.group}-replica-0",
                    "--profile", "noida", "--transport", "aiokafka",
                    # commits every 2 s: a kill always leaves applied-but-uncommitted records
                    "--commit-interval-ms", "2000",
                    *extra,
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.procs.append(proc)
        self.names.append(name)
        return proc

    def progress(self, n: int = -1) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(
                (self.tmp / f"progress-{self.names[n]}.json").read_text()
            )
        except (OSError, ValueError):
            return {}
        return data

    def log(self, n: int = -1) -> str:
        return (self.tmp / f"worker-{self.names[n]}.log").read_text()[-4000:]

    @property
    def redelivered(self) -> int:
        return sum(int(self.progress(n).get("duplicates", 0)) for n in range(len(self.procs)))

    def stop_all(self) -> None:
        for p in self.procs:
            stop_process(p)


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def prepare(noida: EmbeddedBroker, seed: int, total: int) -> tuple[str, str, Plan]:
    s = settings(noida.bootstrap_servers, "noida", "aiokafka")
    topic = unique("orders") + "-queue"
    dlq = topic.removesuffix("-queue") + "-dlq"
    await ensure_topics([TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)], settings=s)
    plan = make_plan(total, raw=total // 85, dead_letter_now=total // 85, bad_amount=total // 130,
                     seed=seed)  # fmt: skip
    async with KafkaProducer(settings=s) as producer:
        await publish(producer, topic, plan.items)
    return topic, dlq, plan


async def finish(workers: Workers, proc: subprocess.Popen[bytes], good: int) -> None:
    """Let ``proc`` apply every effect and commit to the end, then stop it gracefully."""
    await wait_for(
        lambda: effect_total(workers.db) >= good or proc.poll() is not None,
        120,
        "the restarted worker applying every effect",
    )
    assert proc.poll() is None, workers.log()
    async with offsets_probe(workers.bootstrap, workers.group) as probe:
        await wait_for_async(
            lambda: caught_up(probe, workers.topic, PARTITIONS), 60, "group committed to the end"
        )
    stop_process(proc, timeout=30)
    assert proc.returncode == 0, workers.log()
    assert workers.progress().get("state") == "stopped"


@pytest.mark.timeout(240)
async def test_consumer_killed_mid_batch_and_restarted(
    noida: EmbeddedBroker, tmp_path: Path, tally: Tally
) -> None:
    started = time.monotonic()
    topic, dlq, plan = await prepare(noida, seed=7, total=EVENTS)
    workers = Workers(noida.bootstrap_servers, topic, unique("fulfilment"), tmp_path)
    good = len(plan.good)
    kills = 0
    try:
        # Two incarnations are SIGKILLed while they work through a poll batch (the effect
        # count is still rising and below the total), the third runs to the end.
        for threshold in (good // 3, 2 * good // 3):
            proc = workers.spawn()
            before = effect_total(workers.db)
            await wait_for(
                lambda t=threshold, p=proc: effect_total(workers.db) >= t or p.poll() is not None,
                90,
                f"worker applying effects past {threshold}",
            )
            assert proc.poll() is None, workers.log()
            now = effect_total(workers.db)
            assert before < now < good, "the kill must land while the worker is mid-stream"
            kill(proc)
            kills += 1
        await finish(workers, workers.spawn(), good)
    finally:
        workers.stop_all()

    dead, _ = await read_to_end(noida.bootstrap_servers, dlq, read_committed=True)
    verdict = judge(plan, effect_counts(workers.db), dead)
    redelivered = workers.redelivered
    tally.add(
        ScenarioResult(
            "consumer SIGKILL",
            "noida/aiokafka static",
            plan.events,
            sum(plan.poison.values()),
            faults={"SIGKILL": kills, "restart": kills},
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
    # The kills did land mid-batch: the later incarnations received records the killed
    # ones had applied but not committed, and the inbox skipped them.
    assert redelivered > 0, [workers.progress(n) for n in range(len(workers.procs))]


@pytest.mark.timeout(180)
async def test_kill_inside_a_dead_letter_transaction(
    noida: EmbeddedBroker, tmp_path: Path, tally: Tally
) -> None:
    started = time.monotonic()
    topic, dlq, plan = await prepare(noida, seed=13, total=600)
    workers = Workers(noida.bootstrap_servers, topic, unique("shipping"), tmp_path)
    good = len(plan.good)
    marker = tmp_path / "in-txn"
    try:
        proc = workers.spawn("--hang-in-txn", str(marker))
        await wait_for(
            lambda: marker.exists() or proc.poll() is not None, 60, "a dead-letter transaction"
        )
        assert proc.poll() is None, workers.log()
        kill(proc)  # inside the transaction: its record is written, its commit never sent
        await finish(workers, workers.spawn(), good)
    finally:
        workers.stop_all()
    stuck = None
    try:
        dead, _ = await read_to_end(noida.bootstrap_servers, dlq, read_committed=True, timeout=10)
    except AssertionError as exc:  # the open transaction was never aborted: say so, and
        # count what the log holds (the dead worker's record included) for the tally
        stuck = str(exc)
        dead, _ = await read_to_end(noida.bootstrap_servers, dlq, read_committed=False)
    verdict = judge(plan, effect_counts(workers.db), dead)
    tally.add(
        ScenarioResult(
            "SIGKILL in DLQ txn",
            "noida/aiokafka static",
            plan.events,
            sum(plan.poison.values()),
            faults={"SIGKILL": 1, "restart": 1},
            lost=len(verdict.lost),
            duplicated=verdict.duplicated_effects,
            dead_letters=sum(verdict.dead_letters.values()),
            dead_letters_expected=sum(plan.poison.values()),
            redelivered=workers.redelivered,
            seconds=time.monotonic() - started,
            note="" if stuck is None else "DLQ unreadable past the open transaction",
        )
    )
    assert not verdict.lost, verdict.describe()
    assert not verdict.duplicated, verdict.describe()
    assert stuck is None, stuck
    assert not verdict.dead_letter_surplus, verdict.describe()
    assert not verdict.dead_letter_missing, verdict.describe()
