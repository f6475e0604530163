"""The employees service on the in-memory broker: records, rules, roles and its events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from eventbus import BaseEvent
from hrms.events import AuditEvent, EmployeeEvent, NotificationEvent
from hrms.service import Role
from tests.services.conftest import Harness, ServiceClient, eventually

CID = "corr-employees-1"


@pytest.fixture(autouse=True)
def long_jwt_secret(harness: Harness) -> None:
    """The shared harness's secret is too short for PyJWT (a warning, hence an error)."""
    harness.settings = harness.settings.model_copy(update={"jwt_secret": SecretStr("e" * 48)})


def key_of(harness: Harness, topic: str, event: BaseEvent) -> str | None:
    """The Kafka key the event was published with."""
    for record in harness.broker.records(topic):
        if record.value and json.loads(record.value)["event_id"] == str(event.event_id):
            return record.key.decode() if record.key else None
    raise AssertionError(f"{event.event_id} not on {topic}")


def of_type(events: list[BaseEvent], event_type: str) -> list[Any]:
    return [e for e in events if e.event_type == event_type]


async def new_employee(
    svc: ServiceClient,
    headers: dict[str, str] | None = None,
    *,
    employee_code: str,
    **fields: Any,
) -> dict[str, Any]:
    code = employee_code
    body = {
        "employee_code": code,
        "name": f"Employee {code}",
        "email": f"{code.lower()}@example.com",
        "department": "engineering",
        "position": "developer",
        "hire_date": "2024-03-01",
        **fields,
    }
    response = await svc.http.post("/employees", json=body, headers=headers or svc.token())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_create_emits_event_audit_and_welcome(harness: Harness) -> None:
    employees = await harness.collect(harness.settings.employee_topic, group="t-emp")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    notes = await harness.collect(harness.settings.notification_topic, group="t-note")
    svc = await harness.start("employees")
    boss = await new_employee(svc, employee_code="B1", email="boss@example.com")
    headers = {**svc.token(user_id=7), "X-Correlation-ID": CID}

    created = await new_employee(
        svc,
        headers,
        employee_code="E1",
        manager_id=boss["id"],
        user_id=42,
        email="ann@example.com",
        name="Ann",
    )

    assert created["status"] == "active"
    assert created["tenant_id"] == "acme"
    assert created["manager_id"] == boss["id"]
    await eventually(lambda: len(employees) == 2, what="two employee.created events")
    event = employees[1]
    assert isinstance(event, EmployeeEvent)
    assert event.event_type == "employee.created"
    assert event.correlation_id == CID
    assert event.tenant_id == "acme"
    assert event.data.employee_id == created["id"]
    assert event.data.email == "ann@example.com"
    assert event.data.employee_code == "E1"
    assert event.data.user_id == 42
    assert event.data.manager_id == boss["id"]
    assert event.data.manager_email == "boss@example.com"
    assert key_of(harness, harness.settings.employee_topic, event) == str(created["id"])

    await eventually(lambda: len(audits) == 2, what="two audit events")
    audit = audits[1]
    assert isinstance(audit, AuditEvent)
    assert audit.event_type == "audit.employee.action"
    assert audit.data.action == "CREATE"
    assert audit.data.resource_type == "employee"
    assert audit.data.resource_id == created["id"]
    assert audit.data.user_id == 7
    assert audit.correlation_id == CID
    assert audit.data.changes["employee_code"] == "E1"
    assert key_of(harness, harness.settings.audit_topic, audit) == str(created["id"])

    await eventually(lambda: len(notes) == 2, what="two welcome notifications")
    note = notes[1]
    assert isinstance(note, NotificationEvent)
    assert note.data.template_name == "employee_welcome"
    assert note.data.recipient_email == "ann@example.com"
    assert note.data.recipient_name == "Ann"
    assert note.data.template_data["employee_code"] == "E1"
    assert note.correlation_id == CID
    assert note.event_type == "employee.created"


