"""Priority lanes end to end: a CRITICAL low-stock event overtakes a LOW backlog.

A backlog of LOW inventory events (another producer's bulk stock sync) waits for the
sales service; then stock of a product is adjusted to zero over HTTP. The CRITICAL
low-stock event travels in its own lane, so the sales alert is raised while most of the
LOW backlog is still unhandled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from eventbus import KafkaProducer, Priority
from eventbus._embedded import EmbeddedBroker
from hrms.services.inventory.events import STOCK_ADJUSTED, ProductData, ProductEvent
from tests.e2e.conftest import TENANT, SystemThread, login, make_system, wait_for

pytestmark = pytest.mark.broker

BACKLOG = 5000
BULK_ID = 900_001
BULK_PRODUCTS = 30  # many keys: the backlog fills every partition, the product's too


def bulk_event(n: int) -> ProductEvent:
    """The n-th (from 0) event of the bulk sync: product ``n % BULK_PRODUCTS``'s stock
    becomes its own event count, so the stocks sum to the events handled."""
    product = BULK_ID + n % BULK_PRODUCTS
    data = ProductData(
        product_id=product,
        sku=f"BULK-{product}",
        name="Bulk sync",
        quantity_on_hand=n // BULK_PRODUCTS + 1,
        reorder_level=0,
    )
    return ProductEvent(
        event_type=STOCK_ADJUSTED,
        source_service="bulk-sync",
        tenant_id=TENANT,
        priority=Priority.LOW,
        data=data,
    )


@pytest.mark.timeout(240)
def test_a_critical_alert_overtakes_a_low_backlog(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    system = SystemThread(
        make_system(
            tmp_path / "hrms",
            own_broker.bootstrap_servers,
            services=("users", "inventory", "sales"),
        )
    ).start()
    try:
        with httpx.Client(timeout=15) as client:
            auth = login(client, system)
            inventory, sales = system.url("inventory"), system.url("sales")
            r = client.post(
                inventory + "/products",
                headers=auth,
                json={"sku": "LAP-P", "name": "Laptop", "quantity_on_hand": 10,
                      "reorder_level": 5, "unit_price": 1000.0},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            wait_for(
                lambda: client.get(f"{sales}/products/{pid}", headers=auth).status_code == 200,
                30,
                "sales to learn of the product",
            )

            lanes = system.system.running["inventory"].lanes

            async def backlog() -> None:
                async with KafkaProducer(
                    settings=system.system.kafka, priority_lanes=lanes
                ) as producer:
                    acks = [
                        await producer.enqueue("inventory-events", bulk_event(n))
                        for n in range(BACKLOG)
                    ]
                    await asyncio.gather(*acks)

            asyncio.run(backlog())

            def bulk_stock() -> int:
                """How many bulk events sales has handled."""
                r = client.get(f"{sales}/products", headers=auth, params={"limit": 200})
                return sum(
                    int(p["current_stock"]) for p in r.json()["items"] if p["product_id"] >= BULK_ID
                )

            wait_for(bulk_stock, 30, "sales to start on the LOW backlog")
            r = client.post(
                f"{inventory}/products/{pid}/adjustments",
                headers=auth,
                json={"delta": -10, "reason": "sold out"},
            )
            assert r.status_code == 201, r.text
            assert r.json()["low_stock"]["priority"] == "critical"

            def critical() -> bool:
                r = client.get(f"{sales}/alerts", headers=auth, params={"product_id": pid})
                return any(a["priority"] == "critical" for a in r.json()["items"])

            wait_for(critical, 60, "the CRITICAL alert")
            handled = bulk_stock()
            # the alert came while most of the LOW backlog was still waiting
            assert handled < BACKLOG * 0.8, f"{handled} of {BACKLOG} LOW events went first"
            # and LOW is not starved: the backlog goes on being handled
            wait_for(lambda: bulk_stock() > handled + 100, 60, "the LOW backlog to move on")
    finally:
        system.stop()
