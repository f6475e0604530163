"""``hrms demo``: a realistic scenario driven through the public HTTP APIs only.

An admin logs in, hires a manager and an employee and gives them accounts (welcome
mails), the employee asks for leave and the manager approves it (a mail), the employee
checks in while on approved leave (a compliance violation and a mail to the manager),
and checks out; analytics counts the tenant's events (logins and logouts included). Then
it waits until every service did its part and prints what each did.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

DEFAULT_TENANT = "acme"
DEFAULT_ADMIN = "admin@acme.example"


class WalkthroughError(Exception):
    """A step got an answer it did not expect."""


@dataclass
class Outcome:
    """What each service was seen doing."""

    steps: list[tuple[str, str, str]] = field(default_factory=list)
    mail: list[dict[str, Any]] = field(default_factory=list)
    audit_records: int = 0
    audit_chain: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    alert: dict[str, Any] = field(default_factory=dict)
    analytics: dict[str, int] = field(default_factory=dict)
    """The tenant's event counts per type (seed 002's analytics consumer)."""


class _Api:
    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str], outcome: Outcome) -> None:
        self.client = client
        self.urls = urls
        self.outcome = outcome

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None = None,
        *,
        expect: int = 200,
        what: str = "",
        **kwargs: Any,
    ) -> Any:
        headers = {"X-Correlation-ID": f"demo-{uuid.uuid4().hex[:12]}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = await self.client.request(method, self.urls[service] + path, headers=headers, **kwargs)
        if r.status_code != expect:
            raise WalkthroughError(f"{method} {service}{path}: {r.status_code} {r.text[:300]}")
        if what:
            self.outcome.steps.append((service, f"{method} {path} -> {r.status_code}", what))
        return r.json() if r.content else None

    async def login(self, tenant: str, email: str, password: str) -> str:
        body = {"tenant_id": tenant, "email": email, "password": password}
        token: str = (await self.call("users", "POST", "/auth/login", json=body))["access_token"]
        return token


async def _until(check: Callable[[], Awaitable[Any]], what: str, wait_s: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise WalkthroughError(f"timed out after {wait_s:g}s waiting for {what}")
        await asyncio.sleep(0.25)


async def walkthrough(
    hub: str,
    *,
    tenant: str = DEFAULT_TENANT,
    admin_email: str = DEFAULT_ADMIN,
    admin_password: str,
    wait_s: float = 60.0,
) -> Outcome:
    """Run the scenario against the system whose hub is at ``hub``; return what happened.

    Raises:
        WalkthroughError: a step failed or an expected effect did not appear in time.
    """
    outcome = Outcome()
    run = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(timeout=15.0) as client:
        index = (await client.get(hub + "/")).json()
        urls = {name: info["url"] for name, info in index["services"].items()}
        api = _Api(client, urls, outcome)
        admin = await api.login(tenant, admin_email, admin_password)
        manager_email = f"manager-{run}@{tenant}.example"
        employee_email = f"employee-{run}@{tenant}.example"
        today = date.today()

        manager = await api.call(
            "employees", "POST", "/employees", admin, expect=201,
            what="hired a manager (employee.created)",
            json={"employee_code": f"M-{run}", "name": "Maria Manager", "email": manager_email,
                  "department": "Operations", "position": "Team lead",
                  "hire_date": str(today - timedelta(days=400))},
        )  # fmt: skip
        employee = await api.call(
            "employees", "POST", "/employees", admin, expect=201,
            what="hired an employee reporting to her (employee.created)",
            json={"employee_code": f"E-{run}", "name": "Evan Employee", "email": employee_email,
                  "department": "Operations", "position": "Analyst",
                  "hire_date": str(today - timedelta(days=30)), "manager_id": manager["id"]},
        )  # fmt: skip
        password = f"pw-{uuid.uuid4().hex}"
        for email, name, role, emp in (
            (manager_email, "Maria Manager", "manager", manager["id"]),
            (employee_email, "Evan Employee", "employee", employee["id"]),
        ):
            await api.call(
                "users", "POST", "/users", admin, expect=201,
                what=f"created the {role}'s account (user.created, welcome mail)",
                json={"email": email, "name": name, "password": password, "role": role,
                      "employee_id": emp},
            )  # fmt: skip
        evan = await api.login(tenant, employee_email, password)
        maria = await api.login(tenant, manager_email, password)

        leave = await api.call(
            "leaves", "POST", "/leaves", evan, expect=201,
            what="Evan asked for three days of annual leave (leave.requested)",
            json={"employee_id": employee["id"], "leave_type": "annual",
                  "start_date": str(today), "end_date": str(today + timedelta(days=2)),
                  "reason": "family visit"},
        )  # fmt: skip
        await api.call(
            "leaves", "POST", f"/leaves/{leave['id']}/approve", maria,
            what="Maria approved it (leave.approved, mail to Evan)",
        )  # fmt: skip
        await api.call(
            "attendance", "POST", "/attendance/check-in", evan, expect=201,
            what="Evan checked in during his approved leave (attendance.marked)",
            json={"employee_id": employee["id"]},
        )  # fmt: skip
        await api.call(
            "attendance", "POST", "/attendance/check-out", evan,
            what="and checked out (attendance.updated)",
            json={"employee_id": employee["id"]},
        )  # fmt: skip

        async def violation() -> list[dict[str, Any]]:
            body = await api.call(
                "compliance", "GET", f"/compliance/findings?employee_id={employee['id']}", maria
            )
            items = body["items"] if isinstance(body, dict) else body
            return [f for f in items if f["rule"] == "check_in_during_leave"]

        outcome.findings = await _until(violation, "the compliance violation", wait_s)
        if "inventory" in urls and "sales" in urls:
            outcome.alert = await _low_stock(api, admin, run, wait_s)

        wanted = {employee_email: {"welcome", "approved"}, manager_email: {"welcome", "violation"}}

        async def mail() -> list[dict[str, Any]]:
            box = (await client.get(hub + "/mail")).json()
            mine = [m for m in box if set(m["recipients"]) & set(wanted)]
            for who, words in wanted.items():
                subjects = " ".join(m["subject"].lower() for m in mine if who in m["recipients"])
                if not all(w in subjects for w in words):
                    return []
            return mine

        outcome.mail = await _until(mail, "the four e-mails", wait_s)

        async def audited() -> dict[str, Any] | None:
            body = await api.call("audit", "GET", "/audit-logs?limit=1", admin)
            total = int(body.get("total", 0))
            return body if total >= 7 else None

        outcome.audit_records = int((await _until(audited, "audit records", wait_s))["total"])
        outcome.audit_chain = await api.call("audit", "GET", "/audit-logs/verify", admin)
        if "analytics" in urls:
            outcome.analytics = await _until(
                lambda: _analytics(api, admin), "analytics to count the logins", wait_s
            )
    return outcome


async def _analytics(api: _Api, admin: str) -> dict[str, int]:
    """The tenant's event counts per type, once the three logins of the run are in."""
    body = await api.call("analytics", "GET", "/analytics/counts?group_by=event_type", admin)
    counts = {b["event_type"]: int(b["count"]) for b in body["buckets"]}
    return counts if counts.get("user.login", 0) >= 3 else {}


