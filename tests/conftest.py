"""Shared fixtures: brokers on free ports in temp dirs, stopped by PID afterwards, and one
PostgreSQL server for the session (``pg_server``, ``pg_url``: see tests/pg.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventbus import KafkaConsumer, KafkaProducer, KafkaSettings, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from eventbus._features import MEMORY, NOIDA, TANSU, Features
from eventbus._transport.base import Record
from eventbus.testing import MemoryBroker
from tests.pg import PgServer, fresh_database, running_server

BROKERS = ("memory", "noida-aiokafka", "noida-confluent", "tansu-aiokafka", "tansu-confluent")


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker("noida", data_dir=tmp_path_factory.mktemp("noida")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker("tansu", data_dir=tmp_path_factory.mktemp("tansu")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """This session's PostgreSQL server (trust auth, superuser ``eventbus``); see tests/pg.py.

    Skips without PostgreSQL installed (fails under ``EVENTBUS_REQUIRE_SYSTEM_TOOLS=1``).
    """
    with running_server() as server:
        yield server


@pytest.fixture
async def pg_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    async with fresh_database(pg_server) as url:
        yield url


@dataclass
class Harness:
    """One broker under test, with factories that set the right options for it."""

    name: str
    features: Features
    bootstrap: str | None = None
    transport: str = "memory"
    memory: MemoryBroker | None = None
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    _clients: list[Any] = field(default_factory=list)

    def settings(self, **kw: Any) -> KafkaSettings:
        base: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap or "memory:0",
            "broker_profile": self.features.name,
            "connect_timeout_s": 10.0,
            "consumer_commit_interval_ms": 200,
            **self.settings_overrides,
        }
        base.update(kw)
        return KafkaSettings(**base)

    @staticmethod
    def unique(prefix: str = "t") -> str:
        return f"{prefix}{uuid.uuid4().hex[:10]}"

    async def topic(self, partitions: int = 3, suffix: str = "-queue") -> str:
        name = self.unique() + suffix
        await ensure_topics(
            [TopicSpec(name, partitions)], settings=self.settings(), transport=self.memory
        )
        return name

    def producer(self, **kw: Any) -> KafkaProducer:
        p = KafkaProducer(settings=self.settings(**kw), transport=self.memory)
        self._clients.append(p)
        return p

    def consumer(self, topics: list[str], group: str | None = None, **kw: Any) -> KafkaConsumer:
        ckw = {
            k: kw.pop(k)
            for k in (
                "retry",
                "registry",
                "drain_timeout_s",
                "concurrency",
                "transactional",
                "retry_topics",
            )
            if k in kw
        }
        c = KafkaConsumer(
            group_id=group or self.unique("g"),
            topics=topics,
            settings=self.settings(**kw),
            transport=self.memory,
            **ckw,
        )
        self._clients.append(c)
        return c

    async def close_all(self) -> None:
        for client in reversed(self._clients):
            await client.stop()

    async def read(self, topic: str, count: int, timeout: float = 30.0) -> list[Record]:
        """Read ``count`` records of ``topic`` from the beginning with a fresh group."""
        got: list[Record] = []
        enough = asyncio.Event()
        consumer = self.consumer([topic])

        async def collect(record: Record) -> None:
            got.append(record)
            if len(got) >= count:
                enough.set()

        await consumer.start()
        task = consumer.start_background(collect)
        try:
            await asyncio.wait_for(enough.wait(), timeout)
        finally:
            await consumer.stop()
            await task
        return got


def _harness(name: str, request: pytest.FixtureRequest) -> Harness:
    if name == "memory":
        return Harness("memory", MEMORY, memory=MemoryBroker(default_partitions=1))
    kind, transport = name.split("-")
    broker: EmbeddedBroker = request.getfixturevalue(f"{kind}_broker")
    overrides: dict[str, Any] = {"transport": transport}
    if kind == "tansu":
        # Tansu's JoinGroup waits session_timeout/2: keep it short so tests stay fast.
        overrides |= {"consumer_session_timeout_ms": 2000, "consumer_heartbeat_interval_ms": 500}
    features = TANSU if kind == "tansu" else NOIDA
    return Harness(
        name,
        features,
        bootstrap=broker.bootstrap_servers,
        settings_overrides=overrides,
        transport=transport,
    )


@pytest.fixture(params=BROKERS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """Each conformance test runs once per broker."""
    h = _harness(request.param, request)
    try:
        yield h
    finally:
        await h.close_all()


@pytest.fixture
async def memory() -> AsyncIterator[Harness]:
    """The in-memory broker alone, for unit tests."""
    h = Harness("memory", MEMORY, memory=MemoryBroker(default_partitions=1))
    try:
        yield h
    finally:
        await h.close_all()


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition every few milliseconds until it holds, or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def require_tool(tool: str, package: str) -> str:
    """Return the path of a system tool, or skip saying how to install it.

    In CI (``EVENTBUS_REQUIRE_SYSTEM_TOOLS=1``) a missing tool fails the test instead, so
    CI never silently skips what it must run.
    """
    import os
    import shutil

    path = shutil.which(tool)
    if path is not None:
        return path
    message = f"{tool} not installed: apt-get install {package} (CI installs it)"
    if os.environ.get("EVENTBUS_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
