"""eventbus.ops on the in-memory broker: describe, tail, publish, lag, reset and replay, and
the command lines over them (CliRunner; tests/integration/test_cli_ops.py runs them as
subprocesses on a real broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from eventbus import BaseEvent, EventRegistry, KafkaSettings, encode_event
from eventbus._codec import header_value
from eventbus._transport.base import ConsumerConfig, Record, TopicPartition, TopicSpec
from eventbus.cli import app as cli_app
from eventbus.errors import BrokerError, ConfigurationError
from eventbus.ops import (
    Admin,
    EventFilter,
    EventView,
    GroupActiveError,
    InvalidEventError,
    TailStart,
    UnknownGroupError,
    apply_reset,
    build_events,
    consumer_lag,
    describe_topic,
    describe_topics,
    load_registry,
    parse_events,
    plan_replay,
    plan_reset,
    publish_events,
    run_replay,
    tail,
)
from eventbus.redrive import REPLAY_COUNT, REPLAY_FROM, UnknownTopicError
from eventbus.testing import MemoryBroker
from eventbus.testing._broker import _Group
from hrms.events import register_catalog

T0 = datetime(2025, 11, 25, 18, 0, tzinfo=UTC)


def at(minutes: int) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


def put(
    broker: MemoryBroker,
    topic: str,
    partition: int,
    minutes: int,
    etype: str = "leave.requested",
    tenant: str | None = "acme",
    key: str | None = "emp-1",
) -> Record:
    """Append an event at a chosen time (the memory broker stamps the wall clock)."""
    value, headers = encode_event(
        BaseEvent(event_type=etype, tenant_id=tenant, data={"n": minutes})
    )
    log = broker.topics[topic][partition]
    record = Record(
        topic,
        partition,
        len(log),
        None if key is None else key.encode(),
        value,
        tuple(headers),
        at(minutes),
    )
    log.append(record)
    return record


@pytest.fixture
def broker() -> MemoryBroker:
    """Topic ``leaves`` (2 partitions): partition 0 at minutes 0, 10, 20; partition 1 at 5, 15."""
    b = MemoryBroker()
    b.create_topic("leaves", 2)
    for minute in (0, 10, 20):
        put(b, "leaves", 0, minute, tenant="acme" if minute != 10 else "globex")
    put(b, "leaves", 1, 5, etype="leave.approved", key="emp-2")
    put(b, "leaves", 1, 15, etype="employee.updated", key="emp-2")
    return b


def admin_for(broker: MemoryBroker, profile: str = "memory") -> Admin:
    return Admin(KafkaSettings(bootstrap_servers="memory:0", broker_profile=profile), broker)


@pytest.fixture(params=["memory", "tansu"])
async def admin(request: pytest.FixtureRequest, broker: MemoryBroker) -> AsyncIterator[Admin]:
    """Both ways to find offsets: ListOffsets (memory) and reading (the tansu profile)."""
    async with admin_for(broker, request.param) as a:
        yield a


# -- offsets and topics ---------------------------------------------------------------------


async def test_offsets_by_list_offsets_or_by_reading_agree(admin: Admin) -> None:
    tps = await admin.partitions("leaves")
    assert tps == [TopicPartition("leaves", 0), TopicPartition("leaves", 1)]
    assert await admin.earliest_offsets(tps) == {tps[0]: 0, tps[1]: 0}
    assert await admin.end_offsets(tps) == {tps[0]: 3, tps[1]: 2}
    at_7 = await admin.offsets_at(tps, T0 + timedelta(minutes=7))
    assert at_7 == {tps[0]: 1, tps[1]: 1}
    assert await admin.offsets_at(tps, T0 + timedelta(hours=1)) == {tps[0]: 3, tps[1]: 2}
    naive = (T0 + timedelta(minutes=7)).replace(tzinfo=None)  # naive is UTC
    assert await admin.offsets_at(tps, naive) == at_7


async def test_unknown_topic_and_partition_are_clear(admin: Admin) -> None:
    with pytest.raises(UnknownTopicError, match=r"'leave' does not exist.*did you mean 'leaves'"):
        await admin.partitions("leave")
    with pytest.raises(ConfigurationError, match="partitions 0-1; no partition 2, 5"):
        await admin.partitions("leaves", [0, 2, 5])


async def test_describe_topic(broker: MemoryBroker) -> None:
    async with admin_for(broker) as admin:
        await admin.client.create_topics([TopicSpec("audit", 1, 1, {"retention.ms": "1000"})])
        await admin.topics(refresh=True)
        info = await describe_topic(admin, "leaves")
        audit = await describe_topic(admin, "audit")
    assert [(p.partition, p.earliest, p.end, p.records) for p in info.partitions] == [
        (0, 0, 3, 3),
        (1, 0, 2, 2),
    ]
    assert info.records == 5
    assert audit.to_dict() == {
        "topic": "audit",
        "replication_factor": 1,
        "partitions": [{"partition": 0, "earliest": 0, "end": 0, "records": 0}],
        "configs": {"retention.ms": "1000"},
    }


async def test_describe_topics_at_once(broker: MemoryBroker) -> None:
    async with admin_for(broker) as admin:
        await admin.client.create_topics([TopicSpec("audit", 1, 1, {"retention.ms": "1000"})])
        await admin.topics(refresh=True)
        both = await describe_topics(admin, ["leaves", "audit", "leaves"])
        assert await describe_topics(admin, []) == []
        with pytest.raises(UnknownTopicError):
            await describe_topics(admin, ["leaves", "nope"])
    assert [t.name for t in both] == ["leaves", "audit"]
    assert [t.records for t in both] == [5, 0]
    assert both[1].configs == {"retention.ms": "1000"}


# -- tail ---------------------------------------------------------------------------------------


async def collect(admin: Admin, **kw: Any) -> list[tuple[int, int]]:
    return [(v.partition, v.offset) async for v in tail(admin, ["leaves"], **kw)]


async def test_tail_starts_and_filters(admin: Admin) -> None:
    seen: list[TailStart] = []
    last = await collect(admin, last=1, ready=seen.append)
    assert last == [(1, 1), (0, 2)]  # by time across partitions
    assert seen[0].backlog == 2
    assert len(await collect(admin)) == 5  # the last 10 by default
    assert await collect(admin, from_beginning=True, limit=2) == [(0, 0), (1, 0)]
    assert await collect(admin, since=T0 + timedelta(minutes=12)) == [(1, 1), (0, 2)]
    leave = await collect(admin, from_beginning=True, filters=EventFilter(event_type="leave.*"))
    assert leave == [(0, 0), (1, 0), (0, 1), (0, 2)]
    assert await collect(admin, last=5, filters=EventFilter(tenant_id="globex")) == [(0, 1)]
    assert await collect(admin, last=5, filters=EventFilter(key="emp-2")) == [(1, 0), (1, 1)]
    assert await collect(admin, last=0) == []
    with pytest.raises(ConfigurationError, match="give one start"):
        await collect(admin, last=1, from_beginning=True)


async def test_tail_follows_new_events_until_cancelled(broker: MemoryBroker) -> None:
    got: list[EventView] = []
    ready = asyncio.Event()
    arrived = asyncio.Event()

    async def follow() -> None:
        async with admin_for(broker) as admin:
            async for view in tail(
                admin, ["leaves"], last=0, follow=True, ready=lambda _s: ready.set()
            ):
                got.append(view)
                arrived.set()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(ready.wait(), 5)
    value, headers = encode_event(BaseEvent(event_type="leave.cancelled", tenant_id="acme"))
    broker.append("leaves", value, b"emp-9", headers, 1)
    await asyncio.wait_for(arrived.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(v.event_type, v.key, v.offset) for v in got] == [("leave.cancelled", "emp-9", 2)]


async def test_tail_reads_nothing_beyond_the_end_it_began_with(broker: MemoryBroker) -> None:
    async with admin_for(broker) as admin:
        views = tail(admin, ["leaves"], from_beginning=True)
        first = await anext(views)
        put(broker, "leaves", 0, 30)  # after the start: not part of this tail
        rest = [v async for v in views]
    assert (first.partition, first.offset) == (0, 0)
    assert len(rest) == 4


def test_event_view_of_envelopes_and_of_other_values() -> None:
    kafkajs = json.dumps(
        {"type": "USER_CREATED", "data": {"id": 1, "bio": None}, "metadata": {"tenantId": "t"}}
    ).encode()
    view = EventView.from_record(Record("u", 0, 3, None, kafkajs, (), at(0)))
    assert (view.event_type, view.tenant_id, view.key) == ("USER_CREATED", "t", None)
    assert view.preview() == '{"id":1}'  # null fields left out
    assert view.to_dict()["timestamp"] == "2025-11-25T18:00:00Z"
    text = EventView.from_record(Record("u", 0, 4, b"k", b"plain text", ((("a", b"\xff"),)), 0))
    assert (text.event_type, text.data, text.preview(6)) == (None, "plain text", "plain…")
    assert text.to_dict()["headers"] == {"a": "base64:/w=="}
    other = EventView.from_record(Record("u", 0, 5, None, b"[1, 2]", (), 0))
    assert other.data == [1, 2]


# -- publish -----------------------------------------------------------------------------------


def test_parse_events_object_list_and_json_lines() -> None:
    assert parse_events('{"event_type": "a"}') == [{"event_type": "a"}]
    assert parse_events('[{"event_type": "a"}, {"event_type": "b"}]')[1] == {"event_type": "b"}
    lines = '{"event_type": "a"}\n\n{"event_type": "b"}\n'
    assert [e["event_type"] for e in parse_events(lines)] == ["a", "b"]
    pretty = '{\n  "event_type": "a",\n  "data": {}\n}\n'
    assert parse_events(pretty) == [{"event_type": "a", "data": {}}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f.json: no JSON given"),
        ('{"event_type": "a",\n  "data": }', "f.json: not JSON: Expecting value at line 2 column"),
        ('{"event_type": "a"}\n{"event_type": \n', "f.json: line 2: not JSON: Expecting value"),
        ('[{"event_type": "a"}, 3]', "f.json: event 2 is not a JSON object (int)"),
        ('"text"', "f.json: event 1 is not a JSON object (str)"),
    ],
)
def test_parse_events_errors_name_the_line_or_item(text: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_events(text, "f.json")
    assert str(caught.value).startswith(message)


@pytest.fixture
def registry() -> EventRegistry:
    return register_catalog(EventRegistry())


def test_build_events_validates_against_the_registry(registry: EventRegistry) -> None:
    good = {"event_type": "user.created", "data": {"user_id": 1, "email": "a@example.com"}}
    kafkajs = {"type": "USER_DELETED", "data": {"user_id": 2}, "metadata": {"tenantId": "t"}}
    events = build_events([good, kafkajs], registry, "user-queue")
    assert [type(e).__name__ for e in events] == ["UserEvent", "UserEvent"]
    assert (events[1].event_type, events[1].tenant_id) == ("user.deleted", "t")
    assert events[0].event_id != events[1].event_id  # filled in
    assert events[0].timestamp.tzinfo is not None
    kept = {**good, "event_id": "evt-1", "timestamp": "2025-11-25T18:00:00Z"}
    (event,) = build_events([kept], registry)
    assert (str(event.event_id), event.timestamp) == ("evt-1", T0)


def test_build_events_reports_every_problem_by_event_and_field(registry: EventRegistry) -> None:
    bad = [
        {"event_type": "user.created", "data": {"email": 5}},
        {"data": {}},
        {"event_type": "no.such", "data": {}},
        {"event_type": "user.created", "data": {"user_id": 1, "email": "a@b.c"}, "priority": "x"},
    ]
    with pytest.raises(InvalidEventError) as caught:
        build_events(bad, registry)
    problems = caught.value.problems
    assert "event 1 (user.created): data.user_id: Field required" in problems
    assert "event 1 (user.created): data.email: Input should be a valid string" in problems
    assert any(p.startswith("event 2: JSON object is not an event envelope") for p in problems)
    assert any(
        p.startswith("event 3 (no.such): no model is registered for this event type (known: ")
        for p in problems
    )
    assert any(p.startswith("event 4 (user.created): priority: Input should be") for p in problems)
    (loose,) = build_events([bad[2]], registry, validate=False)  # the envelope alone
    assert type(loose) is BaseEvent
    with pytest.raises(InvalidEventError, match="the registry is empty: pass --registry"):
        build_events([bad[2]], EventRegistry())


def test_load_registry() -> None:
    assert load_registry().knows("leave.requested")  # hrms.events, registered on import
    mine = load_registry(["tests.unit.test_ops:REGISTRY"])
    assert mine is REGISTRY
    assert load_registry(["hrms.events:register_catalog"]).knows("user.created")
    with pytest.raises(ConfigurationError, match="cannot import no_such_module"):
        load_registry(["no_such_module"])
    with pytest.raises(ConfigurationError, match="has no 'nothing'"):
        load_registry(["hrms.events:nothing"])
    with pytest.raises(ConfigurationError, match="str is not an EventRegistry"):
        load_registry(["tests.unit.test_ops:NOT_A_REGISTRY"])


REGISTRY = EventRegistry()
NOT_A_REGISTRY = "registry"


async def test_publish_events_waits_for_each_acknowledgement(
    broker: MemoryBroker, registry: EventRegistry
) -> None:
    events = build_events(
        [
            {"event_type": "user.created", "data": {"user_id": 7, "email": "a@example.com"}},
            {"event_type": "user.updated", "data": {"user_id": 7, "email": "b@example.com"}},
        ],
        registry,
    )
    broker.create_topic("users", 3)
    async with admin_for(broker) as admin:
        done = await publish_events(admin, "users", events)
        keyed = await publish_events(admin, "users", events[:1], key="fixed")
        with pytest.raises(UnknownTopicError):
            await publish_events(admin, "nope", events)
    assert [p.metadata.partition for p in done] == [done[0].metadata.partition] * 2  # key 7
    assert [p.metadata.offset for p in done] == [0, 1]
    stored = broker.topics["users"][keyed[0].metadata.partition][keyed[0].metadata.offset]
    assert stored.key == b"fixed"
    assert header_value(stored.headers, "event_id") == str(events[0].event_id)


# -- lag and reset -----------------------------------------------------------------------------


def commit(broker: MemoryBroker, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Committed offsets of a group without members, as a stopped consumer leaves them."""
    broker.groups.setdefault(group, _Group()).committed.update(offsets)


