"""The leaves service on the in-memory broker: requests, rules, decisions, the projection."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from eventbus import BaseEvent, KafkaProducer
from eventbus._codec import event_headers
from eventbus.headers import EVENT_ID
from hrms.events import AuditEvent, EventType, LeaveEvent, create_employee_event
from hrms.service import Role
from hrms.services import leaves
from tests.services.conftest import Harness, ServiceClient, eventually

CID = "corr-leaves-1"
NOW = datetime(2030, 6, 15, 9, 30, tzinfo=UTC)
"""The leaves service's clock: "today" is 2030-06-15."""

Starter = Callable[..., Awaitable[ServiceClient]]


@pytest.fixture(autouse=True)
def long_jwt_secret(harness: Harness) -> None:
    """The shared harness's secret is too short for PyJWT (a warning, hence an error)."""
    harness.settings = harness.settings.model_copy(update={"jwt_secret": SecretStr("l" * 48)})


@pytest.fixture
async def start_leaves(harness: Harness, long_jwt_secret: None) -> AsyncIterator[Starter]:
    """Start the leaves service with a fixed clock (and any other ``build`` argument)."""
    async with AsyncExitStack() as stack:

        async def start(**kwargs: Any) -> ServiceClient:
            service = leaves.build(
                settings=harness.settings, transport=harness.broker, clock=lambda: NOW, **kwargs
            )
            app = service.app()
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://leaves"
            )
            await stack.enter_async_context(client)
            return ServiceClient(service, client)

        yield start


def key_of(harness: Harness, topic: str, event: BaseEvent) -> str | None:
    """The Kafka key the event was published with."""
    for record in harness.broker.records(topic):
        if record.value and json.loads(record.value)["event_id"] == str(event.event_id):
            return record.key.decode() if record.key else None
    raise AssertionError(f"{event.event_id} not on {topic}")


def of_type(events: list[BaseEvent], event_type: str) -> list[Any]:
    return [e for e in events if e.event_type == event_type]


def employee(svc: ServiceClient, employee_id: int, user_id: int | None = None) -> dict[str, str]:
    return svc.token(
        user_id=user_id or 100 + employee_id, role=Role.EMPLOYEE, employee_id=employee_id
    )


def manager(svc: ServiceClient, **kw: Any) -> dict[str, str]:
    return svc.token(user_id=kw.pop("user_id", 2), role=Role.MANAGER, **kw)


async def request(
    svc: ServiceClient,
    headers: dict[str, str],
    start: str,
    end: str,
    leave_type: str = "annual",
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    body = {"leave_type": leave_type, "start_date": start, "end_date": end, **fields}
    response = await svc.http.post("/leaves", json=body, headers=headers)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def outbox_topics(svc: ServiceClient) -> list[str]:
    table = svc.service.outbox.table
    async with svc.service.engine.connect() as conn:
        return list((await conn.execute(select(table.c.topic).order_by(table.c.id))).scalars())


async def projected(svc: ServiceClient, employee_id: int) -> dict[str, Any] | None:
    """The leaves service's projection row of an employee."""
    async with svc.service.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(leaves.employees).where(leaves.employees.c.id == employee_id)
                )
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


# --------------------------------------------------------------------------- requests


async def test_request_emits_requested_and_audit(harness: Harness, start_leaves: Starter) -> None:
    events = await harness.collect(harness.settings.leave_topic, group="t-leave")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    svc = await start_leaves()
    headers = {**employee(svc, 5, user_id=55), "X-Correlation-ID": CID}

    leave = await request(svc, headers, "2030-07-01", "2030-07-05", reason="beach")

    assert (leave["employee_id"], leave["status"], leave["days"]) == (5, "pending", 5)
    assert leave["requested_by"] == 55
    await eventually(lambda: events, what="leave.requested")
    (event,) = events
    assert isinstance(event, LeaveEvent)
    assert event.event_type == "leave.requested"
    assert event.correlation_id == CID
    assert event.tenant_id == "acme"
    assert (event.data.leave_id, event.data.employee_id) == (leave["id"], 5)
    assert str(event.data.start_date) == "2030-07-01"
    assert event.data.status == "pending"
    assert event.data.reason == "beach"
    assert key_of(harness, harness.settings.leave_topic, event) == str(leave["id"])
    await eventually(lambda: audits, what="audit")
    (audit,) = audits
    assert isinstance(audit, AuditEvent)
    assert audit.event_type == "audit.leave.action"
    assert (audit.data.action, audit.data.resource_type) == ("REQUEST", "leave")
    assert (audit.data.resource_id, audit.data.user_id) == (leave["id"], 55)
    assert audit.correlation_id == CID


