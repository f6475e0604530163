"""The inventory service on the in-memory broker: products, adjustments, low-stock events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from eventbus import BaseEvent, Priority
from hrms.events import AuditEvent, LowStockEvent
from hrms.service import Role
from hrms.services._common import EventIds
from hrms.services.inventory import get_inventory_producer, products, publish_low_stock_event
from hrms.services.inventory.events import ProductEvent
from hrms.topics import INVENTORY_TOPIC
from tests.services.conftest import Harness, ServiceClient, eventually

CID = "corr-inventory-1"
NOW = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def inv(harness: Harness) -> ServiceClient:
    return await harness.start("inventory", build_kwargs={"clock": lambda: NOW})


def product_body(sku: str = "LAP-001", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": sku,
        "name": "Laptop Computer",
        "category": "electronics",
        "location": "Warehouse A",
        "unit_price": 1200.0,
        "quantity_on_hand": 20,
        "reorder_level": 10,
        "reorder_quantity": 50,
        "average_daily_usage": 0,
    }
    body.update(fields)
    return body


async def create(
    svc: ServiceClient, headers: dict[str, str] | None = None, expect: int = 201, **fields: Any
) -> dict[str, Any]:
    response = await svc.http.post(
        "/products", json=product_body(**fields), headers=headers or svc.token()
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def adjust(
    svc: ServiceClient,
    product_id: int,
    delta: int,
    headers: dict[str, str] | None = None,
    expect: int = 201,
    reason: str = "count",
) -> dict[str, Any]:
    response = await svc.http.post(
        f"/products/{product_id}/adjustments",
        json={"delta": delta, "reason": reason},
        headers=headers or svc.token(),
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def outbox(svc: ServiceClient) -> list[dict[str, Any]]:
    """The service's outbox rows (committed with each write), oldest first."""
    table = svc.service.outbox.table
    async with svc.service.engine.connect() as conn:
        rows = await conn.execute(select(table).order_by(table.c.id))
        return [dict(r) for r in rows.mappings()]


def of_type(events: list[BaseEvent], event_type: str) -> list[Any]:
    return [e for e in events if e.event_type == event_type]


def key_of(harness: Harness, event: BaseEvent) -> str | None:
    """The event's key, from the topic of its priority lane (critical, high and low
    events travel in ``inventory-events.<priority>``, the others in the topic itself)."""
    lane = event.priority.value
    topic = f"{INVENTORY_TOPIC}.{lane}" if lane in ("critical", "high", "low") else INVENTORY_TOPIC
    for record in harness.broker.records(topic):
        if record.value and json.loads(record.value)["event_id"] == str(event.event_id):
            return record.key.decode() if record.key else None
    raise AssertionError(f"{event.event_id} not on {topic}")


# --------------------------------------------------------------------------- products


async def test_create_emits_product_created_and_audit(harness: Harness, inv: ServiceClient) -> None:
    events = await harness.collect(INVENTORY_TOPIC)
    audits = await harness.collect(harness.settings.audit_topic)
    headers = {**inv.token(user_id=7, role=Role.MANAGER), "X-Correlation-ID": CID}

    product = await create(inv, headers)

    assert product["quantity_on_hand"] == 20
    assert product["needs_reorder"] is False
    assert product["stock_priority"] == "low"
    assert product["created_at"] == "2030-03-01T08:00:00Z"
    (created,) = await eventually(lambda: of_type(events, "inventory.product_created"))
    assert isinstance(created, ProductEvent)
    assert created.tenant_id == "acme"
    assert created.correlation_id == CID
    assert created.data.product_id == product["id"]
    assert created.data.sku == "LAP-001"
    assert created.data.quantity_on_hand == 20
    assert key_of(harness, created) == str(product["id"])
    (audit,) = await eventually(lambda: audits)
    assert isinstance(audit, AuditEvent)
    assert audit.event_type == "audit.inventory.action"
    assert audit.correlation_id == CID
    assert audit.tenant_id == "acme"
    assert audit.data.action == "CREATE"
    assert audit.data.resource_type == "product"
    assert audit.data.resource_id == product["id"]
    assert audit.data.user_id == 7


