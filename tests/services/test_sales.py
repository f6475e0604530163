"""The sales service with the inventory service on one in-memory broker: seed 004's flow.

Inventory publishes product, stock and low-stock events; sales projects them, raises,
escalates and closes alerts, marks at-risk orders, forecasts demand and notifies the
sales team. Everything per tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from eventbus import BaseEvent, KafkaProducer, Priority
from eventbus.errors import ConfigurationError
from hrms.events import NotificationEvent, create_low_stock_event
from hrms.service import Role
from hrms.services import build
from hrms.services.sales import (
    LowStockConsumer,
    alerts,
    start_kafka_consumers,
    stop_kafka_consumers,
)
from hrms.services.sales.events import AlertEvent, OrderEvent
from hrms.topics import INVENTORY_TOPIC, SALES_TOPIC
from tests.services.conftest import Harness, ServiceClient, eventually

NOW = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)
CID = "corr-sales-1"


@dataclass
class Clock:
    """The sales service's clock, moved by the test."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    harness: Harness
    inv: ServiceClient
    sales: ServiceClient
    clock: Clock


@pytest.fixture
async def world(harness: Harness) -> World:
    clock = Clock()
    inv = await harness.start("inventory")
    sales = await harness.start("sales", build_kwargs={"clock": clock})
    return World(harness, inv, sales, clock)


def token(
    w: World, tenant: str = "acme", role: Role = Role.MANAGER, user: int = 2
) -> dict[str, str]:
    return w.sales.token(user_id=user, tenant=tenant, role=role)


async def product(
    w: World,
    tenant: str = "acme",
    sku: str = "LAP-001",
    stock: int = 20,
    reorder_level: int = 10,
    usage: float = 0.0,
) -> int:
    """Create a product in inventory and wait until sales knows it; its id."""
    response = await w.inv.http.post(
        "/products",
        json={
            "sku": sku,
            "name": f"Product {sku}",
            "category": "electronics",
            "location": "Warehouse A",
            "unit_price": 100.0,
            "quantity_on_hand": stock,
            "reorder_level": reorder_level,
            "reorder_quantity": 50,
            "average_daily_usage": usage,
        },
        headers=token(w, tenant),
    )
    assert response.status_code == 201, response.text
    product_id: int = response.json()["id"]

    async def known() -> bool:
        got = await w.sales.http.get(f"/products/{product_id}", headers=token(w, tenant))
        return got.status_code == 200

    await eventually(known, what=f"sales knows product {product_id}")
    return product_id