P0, P1 = TopicPartition("leaves", 0), TopicPartition("leaves", 1)


async def test_lag_per_group_and_partition(broker: MemoryBroker) -> None:
    commit(broker, "payroll", {P0: 1, P1: 2})
    commit(broker, "audit", {P0: 3})
    broker.create_topic("other")
    commit(broker, "audit", {TopicPartition("other", 0): 0})
    async with admin_for(broker, "tansu") as admin:
        everyone = await consumer_lag(admin)
        audit = await consumer_lag(admin, ["audit"], topic="leaves")
        with pytest.raises(UnknownGroupError, match=r"'payrol' has no members.*did you mean"):
            await consumer_lag(admin, ["payrol"])
    by_group = {g.group_id: g for g in everyone}
    assert by_group["payroll"].total == 2
    assert [(p.partition, p.committed, p.end, p.lag) for p in by_group["payroll"].partitions] == [
        (0, 1, 3, 2),
        (1, 2, 2, 0),
    ]
    assert (by_group["payroll"].state, by_group["payroll"].members) == ("Empty", 0)
    assert [p.topic for p in audit[0].partitions] == ["leaves"]
    assert audit[0].to_dict()["lag"] == 0


async def test_reset_plans_then_commits(admin: Admin, broker: MemoryBroker) -> None:
    commit(broker, "g", {P0: 3, P1: 2})
    earliest = await plan_reset(admin, "g", "leaves", "earliest")
    assert [(m.current, m.target, m.delta) for m in earliest.moves] == [(3, 0, -3), (2, 0, -2)]
    assert broker.committed("g", P0) == 3  # a plan changes nothing
    await apply_reset(admin, earliest)
    assert (broker.committed("g", P0), broker.committed("g", P1)) == (0, 0)
    latest = await plan_reset(admin, "g", "leaves", "latest", partitions=[1])
    assert [(m.partition, m.target) for m in latest.moves] == [(1, 2)]
    when = await plan_reset(admin, "g", "leaves", T0 + timedelta(minutes=11))
    assert [m.target for m in when.moves] == [2, 1]
    clamped = await plan_reset(admin, "new-group", "leaves", 9)
    assert [(m.current, m.target, m.note) for m in clamped.moves] == [
        (None, 3, "9 is past the end 3"),
        (None, 2, "9 is past the end 2"),
    ]
    await apply_reset(admin, clamped)
    assert broker.committed("new-group", P1) == 2