async def test_end_before_start_is_422(start_leaves: Starter) -> None:
    svc = await start_leaves()
    body = await request(svc, employee(svc, 5), "2030-07-05", "2030-07-01", expect=422)
    assert body["detail"] == (
        "end_date 2030-07-01 is before start_date 2030-07-05: "
        "a leave must end on or after the day it starts"
    )


async def test_overlaps_with_active_leaves_are_409(start_leaves: Starter) -> None:
    svc = await start_leaves()
    me = employee(svc, 5)
    first = await request(svc, me, "2030-07-01", "2030-07-05")

    clash = await request(svc, me, "2030-07-05", "2030-07-08", leave_type="sick", expect=409)
    assert clash["detail"] == f"overlaps leave {first['id']} (2030-07-01 to 2030-07-05, pending)"
    await request(svc, me, "2030-07-06", "2030-07-06")  # the day after: fine
    await request(svc, employee(svc, 6), "2030-07-01", "2030-07-05")  # someone else: fine
    rejected = await svc.http.post(f"/leaves/{first['id']}/reject", headers=manager(svc))
    assert rejected.status_code == 200
    await request(svc, me, "2030-07-02", "2030-07-03")  # a rejected leave frees its days


async def test_balance_per_leave_type(start_leaves: Starter) -> None:
    svc = await start_leaves()
    me = employee(svc, 5)
    await request(svc, me, "2030-01-10", "2030-01-24")  # 15 annual days

    short = await request(svc, me, "2030-03-01", "2030-03-06", expect=422)
    assert short["detail"] == "insufficient annual balance: requested 6, remaining 5"
    await request(svc, me, "2030-03-01", "2030-03-05")  # exactly the 5 left
    sick = await request(svc, me, "2030-04-01", "2030-04-11", leave_type="sick", expect=422)
    assert sick["detail"] == "insufficient sick balance: requested 11, remaining 10"
    await request(svc, me, "2030-05-01", "2030-06-30", leave_type="unpaid")  # unlimited
    next_year = await request(svc, me, "2030-12-30", "2031-01-02", expect=422)
    assert next_year["detail"] == "insufficient annual balance in 2030: requested 2, remaining 0"
    await request(svc, me, "2031-01-05", "2031-01-10")  # a new year, a new allowance

    balance = await svc.http.get("/leaves/balance/5", headers=me)
    assert balance.status_code == 200
    by_type = {b["leave_type"]: b for b in balance.json()["balances"]}
    assert balance.json()["year"] == 2030
    assert by_type["annual"] == {
        "leave_type": "annual",
        "allowance": 20,
        "approved": 0,
        "pending": 20,
        "remaining": 0,
    }
    assert by_type["sick"]["remaining"] == 10
    assert by_type["unpaid"] == {
        "leave_type": "unpaid",
        "allowance": None,
        "approved": 0,
        "pending": 61,
        "remaining": None,
    }
    nxt = (await svc.http.get("/leaves/balance/5?year=2031", headers=me)).json()
    assert {b["leave_type"]: b["pending"] for b in nxt["balances"]}["annual"] == 6


