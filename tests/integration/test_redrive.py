"""Redrive end to end on noida-db: a consumer dead-letters, ``eventbus dlq`` finds and replays.

The CLI runs as a user runs it, in a subprocess with ``KAFKA_BOOTSTRAP_SERVERS`` set.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventbus import (
    BaseEvent,
    KafkaConsumer,
    KafkaProducer,
    KafkaSettings,
    MessageContext,
    RetryPolicy,
    TopicSpec,
    ensure_topics,
)
from eventbus import headers as h
from eventbus._embedded import EmbeddedBroker
from eventbus.redrive import REPLAY_COUNT, REPLAY_FROM, DeadLetterFilter, read_dead_letters
from tests.conftest import wait_until

pytestmark = pytest.mark.broker

FAST = RetryPolicy(attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter_s=0)
FAILING = {2: RuntimeError, 5: RuntimeError, 8: KeyError}


@dataclass
class Scenario:
    """Ten events on a topic, three of them dead-lettered by a buggy handler."""

    bootstrap: str
    topic: str
    dlq: str
    group: str
    event_ids: dict[int, str] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)  # the handler's "inbox"

    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            broker_profile="noida",
            consumer_commit_interval_ms=200,
        )

    def consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            group_id=self.group, topics=[self.topic], settings=self.settings(), retry=FAST
        )


def cli(*args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    environ.update({"COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "eventbus.cli", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )


async def acli(scenario: Scenario, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": scenario.bootstrap, "KAFKA_BROKER_PROFILE": "noida", **env}
    return await asyncio.to_thread(cli, *args, **env)


async def _dead_letter_three(scenario: Scenario) -> None:
    s = scenario.settings()
    await ensure_topics([TopicSpec(scenario.topic, 3), TopicSpec(scenario.dlq, 2)], settings=s)
    async with KafkaProducer(settings=s) as producer:
        for n in range(10):
            ev = BaseEvent(
                event_type="employee.updated",
                data={"n": n},
                tenant_id="acme" if n % 2 else "globex",
            )
            scenario.event_ids[n] = str(ev.event_id)
            assert await producer.send_event(scenario.topic, ev, key=f"emp-{n}")
    consumer = scenario.consumer()

    async def buggy(msg: dict[str, Any]) -> None:
        n = msg["data"]["n"]
        if n in FAILING:
            raise FAILING[n](f"bug on {n}")
        scenario.applied[msg["event_id"]] = n

    await consumer.start()
    task = consumer.start_background(buggy)
    try:
        await wait_until(lambda: consumer.stats.processed + consumer.stats.dead_lettered == 10)
    finally:
        await consumer.stop()
        await task
    assert consumer.stats.dead_lettered == 3


@pytest.fixture(scope="module")
def scenario(noida_broker: EmbeddedBroker) -> Scenario:
    u = uuid.uuid4().hex[:8]
    sc = Scenario(noida_broker.bootstrap_servers, f"rd{u}-queue", f"rd{u}-dlq", f"g{u}")
    asyncio.run(_dead_letter_three(sc))
    return sc


async def test_list_shows_exactly_the_dead_letters(scenario: Scenario) -> None:
    table = await acli(scenario, "list", scenario.dlq)
    assert table.returncode == 0, table.stderr
    assert f"{scenario.dlq}: 3 dead letter(s)" in table.stdout
    for n in range(10):
        assert (f"emp-{n} " in table.stdout) == (n in FAILING), n
    assert table.stdout.count("employee.updated") == 3
    assert f"{scenario.topic}:" in table.stdout
    assert "Traceback" not in table.stderr

    as_json = await acli(scenario, "list", scenario.dlq, "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert sorted(d["event_id"] for d in listed) == sorted(scenario.event_ids[n] for n in FAILING)
    assert {d["original_topic"] for d in listed} == {scenario.topic}
    assert all(d["attempts"] == 2 and d["reason"] == "handler" for d in listed)

    runtime = await acli(scenario, "list", scenario.dlq, "--json", "--exception", "RuntimeError")
    assert sorted(d["key"] for d in json.loads(runtime.stdout)) == ["emp-2", "emp-5"]
    acme = await acli(
        scenario, "list", scenario.dlq, "--json", "--tenant", "acme", "--key", "emp-5"
    )
    assert [d["key"] for d in json.loads(acme.stdout)] == ["emp-5"]
    later = await acli(scenario, "list", scenario.dlq, "--since", "2999-01-01")
    assert later.returncode == 0
    assert f"no dead letters in {scenario.dlq} match" in later.stdout


async def test_show_prints_headers_and_value(scenario: Scenario) -> None:
    letters = await read_dead_letters(
        scenario.dlq, settings=scenario.settings(), filters=DeadLetterFilter(key="emp-8")
    )
    (d,) = letters
    shown = await acli(
        scenario, "show", scenario.dlq, str(d.dlq_offset), "--partition", str(d.dlq_partition)
    )
    assert shown.returncode == 0, shown.stderr
    for text in (
        d.ref,
        "dlq.exception_type",
        "KeyError",
        "dlq.original_topic",
        scenario.topic,
        scenario.event_ids[8],
        '"n": 8',
        "globex",
    ):
        assert text in shown.stdout, text


async def test_replay_sends_them_back_and_a_fixed_consumer_applies_each_once(
    scenario: Scenario,
) -> None:
    dry = await acli(scenario, "replay", scenario.dlq, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"dry run: would replay 3 to {scenario.topic}" in dry.stdout

    replayed = await acli(scenario, "replay", scenario.dlq, "--yes")
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 3 of 3 dead letter(s) to {scenario.topic} (0 failed)" in replayed.stdout

    # the handler is fixed and redeployed: the same group resumes after its commits
    consumer = scenario.consumer()
    skipped: list[str] = []
    markers: list[tuple[str | None, str | None]] = []

    async def fixed(msg: dict[str, Any], ctx: MessageContext) -> None:
        event_id = ctx.header(h.EVENT_ID) or ""
        markers.append((ctx.header(REPLAY_COUNT), ctx.header(REPLAY_FROM)))
        if event_id in scenario.applied:  # what an inbox does
            skipped.append(event_id)
            return
        scenario.applied[event_id] = msg["data"]["n"]

    await consumer.start()
    task = consumer.start_background(fixed)
    try:
        await wait_until(lambda: len(scenario.applied) == 10, timeout=30)
        assert skipped == []
        assert sorted(scenario.applied.values()) == list(range(10))
        assert all(count == "1" for count, _ in markers)
        assert all(src and src.startswith(f"{scenario.dlq}:") for _, src in markers)

        # replaying the same dead letters again applies nothing twice
        again = await acli(scenario, "replay", scenario.dlq, "--exception", "RuntimeError", "-y")
        assert again.returncode == 0, again.stderr
        assert "replayed 2 of 2" in again.stdout
        await wait_until(lambda: len(skipped) == 2, timeout=30)
    finally:
        await consumer.stop()
        await task
    assert sorted(skipped) == sorted(scenario.event_ids[n] for n in (2, 5))
    assert len(scenario.applied) == 10
    assert consumer.stats.dead_lettered == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_user_mistakes_are_one_clear_line(scenario: Scenario) -> None:
    cases = [
        (
            ("list", scenario.dlq, "--since", "yesterday"),
            {},
            2,
            "--since: 'yesterday' is not a time",
        ),
        (("list", "no-such-dlq"), {}, 1, "topic 'no-such-dlq' does not exist"),
        (("show", scenario.dlq, "99"), {}, 1, "no dead letter at offset 99"),
        (
            ("replay", scenario.dlq, "--to", "no-such-queue", "-y"),
            {},
            1,
            "'no-such-queue' does not",
        ),
        (
            ("list", scenario.dlq),
            {
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
                "KAFKA_CONNECT_TIMEOUT": "2",
            },
            1,
            "could not connect to Kafka",
        ),
    ]
    results = await asyncio.gather(*(acli(scenario, *args, **env) for args, env, _, _ in cases))
    for (args, _, code, message), result in zip(cases, results, strict=True):
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("error: "), (args, result.stderr)
    usage = await acli(scenario, "list")  # typer's own usage errors keep exit code 2
    assert usage.returncode == 2
    assert "Missing argument" in usage.stderr
