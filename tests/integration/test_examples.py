"""Run every file of ``examples/`` for real against the embedded noida broker.

The examples are seed 000's README snippets; these tests import each file as a module,
point it at the session broker through ``KAFKA_BOOTSTRAP_SERVERS``, run its ``main()``
(or serve its FastAPI app with uvicorn) and check what reached Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from eventbus import KafkaConsumer, KafkaProducer, Record, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from hrms.events import EventType, create_audit_event

pytestmark = pytest.mark.broker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTIFICATION_TOPIC = "notification-queue"
AUDIT_TOPIC = "audit-queue"
NOTIFICATION_DLQ = "notification-dlq"
DEADLINE_S = 45.0


# --------------------------------------------------------------------------- helpers


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/<name>.py`` afresh (module-level settings read the env now)."""
    module_name = _unique(f"example_{name}").replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def bootstrap(noida_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the examples at the session broker; create the seed's topics (1 partition)."""
    servers = noida_broker.bootstrap_servers
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", servers)
    monkeypatch.setenv("KAFKA_BROKER_PROFILE", "noida")  # as `eventbus broker start` prints
    await ensure_topics(
        [TopicSpec(t, 1) for t in (NOTIFICATION_TOPIC, AUDIT_TOPIC, NOTIFICATION_DLQ)],
        bootstrap_servers=servers,
    )
    return servers


async def wait_for_event(
    event: asyncio.Event, task: asyncio.Task[Any], what: str, within: float = DEADLINE_S
) -> None:
    """Wait until ``event`` is set; fail early if ``task`` (an example's main) ends first."""
    waiter = asyncio.create_task(event.wait())
    try:
        done, _ = await asyncio.wait(
            {waiter, task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if event.is_set():
        return
    if task in done:
        task.result()  # raises the example's exception, if any
        raise AssertionError(f"the example returned before {what}")
    raise AssertionError(f"{what} did not happen within {within}s")


async def stop_example(module: ModuleType, task: asyncio.Task[Any]) -> None:
    """Stop the example's module-level consumer and wait for its ``main()`` to return."""
    consumer: KafkaConsumer | None = getattr(module, "consumer", None)
    try:
        if consumer is not None:
            await consumer.stop()
    finally:
        if not task.done() and consumer is None:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE_S)


async def read_topic(
    servers: str,
    topic: str,
    match: Callable[[dict[str, Any]], bool],
    within: float = DEADLINE_S,
) -> dict[str, Any]:
    """Read ``topic`` from the beginning with a fresh group until a JSON value matches."""
    found: list[dict[str, Any]] = []
    hit = asyncio.Event()
    reader = KafkaConsumer(bootstrap_servers=servers, group_id=_unique("reader"), topics=[topic])

    async def collect(record: Record) -> None:
        try:
            value = json.loads(record.value or b"")
        except ValueError:
            return
        if isinstance(value, dict) and match(value):
            found.append(value)
            hit.set()

    await reader.start()
    task = reader.start_background(collect)
    try:
        await wait_for_event(hit, task, f"a matching record on {topic}", within)
    finally:
        await reader.stop()
        await task
    return found[0]


async def publish(servers: str, topic: str, *events: Any) -> None:
    async with KafkaProducer(bootstrap_servers=servers, client_id="examples-test") as producer:
        assert all(await producer.send_batch(topic, list(events)))


# --------------------------------------------------------------------------- producer.py


async def test_producer_example_sends_the_welcome_notification(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example("producer", monkeypatch)
    sent = []
    real_factory = example.create_notification_event

    def spy(*args: Any, **kwargs: Any) -> Any:
        event = real_factory(*args, **kwargs)
        sent.append(event)
        return event

    monkeypatch.setattr(example, "create_notification_event", spy)

    await asyncio.wait_for(example.main(), DEADLINE_S)

    assert len(sent) == 1
    event_id = str(sent[0].event_id)
    value = await read_topic(bootstrap, NOTIFICATION_TOPIC, lambda v: v.get("event_id") == event_id)
    assert value["event_type"] == "user.created"
    assert value["source_service"] == "user-management-service"
    assert value["data"]["recipient_email"] == "user@example.com"
    assert value["data"]["subject"] == "Welcome to HRMS!"
    assert value["data"]["template_name"] == "welcome_email"
    assert value["data"]["template_data"] == {"name": "John Doe"}


# --------------------------------------------------------------------------- consumer.py


async def test_consumer_example_prints_what_the_producer_example_sent(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    producer_example = load_example("producer", monkeypatch)
    sent = []
    real_factory = producer_example.create_notification_event

    def spy(*args: Any, **kwargs: Any) -> Any:
        event = real_factory(*args, **kwargs)
        sent.append(event)
        return event

    monkeypatch.setattr(producer_example, "create_notification_event", spy)
    await asyncio.wait_for(producer_example.main(), DEADLINE_S)
    event_id = str(sent[0].event_id)

    example = load_example("consumer", monkeypatch)
    printed = asyncio.Event()

    def watching_print(*args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs)
        if event_id in " ".join(map(str, args)):
            printed.set()

    monkeypatch.setattr(example, "print", watching_print, raising=False)
    task = asyncio.create_task(example.main())
    try:
        await wait_for_event(printed, task, f"printing notification {event_id}")
    finally:
        await stop_example(example, task)

    lines = [line for line in capsys.readouterr().out.splitlines() if event_id in line]
    assert lines
    assert lines[0].startswith("Processing notification: {")
    assert "'recipient_email': 'user@example.com'" in lines[0]
    assert example.consumer.stats.processed >= 1
    assert not example.consumer.is_started


# --------------------------------------------------------------------------- batch_consumer.py


async def test_batch_consumer_example_stores_audit_events_in_its_db(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    correlation_id = _unique("audit-batch")
    events = [
        create_audit_event(
            source_service="user-management-service",
            action="CREATE",
            resource_type="user",
            user_id=123,
            resource_id=456 + i,
            description="Created new user",
            ip_address="192.168.1.1",
            changes={"email": f"new{i}@example.com"},
            event_type=EventType.AUDIT_USER_ACTION,
            correlation_id=correlation_id,
        )
        for i in range(5)
    ]
    wanted = {str(e.event_id) for e in events}
    await publish(bootstrap, AUDIT_TOPIC, *events)

    example = load_example("batch_consumer", monkeypatch)
    all_stored = asyncio.Event()
    real_insert = example.db.bulk_insert

    async def watching_insert(rows: list[dict[str, Any]]) -> None:
        await real_insert(rows)
        if wanted <= {row.get("event_id") for row in example.db.rows}:
            all_stored.set()

    monkeypatch.setattr(example.db, "bulk_insert", watching_insert)
    task = asyncio.create_task(example.main())
    try:
        await wait_for_event(all_stored, task, "storing the 5 audit events")
    finally:
        await stop_example(example, task)

    ours = [row for row in example.db.rows if row.get("correlation_id") == correlation_id]
    assert sorted(row["event_id"] for row in ours) == sorted(wanted)
    for row in ours:
        assert row["event_type"] == "audit.user.action"
        assert row["data"]["action"] == "CREATE"
        assert row["data"]["resource_type"] == "user"
    assert not example.consumer.is_started


# --------------------------------------------------------------------------- dlq_handler.py


async def test_dlq_example_sends_poison_messages_to_notification_dlq(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison_id = str(uuid.uuid4())
    poison = {
        "event_id": poison_id,
        "event_type": "user.created",
        "source_service": "examples-test",
        "data": {"subject": "a notification without a recipient"},
    }
    async with KafkaProducer(bootstrap_servers=bootstrap, client_id="examples-test") as producer:
        assert await producer.send_raw(NOTIFICATION_TOPIC, poison)

    example = load_example("dlq_handler", monkeypatch)
    dead_lettered = asyncio.Event()
    real_dlq_handler = example.dlq_handler

    async def watching_dlq_handler(message: dict[str, Any], error: Exception) -> None:
        await real_dlq_handler(message, error)
        if message.get("event_id") == poison_id:
            dead_lettered.set()

    monkeypatch.setattr(example, "dlq_handler", watching_dlq_handler)
    task = asyncio.create_task(example.main())
    try:
        await wait_for_event(dead_lettered, task, f"dead-lettering {poison_id}")
    finally:
        await stop_example(example, task)
    assert not example.dlq_producer.is_started

    record = await read_topic(
        bootstrap,
        NOTIFICATION_DLQ,
        lambda v: (
            isinstance(v.get("original_message"), dict)
            and v["original_message"].get("event_id") == poison_id
        ),
    )
    assert set(record) == {"original_message", "error", "timestamp"}
    assert record["original_message"]["data"] == poison["data"]
    assert record["original_message"]["event_type"] == "user.created"
    assert "no recipient_email" in record["error"]
    assert poison_id in record["error"]
    assert record["timestamp"].startswith("20")


# --------------------------------------------------------------------------- fastapi_app.py


class _Server(uvicorn.Server):
    """A uvicorn server that tells when it is accepting connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


async def test_fastapi_example_publishes_a_notification_for_a_new_user(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example("fastapi_app", monkeypatch)
    assert bootstrap == example.settings.KAFKA_BOOTSTRAP_SERVERS

    config = uvicorn.Config(
        example.app, host="127.0.0.1", port=0, lifespan="on", ws="none", log_level="warning"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    try:
        await wait_for_event(server.ready, task, "uvicorn startup")
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post(
                "/users", json={"email": email, "first_name": "Jane", "last_name": "Doe"}
            )
        assert response.status_code == 200, response.text
        user = response.json()
        assert user["email"] == email
        assert user["first_name"] == "Jane"
        assert isinstance(user["id"], int)
        assert example.producer.is_started
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
    assert not example.producer.is_started

    value = await read_topic(
        bootstrap,
        NOTIFICATION_TOPIC,
        lambda v: isinstance(v.get("data"), dict) and v["data"].get("recipient_email") == email,
    )
    assert value["event_type"] == "user.created"
    assert value["source_service"] == "user-management-service"
    assert value["data"]["subject"] == "Welcome!"
    assert value["data"]["template_name"] == "welcome_email"
    assert value["data"]["template_data"] == {"name": "Jane"}
