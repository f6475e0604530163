"""The wire format, the three accepted shapes, and the registry with upcasters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventbus import (
    BaseEvent,
    DecodeError,
    EventPayload,
    EventRegistry,
    Priority,
    SerializationError,
    UnknownEventTypeError,
    decode_event,
    encode_event,
    normalise,
)
from eventbus import headers as h


class OrderData(EventPayload):
    aggregate_key = "order_id"
    order_id: int
    total: float


class OrderCreated(BaseEvent):
    data: OrderData


class OrderDataV2(EventPayload):
    aggregate_key = "order_id"
    order_id: int
    total_cents: int
    currency: str


class OrderCreatedV2(BaseEvent):
    data: OrderDataV2


@pytest.fixture
def registry() -> EventRegistry:
    r = EventRegistry()
    r.register(OrderCreated, event_type="order.created")
    return r


def test_flat_wire_shape_and_headers() -> None:
    event = OrderCreated(
        event_type="order.created",
        source_service="shop",
        tenant_id="t1",
        correlation_id="c1",
        priority=Priority.HIGH,
        data=OrderData(order_id=5, total=9.5),
    )
    value, headers = encode_event(event)
    body = json.loads(value)
    assert list(body) == [
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
    ]
    assert body["timestamp"].endswith("Z")
    assert body["priority"] == "high"
    assert dict(headers) == {
        h.EVENT_TYPE: b"order.created",
        h.EVENT_ID: str(event.event_id).encode(),
        h.EVENT_VERSION: b"1",
        h.CONTENT_TYPE: b"application/json",
        h.SOURCE_SERVICE: b"shop",
        h.PRIORITY: b"high",
        h.CORRELATION_ID: b"c1",
        h.TENANT_ID: b"t1",
    }
    assert event.default_key() == "5"


def test_round_trip_into_registered_model(registry: EventRegistry) -> None:
    event = OrderCreated(event_type="order.created", data=OrderData(order_id=1, total=2.0))
    back = decode_event(encode_event(event)[0], registry)
    assert isinstance(back, OrderCreated)
    assert back == event


def test_seed_004_metadata_payload_shape_is_normalised(registry: EventRegistry) -> None:
    raw = {
        "metadata": {
            "event_id": "0b7c2a0e-8f8e-4c39-9d4a-3f0f1f1f1f1f",
            "event_type": "order.created",
            "event_version": "1.0",
            "timestamp": "2024-01-15T10:00:00Z",
            "source_service": "shop",
            "tenant_id": "tenant-1",
            "correlation_id": "corr-789",
            "priority": "high",
        },
        "payload": {"order_id": 3, "total": 1.5},
    }
    event = decode_event(json.dumps(raw).encode(), registry)
    assert isinstance(event, OrderCreated)
    assert event.event_version == 1
    assert event.tenant_id == "tenant-1"
    assert event.priority is Priority.HIGH
    assert event.data.order_id == 3


def test_seed_002_kafkajs_shape_is_normalised() -> None:
    raw = {
        "type": "USER_CREATED",
        "data": {"userId": "u1"},
        "metadata": {
            "eventId": "e-1",
            "timestamp": "2024-01-01T00:00:00.000Z",
            "tenantId": "t9",
            "source": "auth-service",
        },
    }
    flat = normalise(raw, EventRegistry())
    assert flat == {
        "event_type": "user.created",
        "data": {"userId": "u1"},
        "event_id": "e-1",
        "timestamp": "2024-01-01T00:00:00.000Z",
        "tenant_id": "t9",
        "source_service": "auth-service",
        "event_version": 1,
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "empty record value"),
        (None, "empty record value"),
        (b"\xff\xfe", "not JSON"),
        (b"{nope", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"hello": "world"}', "not an event envelope"),
        (b'{"event_type": ""}', "non-empty string"),
        (b'{"event_type": "order.created", "event_version": "x"}', "not a number"),
    ],
)
def test_bad_values_raise_decode_error(
    registry: EventRegistry, value: bytes | None, message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_event(value, registry)


def test_unknown_type_and_wrong_payload(registry: EventRegistry) -> None:
    unknown = BaseEvent(event_type="nobody.knows", data={})
    with pytest.raises(UnknownEventTypeError, match=r"nobody\.knows"):
        decode_event(encode_event(unknown)[0], registry)
    wrong = BaseEvent(event_type="order.created", data={"order_id": "not-an-int"})
    with pytest.raises(DecodeError, match="does not match its model"):
        decode_event(encode_event(wrong)[0], registry)


def test_oversize_and_unencodable_events_raise_serialization_error() -> None:
    big = BaseEvent(event_type="blob.saved", data={"blob": "x" * 2_000})
    with pytest.raises(SerializationError, match="over the 1000-byte limit"):
        encode_event(big, max_bytes=1_000)
    odd = BaseEvent(event_type="odd.thing", data={"obj": object()})
    with pytest.raises(SerializationError, match="cannot encode"):
        encode_event(odd)


def test_upcaster_reads_old_events_as_newest_model() -> None:
    r = EventRegistry()
    r.register(OrderCreated, event_type="order.created", version=1)
    r.register(OrderCreatedV2, event_type="order.created", version=2)

    @r.upcaster("order.created", from_version=1)
    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "order_id": data["order_id"],
            "total_cents": round(data["total"] * 100),
            "currency": "EUR",
        }

    old = OrderCreated(event_type="order.created", data=OrderData(order_id=8, total=12.34))
    new = decode_event(encode_event(old)[0], r)
    assert isinstance(new, OrderCreatedV2)
    assert new.event_version == 2
    assert new.data == OrderDataV2(order_id=8, total_cents=1234, currency="EUR")
    future = BaseEvent(event_type="order.created", event_version=3, data={})
    with pytest.raises(UnknownEventTypeError, match="newer than the newest known"):
        decode_event(encode_event(future)[0], r)


def test_topic_wide_registration_wins_over_type() -> None:
    r = EventRegistry()
    r.register(OrderCreated, event_type="order.created")
    r.register(BaseEvent, topic="raw-queue")
    event = OrderCreated(event_type="order.created", data=OrderData(order_id=1, total=1))
    value = encode_event(event)[0]
    assert type(decode_event(value, r, topic="raw-queue")) is BaseEvent
    assert type(decode_event(value, r, topic="orders-queue")) is OrderCreated


def test_timestamps_are_utc_and_enum_types_accepted() -> None:
    from datetime import datetime
    from enum import StrEnum

    class Kind(StrEnum):
        A = "a.happened"

    e = BaseEvent(event_type=Kind.A, timestamp=datetime(2025, 1, 1, 12, 0))
    assert e.event_type == "a.happened"
    assert e.timestamp.tzinfo is not None
    assert json.loads(e.model_dump_json())["timestamp"] == "2025-01-01T12:00:00Z"
    with pytest.raises(ValueError, match="event_type"):
        BaseEvent(event_type="has spaces")
