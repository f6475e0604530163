"""eventbus.catalog: the catalog file, the layouts, plan/apply against the in-memory admin;
consumer-group names; consumer lag and the health report."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eventbus import BaseEvent, KafkaConsumer, KafkaProducer, TopicSpec, group_name
from eventbus.catalog import (
    Catalog,
    apply_catalog,
    as_layout,
    load_catalog,
    parse_catalog,
    parse_duration_ms,
    plan_topics,
)
from eventbus.errors import BrokerError, ConfigurationError
from eventbus.fastapi import EventBus
from eventbus.testing import MemoryBroker
from hrms.events import EventType, create_user_event

DAY_MS = 86_400_000

SAMPLE: dict[str, Any] = {
    "format": 1,
    "defaults": {"partitions": 3, "replication_factor": 3, "retention": "7d"},
    "dead_letters": {"partitions": 1, "replication_factor": 2, "retention": "30d"},
    "domains": {
        "user": {"topic": "user-queue", "events": ["user.created", "user.login"]},
        "audit": {
            "topic": "audit-queue",
            "partitions": 5,
            "retention": "30d",
            "configs": {"cleanup.policy": "delete", "min.insync.replicas": 2},
            "events": ["audit.log"],
        },
        "notification": {
            "topic": "notification-queue",
            "replication_factor": 2,
            "dead_letter": "mail-dlq",
            "events": ["email.sent"],
        },
        "system": {"topic": "system-events", "dead_letter": False, "events": ["service.health"]},
    },
    "topics": {"inventory-events.critical": {"partitions": 6}},
}


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(SAMPLE)


def specs_by_name(specs: list[TopicSpec]) -> dict[str, TopicSpec]:
    return {s.name: s for s in specs}


# --------------------------------------------------------------------------- the format


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("7d", 7 * DAY_MS),
        ("12h", 43_200_000),
        ("30m", 1_800_000),
        ("45s", 45_000),
        ("500ms", 500),
        ("2w", 14 * DAY_MS),
        (" 1 d ", DAY_MS),
        ("forever", -1),
        (86_400, 86_400),
    ],
)
def test_durations(text: str | int, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["7 days", "d", "", "-5s", -2, True])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="not a duration"):
        parse_duration_ms(bad)


def test_domain_layout_has_domain_topics_dead_letters_and_standalone(catalog: Catalog) -> None:
    specs = specs_by_name(catalog.specs("domain"))
    assert list(specs) == [
        "user-queue",
        "audit-queue",
        "notification-queue",
        "system-events",
        "user-dlq",
        "audit-dlq",
        "mail-dlq",
        "inventory-events.critical",
    ]
    assert specs["user-queue"] == TopicSpec("user-queue", 3, 3, {"retention.ms": str(7 * DAY_MS)})
    assert specs["audit-queue"] == TopicSpec(
        "audit-queue",
        5,
        3,
        {
            "retention.ms": str(30 * DAY_MS),
            "cleanup.policy": "delete",
            "min.insync.replicas": "2",
        },
    )
    assert (
        specs["notification-queue"].partitions,
        specs["notification-queue"].replication_factor,
    ) == (3, 2)
    assert specs["user-dlq"] == TopicSpec("user-dlq", 1, 2, {"retention.ms": str(30 * DAY_MS)})
    assert specs["inventory-events.critical"].partitions == 6


def test_event_type_layout_adds_a_topic_per_event_type_like_its_domain(catalog: Catalog) -> None:
    specs = specs_by_name(catalog.specs("event-type"))
    assert set(specs) - set(specs_by_name(catalog.specs("domain"))) == {
        "user.created",
        "user.login",
        "audit.log",
        "email.sent",
        "service.health",
    }
    audit_log = specs["audit.log"]
    assert (audit_log.partitions, audit_log.replication_factor) == (5, 3)
    assert audit_log.configs == specs["audit-queue"].configs
    audit_log.configs["retention.ms"] = "1"  # fresh copies
    assert catalog.specs("event-type")[0].configs["retention.ms"] == str(7 * DAY_MS)


def test_replication_cap(catalog: Catalog) -> None:
    assert {s.replication_factor for s in catalog.specs("event-type", 1)} == {1}
    two = specs_by_name(catalog.specs("domain", 2))
    assert (two["user-queue"].replication_factor, two["user-dlq"].replication_factor) == (2, 2)
    with pytest.raises(ConfigurationError, match="at least 1"):
        catalog.specs("domain", 0)
    with pytest.raises(ConfigurationError, match="unknown topic layout"):
        catalog.specs("per-tenant")  # type: ignore[arg-type]


def edited(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {**SAMPLE, "domains": dict(SAMPLE["domains"])}
    for key, value in changes.items():
        if key.startswith("domain_"):
            data["domains"][key.removeprefix("domain_")] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (edited(format=2), "format 2 is not supported"),
        (edited(extra={}), "unknown key"),
        (edited(defaults={"partitions": 0}), r"defaults\.partitions"),
        (edited(defaults={"partitions": "3"}), r"defaults\.partitions"),
        (edited(defaults={"retention": "a week"}), r"defaults\.retention"),
        (edited(defaults={"retention": "7d", "retention_ms": 1}), "not both"),
        (edited(defaults={"replicas": 3}), "unknown key"),
        (edited(domain_user={"events": ["user.created"]}), r"domains\.user: needs a topic"),
        (edited(domain_user={"topic": "user queue"}), "not a Kafka topic name"),
        (edited(domain_user={"topic": "u", "events": "user.created"}), "a list"),
        (edited(domain_user={"topic": "u", "events": ["a.b", "a.b"]}), "listed twice"),
        (edited(domain_Users={"topic": "u"}), "a domain name is lowercase"),
        (edited(domain_two={"topic": "t", "events": ["audit.log"]}), "in domains 'audit' and"),
        (edited(domain_two={"topic": "audit_log"}), "'audit_log' collides with 'audit.log'"),
        (edited(domain_two={"topic": "user.login"}), "collides with 'user.login'"),
        (edited(domain_two={"topic": "t", "events": ["user_login"]}), "collides"),
        (edited(topics={"x": {"configs": {"a": [1]}}}), r"configs\.a"),
    ],
)
def test_format_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_catalog(data, "c.toml")


def test_load_catalog_reads_toml_and_reports_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        'format = 1\n[defaults]\nretention = "1d"\n'
        '[domains.user]\ntopic = "user-queue"\nevents = ["user.login"]\n'
        '[topics."audit.log"]\npartitions = 2\n'
    )
    catalog = load_catalog(path)
    assert [s.name for s in catalog.specs("event-type")] == [
        "user-queue",
        "user.login",
        "audit.log",
    ]
    assert catalog.specs()[0] == TopicSpec("user-queue", 1, 1, {"retention.ms": str(DAY_MS)})
    path.write_text("[domains.user\n")
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        load_catalog(path)
    with pytest.raises(ConfigurationError, match="cannot read catalog"):
        load_catalog(tmp_path / "missing.toml")


def test_as_layout() -> None:
    assert as_layout(None) == "domain"
    assert as_layout(" Event-Type ") == "event-type"
    with pytest.raises(ConfigurationError, match="unknown topic layout 'tenant'"):
        as_layout("tenant")


# --------------------------------------------------------------------------- routing


def test_route_under_each_layout(catalog: Catalog) -> None:
    assert catalog.route("user.login", "user-queue", "domain") == "user-queue"
    assert catalog.route("user.login", None, "domain") == "user-queue"
    assert catalog.route("user.login", "user-queue", "event-type") == "user.login"
    assert catalog.route("user.login", None, "event-type") == "user.login"
    # a type of another domain on a topic stays there (a request on a work queue)
    assert catalog.route("user.created", "notification-queue", "event-type") == "notification-queue"
    # a type not declared yet stays on the topic it was given
    assert catalog.route("user.suspended", "user-queue", "event-type") == "user-queue"
    assert catalog.route("user.login", "some-other-topic", "event-type") == "some-other-topic"
    with pytest.raises(ConfigurationError, match="in no domain"):
        catalog.route("user.suspended", None, "event-type")


def test_topics_for_under_each_layout(catalog: Catalog) -> None:
    assert catalog.topics_for(["user", "audit-queue"], "domain") == ["user-queue", "audit-queue"]
    assert catalog.topics_for(["user"], "event-type") == [
        "user.created",
        "user.login",
        "user-queue",
    ]
    assert catalog.topics_for(["user.login", "audit.log"], "domain") == [
        "user-queue",
        "audit-queue",
    ]
    assert catalog.topics_for(["user.login"], "event-type") == ["user.login"]
    assert catalog.topics_for(["user", "user-queue", "user.login"], "event-type") == [
        "user.created",
        "user.login",
        "user-queue",
    ]
    assert catalog.topics_for(["my-topic"], "event-type") == ["my-topic"]


def test_dead_letter_topics_are_per_domain(catalog: Catalog) -> None:
    assert catalog.dead_letter_topic("user-queue") == "user-dlq"
    assert catalog.dead_letter_topic("user.login") == "user-dlq"
    assert catalog.dead_letter_topic("email.sent") == "mail-dlq"
    assert catalog.dead_letter_topic("service.health") == "service.health-dlq"  # none declared
    assert catalog.dead_letter_topic("orders-queue") == "orders-dlq"
    assert catalog.domain_of_topic("mail-dlq") is catalog.domains["notification"]
    assert catalog.domain_of_topic("user.login") is catalog.domains["user"]
    assert catalog.domain_of_topic("elsewhere") is None


def test_with_topics_renames_domain_topics(catalog: Catalog) -> None:
    renamed = catalog.with_topics({"user": "acme-users", "audit": "audit-queue"})
    assert renamed.route("user.login", None, "domain") == "acme-users"
    assert renamed.route("user.login", "acme-users", "event-type") == "user.login"
    assert renamed.specs()[0].name == "acme-users"
    assert renamed.dead_letter_topic("acme-users") == "user-dlq"
    with pytest.raises(ConfigurationError, match="no domain named payroll"):
        catalog.with_topics({"payroll": "p"})


# --------------------------------------------------------------------------- plan and apply


async def test_apply_creates_then_is_idempotent_and_dry_run_changes_nothing(
    catalog: Catalog,
) -> None:
    broker = MemoryBroker()
    specs = catalog.specs("event-type", replication_factor=1)
    dry = await apply_catalog(specs, transport=broker, dry_run=True)
    assert [s.name for s in dry.create] == [s.name for s in specs]
    assert dry.lines()[0] == (
        "+ create user-queue: 3 partitions, replication 1, retention.ms=604800000"
    )
    assert dry.lines()[-1] == "13 to create, 0 to grow, 0 to reconfigure, 0 unchanged"
    assert broker.topics == {}

    applied = await apply_catalog(specs, transport=broker)
    assert applied.changes == 13
    assert len(broker.topics["audit.log"]) == 5
    assert broker.topic_configs["audit.log"]["retention.ms"] == str(30 * DAY_MS)

    again = await apply_catalog(specs, transport=broker)
    assert again.changes == 0
    assert sorted(again.unchanged) == sorted(s.name for s in specs)
    assert again.lines() == ["0 to create, 0 to grow, 0 to reconfigure, 13 unchanged"]


async def test_plan_grows_partitions_sets_configs_and_refuses_the_rest() -> None:
    broker = MemoryBroker()
    admin = broker.admin()
    await admin.create_topics(
        [
            TopicSpec("grow", 2, 1, {"retention.ms": "1000"}),
            TopicSpec("shrink", 6, 1),
            TopicSpec("replicas", 1, 3),
        ]
    )
    wanted = [
        TopicSpec("grow", 4, 1, {"retention.ms": "2000", "cleanup.policy": "delete"}),
        TopicSpec("shrink", 3, 1),
        TopicSpec("replicas", 1, 1),
        TopicSpec("new", 1, 1),
    ]
    plan = await plan_topics(wanted, admin)
    assert [s.name for s in plan.create] == ["new"]
    assert plan.partitions == {"grow": (2, 4)}
    assert plan.configs == {
        "grow": {"retention.ms": ("1000", "2000"), "cleanup.policy": (None, "delete")}
    }
    assert len(plan.refused) == 2
    assert "shrink has 6 partitions, the catalog 3: partitions are never removed" in plan.refused[0]
    assert "replicas has replication factor 3, the catalog 1" in plan.refused[1]
    assert plan.lines() == [
        "+ create new: 1 partitions, replication 1",
        "~ partitions grow: 2 -> 4",
        "~ config grow: cleanup.policy (unset) -> delete",
        "~ config grow: retention.ms 1000 -> 2000",
        "! " + plan.refused[0],
        "! " + plan.refused[1],
        "1 to create, 1 to grow, 1 to reconfigure, 2 unchanged, 2 refused",
    ]

    await apply_catalog(wanted, transport=broker)
    assert len(broker.topics["grow"]) == 4
    assert len(broker.topics["shrink"]) == 6  # never removed
    assert broker.replication["replicas"] == 3  # never changed
    assert broker.topic_configs["grow"] == {"retention.ms": "2000", "cleanup.policy": "delete"}
    after = await plan_topics(wanted, admin)
    assert (after.changes, len(after.refused)) == (0, 2)


async def test_memory_admin_refuses_what_kafka_refuses() -> None:
    admin = MemoryBroker().admin()
    await admin.create_topics([TopicSpec("t", 2)])
    with pytest.raises(BrokerError, match="InvalidPartitions"):
        await admin.create_partitions({"t": 2})
    with pytest.raises(BrokerError, match="UnknownTopicOrPartition"):
        await admin.create_partitions({"missing": 3})
    with pytest.raises(BrokerError, match="UnknownTopicOrPartition"):
        await admin.alter_topic_configs("missing", {"retention.ms": "1"})
    assert await admin.describe_topics(["t", "missing"]) == {
        "t": (await admin.describe_topics(["t"]))["t"]
    }


# --------------------------------------------------------------------------- group names


def test_group_name() -> None:
    assert group_name("notification-service", "welcome-mail") == "notification-service.welcome-mail"
    assert group_name("analytics", "counts", env="prod") == "prod.analytics.counts"
    assert group_name("hrms_leaves", "employee-projection", env="staging-2") == (
        "staging-2.hrms_leaves.employee-projection"
    )
    for bad in (("", "x"), ("a.b", "x"), ("Svc", "x"), ("svc", "x y"), ("svc", "-x")):
        with pytest.raises(ValueError, match="lowercase letters"):
            group_name(*bad)
    with pytest.raises(ValueError, match="env ''"):
        group_name("svc", "x", env="")


# --------------------------------------------------------------------------- lag


def login(user_id: int) -> BaseEvent:
    return create_user_event("auth", user_id, EventType.USER_LOGIN, tenant_id="acme")


async def test_consumer_lag_and_the_health_report() -> None:
    broker = MemoryBroker(default_partitions=2)
    producer = KafkaProducer(transport=broker)
    consumer = KafkaConsumer(group_id="svc.lag", topics=["user-queue"], transport=broker)
    assert await consumer.lag() == {}  # not started: nothing to report
    gate = asyncio.Event()
    handled: list[BaseEvent] = []

    async def handle(event: BaseEvent) -> None:
        await gate.wait()
        handled.append(event)

    bus = EventBus(enable_producer=False, bootstrap_servers="memory:0")
    bus.add_consumer(consumer, handle)
    await producer.start()
    try:
        for user_id in range(5):
            # an explicit partition key: one user's events stay in order on one partition
            assert await producer.send_event("user-queue", login(user_id), key=f"user-{user_id}")
        await bus.start()
        report = await bus.health_report()
        assert {k: report[k] for k in ("connected", "producer", "consumers", "brokers")} == {
            "connected": True,
            "producer": False,
            "consumers": 1,
            "brokers": "memory:0",
        }
        lag = report["lag"]["svc.lag"]
        assert lag["total"] == 5  # nothing handled or committed yet
        assert set(lag["partitions"]) == {"user-queue[0]", "user-queue[1]"}
        assert sum(lag["partitions"].values()) == 5
        per_tp = await consumer.lag()
        assert sum(per_tp.values()) == 5

        gate.set()
        deadline = asyncio.get_running_loop().time() + 10
        while (await bus.lag())["svc.lag"]["total"] != 0:  # committed within the interval
            assert asyncio.get_running_loop().time() < deadline, await bus.lag()
            await asyncio.sleep(0.02)
        assert len(handled) == 5
    finally:
        await bus.stop()
        await producer.stop()