async def test_employee_code_is_unique_per_tenant(harness: Harness) -> None:
    svc = await harness.start("employees")
    await new_employee(svc, employee_code="DUP")

    again = await svc.http.post(
        "/employees",
        json={
            "employee_code": "DUP",
            "name": "X",
            "email": "x@example.com",
            "hire_date": "2024-01-01",
        },
        headers=svc.token(),
    )
    assert again.status_code == 409
    assert "employee code 'DUP' already exists" in again.json()["detail"]

    other = await new_employee(svc, svc.token(tenant="globex"), employee_code="DUP")
    assert other["tenant_id"] == "globex"


async def test_user_account_links_one_employee_per_tenant(harness: Harness) -> None:
    svc = await harness.start("employees")
    await new_employee(svc, employee_code="U1", user_id=5)
    second = await svc.http.post(
        "/employees",
        json={
            "employee_code": "U2",
            "name": "X",
            "email": "x@example.com",
            "hire_date": "2024-01-01",
            "user_id": 5,
        },
        headers=svc.token(),
    )
    assert second.status_code == 409
    assert "user account 5 already exists" in second.json()["detail"]


async def test_manager_must_be_an_employee_of_the_tenant(harness: Harness) -> None:
    svc = await harness.start("employees")
    foreign = await new_employee(svc, svc.token(tenant="globex"), employee_code="G1")
    body = {"employee_code": "M1", "name": "X", "email": "x@example.com", "hire_date": "2024-01-01"}

    for manager_id in (999, foreign["id"]):
        response = await svc.http.post(
            "/employees", json={**body, "manager_id": manager_id}, headers=svc.token()
        )
        assert response.status_code == 422
        assert response.json()["detail"] == (
            f"manager {manager_id} is not an employee of this tenant"
        )


async def test_management_cycles_are_refused(harness: Harness) -> None:
    svc = await harness.start("employees")
    top = await new_employee(svc, employee_code="TOP")
    mid = await new_employee(svc, employee_code="MID", manager_id=top["id"])

    own = await svc.http.patch(
        f"/employees/{top['id']}", json={"manager_id": top["id"]}, headers=svc.token()
    )
    assert own.status_code == 422
    assert "management cycle" in own.json()["detail"]
    loop = await svc.http.patch(
        f"/employees/{top['id']}", json={"manager_id": mid["id"]}, headers=svc.token()
    )
    assert loop.status_code == 422
    assert "management cycle" in loop.json()["detail"]


async def test_update_by_manager_emits_updated(harness: Harness) -> None:
    employees = await harness.collect(harness.settings.employee_topic, group="t-emp")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    svc = await harness.start("employees")
    emp = await new_employee(svc, employee_code="E1")
    boss = await new_employee(svc, employee_code="B1", email="boss@example.com")

    response = await svc.http.patch(
        f"/employees/{emp['id']}",
        json={"position": "lead", "manager_id": boss["id"]},
        headers={**svc.token(user_id=3, role=Role.MANAGER), "X-Correlation-ID": CID},
    )

    assert response.status_code == 200, response.text
    assert response.json()["position"] == "lead"
    await eventually(lambda: of_type(employees, "employee.updated"), what="employee.updated")
    (event,) = of_type(employees, "employee.updated")
    assert event.data.position == "lead"
    assert event.data.manager_email == "boss@example.com"
    assert event.correlation_id == CID
    assert key_of(harness, harness.settings.employee_topic, event) == str(emp["id"])
    await eventually(lambda: [a for a in audits if a.data.action == "UPDATE"], what="audit")
    (audit,) = [a for a in audits if a.data.action == "UPDATE"]
    assert audit.data.changes == {"position": "lead", "manager_id": boss["id"]}
    assert audit.data.user_id == 3
    assert audit.correlation_id == CID