async def test_changing_offsets_of_a_group_with_members_is_refused(broker: MemoryBroker) -> None:
    member = broker.consumer(ConsumerConfig(group_id="busy", topics=("leaves",)))
    await member.start()
    try:
        async with admin_for(broker) as admin:
            with pytest.raises(GroupActiveError, match="'busy' has 1 active member"):
                await plan_reset(admin, "busy", "leaves", "earliest")
            with pytest.raises(GroupActiveError, match="stop its consumers first"):
                await plan_replay(admin, "leaves", "busy", from_offset=0)
            with pytest.raises(BrokerError, match="has active members"):
                await admin.client.alter_group_offsets("busy", {P0: 0})
    finally:
        await member.stop()


# -- replay ------------------------------------------------------------------------------------


async def test_replay_rewinds_a_group_never_forward(admin: Admin, broker: MemoryBroker) -> None:
    commit(broker, "g", {P0: 3, P1: 1})
    plan = await plan_replay(admin, "leaves", "g", since=T0 + timedelta(minutes=8))
    assert plan.mode == "rewind"
    # partition 1's committed offset 1 is before the start (offset 1, minute 15): kept
    assert [(r.partition, r.start, r.end, r.committed) for r in plan.ranges] == [
        (0, 1, 3, 3),
        (1, 1, 2, 1),
    ]
    assert plan.records == 3
    result = await run_replay(admin, plan)
    assert result.group_offsets == {P0: 1, P1: 1}
    assert (broker.committed("g", P0), broker.committed("g", P1)) == (1, 1)
    by_offset = await plan_replay(admin, "leaves", "g", from_offset=0, partitions=[0])
    assert [(r.start, r.end) for r in by_offset.ranges] == [(0, 3)]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "give where the replay starts"),
        ({"from_offset": 0, "since": T0}, "give where the replay starts"),
        ({"from_offset": 0, "until_offset": 2}, "--until needs --to REPLAY_TOPIC"),
        ({"from_offset": 0, "until": T0, "until_offset": 1, "to": "r"}, "give one end"),
        ({"from_offset": 0, "to": "leaves"}, "--to must name another topic"),
    ],
)
async def test_replay_options_that_make_no_sense(
    broker: MemoryBroker, kw: dict[str, Any], message: str
) -> None:
    async with admin_for(broker) as admin:
        with pytest.raises(ConfigurationError, match=message):
            await plan_replay(admin, "leaves", "g", **kw)