async def test_balance_counts_approved_and_pending_apart(start_leaves: Starter) -> None:
    svc = await start_leaves()
    one = await request(svc, employee(svc, 5), "2030-07-01", "2030-07-03")
    await request(svc, employee(svc, 5), "2030-08-01", "2030-08-02")
    await svc.http.post(f"/leaves/{one['id']}/approve", headers=manager(svc))

    body = (await svc.http.get("/leaves/balance/5", headers=manager(svc))).json()
    annual = next(b for b in body["balances"] if b["leave_type"] == "annual")
    assert (annual["approved"], annual["pending"], annual["remaining"]) == (3, 2, 15)
    other = await svc.http.get("/leaves/balance/5", headers=employee(svc, 6))
    assert other.status_code == 403


async def test_allowances_are_configurable(start_leaves: Starter) -> None:
    svc = await start_leaves(allowances={leaves.LeaveType.ANNUAL: 3})
    short = await request(svc, employee(svc, 5), "2030-07-01", "2030-07-04", expect=422)
    assert short["detail"] == "insufficient annual balance: requested 4, remaining 3"


async def test_who_may_request_for_whom(start_leaves: Starter) -> None:
    svc = await start_leaves()
    other = await request(
        svc, employee(svc, 5), "2030-07-01", "2030-07-01", employee_id=6, expect=403
    )
    assert other["detail"] == "employees may request leave for only their own records"
    by_manager = await request(svc, manager(svc), "2030-07-01", "2030-07-02", employee_id=6)
    assert (by_manager["employee_id"], by_manager["requested_by"]) == (6, 2)
    nobody = await request(svc, svc.token(role=Role.ADMIN), "2030-07-01", "2030-07-01", expect=422)
    assert nobody["detail"] == "employee_id is required: the caller has no employee record"
    bad_type = await request(
        svc, employee(svc, 5), "2030-07-01", "2030-07-01", leave_type="holiday", expect=422
    )
    assert bad_type["detail"][0]["loc"] == ["body", "leave_type"]


# --------------------------------------------------------------------------- decisions


async def test_approve_and_reject_by_managers_only(harness: Harness, start_leaves: Starter) -> None:
    events = await harness.collect(harness.settings.leave_topic, group="t-leave")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    svc = await start_leaves()
    leave = await request(svc, employee(svc, 5), "2030-07-01", "2030-07-02")
    url = f"/leaves/{leave['id']}"

    denied = await svc.http.post(f"{url}/approve", headers=employee(svc, 5))
    assert denied.status_code == 403
    own = await svc.http.post(f"{url}/approve", headers=manager(svc, employee_id=5))
    assert own.status_code == 403
    assert own.json()["detail"] == "a leave cannot be approved by the employee who requested it"

    approved = await svc.http.post(
        f"{url}/approve",
        json={"note": "enjoy"},
        headers={**manager(svc, user_id=9), "X-Correlation-ID": CID},
    )
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["approver_id"]) == ("approved", 9)
    assert approved.json()["decision_note"] == "enjoy"
    await eventually(lambda: of_type(events, "leave.approved"), what="leave.approved")
    (event,) = of_type(events, "leave.approved")
    assert (event.data.approver_id, event.correlation_id) == (9, CID)
    assert key_of(harness, harness.settings.leave_topic, event) == str(leave["id"])
    await eventually(lambda: [a for a in audits if a.data.action == "APPROVE"], what="audit")

    for verb, name in (("approve", "approved"), ("reject", "rejected")):
        again = await svc.http.post(f"{url}/{verb}", headers=manager(svc))
        assert again.status_code == 409
        assert again.json()["detail"] == (
            f"leave {leave['id']} is approved: only pending leaves can be {name}"
        )
    edit = await svc.http.patch(url, json={"reason": "x"}, headers=manager(svc))
    assert edit.status_code == 409
    assert edit.json()["detail"] == (
        f"leave {leave['id']} is approved: only pending leaves can be updated"
    )

    other = await request(svc, employee(svc, 5), "2030-08-01", "2030-08-01")
    rejected = await svc.http.post(f"/leaves/{other['id']}/reject", headers=manager(svc))
    assert rejected.json()["status"] == "rejected"
    await eventually(lambda: of_type(events, "leave.rejected"), what="leave.rejected")