async def _low_stock(api: _Api, admin: str, run: str, wait_s: float) -> dict[str, Any]:
    """Seed 004's flow: stock adjusted down to zero raises a CRITICAL sales alert."""
    product = await api.call(
        "inventory", "POST", "/products", admin, expect=201,
        what="stocked 10 laptops (inventory.product_created)",
        json={"sku": f"LAP-{run}", "name": "Laptop Computer", "category": "electronics",
              "location": "Warehouse A", "unit_price": 1200.0, "quantity_on_hand": 10,
              "reorder_level": 5, "reorder_quantity": 50, "average_daily_usage": 2},
    )  # fmt: skip
    pid = product["id"]

    async def known() -> Any:
        r = await api.client.get(
            f"{api.urls['sales']}/products/{pid}", headers={"Authorization": f"Bearer {admin}"}
        )
        return r.status_code == 200

    await _until(known, "sales to learn of the product", wait_s)
    await api.call(
        "sales", "POST", "/orders", admin, expect=201,
        what="a customer ordered 3 (sales.order_created)",
        json={"product_id": pid, "quantity": 3, "customer": "Initech"},
    )  # fmt: skip
    await api.call(
        "inventory", "POST", f"/products/{pid}/adjustments", admin, expect=201,
        what="shipped all 10 (inventory.stock_adjusted, inventory.low_stock CRITICAL)",
        json={"delta": -10, "reason": "shipped the last units"},
    )  # fmt: skip

    async def critical() -> Any:
        body = await api.call("sales", "GET", f"/alerts?product_id={pid}&status=open", admin)
        return next((a for a in body["items"] if a["priority"] == "critical"), None)

    alert: dict[str, Any] = await _until(critical, "the CRITICAL sales alert", wait_s)
    return alert


def report(outcome: Outcome, console: Console) -> None:
    """Print what each service did."""
    table = Table(title="what each service did")
    for column in ("service", "request", "effect"):
        table.add_column(column)
    for row in outcome.steps:
        table.add_row(*row)
    console.print(table)
    for m in outcome.mail:
        console.print(
            f"[bold]notifications[/]: mailed {', '.join(m['recipients'])}: {m['subject']}"
        )
    for f in outcome.findings:
        console.print(f"[bold]compliance[/]: {f['kind']} {f['rule']}: {f['description']}")
    if outcome.alert:
        a = outcome.alert
        console.print(
            f"[bold]sales[/]: {a['priority'].upper()} low-stock alert for {a['product_sku']} "
            f"(stock {a['current_stock']}, {a['at_risk_orders']} order(s) at risk)"
        )
    if outcome.analytics:
        top = sorted(outcome.analytics.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
        console.print(
            f"[bold]analytics[/]: {sum(outcome.analytics.values())} events counted; "
            + ", ".join(f"{event_type} {count}" for event_type, count in top)
        )
    chain = outcome.audit_chain
    console.print(
        f"[bold]audit[/]: {outcome.audit_records} records; chain "
        + ("valid" if chain.get("ok") else f"BROKEN: {chain}")
        + f" ({chain.get('records_checked', '?')} records checked)"
    )


async def run_walkthrough(
    hub: str,
    console: Console,
    *,
    tenant: str = DEFAULT_TENANT,
    admin_email: str = DEFAULT_ADMIN,
    admin_password: str | None = None,
) -> bool:
    """Run the walkthrough and print its report; False (with the reason) if it failed."""
    if admin_password is None:
        from hrms.service.settings import HrmsSettings

        path = HrmsSettings().data_dir / "admin-password"
        if not path.exists():
            console.print(f"[bold red]error:[/] no {path}: start the system with `hrms up` first")
            return False
        admin_password = path.read_text().strip()
    try:
        outcome = await walkthrough(
            hub, tenant=tenant, admin_email=admin_email, admin_password=admin_password
        )
    except (WalkthroughError, httpx.HTTPError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        return False
    report(outcome, console)
    return bool(outcome.audit_chain.get("ok"))