async def test_replay_copies_a_bounded_range_and_points_the_group_at_it(
    admin: Admin, broker: MemoryBroker
) -> None:
    commit(broker, "g", {P0: 3, P1: 2})
    broker.create_topic("leaves.replay", 2)
    old = put(broker, "leaves.replay", 0, 1)  # an earlier replay, not to be read again
    plan = await plan_replay(
        admin,
        "leaves",
        "g",
        since=T0 + timedelta(minutes=5),
        until=T0 + timedelta(minutes=16),
        to="leaves.replay",
    )
    assert (plan.mode, plan.target_exists, plan.records) == ("copy", True, 3)
    assert [(r.start, r.end) for r in plan.ranges] == [(1, 2), (0, 2)]
    progress: list[tuple[int, int]] = []
    result = await run_replay(admin, plan, progress=lambda d, t: progress.append((d, t)))
    assert (result.copied, result.created) == (3, False)
    assert progress[0] == (0, 3)
    assert progress[-1] == (3, 3)
    copies = broker.topics["leaves.replay"]
    assert [r.offset for r in copies[0]] == [old.offset, 1]
    assert [r.offset for r in copies[1]] == [0, 1]
    assert header_value(copies[0][1].headers, REPLAY_FROM) == "leaves:0:1"
    assert header_value(copies[0][1].headers, REPLAY_COUNT) == "1"
    assert copies[0][1].value == broker.topics["leaves"][0][1].value
    assert copies[1][0].key == b"emp-2"
    # the group reads exactly these copies; its offsets on the topic itself are untouched
    replay_tp = TopicPartition("leaves.replay", 0)
    assert broker.committed("g", replay_tp) == 1
    assert broker.committed("g", TopicPartition("leaves.replay", 1)) == 0
    assert broker.committed("g", P0) == 3


