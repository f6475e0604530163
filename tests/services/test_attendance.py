"""The attendance service on the in-memory broker: check-in/out, manual records, events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from eventbus import BaseEvent
from hrms.events import AttendanceEvent, AuditEvent
from hrms.service import Role
from hrms.services import attendance
from tests.services.conftest import Harness, ServiceClient, eventually

CID = "corr-attendance-1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


Starter = Callable[[], Awaitable[ServiceClient]]


@pytest.fixture(autouse=True)
def long_jwt_secret(harness: Harness) -> None:
    """The shared harness's secret is too short for PyJWT (a warning, hence an error)."""
    harness.settings = harness.settings.model_copy(update={"jwt_secret": SecretStr("a" * 48)})


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2030, 6, 15, 8, 0, tzinfo=UTC))


@pytest.fixture
async def start(harness: Harness, clock: Clock, long_jwt_secret: None) -> AsyncIterator[Starter]:
    """Start the attendance service on the test's clock."""
    async with AsyncExitStack() as stack:

        async def run() -> ServiceClient:
            service = attendance.build(
                settings=harness.settings, transport=harness.broker, clock=clock
            )
            app = service.app()
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://attendance"
            )
            await stack.enter_async_context(client)
            return ServiceClient(service, client)

        yield run


def key_of(harness: Harness, topic: str, event: BaseEvent) -> str | None:
    """The Kafka key the event was published with."""
    for record in harness.broker.records(topic):
        if record.value and json.loads(record.value)["event_id"] == str(event.event_id):
            return record.key.decode() if record.key else None
    raise AssertionError(f"{event.event_id} not on {topic}")


def of_type(events: list[BaseEvent], event_type: str) -> list[Any]:
    return [e for e in events if e.event_type == event_type]


def employee(svc: ServiceClient, employee_id: int) -> dict[str, str]:
    return svc.token(user_id=100 + employee_id, role=Role.EMPLOYEE, employee_id=employee_id)


def manager(svc: ServiceClient, **kw: Any) -> dict[str, str]:
    return svc.token(user_id=kw.pop("user_id", 2), role=Role.MANAGER, **kw)


