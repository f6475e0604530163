"""Wire interoperability with clients that are not eventbus, on the embedded noida broker.

* confluent-kafka (librdkafka) reads what eventbus writes: seed 000's flat JSON plus the
  headers of :mod:`eventbus.headers`;
* eventbus reads what the other seeds' services write: seed 004's metadata/payload
  envelope and seed 002's kafkajs ``createEvent`` shape, normalised to the flat one;
* kcat (Debian's ``kcat`` package) reads an eventbus event with its headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from eventbus import KafkaConsumer, KafkaProducer, Priority, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from hrms.events import EventType, LowStockEvent, create_notification_event
from tests.conftest import require_tool

pytestmark = pytest.mark.broker

DEADLINE_S = 30.0
FLAT_KEYS = {
    "event_id",
    "event_type",
    "event_version",
    "timestamp",
    "source_service",
    "correlation_id",
    "causation_id",
    "tenant_id",
    "priority",
    "data",
}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def servers(noida_broker: EmbeddedBroker) -> str:
    return noida_broker.bootstrap_servers


async def _topic(servers: str, prefix: str) -> str:
    # One partition: confluent-kafka's default partitioner differs from the Java one.
    name = _unique(prefix)
    await ensure_topics([TopicSpec(name, 1)], bootstrap_servers=servers)
    return name


def _notification(**kw: Any) -> Any:
    return create_notification_event(
        source_service="user-management-service",
        recipient_email="user@example.com",
        subject="Welcome to HRMS!",
        template_name="welcome_email",
        template_data={"name": "John Doe"},
        event_type=EventType.USER_CREATED,
        **kw,
    )


async def _send(servers: str, topic: str, event: Any) -> None:
    async with KafkaProducer(
        bootstrap_servers=servers, client_id="interop-test", broker_profile="noida"
    ) as producer:
        assert await producer.send_event(topic, event)


def _confluent_read_one(servers: str, topic: str) -> tuple[bytes | None, bytes, list[Any]]:
    """Read the first record of ``topic`` with confluent-kafka's own Consumer (blocking)."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": _unique("confluent"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"confluent-kafka consumer error: {err}")
            value = msg.value()
            assert value is not None
            return msg.key(), value, list(msg.headers() or [])
        raise AssertionError(f"confluent-kafka read nothing from {topic} within {DEADLINE_S}s")
    finally:
        consumer.close()


def _confluent_produce(servers: str, topic: str, value: dict[str, Any], key: bytes) -> None:
    """Write one JSON record with confluent-kafka's own Producer (blocking)."""
    errors: list[Any] = []
    producer = Producer({"bootstrap.servers": servers, "acks": "all"})
    producer.produce(
        topic,
        value=json.dumps(value).encode(),
        key=key,
        on_delivery=lambda err, _msg: errors.append(err),
    )
    assert producer.flush(DEADLINE_S) == 0, "confluent-kafka did not deliver within the deadline"
    assert errors == [None]


