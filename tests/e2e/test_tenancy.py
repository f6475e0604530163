"""Tenant isolation end to end: tenant A's events and data never show in tenant B's
queries, consumers' stores or dead-letter replays."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from eventbus import KafkaProducer
from eventbus.redrive import DeadLetterFilter, read_dead_letters, replay
from hrms.events import create_notification_event
from tests.e2e.conftest import TENANT, SystemThread, login, wait_for

pytestmark = pytest.mark.broker

OTHER = "tenant-b"
OTHER_ADMIN = "admin@tenant-b.example"
OTHER_PASSWORD = "tenant-b-admin-password"


@pytest.mark.timeout(180)
def test_tenant_b_never_sees_tenant_a(system: SystemThread) -> None:
    from hrms.services.users import bootstrap_admin

    system.call(bootstrap_admin(system.system.running["users"], OTHER, OTHER_ADMIN, OTHER_PASSWORD))
    run = uuid.uuid4().hex[:6]
    with httpx.Client(timeout=15) as client:
        a = login(client, system)
        b = login(client, system, OTHER, OTHER_ADMIN, OTHER_PASSWORD)
        emp = client.post(
            system.url("employees") + "/employees",
            headers=a,
            json={"employee_code": f"T-{run}", "name": "Tess Tenant",
                  "email": f"tess-{run}@e2e.example", "hire_date": "2026-03-02"},
        )  # fmt: skip
        assert emp.status_code == 201, emp.text
        emp_id = emp.json()["id"]
        product = client.post(
            system.url("inventory") + "/products",
            headers=a,
            json={"sku": f"T-{run}", "name": "Tenant widget", "quantity_on_hand": 5,
                  "reorder_level": 1, "unit_price": 1.0},
        )  # fmt: skip
        assert product.status_code == 201, product.text
        product_id = product.json()["id"]

        # A's writes reach A's audit trail (consumed in A's scope)...
        def audited_for_a() -> bool:
            r = client.get(
                system.url("audit") + "/audit-logs",
                headers=a,
                params={"resource_type": "employee", "resource_id": str(emp_id)},
            )
            return bool(r.json()["items"])

        wait_for(audited_for_a, 30, "tenant A's audit record")
        # ...and sales learned of A's product in A's scope
        wait_for(
            lambda: (
                client.get(system.url("sales") + f"/products/{product_id}", headers=a).status_code
                == 200
            ),
            30,
            "sales' projection of A's product",
        )

        # B sees none of it, by id or in lists
        assert (
            client.get(system.url("employees") + f"/employees/{emp_id}", headers=b).status_code
            == 404
        )
        assert (
            client.get(system.url("inventory") + f"/products/{product_id}", headers=b).status_code
            == 404
        )
        assert (
            client.get(system.url("sales") + f"/products/{product_id}", headers=b).status_code
            == 404
        )
        for url in (
            system.url("employees") + "/employees",
            system.url("inventory") + "/products",
            system.url("sales") + "/products",
            system.url("audit") + "/audit-logs",
        ):
            body = client.get(url, headers=b, params={"limit": 200}).json()
            assert all(item.get("tenant_id", OTHER) == OTHER for item in body["items"]), url
        b_audit = client.get(system.url("audit") + "/audit-logs", headers=b, params={"limit": 200})
        assert all(
            item["resource_id"] not in (str(emp_id), str(product_id))
            or item["resource_type"] not in ("employee", "product")
            for item in b_audit.json()["items"]
        )
        counts = client.get(system.url("analytics") + "/analytics/counts", headers=b).json()
        assert counts["tenant_id"] == OTHER
        a_counts = client.get(system.url("analytics") + "/analytics/counts", headers=a).json()
        assert a_counts["tenant_id"] == TENANT
        assert a_counts["total"] > counts["total"]


@pytest.mark.timeout(180)
def test_dead_letters_are_listed_and_replayed_per_tenant(system: SystemThread) -> None:
    """A notification with an unknown template is dead-lettered; filters keep tenants apart."""
    kafka = system.system.kafka
    marker = uuid.uuid4().hex[:8]
    events = {
        tenant: create_notification_event(
            "e2e-test",
            f"{tenant}-{marker}@e2e.example",
            f"poison {marker}",
            f"no-such-template-{marker}",
            tenant_id=tenant,
        )
        for tenant in (TENANT, OTHER)
    }

    async def run() -> tuple[list[str], list[str], int]:
        async with KafkaProducer(settings=kafka) as producer:
            for event in events.values():
                await producer.send_event("notification-queue", event)

        async def letters(tenant: str) -> list[Any]:
            found = await read_dead_letters(
                "notification-dlq",
                settings=kafka,
                filters=DeadLetterFilter(tenant_id=tenant),
                settle_s=0.5,
            )
            return [d for d in found if marker.encode() in (d.value or b"")]

        deadline = time.monotonic() + 60
        while True:
            a, b = await letters(TENANT), await letters(OTHER)
            if a and b:
                break
            assert time.monotonic() < deadline, "both poison notifications dead-lettered"
            await asyncio.sleep(0.5)
        result = await replay(b, settings=kafka, dry_run=True)
        return [d.tenant_id for d in a], [d.tenant_id for d in b], len(result.outcomes)

    a_tenants, b_tenants, planned = asyncio.run(run())
    assert set(a_tenants) == {TENANT}
    assert set(b_tenants) == {OTHER}
    assert planned == len(b_tenants)
