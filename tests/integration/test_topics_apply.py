"""``eventbus topics apply`` and the catalog's admin calls on a real embedded broker (noida),
through the command line in a subprocess and through both client libraries; consumer lag
from a real broker's high watermarks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from eventbus import KafkaConsumer, KafkaProducer, KafkaSettings, Record, TopicSpec
from eventbus._clients import make_transport
from eventbus._embedded import EmbeddedBroker
from eventbus.catalog import apply_catalog, plan_topics
from hrms import topics
from tests.conftest import wait_until

pytestmark = pytest.mark.broker

HRMS_CATALOG = Path(topics.__file__).parent / "catalog.toml"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of this module's own: applying the HRMS catalog changes shared topic names."""
    b = EmbeddedBroker("noida", data_dir=tmp_path_factory.mktemp("apply")).start()
    try:
        yield b
    finally:
        b.stop()


def cli(broker: EmbeddedBroker, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    environ.update({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "eventbus.cli", "topics", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=environ,
        check=False,
    )


def test_apply_the_hrms_catalog_dry_run_then_for_real_then_nothing(broker: EmbeddedBroker) -> None:
    dry = cli(broker, "apply", str(HRMS_CATALOG), "--dry-run", "--replication-factor", "1")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "+ create user-queue: 3 partitions, replication 1, retention.ms=604800000" in dry.stdout
    assert "+ create audit-queue: 5 partitions, replication 1, retention.ms=2592000000" in (
        dry.stdout
    )
    assert "26 to create, 0 to grow, 0 to reconfigure, 0 unchanged" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    assert "user-queue" not in cli(broker, "list").stdout

    done = cli(broker, "apply", str(HRMS_CATALOG), "--replication-factor", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied 26 change(s)" in done.stdout
    again = cli(broker, "apply", str(HRMS_CATALOG), "--replication-factor", "1")
    assert "0 to create, 0 to grow, 0 to reconfigure, 26 unchanged" in again.stdout
    assert "nothing to change" in again.stdout

    # the event-type layout adds one topic per event type (KAFKA_TOPIC_LAYOUT or --layout)
    types = sum(len(d.events) for d in topics.catalog().domains.values())
    seed = cli(
        broker,
        "apply",
        str(HRMS_CATALOG),
        "--replication-factor",
        "1",
        KAFKA_TOPIC_LAYOUT="event-type",
    )
    assert f"applied {types} change(s)" in seed.stdout, seed.stdout + seed.stderr
    listed = cli(broker, "list").stdout
    for name in ("user.login", "attendance.checkin", "payroll.processed", "service.health"):
        assert name in listed

    # without a replication cap the single broker cannot hold what the catalog asks
    plain = cli(broker, "apply", str(HRMS_CATALOG), "--dry-run", "--layout", "event-type")
    assert "! user-queue has replication factor 1, the catalog 3" in plain.stdout


def test_mistakes_are_one_line_messages(broker: EmbeddedBroker, tmp_path: Path) -> None:
    missing = cli(broker, "apply", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "cannot read catalog" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[domains.user]\nevents = ["user.created"]\n')
    wrong = cli(broker, "apply", str(bad))
    assert wrong.returncode == 2
    assert "domains.user: needs a topic" in wrong.stderr
    layout = cli(broker, "apply", str(HRMS_CATALOG), "--layout", "per-tenant")
    assert layout.returncode == 2
    assert "unknown topic layout 'per-tenant'" in layout.stderr
    for r in (missing, wrong, layout):
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
async def test_grow_and_reconfigure_keep_other_configs(broker: EmbeddedBroker, client: str) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, transport=client, broker_profile="noida"
    )
    transport = make_transport(settings)
    name = f"apply-{client}-{uuid.uuid4().hex[:8]}"
    first = TopicSpec(name, 1, 1, {"retention.ms": "1000", "cleanup.policy": "compact"})
    assert (await apply_catalog([first], transport=transport)).changes == 1

    wanted = TopicSpec(name, 3, 1, {"retention.ms": "2000"})
    plan = await apply_catalog([wanted], transport=transport)
    assert plan.partitions == {name: (1, 3)}
    assert plan.configs == {name: {"retention.ms": ("1000", "2000")}}

    admin = transport.admin()
    await admin.start()
    try:
        now = (await admin.describe_topics([name, "no-such-topic"]))[name]
        assert (now.partitions, now.replication_factor) == (3, 1)
        assert now.configs["retention.ms"] == "2000"
        assert now.configs["cleanup.policy"] == "compact"  # kept: only retention changed
        again = await plan_topics([wanted], admin)
        assert (again.changes, again.unchanged) == (0, [name])
        shrink = await plan_topics([TopicSpec(name, 2, 1)], admin)
        assert shrink.partitions == {}
        assert "partitions are never removed" in shrink.refused[0]
        assert "no-such-topic" not in await admin.list_topics()  # describing created nothing
    finally:
        await admin.stop()


async def until(value: Callable[[], Awaitable[int]], wanted: int, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await value()) != wanted:
        assert loop.time() < deadline, f"lag {got}, wanted {wanted}"
        await asyncio.sleep(0.05)


async def test_lag_from_a_real_brokers_high_watermarks(broker: EmbeddedBroker) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        broker_profile="noida",
        consumer_commit_interval_ms=200,
    )
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    await apply_catalog([TopicSpec(topic, 1, 1)], settings=settings)
    producer = KafkaProducer(settings=settings)
    consumer = KafkaConsumer(group_id=f"g-{topic}", topics=[topic], settings=settings)
    gate = asyncio.Event()
    handled: list[Record] = []

    async def handle(record: Record) -> None:
        await gate.wait()
        handled.append(record)

    await producer.start()
    await consumer.start()
    task = consumer.start_background(handle)
    try:
        for i in range(4):
            await producer.send_raw(topic, {"n": i}, key=f"k{i}")
        seen: dict[str, int] = {}

        async def behind() -> int:
            lag = await consumer.lag()
            seen.update({f"{tp.topic}[{tp.partition}]": n for tp, n in lag.items()})
            return sum(lag.values())

        await until(behind, 4)  # known once a fetch has answered
        assert seen == {f"{topic}[0]": 4}
        gate.set()
        await wait_until(lambda: len(handled) == 4)
        await until(behind, 0)  # committed within the commit interval
    finally:
        await consumer.stop()
        await task
        await producer.stop()