async def test_update_rules(harness: Harness) -> None:
    svc = await harness.start("employees")
    emp = await new_employee(svc, employee_code="E1")
    await new_employee(svc, employee_code="E2")

    taken = await svc.http.patch(
        f"/employees/{emp['id']}", json={"employee_code": "E2"}, headers=svc.token()
    )
    assert taken.status_code == 409
    cleared = await svc.http.patch(
        f"/employees/{emp['id']}", json={"name": None}, headers=svc.token()
    )
    assert cleared.status_code == 422
    assert cleared.json()["detail"] == "name cannot be cleared"
    by_employee = await svc.http.patch(
        f"/employees/{emp['id']}",
        json={"name": "Me"},
        headers=svc.token(role=Role.EMPLOYEE, employee_id=emp["id"]),
    )
    assert by_employee.status_code == 403


async def test_status_change_carries_previous_status(harness: Harness) -> None:
    employees = await harness.collect(harness.settings.employee_topic, group="t-emp")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    svc = await harness.start("employees")
    emp = await new_employee(svc, employee_code="E1")
    url = f"/employees/{emp['id']}/status"

    response = await svc.http.post(
        url, json={"status": "suspended", "reason": "audit"}, headers=svc.token()
    )

    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    await eventually(lambda: of_type(employees, "employee.status_changed"), what="event")
    (event,) = of_type(employees, "employee.status_changed")
    assert (event.data.status, event.data.previous_status) == ("suspended", "active")
    await eventually(lambda: [a for a in audits if a.data.action == "STATUS_CHANGE"])

    same = await svc.http.post(url, json={"status": "suspended"}, headers=svc.token())
    assert same.status_code == 409
    assert same.json()["detail"] == f"employee {emp['id']} is already suspended"
    terminate = await svc.http.post(url, json={"status": "terminated"}, headers=svc.token())
    assert terminate.status_code == 422
    assert "terminate" in terminate.json()["detail"]
    as_manager = await svc.http.post(
        url, json={"status": "active"}, headers=svc.token(role=Role.MANAGER)
    )
    assert as_manager.status_code == 403
    unknown = await svc.http.post(url, json={"status": "retired"}, headers=svc.token())
    assert unknown.status_code == 422


async def test_terminated_employees_are_final(harness: Harness) -> None:
    employees = await harness.collect(harness.settings.employee_topic, group="t-emp")
    svc = await harness.start("employees")
    emp = await new_employee(svc, employee_code="E1")

    done = await svc.http.post(
        f"/employees/{emp['id']}/terminate", json={"reason": "moved on"}, headers=svc.token()
    )

    assert done.status_code == 200
    assert done.json()["status"] == "terminated"
    await eventually(lambda: of_type(employees, "employee.terminated"), what="terminated")
    (event,) = of_type(employees, "employee.terminated")
    assert (event.data.status, event.data.previous_status) == ("terminated", "active")

    again = await svc.http.post(f"/employees/{emp['id']}/terminate", headers=svc.token())
    assert again.status_code == 409
    assert again.json()["detail"] == f"employee {emp['id']} is already terminated"
    update = await svc.http.patch(
        f"/employees/{emp['id']}", json={"name": "Z"}, headers=svc.token()
    )
    assert update.status_code == 409
    assert update.json()["detail"] == (f"employee {emp['id']} is terminated and cannot be updated")
    status = await svc.http.post(
        f"/employees/{emp['id']}/status", json={"status": "active"}, headers=svc.token()
    )
    assert status.status_code == 409