async def test_sku_is_unique_per_tenant(inv: ServiceClient) -> None:
    await create(inv)
    response = await inv.http.post("/products", json=product_body(), headers=inv.token())
    assert response.status_code == 409
    assert "LAP-001" in response.json()["detail"]
    await create(inv, inv.token(tenant="globex"))  # another tenant may use the same SKU


async def test_read_patch_and_list(inv: ServiceClient) -> None:
    laptop = await create(inv)
    mouse = await create(inv, sku="MOU-001", name="Mouse", quantity_on_hand=3, reorder_level=5)
    employee = inv.token(user_id=30, role=Role.EMPLOYEE, employee_id=3)

    got = await inv.http.get(f"/products/{laptop['id']}", headers=employee)
    assert got.status_code == 200
    assert got.json()["sku"] == "LAP-001"

    patched = await inv.http.patch(
        f"/products/{laptop['id']}",
        json={"reorder_level": 25, "location": None, "average_daily_usage": 4},
        headers=inv.token(role=Role.MANAGER),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["reorder_level"], body["location"]) == (25, None)
    assert body["needs_reorder"] is True
    assert body["days_of_stock_remaining"] == 5.0
    assert body["stock_priority"] == "medium"

    low = await inv.http.get("/products", params={"low_stock": "true"}, headers=employee)
    assert [p["sku"] for p in low.json()["items"]] == ["LAP-001", "MOU-001"]
    fine = await inv.http.get("/products", params={"low_stock": "false"}, headers=employee)
    assert fine.json()["items"] == []
    by_sku = await inv.http.get("/products", params={"sku": "MOU-001"}, headers=employee)
    assert [p["id"] for p in by_sku.json()["items"]] == [mouse["id"]]


async def test_patch_refuses_stock_and_clearing(inv: ServiceClient) -> None:
    product = await create(inv)
    url = f"/products/{product['id']}"

    stock = await inv.http.patch(url, json={"quantity_on_hand": 99}, headers=inv.token())
    assert stock.status_code == 422
    assert "adjustments" in stock.json()["detail"]
    cleared = await inv.http.patch(url, json={"name": None}, headers=inv.token())
    assert cleared.status_code == 422
    assert "name cannot be cleared" in cleared.json()["detail"]
    negative = await inv.http.patch(url, json={"reorder_level": -1}, headers=inv.token())
    assert negative.status_code == 422
    await create(inv, sku="OTHER-1")
    taken = await inv.http.patch(url, json={"sku": "OTHER-1"}, headers=inv.token())
    assert taken.status_code == 409


async def test_only_admins_and_managers_write(inv: ServiceClient) -> None:
    employee = inv.token(user_id=30, role=Role.EMPLOYEE, employee_id=3)
    response = await inv.http.post("/products", json=product_body(), headers=employee)
    assert response.status_code == 403
    product = await create(inv, inv.token(role=Role.MANAGER))
    await adjust(inv, product["id"], -1, headers=employee, expect=403)
    patched = await inv.http.patch(
        f"/products/{product['id']}", json={"name": "x"}, headers=employee
    )
    assert patched.status_code == 403
    assert (await inv.http.get("/products")).status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit_price", -0.01),
        ("quantity_on_hand", -1),
        ("reorder_level", -5),
        ("reorder_quantity", -1),
        ("average_daily_usage", -0.5),
        ("sku", ""),
        ("sku", "has space"),
        ("name", ""),
    ],
)
async def test_bad_product_fields_are_422(inv: ServiceClient, field: str, value: Any) -> None:
    response = await inv.http.post(
        "/products", json=product_body(**{field: value}), headers=inv.token()
    )
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])


# --------------------------------------------------------------------------- adjustments