async def test_replay_copy_creates_the_replay_topic_like_the_topic(broker: MemoryBroker) -> None:
    async with admin_for(broker) as admin:
        plan = await plan_replay(admin, "leaves", "g", from_offset=2, to="leaves-replay")
        assert (plan.target_exists, plan.records) == (False, 1)
        result = await run_replay(admin, plan)
    assert result.created
    assert len(broker.topics["leaves-replay"]) == 2
    assert [len(p) for p in broker.topics["leaves-replay"]] == [1, 0]


# -- the command line (CliRunner on the in-memory broker) -------------------------------------


@pytest.fixture
def cli(broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr("eventbus.ops._admin.make_transport", lambda _s: broker)
    monkeypatch.setenv("KAFKA_BROKER_PROFILE", "memory")
    monkeypatch.setattr("eventbus._cli_common.console", Console(width=200))
    monkeypatch.setattr("eventbus._cli_ops.console", Console(width=200))
    return CliRunner()


def invoke(runner: CliRunner, *args: str, input: str | None = None) -> Any:
    return runner.invoke(cli_app, list(args), input=input)


def test_cli_describe_tail_lag(cli: CliRunner, broker: MemoryBroker) -> None:
    described = invoke(cli, "topics", "describe", "leaves", "--json")
    assert described.exit_code == 0, described.output
    assert [p["end"] for p in json.loads(described.stdout)["partitions"]] == [3, 2]
    table = invoke(cli, "topics", "describe", "leaves")
    assert "leaves: 2 partition(s), replication 1, 5 record(s)" in table.stdout
    tailed = invoke(cli, "tail", "leaves", "--from-beginning", "--type", "leave.*")
    assert tailed.exit_code == 0, tailed.output
    lines = tailed.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("2025-11-25 18:00:00.000  leaves[0]@0  leave.requested  key=emp-1")
    assert "tenant=acme" in lines[0]
    assert '{"n":0}' in lines[0]
    assert "4 event(s)" in tailed.stderr
    as_json = invoke(cli, "tail", "leaves", "--last", "1", "--json", "--key", "emp-1")
    assert [json.loads(line)["offset"] for line in as_json.stdout.splitlines()] == [2]
    commit(broker, "payroll", {P0: 1})
    lag = invoke(cli, "lag")
    assert lag.exit_code == 0, lag.output
    assert "payroll" in lag.stdout
    assert json.loads(invoke(cli, "lag", "--group", "payroll", "--json").stdout)[0]["lag"] == 2


def test_cli_publish(cli: CliRunner, broker: MemoryBroker) -> None:
    broker.create_topic("users", 3)
    lines = "\n".join(
        json.dumps({"event_type": "user.created", "data": {"user_id": n, "email": f"{n}@x.io"}})
        for n in (1, 2)
    )
    out = invoke(cli, "publish", "users", "-", "--json", input=lines)
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["event_type"] for r in rows] == ["user.created"] * 2
    assert sum(len(p) for p in broker.topics["users"]) == 2
    dry = invoke(cli, "publish", "users", "--dry-run", input=lines)
    assert dry.exit_code == 0
    assert "dry run: 2 valid event(s), nothing published" in dry.stderr
    bad = invoke(cli, "publish", "users", input='{"event_type": "user.created", "data": {}}')
    assert bad.exit_code == 1
    assert "data.user_id: Field required" in bad.stderr
    assert sum(len(p) for p in broker.topics["users"]) == 2


