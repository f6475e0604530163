"""The demo scenario on seed 002's event-type layout: the same services, other topics.

A system of its own on a broker of its own (its consumer groups have the same names as
the shared system's, and would share its partitions on one broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from eventbus import KafkaConsumer, Record
from eventbus._embedded import EmbeddedBroker
from eventbus.settings import load_settings
from hrms.walkthrough import walkthrough
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TENANT, SystemThread, make_system

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def event_type_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemThread]:
    broker = EmbeddedBroker("noida", data_dir=tmp_path_factory.mktemp("layout-broker")).start()
    try:
        system = make_system(
            tmp_path_factory.mktemp("layout-hrms"),
            broker.bootstrap_servers,
            KAFKA_TOPIC_LAYOUT="event-type",
        )
        running = SystemThread(system).start()
        try:
            yield running
        finally:
            running.stop()
    finally:
        broker.stop()


async def read(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[Record]:
    """The first ``count`` records of ``topic`` (a fresh group from the start)."""
    settings = load_settings(bootstrap_servers=bootstrap, broker_profile="noida")
    got: list[Record] = []
    enough = asyncio.Event()

    async def keep(record: Record) -> None:
        got.append(record)
        if len(got) >= count:
            enough.set()

    consumer = KafkaConsumer(group_id=f"reader-{topic}", topics=[topic], settings=settings)
    await consumer.start()
    task = consumer.start_background(keep)
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    finally:
        await consumer.stop()
        await task
    return got


@pytest.mark.timeout(240)
def test_the_demo_runs_unchanged_on_one_topic_per_event_type(
    event_type_system: SystemThread,
) -> None:
    outcome = asyncio.run(
        walkthrough(
            event_type_system.hub,
            tenant=TENANT,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
        )
    )
    subjects = " ".join(sorted(m["subject"].lower() for m in outcome.mail))
    for word in ("welcome", "approved", "violation"):
        assert word in subjects
    assert [f["rule"] for f in outcome.findings] == ["check_in_during_leave"]
    assert outcome.audit_chain["ok"] is True, outcome.audit_chain
    assert outcome.alert["priority"] == "critical", outcome.alert
    assert outcome.analytics["user.login"] >= 3, outcome.analytics

    # the events travelled on their own topics
    bootstrap = event_type_system.system.kafka.servers
    logins = asyncio.run(read(bootstrap, "user.login", 3))
    assert {dict(r.headers)["event_type"] for r in logins} == {b"user.login"}
    approved = asyncio.run(read(bootstrap, "leave.approved", 1))
    assert dict(approved[0].headers)["tenant_id"] == TENANT.encode()