async def _consume_one(servers: str, topic: str, handler_factory: Any) -> Any:
    """Run an eventbus consumer with the handler built by ``handler_factory(got, done)``.

    A record the consumer cannot hand to the handler fails the test at once (through a
    ``dlq_handler``) with the library's reason, instead of waiting for the deadline.
    """
    got: list[Any] = []
    failures: list[BaseException] = []
    done = asyncio.Event()
    consumer = KafkaConsumer(
        bootstrap_servers=servers,
        group_id=_unique("eventbus"),
        topics=[topic],
        broker_profile="noida",
    )

    async def dlq_handler(message: dict[str, Any], error: BaseException) -> None:
        failures.append(error)
        done.set()

    await consumer.start()
    task = consumer.start_background(handler_factory(got, done), dlq_handler)
    try:
        waiter = asyncio.create_task(done.wait())
        try:
            await asyncio.wait(
                {waiter, task}, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        if task.done():
            task.result()
        assert done.is_set(), f"eventbus consumed nothing from {topic} within {DEADLINE_S}s"
    finally:
        await consumer.stop()
        await task
    assert not failures, f"eventbus could not handle the record: {failures[0]}"
    assert consumer.stats.processed == 1
    return got[0]


# ------------------------------------------------------------ (a) eventbus -> confluent


async def test_confluent_consumer_reads_eventbus_event_and_headers(servers: str) -> None:
    topic = await _topic(servers, "interop-flat")
    event = _notification(correlation_id="corr-789", tenant_id="tenant-1", user_id=42)
    await _send(servers, topic, event)

    key, value, headers = await asyncio.to_thread(_confluent_read_one, servers, topic)

    body = json.loads(value)
    assert set(body) == FLAT_KEYS
    assert body["event_id"] == str(event.event_id)
    assert body["event_type"] == "user.created"
    assert body["event_version"] == 1
    assert body["timestamp"].endswith("Z")
    assert body["source_service"] == "user-management-service"
    assert body["correlation_id"] == "corr-789"
    assert body["causation_id"] is None
    assert body["tenant_id"] == "tenant-1"
    assert body["priority"] == "normal"
    assert body["data"]["recipient_email"] == "user@example.com"
    assert body["data"]["template_data"] == {"name": "John Doe"}
    assert key == b"42"  # NotificationData is keyed by user_id

    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), f"duplicate headers: {names}"
    assert {name: raw.decode() for name, raw in headers} == {
        "event_type": "user.created",
        "event_id": str(event.event_id),
        "event_version": "1",
        "content-type": "application/json",
        "source_service": "user-management-service",
        "priority": "normal",
        "correlation_id": "corr-789",
        "tenant_id": "tenant-1",
    }


async def test_confluent_consumer_sees_no_optional_headers_when_unset(servers: str) -> None:
    topic = await _topic(servers, "interop-minimal")
    event = _notification()
    await _send(servers, topic, event)

    key, _value, headers = await asyncio.to_thread(_confluent_read_one, servers, topic)

    assert key is None
    assert sorted(name for name, _ in headers) == sorted(
        ["event_type", "event_id", "event_version", "content-type", "source_service", "priority"]
    )


# ------------------------------------------------------------ (b) seed 004 -> eventbus


def _seed_004_low_stock(event_id: str) -> dict[str, Any]:
    """Seed 004's ``inventory.low_stock`` message, as its InventoryEventProducer writes it."""
    return {
        "metadata": {
            "event_id": event_id,
            "event_type": "inventory.low_stock",
            "event_version": "1.0",
            "timestamp": "2024-01-15T10:00:00Z",
            "source_service": "inventory-service",
            "tenant_id": "tenant-1",
            "correlation_id": "corr-789",
            "priority": "high",
        },
        "payload": {
            "product_id": "PRD-123",
            "product_sku": "LAP-001",
            "product_name": "Laptop Computer",
            "current_stock": 8,
            "reorder_level": 10,
            "reorder_quantity": 50,
            "unit_price": 1200.00,
            "category": "electronics",
            "location": "Warehouse A",
            "days_of_stock_remaining": 3.5,
        },
    }


async def _read_low_stock(servers: str, event_id: str) -> LowStockEvent:
    topic = await _topic(servers, "interop-inventory-events")
    message = _seed_004_low_stock(event_id)
    await asyncio.to_thread(_confluent_produce, servers, topic, message, b"PRD-123")

    def factory(got: list[Any], done: asyncio.Event) -> Any:
        async def handle_low_stock(event: LowStockEvent) -> None:
            got.append(event)
            done.set()

        return handle_low_stock

    event = await _consume_one(servers, topic, factory)
    assert isinstance(event, LowStockEvent)
    return event


