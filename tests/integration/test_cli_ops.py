"""The operator's commands (``topics describe``, ``tail``, ``publish``, ``lag``, ``groups
reset-offsets``, ``replay``) run as a user runs them: subprocesses against a real embedded
broker (noida) of this module's own, with real consumer groups."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from eventbus import (
    KafkaConsumer,
    KafkaProducer,
    KafkaSettings,
    Record,
    TopicSpec,
    encode_event,
    ensure_topics,
)
from eventbus._codec import header_value
from eventbus._embedded import EmbeddedBroker
from eventbus._transport.base import TopicPartition
from eventbus.ops import Admin, consumer_lag, describe_topic, tail
from hrms.events import create_leave_event, create_user_event

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of this module's own: the tests change groups' offsets."""
    b = EmbeddedBroker("noida", data_dir=tmp_path_factory.mktemp("cli-ops")).start()
    try:
        yield b
    finally:
        b.stop()


def environ(broker: EmbeddedBroker, **env: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    out.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_BROKER_PROFILE": "noida",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
    )
    return out


def cli(
    broker: EmbeddedBroker, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "eventbus.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=environ(broker, **env),
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


async def run(broker: EmbeddedBroker, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The command in a thread, so this test's own consumers keep their heartbeats."""
    return await asyncio.to_thread(cli, broker, *args, **kw)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def settings(broker: EmbeddedBroker) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        broker_profile="noida",
        consumer_commit_interval_ms=200,
    )


async def new_topic(broker: EmbeddedBroker, partitions: int) -> str:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    await ensure_topics([TopicSpec(name, partitions)], settings=settings(broker))
    return name


# -- publish, describe, tail -------------------------------------------------------------------


async def test_publish_then_describe_and_tail(broker: EmbeddedBroker, tmp_path: Path) -> None:
    topic = await new_topic(broker, 3)
    lines = "\n".join(
        json.dumps(e)
        for e in (
            {
                "event_type": "leave.requested",
                "tenant_id": "acme",
                "data": {"leave_id": 1, "employee_id": 7},
            },
            {
                "event_type": "leave.approved",
                "tenant_id": "globex",
                "data": {"leave_id": 1, "employee_id": 7},
            },
            {
                "event_type": "user.created",
                "tenant_id": "acme",
                "data": {"user_id": 9, "email": "ann@example.com"},
            },
        )
    )
    published = ok(await run(broker, "publish", topic, stdin=lines)).splitlines()
    assert len(published) == 4
    assert published[0].startswith("published leave.requested ")
    assert f" to {topic} partition " in published[0]
    assert published[-1] == f"published 3 event(s) to {topic}"
    batch = tmp_path / "batch.json"
    batch.write_text(
        json.dumps([{"event_type": "user.deleted", "data": {"user_id": n}} for n in (1, 2)])
    )
    keyed = json.loads(ok(await run(broker, "publish", topic, str(batch), "--key", "k", "--json")))
    assert [r["offset"] for r in keyed] == [keyed[0]["offset"], keyed[0]["offset"] + 1]
    assert keyed[0]["partition"] == keyed[1]["partition"]

    described, everything, filtered = await asyncio.gather(
        run(broker, "topics", "describe", topic, "--json"),
        run(broker, "tail", topic, "--from-beginning", "--json"),
        run(broker, "tail", topic, "--type", "leave.*", "--tenant", "acme"),
    )
    info = json.loads(ok(described))
    assert len(info["partitions"]) == 3
    assert sum(p["end"] for p in info["partitions"]) == 5
    assert info["configs"]["cleanup.policy"] == "delete"
    events = [json.loads(line) for line in ok(everything).splitlines()]
    assert len(events) == 5
    ids = {line.split()[2] for line in published[:3]} | {r["event_id"] for r in keyed}
    assert {e["event_id"] for e in events} == ids
    assert {e["key"] for e in events if e["event_type"] == "user.deleted"} == {"k"}
    (line,) = ok(filtered).splitlines()
    assert "leave.requested" in line
    assert "tenant=acme" in line
    assert "key=1" in line  # the leave's aggregate id
    assert '"employee_id":7' in line
    assert "1 event(s)" in filtered.stderr


async def line_with(stream: asyncio.StreamReader | None, text: str) -> str:
    """The first line of ``stream`` holding ``text`` (lines before it are dropped)."""
    assert stream is not None
    while True:
        line = (await asyncio.wait_for(stream.readline(), 30)).decode()
        assert line, f"the stream ended before {text!r}"
        if text in line:
            return line


async def test_tail_follows_until_ctrl_c(broker: EmbeddedBroker) -> None:
    topic = await new_topic(broker, 2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "eventbus.cli", "tail", topic, "-f", "--type", "user.*"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ(broker),
    )
    try:
        await line_with(proc.stderr, f"following {topic} (2 partition(s))")
        async with KafkaProducer(settings=settings(broker)) as producer:
            await producer.publish(topic, create_leave_event("hr", 1, 7))
            await producer.publish(topic, create_user_event("users", 5, email="e@x.io"))
        line = await line_with(proc.stdout, "user.created")
        assert f"{topic}[" in line
        assert "key=5" in line
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert proc.stdout is not None
        assert await proc.stdout.read() == b""  # the leave event was filtered out
        assert "stopped: 1 event(s)" in await line_with(proc.stderr, "stopped")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- lag, reset, replay with a real consumer group -----------------------------------------------


class Group:
    """A real consumer group of this test."""

    def __init__(self, broker: EmbeddedBroker, group_id: str, topics: list[str]) -> None:
        self.broker, self.group_id, self.topics = broker, group_id, topics

    @contextlib.asynccontextmanager
    async def member(self, count: int) -> AsyncIterator[list[Record]]:
        """One member, held while the block runs, once it handled ``count`` records (so
        it has joined); it commits and leaves at the end."""
        got: list[Record] = []
        enough = asyncio.Event()

        async def handle(record: Record) -> None:
            got.append(record)
            if len(got) >= count:
                enough.set()

        consumer = KafkaConsumer(
            group_id=self.group_id, topics=self.topics, settings=settings(self.broker)
        )
        await consumer.start()
        task = consumer.start_background(handle)
        try:
            await asyncio.wait_for(enough.wait(), 30)
            yield got
        finally:
            await consumer.stop()
            await task

    async def consume(self, count: int) -> list[Record]:
        """Run the group until it handled ``count`` records."""
        async with self.member(count) as got:
            return got

    async def offsets(self) -> dict[tuple[str, int], int]:
        """The group's committed offsets (read in-process: the CLI is tested elsewhere)."""
        async with Admin(settings(self.broker)) as admin:
            (lag,) = await consumer_lag(admin, [self.group_id])
        return {(p.topic, p.partition): p.committed for p in lag.partitions}


async def send(broker: EmbeddedBroker, topic: str, first: int, last: int) -> None:
    async with KafkaProducer(settings=settings(broker)) as producer:
        for n in range(first, last):
            value, headers = encode_event(create_user_event("u", n, "user.updated", f"{n}@x.io"))
            await producer.enqueue_raw(topic, value, str(n), headers, n % 2)


async def test_lag_reset_offsets_and_replay(broker: EmbeddedBroker) -> None:
    topic, group = await new_topic(broker, 2), f"g-{uuid.uuid4().hex[:8]}"
    await send(broker, topic, 0, 6)  # keys 0-5, 3 per partition
    g = Group(broker, group, [topic])
    first = await g.consume(6)
    boundary = datetime.fromtimestamp(max(r.timestamp_ms for r in first) / 1000 + 0.001, UTC)
    await send(broker, topic, 6, 10)  # keys 6-9, after the boundary

    everyone, table = await asyncio.gather(
        run(broker, "lag", "--json"), run(broker, "lag", "--group", group)
    )
    mine = next(x for x in json.loads(ok(everyone)) if x["group"] == group)
    assert (mine["lag"], mine["state"], mine["members"]) == (4, "Empty", 0)
    assert [(p["committed"], p["end"], p["lag"]) for p in mine["partitions"]] == [(3, 5, 2)] * 2
    assert group in ok(table)
    assert "total" in table.stdout

    # refused while the group has a member (which reads the 4 new records meanwhile)
    async with g.member(4):
        busy = await asyncio.gather(
            run(broker, "groups", "reset-offsets", "-g", group, "--topic", topic,
                "--to-earliest", "--yes"),
            run(broker, "replay", topic, "-g", group, "--from-offset", "0", "--yes"),
        )  # fmt: skip
    for refused in busy:
        assert refused.returncode == 1
        assert f"consumer group '{group}' has 1 active member(s)" in refused.stderr
        assert "stop its consumers first" in refused.stderr
    assert set((await g.offsets()).values()) == {5}  # what the member committed, unchanged

    when = boundary.isoformat()
    dry = await run(broker, "groups", "reset-offsets", "-g", group, "--topic", topic,
                    "--to-datetime", when, "--dry-run", "--json")  # fmt: skip
    plan = json.loads(ok(dry))
    assert [(p["current"], p["target"], p["delta"]) for p in plan["partitions"]] == [(5, 3, -2)] * 2
    assert "dry run: nothing changed" in dry.stderr
    assert set((await g.offsets()).values()) == {5}
    ok(await run(broker, "groups", "reset-offsets", "-g", group, "--topic", topic,
                 "--to-datetime", when, "--yes"))  # fmt: skip
    assert set((await g.offsets()).values()) == {3}
    again = await g.consume(4)  # the group re-reads exactly the records after the time
    assert sorted(r.key for r in again) == [b"6", b"7", b"8", b"9"]

    # rewind: everything from the start of the range to the end is read again
    rewind = await run(broker, "replay", topic, "-g", group, "--from-offset", "4", "--yes")
    assert f"rewound {group} on 2 partition(s) of {topic}" in rewind.stderr, rewind.stderr
    assert sorted(r.key for r in await g.consume(2)) == [b"8", b"9"]

    # copy: just the range, to a replay topic the group also reads; the topic is untouched
    copy = await run(broker, "replay", topic, "-g", group, "--from-offset", "0",
                     "--until-offset", "1", "--to", f"{topic}.replay", "--yes")  # fmt: skip
    assert f"copied 2 record(s) to {topic}.replay (created)" in copy.stderr, copy.stderr
    both = Group(broker, group, [topic, f"{topic}.replay"])
    copies = await both.consume(2)
    assert sorted(r.key for r in copies) == [b"0", b"1"]
    assert {r.topic for r in copies} == {f"{topic}.replay"}
    assert {header_value(r.headers, "replay.from") for r in copies} == {
        f"{topic}:0:0",
        f"{topic}:1:0",
    }
    assert set((await both.offsets()).values()) == {5, 1}  # the topic's end, the copies' end


# -- mistakes ---------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_mistakes_are_one_line_messages_with_nonzero_exits(broker: EmbeddedBroker) -> None:
    topic = await new_topic(broker, 1)
    nowhere = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "KAFKA_CONNECT_TIMEOUT": "2",
    }
    user = '{"event_type": "user.created", "data": {"user_id": 1, "email": "a@b.io"}}'
    cases: list[tuple[list[str], str | None, dict[str, str], int, str]] = [
        (["topics", "describe", f"{topic}x"], None, {}, 1, f"did you mean '{topic}'"),
        (["publish", "no-such-topic", "-"], user, {}, 1, "topic 'no-such-topic' does not exist"),
        (["lag"], None, nowhere, 1, "could not connect to Kafka at 127.0.0.1:"),
        (["publish", topic], '{"event_type": "user.created",', {}, 1, "not JSON: Expecting"),
        (["publish", topic], '{"event_type": "user.created", "data": {"email": 3}}', {}, 1,
         "event 1 (user.created): data.user_id: Field required"),
        (["replay", topic, "-g", "g", "--since", "1h", "--until", "5m"], None, {}, 2,
         "--until needs --to REPLAY_TOPIC"),
    ]  # fmt: skip
    results = await asyncio.gather(
        *(run(broker, *args, stdin=stdin, **env) for args, stdin, env, _, _ in cases)
    )
    for (args, _, _, code, message), result in zip(cases, results, strict=True):
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("error: "), (args, result.stderr)