async def adjust(w: World, product_id: int, delta: int, tenant: str = "acme") -> dict[str, Any]:
    response = await w.inv.http.post(
        f"/products/{product_id}/adjustments",
        json={"delta": delta, "reason": "test"},
        headers={**token(w, tenant), "X-Correlation-ID": CID},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def stock_seen(w: World, product_id: int, stock: int, tenant: str = "acme") -> None:
    """Wait until sales has applied the inventory events up to ``stock``."""

    async def check() -> bool:
        got = await w.sales.http.get(f"/products/{product_id}", headers=token(w, tenant))
        return got.status_code == 200 and got.json()["current_stock"] == stock

    await eventually(check, what=f"sales sees stock {stock}")


async def order(
    w: World, product_id: int | str, quantity: int, tenant: str = "acme", expect: int = 201
) -> dict[str, Any]:
    response = await w.sales.http.post(
        "/orders",
        json={"product_id": product_id, "quantity": quantity, "customer": "Initech"},
        headers=token(w, tenant, Role.EMPLOYEE, user=40),
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def list_alerts(w: World, tenant: str = "acme", **params: Any) -> list[dict[str, Any]]:
    response = await w.sales.http.get("/alerts", params=params, headers=token(w, tenant))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def alert_with(w: World, **expected: Any) -> dict[str, Any]:
    """Wait for an alert of tenant acme whose fields include ``expected``."""

    async def check() -> dict[str, Any] | None:
        for alert in await list_alerts(w):
            if all(alert[k] == v for k, v in expected.items()):
                return alert
        return None

    found: dict[str, Any] = await eventually(check, what=f"an alert with {expected}")
    return found


async def sales_outbox_types(w: World) -> list[str]:
    table = w.sales.service.outbox.table
    async with w.sales.service.engine.connect() as conn:
        rows = await conn.execute(select(table.c.event_type).order_by(table.c.id))
        return [str(t) for t in rows.scalars()]


async def sales_outbox_topics(w: World) -> list[str]:
    table = w.sales.service.outbox.table
    async with w.sales.service.engine.connect() as conn:
        rows = await conn.execute(select(table.c.topic).order_by(table.c.id))
        return [str(t) for t in rows.scalars()]


def of_type(events: list[BaseEvent], event_type: str) -> list[Any]:
    return [e for e in events if e.event_type == event_type]


# --------------------------------------------------------------------------- alerts


async def test_stock_down_to_zero_raises_a_critical_alert_and_notifies_sales(
    world: World,
) -> None:
    w = world
    sales_events = await w.harness.collect(SALES_TOPIC)
    mail = await w.harness.collect(w.harness.settings.notification_topic)
    audits = await w.harness.collect(w.harness.settings.audit_topic)
    pid = await product(w, stock=10, reorder_level=5)

    adjusted = await adjust(w, pid, -10)

    assert adjusted["low_stock"]["priority"] == "critical"
    alert = await alert_with(w, product_id=pid, status="open")
    assert alert["priority"] == "critical"
    assert alert["current_stock"] == 0
    assert alert["reorder_level"] == 5
    assert alert["product_sku"] == "LAP-001"
    got = await w.sales.http.get(f"/alerts/{alert['id']}", headers=token(w, role=Role.EMPLOYEE))
    assert got.json() == alert

    (raised,) = await eventually(lambda: of_type(sales_events, "sales.alert_raised"))
    assert isinstance(raised, AlertEvent)
    assert raised.priority is Priority.CRITICAL
    assert raised.tenant_id == "acme"
    assert raised.correlation_id == CID  # the adjustment's request, through both services
    assert raised.data.alert_id == alert["id"]
    assert raised.data.product_id == pid

    (note,) = await eventually(lambda: mail)
    assert isinstance(note, NotificationEvent)
    assert note.data.template_name == "low_stock_alert"
    assert note.data.recipient_email == "sales@acme.example"
    assert note.priority is Priority.CRITICAL
    assert note.tenant_id == "acme"
    assert note.correlation_id == CID
    assert note.data.template_data["product_sku"] == "LAP-001"
    assert note.data.template_data["current_stock"] == 0
    assert note.data.template_data["priority"] == "critical"
    assert "[CRITICAL]" in note.data.subject

    await eventually(
        lambda: [a for a in audits if a.event_type == "audit.sales.action"], what="sales audit"
    )
    sales_audit = [a for a in audits if a.event_type == "audit.sales.action"]
    assert sales_audit[0].data.action == "RAISE"
    assert sales_audit[0].data.resource_type == "alert"


async def test_alert_priority_rises_then_the_alert_closes_on_recovery(world: World) -> None:
    w = world
    sales_events = await w.harness.collect(SALES_TOPIC)
    mail = await w.harness.collect(w.harness.settings.notification_topic)
    pid = await product(w, stock=20, reorder_level=10)

    await adjust(w, pid, -12)  # 8 left: medium
    medium = await alert_with(w, product_id=pid, status="open", priority="medium")

    await adjust(w, pid, -8)  # 0 left: critical, the same alert
    critical = await alert_with(w, product_id=pid, current_stock=0)
    assert critical["id"] == medium["id"]
    assert critical["priority"] == "critical"
    (updated,) = await eventually(lambda: of_type(sales_events, "sales.alert_updated"))
    assert updated.data.previous_priority is Priority.MEDIUM
    assert updated.data.priority is Priority.CRITICAL
    assert updated.priority is Priority.CRITICAL
    await eventually(lambda: len(mail) == 2, what="a second notification")
    assert [n.data.template_data["priority"] for n in mail] == ["medium", "critical"]

    await adjust(w, pid, 6)  # 6 left: medium again; the alert stays critical, quietly
    refreshed = await alert_with(w, product_id=pid, current_stock=6)
    assert refreshed["priority"] == "critical"
    assert refreshed["status"] == "open"
    assert (await sales_outbox_types(w)).count("sales.alert_updated") == 1
    assert (await sales_outbox_topics(w)).count(w.harness.settings.notification_topic) == 2
    assert len(mail) == 2

    await adjust(w, pid, 10)  # 16 > 10: recovered
    closed = await alert_with(w, product_id=pid, status="closed")
    assert closed["id"] == medium["id"]
    assert closed["current_stock"] == 16
    assert closed["closed_at"] is not None
    (gone,) = await eventually(lambda: of_type(sales_events, "sales.alert_closed"))
    assert gone.data.alert_id == medium["id"]
    assert gone.data.status == "closed"

    await adjust(w, pid, -16)  # out again: a new alert
    again = await alert_with(w, product_id=pid, status="open")
    assert again["id"] != medium["id"]
    assert again["priority"] == "critical"
    assert [a["status"] for a in await list_alerts(w, product_id=str(pid))] == ["open", "closed"]
    assert [a["id"] for a in await list_alerts(w, status="closed")] == [medium["id"]]
    assert [a["id"] for a in await list_alerts(w, priority="critical", status="open")] == [
        again["id"]
    ]


async def test_priority_thresholds_reach_the_alert(world: World) -> None:
    w = world
    # usage 3/day: 8 units last 2.7 days (high); half the level (4 < 5) is high too
    by_days = await product(w, sku="DAYS", stock=20, reorder_level=10, usage=3.0)
    by_half = await product(w, sku="HALF", stock=20, reorder_level=10)
    at_level = await product(w, sku="LEVEL", stock=20, reorder_level=10)
    above = await product(w, sku="ABOVE", stock=20, reorder_level=10)

    await adjust(w, by_days, -12)
    await adjust(w, by_half, -16)
    await adjust(w, at_level, -10)
    await adjust(w, above, -9)

    assert (await alert_with(w, product_id=by_days))["priority"] == "high"
    assert (await alert_with(w, product_id=by_half))["priority"] == "high"
    assert (await alert_with(w, product_id=at_level))["priority"] == "medium"
    await stock_seen(w, above, 11)  # its stock_adjusted event is applied: no alert
    assert await list_alerts(w, product_id=str(above)) == []


# --------------------------------------------------------------------------- orders


async def test_pending_orders_the_stock_cannot_satisfy_are_at_risk(world: World) -> None:
    w = world
    sales_events = await w.harness.collect(SALES_TOPIC)
    pid = await product(w, stock=10, reorder_level=3)

    first = await order(w, pid, 4)
    second = await order(w, pid, 5)
    third = await order(w, pid, 3)  # 4 + 5 + 3 > 10: the last one does not fit

    assert (first["at_risk"], second["at_risk"], third["at_risk"]) == (False, False, True)
    (risk,) = await eventually(lambda: of_type(sales_events, "sales.order_at_risk"))
    assert isinstance(risk, OrderEvent)
    assert risk.data.order_id == third["id"]
    assert risk.data.available_stock == 10

    await adjust(w, pid, -8)  # 2 left: medium low stock; none of the orders fits
    alert = await alert_with(w, product_id=pid, current_stock=2)
    assert alert["priority"] == "medium"
    assert alert["pending_orders"] == 3
    assert alert["pending_quantity"] == 12
    assert alert["at_risk_orders"] == 3
    at_risk = await w.sales.http.get("/orders", params={"at_risk": "true"}, headers=token(w))
    assert sorted(o["id"] for o in at_risk.json()["items"]) == sorted(
        o["id"] for o in (first, second, third)
    )
    await eventually(lambda: len(of_type(sales_events, "sales.order_at_risk")) == 3)
    assert len(of_type(sales_events, "sales.order_at_risk")) == 3  # once per order

    cancelled = await w.sales.http.post(f"/orders/{second['id']}/cancel", headers=token(w))
    assert cancelled.json()["status"] == "cancelled"
    await adjust(w, pid, 5)  # 7 left (above the level 3): 4 and 3 fit again, alert closes
    await alert_with(w, product_id=pid, status="closed")
    still = await w.sales.http.get("/orders", params={"at_risk": "true"}, headers=token(w))
    assert still.json()["items"] == []


async def test_forecast_averages_the_last_30_days_of_orders(world: World) -> None:
    w = world
    pid = await product(w, stock=100, reorder_level=10)
    w.clock.now = NOW - timedelta(days=45)
    await order(w, pid, 30)  # outside the window
    w.clock.now = NOW - timedelta(days=10)
    await order(w, pid, 20)
    cancelled = await order(w, pid, 50)
    await w.sales.http.post(f"/orders/{cancelled['id']}/cancel", headers=token(w))
    w.clock.now = NOW
    await order(w, pid, 10)

    await adjust(w, pid, -95)  # 5 left
    alert = await alert_with(w, product_id=pid, current_stock=5)

    assert alert["forecast_daily_demand"] == pytest.approx(30 / 30)  # (20 + 10) / 30 days
    view = await w.sales.http.get(f"/products/{pid}", headers=token(w))
    forecast = view.json()["forecast"]
    assert (forecast["window_days"], forecast["orders"], forecast["units"]) == (30, 2, 30)
    assert forecast["average_daily_demand"] == pytest.approx(1.0)


async def test_order_lifecycle_emits_sales_events(world: World) -> None:
    w = world
    sales_events = await w.harness.collect(SALES_TOPIC)
    audits = await w.harness.collect(w.harness.settings.audit_topic)
    pid = await product(w)
    headers = {**token(w, role=Role.EMPLOYEE, user=40), "X-Correlation-ID": CID}

    created = await w.sales.http.post(
        "/orders", json={"product_id": pid, "quantity": 3, "customer": "Initech"}, headers=headers
    )
    assert created.status_code == 201, created.text
    placed = created.json()
    assert (placed["status"], placed["product_id"], placed["created_by"]) == ("pending", pid, 40)
    other = await order(w, pid, 2)

    employee = token(w, role=Role.EMPLOYEE, user=40)
    refused = await w.sales.http.post(f"/orders/{placed['id']}/fulfil", headers=employee)
    assert refused.status_code == 403
    fulfilled = await w.sales.http.post(f"/orders/{placed['id']}/fulfil", headers=token(w))
    assert fulfilled.json()["status"] == "fulfilled"
    again = await w.sales.http.post(f"/orders/{placed['id']}/cancel", headers=token(w))
    assert again.status_code == 409
    assert "fulfilled" in again.json()["detail"]
    cancelled = await w.sales.http.post(f"/orders/{other['id']}/cancel", headers=employee)
    assert cancelled.json()["status"] == "cancelled"

    await eventually(lambda: len(sales_events) >= 4, what="four order events")
    assert [(e.event_type, e.data.order_id) for e in sales_events] == [
        ("sales.order_created", placed["id"]),
        ("sales.order_created", other["id"]),
        ("sales.order_fulfilled", placed["id"]),
        ("sales.order_cancelled", other["id"]),
    ]
    assert sales_events[0].correlation_id == CID
    assert sales_events[0].data.customer == "Initech"
    assert sales_events[0].data.available_stock == 20
    await eventually(lambda: len([a for a in audits if a.data.resource_type == "order"]) == 4)
    first = next(a for a in audits if a.data.resource_type == "order")
    assert (first.event_type, first.data.action, first.data.user_id) == (
        "audit.sales.action",
        "CREATE",
        40,
    )
    assert first.correlation_id == CID

    listed = await w.sales.http.get("/orders", params={"status": "pending"}, headers=employee)
    assert listed.json()["items"] == []
    by_product = await w.sales.http.get(
        "/orders", params={"product_id": str(pid)}, headers=employee
    )
    assert by_product.json()["total"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -3}, "quantity"),
        ({"customer": ""}, "customer"),
        ({"product_id": 0}, "product_id"),
    ],
)
async def test_bad_orders_are_422(world: World, body: dict[str, Any], field: str) -> None:
    w = world
    pid = await product(w)
    payload = {"product_id": pid, "quantity": 1, "customer": "Initech", **body}
    response = await w.sales.http.post("/orders", json=payload, headers=token(w))
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])