async def test_update_a_pending_leave(harness: Harness, start_leaves: Starter) -> None:
    events = await harness.collect(harness.settings.leave_topic, group="t-leave")
    svc = await start_leaves()
    me = employee(svc, 5)
    leave = await request(svc, me, "2030-07-01", "2030-07-02")
    await request(svc, me, "2030-07-10", "2030-07-26")  # 17 days: 3 left for the other
    url = f"/leaves/{leave['id']}"

    moved = await svc.http.patch(
        url, json={"start_date": "2030-07-02", "end_date": "2030-07-04"}, headers=me
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["days"] == 3
    await eventually(lambda: of_type(events, "leave.updated"), what="leave.updated")
    (event,) = of_type(events, "leave.updated")
    assert str(event.data.end_date) == "2030-07-04"

    longer = await svc.http.patch(url, json={"end_date": "2030-07-05"}, headers=me)
    assert longer.status_code == 422
    assert longer.json()["detail"] == "insufficient annual balance: requested 4, remaining 3"
    clash = await svc.http.patch(url, json={"end_date": "2030-07-12"}, headers=me)
    assert clash.status_code == 409
    backwards = await svc.http.patch(url, json={"end_date": "2030-07-01"}, headers=me)
    assert backwards.status_code == 422
    assert "must end on or after" in backwards.json()["detail"]
    someone_else = await svc.http.patch(url, json={"reason": "x"}, headers=employee(svc, 6))
    assert someone_else.status_code == 403


async def test_cancel_rules(harness: Harness, start_leaves: Starter) -> None:
    events = await harness.collect(harness.settings.leave_topic, group="t-leave")
    svc = await start_leaves()
    me = employee(svc, 5)
    leave = await request(svc, me, "2030-07-01", "2030-07-02")
    await svc.http.post(f"/leaves/{leave['id']}/approve", headers=manager(svc))

    assert (
        await svc.http.post(f"/leaves/{leave['id']}/cancel", headers=employee(svc, 6))
    ).status_code == 403
    cancelled = await svc.http.post(f"/leaves/{leave['id']}/cancel", headers=me)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    await eventually(lambda: of_type(events, "leave.cancelled"), what="leave.cancelled")
    again = await svc.http.post(f"/leaves/{leave['id']}/cancel", headers=me)
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"leave {leave['id']} is cancelled: only pending or approved leaves can be cancelled"
    )

    past = await request(svc, manager(svc), "2030-06-01", "2030-06-14", employee_id=5)
    late = await svc.http.post(f"/leaves/{past['id']}/cancel", headers=manager(svc))
    assert late.status_code == 409
    assert late.json()["detail"] == (
        f"leave {past['id']} ended on 2030-06-14: past leaves cannot be cancelled"
    )
    ongoing = await request(svc, me, "2030-06-15", "2030-06-16", leave_type="sick")
    by_manager = await svc.http.post(f"/leaves/{ongoing['id']}/cancel", headers=manager(svc))
    assert by_manager.status_code == 200


# --------------------------------------------------------------------------- reads