# -- the admin calls under the commands, on each client and on Tansu ---------------------------


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
async def test_admin_calls_on_each_client(broker: EmbeddedBroker, client: str) -> None:
    s = settings(broker).model_copy(update={"transport": client})
    topic, group = await new_topic(broker, 2), f"g-{uuid.uuid4().hex[:8]}"
    await send(broker, topic, 0, 5)  # offsets 0-2 in partition 0, 0-1 in partition 1
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    async with Admin(s) as admin:
        api = admin.client
        assert await api.list_offsets([p0, p1], "earliest") == {p0: 0, p1: 0}
        assert await api.list_offsets([p0, p1], "latest") == {p0: 3, p1: 2}
        assert await api.list_offsets([p0], 2**41) == {p0: None}  # no record that late
        await api.alter_group_offsets(group, {p0: 2})
        assert group in await api.list_groups()
        described = await api.describe_groups([group, "no-such-group"])
        assert (described[group].state, described[group].members) == ("Empty", ())
        assert described["no-such-group"].members == ()
        assert await api.group_offsets(group) == {p0: 2}
        assert await api.group_offsets(group, ["other"]) == {}
        async with admin.reader({p0: 1, p1: 0}) as reader:
            batches = [b async for b in reader.read_to({p0: 3, p1: 2})]
            assert sorted((r.partition, r.offset) for b in batches for r in b) == [
                (0, 1),
                (0, 2),
                (1, 0),
                (1, 1),
            ]
        assert group not in {g for g in await api.list_groups() if g.startswith("eventbus-ops")}


async def test_offsets_on_tansu_come_from_reading(tansu_broker: EmbeddedBroker) -> None:
    s = KafkaSettings(bootstrap_servers=tansu_broker.bootstrap_servers, broker_profile="tansu")
    topic = f"ops-{uuid.uuid4().hex[:8]}"
    await ensure_topics([TopicSpec(topic, 1)], settings=s)
    async with KafkaProducer(settings=s, producer_linger_ms=50) as producer:
        futures = [
            await producer.enqueue_raw(topic, b'{"n": %d}' % n, None, (), 0) for n in range(6)
        ]  # one batch: Tansu's ListOffsets answers wrong after it
        stored = await asyncio.gather(*futures)
    tp = TopicPartition(topic, 0)
    async with Admin(s) as admin:
        # Tansu's own ListOffsets answers 1 here; the fetch high watermark is right
        assert await admin.end_offsets([tp]) == {tp: 6}
        info = await describe_topic(admin, topic)
        assert [p.end for p in info.partitions] == [6]
        events = [v async for v in tail(admin, [topic], last=2)]
        assert [v.offset for v in events] == [4, 5]
    assert [md.offset for md in stored] == list(range(6))