async def test_unknown_products_and_foreign_resources_are_404(world: World) -> None:
    w = world
    response = await w.sales.http.post(
        "/orders", json={"product_id": 999, "quantity": 1, "customer": "x"}, headers=token(w)
    )
    assert response.status_code == 404
    assert "product 999 not found" in response.json()["detail"]
    pid = await product(w, stock=1, reorder_level=1)
    placed = await order(w, pid, 1)
    await adjust(w, pid, -1)
    alert = await alert_with(w, product_id=pid)
    globex = token(w, "globex")

    await order(w, pid, 1, tenant="globex", expect=404)  # acme's product, globex's caller
    for path in (f"/orders/{placed['id']}", f"/alerts/{alert['id']}", f"/products/{pid}"):
        assert (await w.sales.http.get(path, headers=globex)).status_code == 404, path
    for action in ("cancel", "fulfil"):
        answer = await w.sales.http.post(f"/orders/{placed['id']}/{action}", headers=globex)
        assert answer.status_code == 404
    assert (await w.sales.http.get("/orders/12345", headers=token(w))).status_code == 404
    assert (await w.sales.http.get("/alerts/12345", headers=token(w))).status_code == 404
    got = await w.sales.http.get(f"/orders/{placed['id']}", headers=token(w))
    assert got.json()["status"] == "pending"