async def test_adjustment_records_and_emits_stock_adjusted(
    harness: Harness, inv: ServiceClient
) -> None:
    events = await harness.collect(INVENTORY_TOPIC)
    audits = await harness.collect(harness.settings.audit_topic)
    product = await create(inv)
    headers = {**inv.token(user_id=9), "X-Correlation-ID": CID}

    result = await adjust(inv, product["id"], -5, headers, reason="shipped to store 4")

    assert result["adjustment"]["quantity_before"] == 20
    assert result["adjustment"]["quantity_after"] == 15
    assert result["adjustment"]["created_by"] == 9
    assert result["product"]["quantity_on_hand"] == 15
    assert result["low_stock"] is None
    (adjusted,) = await eventually(lambda: of_type(events, "inventory.stock_adjusted"))
    assert adjusted.data.quantity_on_hand == 15
    assert adjusted.data.previous_quantity == 20
    assert adjusted.data.delta == -5
    assert adjusted.data.reason == "shipped to store 4"
    assert adjusted.data.adjustment_id == result["adjustment"]["id"]
    assert adjusted.correlation_id == CID
    assert key_of(harness, adjusted) == str(product["id"])
    audit = await eventually(
        lambda: [a for a in audits if a.data.action == "ADJUST_STOCK"], what="adjust audit"
    )
    assert audit[0].data.changes == {"quantity_on_hand": 15, "previous_quantity": 20, "delta": -5}
    assert audit[0].correlation_id == CID

    await adjust(inv, product["id"], 7)
    listed = await inv.http.get(f"/products/{product['id']}/adjustments", headers=inv.token())
    assert [a["delta"] for a in listed.json()["items"]] == [7, -5]
    assert listed.json()["total"] == 2