async def test_reads_are_scoped(start_leaves: Starter) -> None:
    svc = await start_leaves()
    mine = [
        await request(svc, employee(svc, 5), f"2030-07-0{d}", f"2030-07-0{d}") for d in range(1, 6)
    ]
    theirs = await request(svc, employee(svc, 6), "2030-07-01", "2030-07-01")
    await svc.http.post(f"/leaves/{mine[0]['id']}/approve", headers=manager(svc))

    own = (await svc.http.get("/leaves", headers=employee(svc, 5))).json()
    assert own["total"] == 5
    assert {item["employee_id"] for item in own["items"]} == {5}
    peek = await svc.http.get("/leaves?employee_id=6", headers=employee(svc, 5))
    assert peek.status_code == 403
    assert (
        await svc.http.get(f"/leaves/{theirs['id']}", headers=employee(svc, 5))
    ).status_code == 403
    assert (
        await svc.http.get(f"/leaves/{theirs['id']}", headers=employee(svc, 6))
    ).status_code == 200

    everyone = (await svc.http.get("/leaves", headers=manager(svc))).json()
    assert everyone["total"] == 6
    page = (
        await svc.http.get("/leaves?employee_id=5&limit=2&offset=1", headers=manager(svc))
    ).json()
    assert [i["start_date"] for i in page["items"]] == ["2030-07-04", "2030-07-03"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    approved = (await svc.http.get("/leaves?status=approved", headers=manager(svc))).json()
    assert [i["id"] for i in approved["items"]] == [mine[0]["id"]]


async def test_unauthenticated_and_cross_tenant(start_leaves: Starter) -> None:
    svc = await start_leaves()
    leave = await request(svc, employee(svc, 5), "2030-07-01", "2030-07-01")
    globex = svc.token(tenant="globex", role=Role.MANAGER)

    assert (await svc.http.get("/leaves")).status_code == 401
    assert (await svc.http.post("/leaves", json={})).status_code == 401
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("POST", "/approve"),
        ("POST", "/reject"),
        ("POST", "/cancel"),
    ):
        response = await svc.http.request(
            method, f"/leaves/{leave['id']}{path}", headers=globex, json={}
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"] == f"leave {leave['id']} not found"
    assert (await svc.http.get("/leaves", headers=globex)).json()["total"] == 0
    # another tenant's leave neither overlaps nor uses balance
    await request(
        svc,
        svc.token(tenant="globex", role=Role.EMPLOYEE, employee_id=5),
        "2030-07-01",
        "2030-07-20",
    )


# --------------------------------------------------------------------------- the projection


async def test_decision_without_a_known_email_skips_the_notification(
    start_leaves: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hrms.services.leaves")
    svc = await start_leaves()
    leave = await request(svc, employee(svc, 5), "2030-07-01", "2030-07-01")

    approved = await svc.http.post(f"/leaves/{leave['id']}/approve", headers=manager(svc))

    assert approved.status_code == 200
    topics = await outbox_topics(svc)
    assert svc.service.settings.notification_topic not in topics
    assert topics.count(svc.service.settings.leave_topic) == 2
    assert "no e-mail known for employee 5" in caplog.text
    assert "leave_approved notification of leave" in caplog.text
    assert "no e-mail known for the manager of employee 5" in caplog.text


async def test_projection_feeds_notifications(harness: Harness, start_leaves: Starter) -> None:
    notes = await harness.collect(harness.settings.notification_topic, group="t-note")
    employees = await harness.start("employees")
    svc = await start_leaves()
    hire = {"hire_date": "2024-01-01"}
    boss = (
        await employees.http.post(
            "/employees",
            json={"employee_code": "B1", "name": "Bea", "email": "bea@example.com", **hire},
            headers=employees.token(),
        )
    ).json()
    created = await employees.http.post(
        "/employees",
        json={
            "employee_code": "E1",
            "name": "Ann",
            "email": "ann@example.com",
            "user_id": 77,
            "manager_id": boss["id"],
            **hire,
        },
        headers=employees.token(),
    )
    emp = created.json()

    known = await eventually(lambda: projected(svc, emp["id"]), what="the projection")
    assert (known["email"], known["name"], known["status"]) == ("ann@example.com", "Ann", "active")
    assert (known["tenant_id"], known["user_id"]) == ("acme", 77)
    assert (known["manager_id"], known["manager_email"]) == (boss["id"], "bea@example.com")
    await eventually(lambda: projected(svc, boss["id"]), what="the manager in the projection")

    leave = await request(
        svc, employee(svc, emp["id"]), "2030-07-01", "2030-07-03", reason="wedding"
    )
    await svc.http.post(
        f"/leaves/{leave['id']}/approve",
        json={"note": "ok"},
        headers={**manager(svc), "X-Correlation-ID": CID},
    )
    other = await request(svc, employee(svc, emp["id"]), "2030-08-01", "2030-08-01")
    await svc.http.post(f"/leaves/{other['id']}/reject", headers=manager(svc))
    await svc.http.post(f"/leaves/{leave['id']}/cancel", headers=employee(svc, emp["id"]))

    def sent(template: str) -> list[Any]:
        return [n for n in notes if n.data.template_name == template]

    await eventually(lambda: len(sent("leave_cancelled")) == 1, what="all leave notifications")
    (approved,) = sent("leave_approved")
    assert approved.data.recipient_email == "ann@example.com"
    assert approved.data.recipient_name == "Ann"
    assert approved.data.user_id == 77
    assert approved.data.template_data["leave_id"] == leave["id"]
    assert approved.data.template_data["note"] == "ok"
    assert approved.event_type == "leave.approved"
    assert approved.correlation_id == CID
    (rejected,) = sent("leave_rejected")
    assert rejected.data.recipient_email == "ann@example.com"
    requested = sent("leave_requested")
    assert [n.data.recipient_email for n in requested] == ["bea@example.com"] * 2
    assert requested[0].data.recipient_name == "Bea"
    assert requested[0].data.template_data["employee_name"] == "Ann"
    assert requested[0].data.template_data["reason"] == "wedding"
    (cancelled,) = sent("leave_cancelled")
    assert cancelled.data.recipient_email == "bea@example.com"

    # a later change of the employee reaches the projection; termination blocks new leave
    await employees.http.patch(
        f"/employees/{emp['id']}", json={"email": "ann@new.example"}, headers=employees.token()
    )
    await employees.http.post(f"/employees/{emp['id']}/terminate", headers=employees.token())

    async def terminated() -> bool:
        row = await projected(svc, emp["id"])
        return row is not None and row["status"] == "terminated"

    await eventually(terminated, what="termination in the projection")
    assert (await projected(svc, emp["id"]) or {})["email"] == "ann@new.example"
    refused = await request(svc, employee(svc, emp["id"]), "2030-09-01", "2030-09-01", expect=422)
    assert refused["detail"] == (
        f"employee {emp['id']} is terminated: no new leave can be requested"
    )


async def test_projection_ignores_stale_events_and_keeps_unsent_fields(
    harness: Harness, start_leaves: Starter
) -> None:
    svc = await start_leaves()
    newer = create_employee_event(
        "employee-management-service",
        8,
        EventType.EMPLOYEE_UPDATED,
        name="New",
        email="new@example.com",
        status="active",
        tenant_id="acme",
    )
    older = create_employee_event(
        "employee-management-service",
        8,
        EventType.EMPLOYEE_CREATED,
        name="Old",
        email="old@example.com",
        tenant_id="acme",
    ).model_copy(update={"timestamp": datetime(2020, 1, 1, tzinfo=UTC)})
    # a producer that sends only some fields (seed 002's services send name and age)
    partial = json.loads(newer.model_dump_json())
    partial["event_id"] = "partial-1"
    partial["data"] = {"employeeId": 8, "name": "Renamed"}
    inbox = svc.service.inbox.table

    async def processed(event_id: str) -> bool:
        async with svc.service.engine.connect() as conn:
            found = await conn.scalar(select(inbox.c.event_id).where(inbox.c.event_id == event_id))
        return found is not None

    async with KafkaProducer(transport=harness.broker) as producer:
        for event in (newer, older):
            await producer.publish(harness.settings.employee_topic, event)
    harness.broker.append(
        harness.settings.employee_topic,
        json.dumps(partial).encode(),
        b"8",
        [(k, b"partial-1" if k == EVENT_ID else v) for k, v in event_headers(newer)],
        None,
    )
    await eventually(lambda: processed("partial-1"), what="the three events")

    row = await projected(svc, 8)
    assert row is not None
    assert (row["name"], row["email"], row["status"]) == ("Renamed", "new@example.com", "active")