def test_cli_reset_and_replay(cli: CliRunner, broker: MemoryBroker) -> None:
    commit(broker, "g", {P0: 3, P1: 2})
    dry = invoke(
        cli,
        "groups",
        "reset-offsets",
        "-g",
        "g",
        "--topic",
        "leaves",
        "--to-offset",
        "1",
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.output
    assert "reset g on leaves to offset 1" in dry.stdout
    assert "dry run: nothing changed" in dry.stderr
    assert broker.committed("g", P0) == 3
    refused = invoke(
        cli, "groups", "reset-offsets", "-g", "g", "--topic", "leaves", "--to-earliest", input="n\n"
    )
    assert refused.exit_code == 1
    assert "offsets not reset (answer y, or pass --yes)" in refused.stderr
    done = invoke(
        cli, "groups", "reset-offsets", "-g", "g", "--topic", "leaves", "--to-earliest", "--yes"
    )
    assert done.exit_code == 0, done.output
    assert broker.committed("g", P0) == 0
    invoke(cli, "groups", "reset-offsets", "-g", "g", "--topic", "leaves", "--to-latest", "-y")
    rewind = invoke(cli, "replay", "leaves", "-g", "g", "--from-offset", "2", "--yes")
    assert rewind.exit_code == 0, rewind.output
    assert "rewound g on 2 partition(s) of leaves" in rewind.stderr
    assert (broker.committed("g", P0), broker.committed("g", P1)) == (2, 2)
    copy = invoke(
        cli,
        "replay",
        "leaves",
        "-g",
        "g",
        "--from-offset",
        "0",
        "--until-offset",
        "1",
        "--to",
        "leaves.replay",
        "--yes",
    )
    assert copy.exit_code == 0, copy.output
    assert "copied 2 record(s) to leaves.replay (created)" in copy.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["tail", "nope"], 1, "topic 'nope' does not exist"),
        (["tail", "leaves", "--last", "1", "--from-beginning"], 2, "give one start"),
        (["tail", "leaves", "--since", "soon"], 2, "--since: 'soon' is not a time"),
        (["topics", "describe", "leave"], 1, "did you mean 'leaves'"),
        (["lag", "--group", "ghost"], 1, "consumer group 'ghost' has no members"),
        (["lag", "--topic", "nope"], 1, "topic 'nope' does not exist"),
        (["groups", "reset-offsets", "-g", "g", "--topic", "leaves"], 2, "give one of --to-"),
        (
            ["groups", "reset-offsets", "-g", "g", "--topic", "leaves", "--to-latest", "-p", "4"],
            1,
            "no partition 4",
        ),
        (["replay", "leaves", "-g", "g"], 2, "give where the replay starts"),
        (["replay", "leaves", "-g", "g", "--since", "1h", "--until", "1m"], 2, "needs --to"),
        (["publish", "leaves", "--registry", "no_such_module"], 2, "cannot import"),
        (["publish", "nope"], 1, "topic 'nope' does not exist"),
        (["publish", "leaves", "/no/such/file.json"], 2, "cannot read /no/such/file.json"),
    ],
)
def test_cli_user_mistakes_are_one_line(
    cli: CliRunner, args: list[str], code: int, message: str
) -> None:
    valid = '{"event_type": "user.created", "data": {"user_id": 1, "email": "a@b.io"}}'
    out = invoke(cli, *args, input=valid)
    assert out.exit_code == code, out.output
    assert message in out.stderr
    assert out.stderr.startswith("error: ")
    assert out.exception is None or isinstance(out.exception, SystemExit)