async def test_stock_below_zero_is_refused(inv: ServiceClient) -> None:
    product = await create(inv, quantity_on_hand=4)
    before = [row["id"] for row in await outbox(inv)]

    response = await inv.http.post(
        f"/products/{product['id']}/adjustments",
        json={"delta": -5, "reason": "sold"},
        headers=inv.token(),
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("insufficient stock")
    assert "has 4 on hand" in detail
    assert "would leave -1" in detail
    got = await inv.http.get(f"/products/{product['id']}", headers=inv.token())
    assert got.json()["quantity_on_hand"] == 4
    assert [row["id"] for row in await outbox(inv)] == before  # nothing emitted


@pytest.mark.parametrize(
    "body",
    [{"delta": 0, "reason": "x"}, {"delta": 1, "reason": ""}, {"delta": "many", "reason": "x"}],
)
async def test_bad_adjustments_are_422(inv: ServiceClient, body: dict[str, Any]) -> None:
    product = await create(inv)
    response = await inv.http.post(
        f"/products/{product['id']}/adjustments", json=body, headers=inv.token()
    )
    assert response.status_code == 422, response.text


async def test_unknown_and_foreign_products_are_404(inv: ServiceClient) -> None:
    product = await create(inv)
    foreign = inv.token(tenant="globex")
    pid = product["id"]
    for headers, product_id in ((inv.token(), 999), (foreign, pid)):
        assert (await inv.http.get(f"/products/{product_id}", headers=headers)).status_code == 404
        patched = await inv.http.patch(
            f"/products/{product_id}", json={"name": "x"}, headers=headers
        )
        assert patched.status_code == 404
        await adjust(inv, product_id, -1, headers=headers, expect=404)
        listed = await inv.http.get(f"/products/{product_id}/adjustments", headers=headers)
        assert listed.status_code == 404
    assert (await inv.http.get("/products", headers=foreign)).json()["items"] == []
    got = await inv.http.get(f"/products/{pid}", headers=inv.token())
    assert got.json()["quantity_on_hand"] == 20  # the foreign adjustment changed nothing


# --------------------------------------------------------------------------- low stock


@pytest.mark.parametrize(
    ("stock", "usage", "priority"),
    [
        (0, 0.0, Priority.CRITICAL),  # out of stock
        (8, 3.0, Priority.HIGH),  # 2.67 days left (< 3), though not under half the level
        (9, 3.0, Priority.MEDIUM),  # exactly 3 days left: not "under 3 days"
        (4, 0.0, Priority.HIGH),  # under 50% of the reorder level (10)
        (5, 0.0, Priority.MEDIUM),  # exactly 50%: not under
        (10, 0.0, Priority.MEDIUM),  # at the reorder level
        (11, 0.0, None),  # above: no low-stock event
    ],
)
async def test_low_stock_priority_at_the_thresholds(
    harness: Harness, inv: ServiceClient, stock: int, usage: float, priority: Priority | None
) -> None:
    product = await create(inv, quantity_on_hand=20, reorder_level=10, average_daily_usage=usage)

    result = await adjust(inv, product["id"], stock - 20)

    types = [row["event_type"] for row in await outbox(inv)]
    if priority is None:
        assert result["low_stock"] is None
        assert "inventory.low_stock" not in types
        return
    assert result["low_stock"]["priority"] == priority.value
    assert result["product"]["stock_priority"] == priority.value
    # stock_adjusted first, then low_stock, in the adjustment's transaction
    assert types[-3:] == [
        "inventory.stock_adjusted",
        "audit.inventory.action",
        "inventory.low_stock",
    ]
    events = await harness.collect(INVENTORY_TOPIC, group="threshold-observer")
    (low,) = await eventually(lambda: of_type(events, "inventory.low_stock"))
    assert isinstance(low, LowStockEvent)
    assert low.priority is priority
    assert low.data.current_stock == stock
    assert key_of(harness, low) == str(product["id"])


async def test_low_stock_event_carries_seed_004_payload(
    harness: Harness, inv: ServiceClient
) -> None:
    events = await harness.collect(INVENTORY_TOPIC)
    product = await create(inv, quantity_on_hand=20, reorder_level=10, average_daily_usage=2.0)
    headers = {**inv.token(), "X-Correlation-ID": CID}

    await adjust(inv, product["id"], -13, headers)  # 7 left, 3.5 days: medium

    (low,) = await eventually(lambda: of_type(events, "inventory.low_stock"))
    assert low.source_service == "inventory-service"
    assert low.tenant_id == "acme"
    assert low.correlation_id == CID
    assert low.priority is Priority.MEDIUM
    assert low.data.model_dump(exclude_none=True) == {
        "product_id": product["id"],
        "product_sku": "LAP-001",
        "product_name": "Laptop Computer",
        "current_stock": 7,
        "reorder_level": 10,
        "reorder_quantity": 50,
        "unit_price": 1200.0,
        "category": "electronics",
        "location": "Warehouse A",
        "average_daily_usage": 2.0,
        "days_of_stock_remaining": 3.5,
    }
    stock_adjusted = of_type(events, "inventory.stock_adjusted")
    assert events.index(stock_adjusted[0]) < events.index(low)


async def test_publish_low_stock_event_adds_to_the_callers_transaction(inv: ServiceClient) -> None:
    product = await create(inv, quantity_on_hand=0)
    service = inv.service
    ids = EventIds(tenant_id="acme", correlation_id=CID, causation_id=None)
    async with service.sessions() as session:
        row = (
            (await session.execute(select(products).where(products.c.id == product["id"])))
            .mappings()
            .one()
        )
    before = len(await outbox(inv))

    async def publish_then_fail() -> None:
        async with service.transaction() as session:
            await publish_low_stock_event(service, session, row, ids)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        await publish_then_fail()
    assert len(await outbox(inv)) == before

    async with service.transaction() as session:
        event = await get_inventory_producer(service).publish_low_stock_event(session, row, ids)
    assert event is not None
    assert event.priority is Priority.CRITICAL
    rows = await outbox(inv)
    assert len(rows) == before + 1
    assert rows[-1]["event_type"] == "inventory.low_stock"
    assert rows[-1]["key"] == str(product["id"])