# --------------------------------------------------------------------------- tenants


async def test_tenants_never_see_each_others_data(world: World) -> None:
    w = world
    sales_events = await w.harness.collect(SALES_TOPIC)
    acme = await product(w, "acme", sku="LAP-001", stock=5, reorder_level=2)
    globex = await product(w, "globex", sku="LAP-001", stock=50, reorder_level=2)
    await order(w, acme, 5)
    await adjust(w, acme, -5)
    await alert_with(w, product_id=acme, priority="critical")

    b = token(w, "globex")
    inv_products = await w.inv.http.get("/products", headers=b)
    assert [p["id"] for p in inv_products.json()["items"]] == [globex]
    sales_products = await w.sales.http.get("/products", headers=b)
    assert [p["product_id"] for p in sales_products.json()["items"]] == [globex]
    assert (await w.sales.http.get("/orders", headers=b)).json()["items"] == []
    assert await list_alerts(w, "globex") == []
    assert (await w.inv.http.get(f"/products/{acme}/adjustments", headers=b)).status_code == 404

    await eventually(lambda: of_type(sales_events, "sales.alert_raised"))
    assert {e.tenant_id for e in sales_events} == {"acme"}
    async with w.sales.service.sessions() as session:
        rows = (await session.execute(select(alerts.c.tenant_id))).scalars().all()
    assert rows == ["acme"]  # stored under the event's tenant