async def test_eventbus_reads_seed_004_metadata_payload_as_typed_event(servers: str) -> None:
    event_id = str(uuid.uuid4())
    event = await _read_low_stock(servers, event_id)

    assert event.event_type == "inventory.low_stock"
    assert event.event_version == 1
    assert str(event.event_id) == event_id
    assert event.timestamp.isoformat() == "2024-01-15T10:00:00+00:00"
    assert event.source_service == "inventory-service"
    assert event.tenant_id == "tenant-1"
    assert event.correlation_id == "corr-789"
    assert event.priority is Priority.HIGH
    assert event.data.product_id == "PRD-123"
    assert event.data.product_sku == "LAP-001"
    assert event.data.product_name == "Laptop Computer"
    assert event.data.current_stock == 8
    assert event.data.reorder_level == 10
    assert event.data.reorder_quantity == 50
    assert event.data.unit_price == 1200.0
    assert event.data.category == "electronics"
    assert event.data.location == "Warehouse A"
    assert event.data.days_of_stock_remaining == 3.5


async def test_eventbus_keeps_seed_004_event_ids_that_are_not_uuids(servers: str) -> None:
    event_id = _unique("evt")  # seed 004 documents ids like "evt-123456"
    event = await _read_low_stock(servers, event_id)
    assert event.event_id == event_id
    assert event.event_version == 1
    assert event.tenant_id == "tenant-1"
    assert event.priority is Priority.HIGH
    assert event.data.product_id == "PRD-123"


# ------------------------------------------------------------ (c) seed 002 -> eventbus


async def test_eventbus_reads_seed_002_kafkajs_create_event_as_dict(servers: str) -> None:
    topic = await _topic(servers, "interop-user-queue")
    event_id = str(uuid.uuid4())
    data = {"userId": "64f1c0ffee", "email": "user@example.com", "role": "employee"}
    message = {
        "type": "USER_CREATED",
        "data": data,
        "metadata": {
            "eventId": event_id,
            "timestamp": "2024-01-15T10:00:00.000Z",
            "tenantId": "tenant-1",
            "source": "auth-service",
        },
    }
    await asyncio.to_thread(_confluent_produce, servers, topic, message, b"64f1c0ffee")

    def factory(got: list[Any], done: asyncio.Event) -> Any:
        async def handle_user_created(message: dict[str, Any]) -> None:
            got.append(message)
            done.set()

        return handle_user_created

    message_in = await _consume_one(servers, topic, factory)

    assert message_in["event_type"] == "user.created"
    assert message_in["event_version"] == 1
    assert message_in["event_id"] == event_id
    assert message_in["timestamp"] == "2024-01-15T10:00:00.000Z"
    assert message_in["tenant_id"] == "tenant-1"
    assert message_in["source_service"] == "auth-service"
    assert message_in["data"] == data


# ------------------------------------------------------------ (d) eventbus -> kcat


async def test_kcat_reads_eventbus_event_with_headers(servers: str) -> None:
    kcat = require_tool("kcat", "kcat")
    topic = await _topic(servers, "interop-kcat")
    event = _notification(tenant_id="tenant-1")
    await _send(servers, topic, event)

    proc = await asyncio.create_subprocess_exec(
        kcat,
        "-C",
        "-J",
        "-q",
        "-b",
        servers,
        "-t",
        topic,
        "-o",
        "beginning",
        "-c",
        "1",
        "-e",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()

    record = json.loads(out.decode().strip().splitlines()[0])
    assert record["topic"] == topic
    body = json.loads(record["payload"])
    assert set(body) == FLAT_KEYS
    assert body["event_id"] == str(event.event_id)
    flat = record["headers"]  # kcat -J lists headers as [name, value, name, value, ...]
    headers = dict(zip(flat[::2], flat[1::2], strict=True))
    assert headers == {
        "event_type": "user.created",
        "event_id": str(event.event_id),
        "event_version": "1",
        "content-type": "application/json",
        "source_service": "user-management-service",
        "priority": "normal",
        "tenant_id": "tenant-1",
    }