async def manual(
    svc: ServiceClient,
    employee_id: int,
    check_in: str,
    check_out: str | None,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    body = {"employee_id": employee_id, "check_in": check_in, "check_out": check_out, **fields}
    response = await svc.http.post("/attendance", json=body, headers=manager(svc))
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


# --------------------------------------------------------------------------- check-in/out


async def test_check_in_and_out_with_events(harness: Harness, start: Starter, clock: Clock) -> None:
    events = await harness.collect(harness.settings.attendance_topic, group="t-att")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    svc = await start()
    me = {**employee(svc, 5), "X-Correlation-ID": CID}

    opened = await svc.http.post("/attendance/check-in", headers=me)

    assert opened.status_code == 201, opened.text
    record = opened.json()
    assert record["employee_id"] == 5
    assert record["check_in"] == "2030-06-15T08:00:00Z"
    assert (record["check_out"], record["hours_worked"]) == (None, None)
    assert (record["attendance_date"], record["source"]) == ("2030-06-15", "check_in")
    await eventually(lambda: events, what="attendance.marked")
    (marked,) = events
    assert isinstance(marked, AttendanceEvent)
    assert marked.event_type == "attendance.marked"
    assert (marked.data.attendance_id, marked.data.employee_id) == (record["id"], 5)
    assert marked.data.check_in == clock.now
    assert marked.correlation_id == CID
    assert key_of(harness, harness.settings.attendance_topic, marked) == "5"

    clock.advance(hours=8, minutes=30)
    closed = await svc.http.post("/attendance/check-out", json={}, headers=me)

    assert closed.status_code == 200, closed.text
    assert closed.json()["check_out"] == "2030-06-15T16:30:00Z"
    assert closed.json()["hours_worked"] == 8.5
    await eventually(lambda: len(events) == 2, what="attendance.updated")
    updated = events[1]
    assert updated.event_type == "attendance.updated"
    assert updated.data.hours_worked == 8.5
    assert updated.data.check_out == clock.now
    await eventually(lambda: len(audits) == 2, what="two audit events")
    assert [a.data.action for a in audits] == ["CHECK_IN", "CHECK_OUT"]
    for audit in audits:
        assert isinstance(audit, AuditEvent)
        assert audit.event_type == "audit.attendance.action"
        assert (audit.data.resource_type, audit.data.resource_id) == ("attendance", record["id"])
        assert (audit.data.user_id, audit.correlation_id) == (105, CID)
    assert audits[1].data.changes["hours_worked"] == 8.5


async def test_one_open_check_in_per_employee(start: Starter, clock: Clock) -> None:
    svc = await start()
    me = employee(svc, 5)

    none_open = await svc.http.post("/attendance/check-out", headers=me)
    assert none_open.status_code == 409
    assert none_open.json()["detail"] == "employee 5 has no open check-in"
    first = (await svc.http.post("/attendance/check-in", headers=me)).json()
    second = await svc.http.post("/attendance/check-in", headers=me)
    assert second.status_code == 409
    assert second.json()["detail"] == (
        f"employee 5 already has an open check-in (attendance {first['id']} since "
        "2030-06-15T08:00:00+00:00)"
    )
    other = await svc.http.post("/attendance/check-in", headers=employee(svc, 6))
    assert other.status_code == 201  # one open record per employee, not per tenant
    clock.advance(hours=1)
    assert (await svc.http.post("/attendance/check-out", headers=me)).status_code == 200
    clock.advance(hours=1)
    assert (await svc.http.post("/attendance/check-in", headers=me)).status_code == 201


async def test_check_out_before_check_in_is_422(start: Starter, clock: Clock) -> None:
    svc = await start()
    await svc.http.post("/attendance/check-in", headers=employee(svc, 5))
    clock.advance(minutes=-5)  # the clock went back (e.g. corrected)

    response = await svc.http.post("/attendance/check-out", headers=employee(svc, 5))

    assert response.status_code == 422
    assert response.json()["detail"] == (
        "check_out 2030-06-15T07:55:00+00:00 is before check_in 2030-06-15T08:00:00+00:00: "
        "a record must end on or after it starts"
    )


async def test_who_may_punch_for_whom(start: Starter) -> None:
    svc = await start()
    other = await svc.http.post(
        "/attendance/check-in", json={"employee_id": 6}, headers=employee(svc, 5)
    )
    assert other.status_code == 403
    assert other.json()["detail"] == "employees may check in only their own records"
    for_them = await svc.http.post(
        "/attendance/check-in", json={"employee_id": 6}, headers=manager(svc)
    )
    assert for_them.status_code == 201
    assert (for_them.json()["employee_id"], for_them.json()["recorded_by"]) == (6, 2)
    nobody = await svc.http.post("/attendance/check-in", headers=svc.token())
    assert nobody.status_code == 422
    assert nobody.json()["detail"] == "employee_id is required: the caller has no employee record"
    out_other = await svc.http.post(
        "/attendance/check-out", json={"employee_id": 6}, headers=employee(svc, 5)
    )
    assert out_other.status_code == 403
    assert (await svc.http.post("/attendance/check-in")).status_code == 401


# --------------------------------------------------------------------------- manual records


async def test_manual_entry_by_managers(harness: Harness, start: Starter) -> None:
    events = await harness.collect(harness.settings.attendance_topic, group="t-att")
    svc = await start()

    record = await manual(
        svc,
        5,
        "2030-06-10T09:00:00+02:00",
        "2030-06-10T17:15:00+02:00",
        status="remote",
        notes="forgot to check in",
    )

    assert record["check_in"] == "2030-06-10T07:00:00Z"
    assert record["hours_worked"] == 8.25
    assert (record["status"], record["source"]) == ("remote", "manual")
    await eventually(lambda: events, what="attendance.marked")
    (event,) = events
    assert event.event_type == "attendance.marked"
    assert (event.data.hours_worked, event.data.status) == (8.25, "remote")

    body = {"employee_id": 5, "check_in": "2030-06-11T09:00:00Z"}
    denied = await svc.http.post("/attendance", json=body, headers=employee(svc, 5))
    assert denied.status_code == 403
    backwards = await manual(svc, 5, "2030-06-11T09:00:00Z", "2030-06-11T08:00:00Z", expect=422)
    assert "a record must end on or after it starts" in backwards["detail"]
    naive = await manual(svc, 5, "2030-06-11T09:00:00", None, expect=422)
    assert naive["detail"][0]["loc"] == ["body", "check_in"]
    await manual(svc, 5, "2030-06-11T09:00:00Z", None)  # an open record
    still_open = await manual(svc, 5, "2030-06-12T09:00:00Z", None, expect=409)
    assert "already has an open check-in" in still_open["detail"]
    await manual(svc, 5, "2030-06-09T09:00:00Z", "2030-06-09T12:00:00Z")  # closed: fine


async def test_update_and_delete(harness: Harness, start: Starter) -> None:
    events = await harness.collect(harness.settings.attendance_topic, group="t-att")
    audits = await harness.collect(harness.settings.audit_topic, group="t-audit")
    svc = await start()
    record = await manual(svc, 5, "2030-06-10T09:00:00Z", None)
    url = f"/attendance/{record['id']}"
    headers = {**manager(svc, user_id=4), "X-Correlation-ID": CID}

    closed = await svc.http.patch(url, json={"check_out": "2030-06-10T13:45:00Z"}, headers=headers)
    assert closed.status_code == 200, closed.text
    assert closed.json()["hours_worked"] == 4.75
    await eventually(lambda: of_type(events, "attendance.updated"), what="updated")
    (updated,) = of_type(events, "attendance.updated")
    assert (updated.data.hours_worked, updated.correlation_id) == (4.75, CID)

    backwards = await svc.http.patch(
        url, json={"check_in": "2030-06-10T14:00:00Z"}, headers=headers
    )
    assert backwards.status_code == 422
    assert (await svc.http.patch(url, json={"status": None}, headers=headers)).status_code == 422
    assert (
        await svc.http.patch(url, json={"notes": "x"}, headers=employee(svc, 5))
    ).status_code == 403
    await svc.http.post("/attendance/check-in", headers=employee(svc, 5))
    reopen = await svc.http.patch(url, json={"check_out": None}, headers=headers)
    assert reopen.status_code == 409
    assert "already has an open check-in" in reopen.json()["detail"]

    assert (await svc.http.delete(url, headers=employee(svc, 5))).status_code == 403
    deleted = await svc.http.delete(url, headers=headers)
    assert deleted.status_code == 204
    assert (await svc.http.get(url, headers=headers)).status_code == 404
    assert (await svc.http.delete(url, headers=headers)).status_code == 404
    await eventually(lambda: of_type(events, "attendance.deleted"), what="deleted")
    (gone,) = of_type(events, "attendance.deleted")
    assert (gone.data.attendance_id, gone.data.employee_id) == (record["id"], 5)
    await eventually(lambda: [a for a in audits if a.data.action == "DELETE"], what="audit")
    (audit,) = [a for a in audits if a.data.action == "DELETE"]
    assert (audit.data.resource_id, audit.data.user_id, audit.correlation_id) == (
        record["id"],
        4,
        CID,
    )


# --------------------------------------------------------------------------- reads


async def test_reads_are_scoped_and_paged(start: Starter) -> None:
    svc = await start()
    for day in range(1, 6):
        await manual(svc, 5, f"2030-06-0{day}T09:00:00Z", f"2030-06-0{day}T17:00:00Z")
    theirs = await manual(svc, 6, "2030-06-03T09:00:00Z", "2030-06-03T17:00:00Z")

    own = (await svc.http.get("/attendance", headers=employee(svc, 5))).json()
    assert own["total"] == 5
    assert {item["employee_id"] for item in own["items"]} == {5}
    assert (
        await svc.http.get("/attendance?employee_id=6", headers=employee(svc, 5))
    ).status_code == 403
    assert (
        await svc.http.get(f"/attendance/{theirs['id']}", headers=employee(svc, 5))
    ).status_code == 403
    assert (
        await svc.http.get(f"/attendance/{theirs['id']}", headers=employee(svc, 6))
    ).status_code == 200

    ranged = (
        await svc.http.get(
            "/attendance?date_from=2030-06-02&date_to=2030-06-04", headers=manager(svc)
        )
    ).json()
    assert ranged["total"] == 4
    assert [i["attendance_date"] for i in ranged["items"]] == [
        "2030-06-04",
        "2030-06-03",
        "2030-06-03",
        "2030-06-02",
    ]
    page = (
        await svc.http.get("/attendance?employee_id=5&limit=2&offset=2", headers=manager(svc))
    ).json()
    assert [i["attendance_date"] for i in page["items"]] == ["2030-06-03", "2030-06-02"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    inverted = await svc.http.get(
        "/attendance?date_from=2030-06-04&date_to=2030-06-02", headers=manager(svc)
    )
    assert inverted.status_code == 422
    assert inverted.json()["detail"] == "date_to 2030-06-02 is before date_from 2030-06-04"


async def test_unauthenticated_and_cross_tenant(start: Starter) -> None:
    svc = await start()
    record = await manual(svc, 5, "2030-06-10T09:00:00Z", None)
    globex = svc.token(tenant="globex", role=Role.MANAGER)
    url = f"/attendance/{record['id']}"

    assert (await svc.http.get("/attendance")).status_code == 401
    assert (await svc.http.get(url)).status_code == 401
    for method in ("GET", "PATCH", "DELETE"):
        response = await svc.http.request(
            method, url, headers=globex, json={} if method == "PATCH" else None
        )
        assert response.status_code == 404, method
        assert response.json()["detail"] == f"attendance {record['id']} not found"
    assert (await svc.http.get("/attendance", headers=globex)).json()["total"] == 0
    # the open record of acme's employee 5 does not block globex's employee 5
    mine = await svc.http.post(
        "/attendance/check-in",
        headers=svc.token(tenant="globex", role=Role.EMPLOYEE, employee_id=5),
    )
    assert mine.status_code == 201