# --------------------------------------------------------------------------- the consumer


async def test_seed_004_producer_events_without_a_tenant_are_skipped(world: World) -> None:
    """A seed-004-style producer (string ids): handled in its tenant, skipped without one."""
    w = world

    def seed_event(tenant: str | None, stock: int) -> BaseEvent:
        return create_low_stock_event(
            source_service="inventory-service",
            product_id="PRD-123",
            product_sku="LAP-001",
            product_name="Laptop Computer",
            current_stock=stock,
            reorder_level=10,
            reorder_quantity=50,
            unit_price=1200.00,
            category="electronics",
            location="Warehouse A",
            days_of_stock_remaining=3.5,
            tenant_id=tenant,
        )

    async with KafkaProducer(transport=w.harness.broker) as producer:
        await producer.publish(INVENTORY_TOPIC, seed_event(None, 0))
        await producer.publish(INVENTORY_TOPIC, seed_event("tenant-1", 8))

    async def raised() -> list[dict[str, Any]]:
        return await list_alerts(w, "tenant-1")

    (alert,) = await eventually(raised, what="tenant-1's alert")
    assert alert["product_id"] == "PRD-123"
    assert alert["priority"] == "medium"  # 8 of 10, 3.5 days
    assert alert["days_of_stock_remaining"] == 3.5
    async with w.sales.service.sessions() as session:
        tenants = (await session.execute(select(alerts.c.tenant_id))).scalars().all()
    assert tenants == ["tenant-1"]  # the tenant-less event made nothing
    placed = await order(w, "PRD-123", 2, tenant="tenant-1")
    assert placed["product_id"] == "PRD-123"


async def test_low_stock_consumer_registry() -> None:
    consumer = LowStockConsumer()
    seen: list[str] = []

    async def handler(event: BaseEvent, session: Any) -> None:
        seen.append(event.event_type)

    consumer.register_handler("inventory.low_stock", handler)
    with pytest.raises(ConfigurationError, match="registered already"):
        consumer.register_handler("inventory.low_stock", handler)

    no_session: Any = None  # the handler here needs none
    await consumer.handle(BaseEvent(event_type="inventory.unknown", tenant_id="t"), no_session)
    await consumer.handle(BaseEvent(event_type="inventory.low_stock"), no_session)
    await consumer.handle(BaseEvent(event_type="inventory.low_stock", tenant_id="t"), no_session)

    assert seen == ["inventory.low_stock"]
    assert consumer.skipped == 2
    assert consumer.handled == {"inventory.low_stock": 1}


async def test_start_kafka_consumers_runs_the_sales_worker_without_http(
    harness: Harness,
) -> None:
    service = build("sales", settings=harness.settings, transport=harness.broker)
    await start_kafka_consumers(service)
    try:
        async with KafkaProducer(transport=harness.broker) as producer:
            await producer.publish(
                INVENTORY_TOPIC,
                create_low_stock_event(
                    source_service="inventory-service",
                    product_id="PRD-9",
                    product_sku="SKU-9",
                    product_name="Nine",
                    current_stock=0,
                    reorder_level=3,
                    tenant_id="worker",
                ),
            )

        async def stored() -> list[str]:
            async with service.sessions() as session:
                rows = await session.execute(select(alerts.c.priority))
                return [str(p) for p in rows.scalars()]

        assert await eventually(stored, what="the worker's alert") == ["critical"]
    finally:
        await stop_kafka_consumers(service)