async def test_who_may_read(harness: Harness) -> None:
    svc = await harness.start("employees")
    me = await new_employee(svc, employee_code="ME")
    other = await new_employee(svc, employee_code="OTHER")
    mine = svc.token(user_id=9, role=Role.EMPLOYEE, employee_id=me["id"])

    assert (await svc.http.get(f"/employees/{me['id']}", headers=mine)).status_code == 200
    forbidden = await svc.http.get(f"/employees/{other['id']}", headers=mine)
    assert forbidden.status_code == 403
    assert (await svc.http.get("/employees", headers=mine)).status_code == 403
    manager = svc.token(role=Role.MANAGER)
    assert (await svc.http.get(f"/employees/{other['id']}", headers=manager)).status_code == 200
    assert (await svc.http.get("/employees", headers=manager)).status_code == 200
    create = await svc.http.post(
        "/employees",
        json={
            "employee_code": "X",
            "name": "X",
            "email": "x@example.com",
            "hire_date": "2024-01-01",
        },
        headers=manager,
    )
    assert create.status_code == 403


async def test_unauthenticated_and_cross_tenant(harness: Harness) -> None:
    svc = await harness.start("employees")
    emp = await new_employee(svc, employee_code="E1")

    assert (await svc.http.get("/employees")).status_code == 401
    bad = await svc.http.get("/employees", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401
    globex = svc.token(tenant="globex")
    missing = await svc.http.get(f"/employees/{emp['id']}", headers=globex)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"employee {emp['id']} not found"
    patch = await svc.http.patch(f"/employees/{emp['id']}", json={"name": "Z"}, headers=globex)
    assert patch.status_code == 404
    term = await svc.http.post(f"/employees/{emp['id']}/terminate", headers=globex)
    assert term.status_code == 404
    listing = await svc.http.get("/employees", headers=globex)
    assert listing.json()["total"] == 0


async def test_list_pages_and_filters(harness: Harness) -> None:
    svc = await harness.start("employees")
    for n in range(5):
        await new_employee(svc, employee_code=f"E{n}", department="sales" if n % 2 else "ops")
    await svc.http.post("/employees/3/status", json={"status": "on_leave"}, headers=svc.token())

    page = (await svc.http.get("/employees?limit=2&offset=2", headers=svc.token())).json()
    assert [e["employee_code"] for e in page["items"]] == ["E2", "E3"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    sales = (await svc.http.get("/employees?department=sales", headers=svc.token())).json()
    assert [e["employee_code"] for e in sales["items"]] == ["E1", "E3"]
    on_leave = (await svc.http.get("/employees?status=on_leave", headers=svc.token())).json()
    assert [e["id"] for e in on_leave["items"]] == [3]
    for query in ("limit=0", "limit=201", "offset=-1", "status=bogus"):
        assert (await svc.http.get(f"/employees?{query}", headers=svc.token())).status_code == 422


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("name", ""),
        ("employee_code", "has space"),
        ("hire_date", "yesterday"),
        ("manager_id", 0),
    ],
)
async def test_bad_input_is_422_naming_the_field(harness: Harness, field: str, value: Any) -> None:
    svc = await harness.start("employees")
    body = {
        "employee_code": "E1",
        "name": "X",
        "email": "x@example.com",
        "hire_date": "2024-01-01",
        field: value,
    }
    response = await svc.http.post("/employees", json=body, headers=svc.token())
    assert response.status_code == 422
    assert any(err["loc"][-1] == field for err in response.json()["detail"])


async def test_the_three_producer_services_describe_their_routes(harness: Harness) -> None:
    expected = {
        "employees": {
            "/employees",
            "/employees/{employee_id}",
            "/employees/{employee_id}/status",
            "/employees/{employee_id}/terminate",
        },
        "leaves": {
            "/leaves",
            "/leaves/{leave_id}",
            "/leaves/balance/{employee_id}",
            "/leaves/{leave_id}/approve",
            "/leaves/{leave_id}/reject",
            "/leaves/{leave_id}/cancel",
        },
        "attendance": {
            "/attendance",
            "/attendance/{attendance_id}",
            "/attendance/check-in",
            "/attendance/check-out",
        },
    }
    for name, paths in expected.items():
        svc = await harness.start(name)
        schema = await svc.http.get("/openapi.json")
        assert schema.status_code == 200
        assert paths <= set(schema.json()["paths"]), name
        assert (await svc.http.get("/health")).json()["service"] == name
