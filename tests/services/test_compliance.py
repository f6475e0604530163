"""The compliance service: rules fired by employee, leave and attendance events, and checks.

Input events are published straight onto the in-memory broker with the catalog's
factories, as the employees, leaves and attendance services would; the service's clock is
a mutable fake so the missing check-out rule needs no waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from eventbus import BaseEvent, KafkaProducer
from hrms.events import (
    AuditEvent,
    ComplianceEvent,
    EventType,
    NotificationEvent,
    create_attendance_event,
    create_employee_event,
    create_leave_event,
)
from hrms.service import HrmsSettings, Role
from hrms.services.compliance import ComplianceRules, build
from tests.services.conftest import Harness, ServiceClient, eventually

TENANT = "acme"
MANAGER_EMAIL = "boss@acme.test"
MONDAY = date(2025, 1, 13)  # ISO week 2025-W03
START = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand (the service's injected time source)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def settings_of(harness: Harness) -> HrmsSettings:
    """The harness settings with a JWT key long enough not to warn (the harness's is short)."""
    return harness.settings.model_copy(update={"jwt_secret": SecretStr("k" * 48)})


StartCompliance = Callable[..., Awaitable[ServiceClient]]


@pytest.fixture
async def start_compliance(harness: Harness) -> AsyncIterator[StartCompliance]:
    """Start the compliance service with a given clock and rules (the harness takes neither)."""
    async with AsyncExitStack() as stack:

        async def start(
            clock: FakeClock | None = None, rules: ComplianceRules | None = None
        ) -> ServiceClient:
            service = build(
                settings=settings_of(harness),
                transport=harness.broker,
                clock=clock or FakeClock(START),
                rules=rules or ComplianceRules(),
            )
            app = service.app()
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://compliance"
            )
            await stack.enter_async_context(client)
            return ServiceClient(service, client)

        yield start


@pytest.fixture
async def producer(harness: Harness) -> AsyncIterator[KafkaProducer]:
    """A producer on the harness broker, standing in for the other services."""
    async with KafkaProducer(transport=harness.broker) as p:
        yield p


class World:
    """Publishes other services' events and reads what the compliance service made of them."""

    def __init__(self, harness: Harness, svc: ServiceClient, producer: KafkaProducer) -> None:
        self.harness = harness
        self.svc = svc
        self.producer = producer
        self.settings = svc.service.settings
        self.published = 0
        self.admin = svc.token(1, TENANT, Role.ADMIN)

    async def publish(self, topic: str, event: BaseEvent) -> BaseEvent:
        await self.producer.publish(topic, event)
        self.published += 1
        return event

    async def processed(self) -> None:
        """Wait until the service has handled everything published so far (or skipped it
        as a duplicate)."""
        inbox = self.svc.service.inbox

        def done() -> bool:
            return inbox.processed.total() + inbox.duplicates.total() >= self.published

        await eventually(done, what=f"{self.published} events handled")

    async def employee(
        self,
        employee_id: int,
        event_type: EventType = EventType.EMPLOYEE_CREATED,
        tenant: str = TENANT,
        **fields: Any,
    ) -> BaseEvent:
        fields.setdefault("status", "active")
        fields.setdefault("name", f"Employee {employee_id}")
        fields.setdefault("email", f"e{employee_id}@acme.test")
        event = create_employee_event(
            "employee-service", employee_id, event_type, tenant_id=tenant, **fields
        )
        return await self.publish(self.settings.employee_topic, event)

    async def attendance(
        self,
        employee_id: int,
        attendance_id: int,
        day: date,
        hours: float | None = None,
        check_in: datetime | None = None,
        check_out: datetime | None = None,
        event_type: EventType = EventType.ATTENDANCE_MARKED,
        tenant: str = TENANT,
    ) -> BaseEvent:
        if check_in is None:
            check_in = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
        if check_out is None and hours is not None:
            check_out = check_in + timedelta(hours=hours)
        event = create_attendance_event(
            "attendance-service",
            employee_id,
            event_type,
            attendance_id=attendance_id,
            attendance_date=day,
            check_in=check_in,
            check_out=check_out,
            hours_worked=hours,
            status="present",
            tenant_id=tenant,
        )
        return await self.publish(self.settings.attendance_topic, event)

    async def leave(
        self,
        employee_id: int,
        leave_id: int,
        start: date,
        end: date,
        event_type: EventType = EventType.LEAVE_APPROVED,
        tenant: str = TENANT,
    ) -> BaseEvent:
        status = {
            EventType.LEAVE_APPROVED: "approved",
            EventType.LEAVE_REQUESTED: "pending",
            EventType.LEAVE_CANCELLED: "cancelled",
        }[event_type]
        event = create_leave_event(
            "leave-service",
            leave_id,
            employee_id,
            event_type,
            leave_type="annual",
            start_date=start,
            end_date=end,
            status=status,
            tenant_id=tenant,
        )
        return await self.publish(self.settings.leave_topic, event)

    async def findings(self, headers: dict[str, str] | None = None, **params: Any) -> Any:
        r = await self.svc.http.get(
            "/compliance/findings", params=params, headers=headers or self.admin
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def check(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = await self.svc.http.post("/compliance/checks", headers=headers or self.admin)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
async def world_factory(
    harness: Harness, start_compliance: StartCompliance, producer: KafkaProducer
) -> Callable[..., Awaitable[World]]:
    async def make(clock: FakeClock | None = None, rules: ComplianceRules | None = None) -> World:
        svc = await start_compliance(clock, rules)
        return World(harness, svc, producer)

    return make


@pytest.fixture
async def world(world_factory: Callable[..., Awaitable[World]]) -> World:
    return await world_factory()


def of_type(events: list[BaseEvent], event_type: EventType) -> list[Any]:
    return [e for e in events if e.event_type == event_type.value]


async def test_weekly_hours_over_the_maximum_is_a_violation_notified_to_the_manager(
    world: World, harness: Harness
) -> None:
    compliance = await harness.collect(world.settings.compliance_topic)
    notifications = await harness.collect(world.settings.notification_topic)
    audits = await harness.collect(world.settings.audit_topic)
    await world.employee(7, manager_id=3, manager_email=MANAGER_EMAIL)
    for i in range(4):  # 40 hours: within the limit
        await world.attendance(7, 100 + i, MONDAY + timedelta(days=i), hours=10)
    await world.attendance(7, 99, MONDAY - timedelta(days=1), hours=12)  # the week before
    await world.processed()
    assert (await world.findings())["total"] == 0

    last = await world.attendance(7, 104, MONDAY + timedelta(days=4), hours=10)  # 50 hours

    violations = await eventually(lambda: of_type(compliance, EventType.COMPLIANCE_VIOLATION))
    event = violations[0]
    assert isinstance(event, ComplianceEvent)
    assert event.tenant_id == TENANT
    assert event.causation_id == str(last.event_id)
    assert event.data.employee_id == 7
    assert event.data.rule == "max_weekly_hours"
    assert event.data.severity == "high"
    assert event.data.details["total_hours"] == 50
    assert event.data.details["week"] == "2025-W03"

    notes = await eventually(lambda: notifications)
    note = notes[0]
    assert isinstance(note, NotificationEvent)
    assert note.data.recipient_email == MANAGER_EMAIL
    assert note.data.template_name == "compliance_violation"
    assert note.data.template_data["rule"] == "max_weekly_hours"
    assert note.data.template_data["employee_name"] == "Employee 7"
    assert note.tenant_id == TENANT

    audit = await eventually(
        lambda: [a for a in audits if a.event_type == EventType.AUDIT_COMPLIANCE_ACTION.value]
    )
    assert isinstance(audit[0], AuditEvent)
    assert audit[0].data.resource_type == "compliance_finding"
    assert audit[0].data.resource_id == event.data.compliance_id

    page = await world.findings()
    assert page["total"] == 1
    finding = page["items"][0]
    assert finding["id"] == event.data.compliance_id
    assert finding["rule"] == "max_weekly_hours"
    assert finding["kind"] == "violation"
    assert finding["severity"] == "high"
    assert finding["status"] == "open"
    assert finding["employee_id"] == 7
    assert finding["source_event_id"] == str(last.event_id)
    assert finding["details"]["records"] == 5

    # a sixth day in the same week does not make a second finding for that week
    await world.attendance(7, 105, MONDAY + timedelta(days=5), hours=4)
    await world.processed()
    assert (await world.findings())["total"] == 1


async def test_thresholds_and_severities_are_configurable(
    world_factory: Callable[..., Awaitable[World]], harness: Harness
) -> None:
    rules = ComplianceRules(max_weekly_hours=20, max_weekly_hours_severity="medium")
    world = await world_factory(rules=rules)
    compliance = await harness.collect(world.settings.compliance_topic)
    await world.employee(8, manager_email=MANAGER_EMAIL)
    await world.attendance(8, 1, MONDAY, hours=8)
    await world.attendance(8, 2, MONDAY + timedelta(days=1), hours=8)
    await world.processed()
    assert (await world.findings())["total"] == 0
    await world.attendance(8, 3, MONDAY + timedelta(days=2), hours=8)  # 24 > 20

    violations = await eventually(lambda: of_type(compliance, EventType.COMPLIANCE_VIOLATION))
    assert violations[0].data.severity == "medium"
    assert violations[0].data.details["max_weekly_hours"] == 20
    assert violations[0].data.details["total_hours"] == 24


def test_rules_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HRMS_COMPLIANCE_MAX_WEEKLY_HOURS", "40")
    monkeypatch.setenv("HRMS_COMPLIANCE_MISSING_CHECK_OUT_HOURS", "12")
    rules = ComplianceRules()
    assert rules.max_weekly_hours == 40
    assert rules.missing_check_out_hours == 12
    with pytest.raises(ValueError, match="greater than 0"):
        ComplianceRules(max_weekly_hours=0)


async def test_missing_check_out_alert_comes_from_a_check_with_the_clock_advanced(
    world_factory: Callable[..., Awaitable[World]], harness: Harness
) -> None:
    clock = FakeClock(START)
    world = await world_factory(clock=clock)
    compliance = await harness.collect(world.settings.compliance_topic)
    notifications = await harness.collect(world.settings.notification_topic)
    await world.employee(9, manager_email=MANAGER_EMAIL)
    await world.attendance(9, 50, START.date(), check_in=START)  # no check-out
    await world.attendance(9, 51, START.date() - timedelta(days=1), hours=8)  # checked out
    await world.processed()

    first = await world.check()
    assert first["open_check_ins"] == 1
    assert first["overdue"] == 0
    assert first["alerts_created"] == 0

    clock.advance(hours=16, minutes=30)
    second = await world.check()
    assert second["overdue"] == 1
    assert second["alerts_created"] == 1
    (finding_id,) = second["finding_ids"]

    alerts = await eventually(lambda: of_type(compliance, EventType.COMPLIANCE_ALERT))
    assert alerts[0].data.rule == "missing_check_out"
    assert alerts[0].data.compliance_id == finding_id
    assert alerts[0].data.details["hours_open"] == 16.5
    completed = await eventually(
        lambda: (
            len(of_type(compliance, EventType.COMPLIANCE_CHECK_COMPLETED)) == 2
            and of_type(compliance, EventType.COMPLIANCE_CHECK_COMPLETED)
        )
    )
    counts = sorted(e.data.details["alerts_created"] for e in completed)
    assert counts == [0, 1]
    assert all(e.tenant_id == TENANT for e in completed)
    note = await eventually(lambda: notifications)
    assert note[0].data.template_name == "compliance_alert"
    assert note[0].data.recipient_email == MANAGER_EMAIL

    r = await world.svc.http.get(f"/compliance/findings/{finding_id}", headers=world.admin)
    assert r.status_code == 200
    assert r.json()["kind"] == "alert"
    assert r.json()["severity"] == "medium"

    third = await world.check()  # a repeated check reports it, adds nothing
    assert third["alerts_created"] == 0
    assert third["already_reported"] == 1
    assert (await world.findings(rule="missing_check_out"))["total"] == 1


async def test_the_scheduled_check_runs_on_its_own(
    world_factory: Callable[..., Awaitable[World]], harness: Harness
) -> None:
    clock = FakeClock(START)
    world = await world_factory(clock=clock, rules=ComplianceRules(check_interval_s=0.05))
    compliance = await harness.collect(world.settings.compliance_topic)
    await world.attendance(10, 60, START.date(), check_in=START)
    await world.processed()
    clock.advance(hours=17)

    alerts = await eventually(lambda: of_type(compliance, EventType.COMPLIANCE_ALERT))
    assert alerts[0].data.rule == "missing_check_out"
    assert alerts[0].data.employee_id == 10
    scheduled = await eventually(
        lambda: [
            e
            for e in of_type(compliance, EventType.COMPLIANCE_CHECK_COMPLETED)
            if e.data.details["alerts_created"] == 1
        ]
    )
    assert scheduled[0].data.details["trigger"] == "scheduled"
    assert (await world.findings(rule="missing_check_out"))["total"] == 1


async def test_check_in_during_approved_leave_is_a_violation(
    world: World, harness: Harness
) -> None:
    compliance = await harness.collect(world.settings.compliance_topic)
    notifications = await harness.collect(world.settings.notification_topic)
    await world.employee(11, manager_email=MANAGER_EMAIL)
    await world.leave(11, 500, MONDAY, MONDAY + timedelta(days=2))
    await world.leave(
        11,
        501,
        MONDAY + timedelta(days=4),
        MONDAY + timedelta(days=4),
        event_type=EventType.LEAVE_REQUESTED,
    )  # not approved
    await world.attendance(11, 1, MONDAY + timedelta(days=3), hours=8)  # after the leave
    await world.attendance(11, 2, MONDAY + timedelta(days=4), hours=8)  # leave only requested
    await world.processed()
    assert (await world.findings())["total"] == 0

    during = await world.attendance(11, 3, MONDAY + timedelta(days=1), hours=2)
    violations = await eventually(lambda: of_type(compliance, EventType.COMPLIANCE_VIOLATION))
    assert violations[0].data.rule == "check_in_during_leave"
    assert violations[0].data.details["leave_id"] == "500"
    assert violations[0].causation_id == str(during.event_id)
    note = await eventually(lambda: notifications)
    assert note[0].data.recipient_email == MANAGER_EMAIL
    assert note[0].data.template_data["rule"] == "check_in_during_leave"
    page = await world.findings(rule="check_in_during_leave")
    assert page["total"] == 1
    assert page["items"][0]["source_event_id"] == str(during.event_id)

    # the check-out of the same record is another event about the same check-in
    await world.attendance(
        11, 3, MONDAY + timedelta(days=1), hours=3, event_type=EventType.ATTENDANCE_UPDATED
    )
    await world.processed()
    assert (await world.findings(rule="check_in_during_leave"))["total"] == 1


async def test_leave_approved_after_the_check_in_is_found_too(world: World) -> None:
    await world.employee(12, manager_email=MANAGER_EMAIL)
    await world.attendance(12, 7, MONDAY + timedelta(days=1), hours=8)
    await world.processed()
    approval = await world.leave(12, 600, MONDAY, MONDAY + timedelta(days=1))

    async def found() -> Any:
        return (await world.findings(rule="check_in_during_leave"))["items"]

    (finding,) = await eventually(found)
    assert finding["source_event_id"] == str(approval.event_id)
    assert finding["employee_id"] == 12


async def test_activity_after_termination_is_a_violation(world: World, harness: Harness) -> None:
    compliance = await harness.collect(world.settings.compliance_topic)
    await world.employee(13, manager_email=MANAGER_EMAIL)
    # the last day's attendance, made before the termination, that arrives after it
    late = create_attendance_event(
        "attendance-service", 13, attendance_id=7, check_in=START, hours_worked=1, tenant_id=TENANT
    )
    await world.employee(13, EventType.EMPLOYEE_TERMINATED, status="terminated")
    await world.processed()
    await world.publish(world.settings.attendance_topic, late)
    # clean-up after the termination is not activity
    await world.leave(13, 700, MONDAY, MONDAY, event_type=EventType.LEAVE_CANCELLED)
    await world.processed()
    assert (await world.findings())["total"] == 0

    check_in = await world.attendance(13, 8, MONDAY, check_in=START)
    request = await world.leave(13, 701, MONDAY, MONDAY, event_type=EventType.LEAVE_REQUESTED)

    violations = await eventually(
        lambda: (
            len(of_type(compliance, EventType.COMPLIANCE_VIOLATION)) == 2
            and of_type(compliance, EventType.COMPLIANCE_VIOLATION)
        )
    )
    assert {v.data.rule for v in violations} == {"activity_after_termination"}
    assert {v.data.details["event_id"] for v in violations} == {
        str(check_in.event_id),
        str(request.event_id),
    }
    assert all(v.data.severity == "high" for v in violations)
    page = await world.findings(employee_id="13", rule="activity_after_termination")
    assert page["total"] == 2


async def test_a_redelivered_event_makes_no_second_finding(world: World, harness: Harness) -> None:
    compliance = await harness.collect(world.settings.compliance_topic)
    notifications = await harness.collect(world.settings.notification_topic)
    await world.employee(14, manager_email=MANAGER_EMAIL)
    await world.employee(14, EventType.EMPLOYEE_TERMINATED, status="terminated")
    await world.processed()
    event = create_attendance_event(
        "attendance-service", 14, attendance_id=9, check_in=START, tenant_id=TENANT
    )
    await world.publish(world.settings.attendance_topic, event)
    await world.publish(world.settings.attendance_topic, event)  # delivered again
    await world.processed()
    assert world.svc.service.inbox.duplicates.total() == 1

    # a later finding as a barrier: the outbox relays in order, so a duplicate would be ahead
    barrier = await world.attendance(14, 10, MONDAY, check_in=START + timedelta(days=1))
    await eventually(
        lambda: any(
            v.data.details.get("event_id") == str(barrier.event_id)
            for v in of_type(compliance, EventType.COMPLIANCE_VIOLATION)
        )
    )
    await eventually(lambda: len(notifications) >= 2)
    about = [
        v
        for v in of_type(compliance, EventType.COMPLIANCE_VIOLATION)
        if v.data.details["event_id"] == str(event.event_id)
    ]
    assert len(about) == 1
    assert len(notifications) == 2
    assert (await world.findings())["total"] == 2


async def test_manager_email_falls_back_to_the_manager_record_or_is_skipped(
    world: World, harness: Harness
) -> None:
    notifications = await harness.collect(world.settings.notification_topic)
    await world.employee(20, email="lead@acme.test")  # the manager
    await world.employee(21, manager_id=20)  # no manager e-mail of its own
    await world.employee(22)  # no manager at all
    for emp in (21, 22):
        await world.employee(emp, EventType.EMPLOYEE_TERMINATED, status="terminated")
    await world.processed()
    await world.attendance(22, 1, MONDAY, check_in=START)
    await world.attendance(21, 2, MONDAY, check_in=START)

    async def both() -> bool:
        return (await world.findings())["total"] == 2

    await eventually(both)
    notes = await eventually(lambda: notifications)
    assert [n.data.recipient_email for n in notes] == ["lead@acme.test"]
    assert notes[0].data.template_data["employee_id"] == 21


async def test_findings_are_filtered_paginated_and_resolved(world: World, harness: Harness) -> None:
    audits = await harness.collect(world.settings.audit_topic)
    await world.employee(30, EventType.EMPLOYEE_TERMINATED, status="terminated")
    await world.employee(31, EventType.EMPLOYEE_TERMINATED, status="terminated")
    await world.processed()
    for i in range(3):
        await world.attendance(30, 100 + i, MONDAY + timedelta(days=i), check_in=START)
    await world.attendance(31, 200, MONDAY, check_in=START)

    async def four() -> bool:
        return (await world.findings())["total"] == 4

    await eventually(four)
    page = await world.findings(limit=2, offset=0)
    assert [len(page["items"]), page["total"], page["limit"]] == [2, 4, 2]
    rest = await world.findings(limit=2, offset=2)
    ids = [f["id"] for f in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4
    assert (await world.findings(employee_id="31"))["total"] == 1
    assert (await world.findings(kind="alert"))["total"] == 0
    assert (await world.findings(kind="violation", status="open"))["total"] == 4

    target = ids[0]
    r = await world.svc.http.post(
        f"/compliance/findings/{target}/resolve",
        json={"note": "confirmed with HR"},
        headers=world.svc.token(5, TENANT, Role.MANAGER),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    assert r.json()["resolved_by"] == 5
    assert r.json()["resolution_note"] == "confirmed with HR"
    assert r.json()["resolved_at"].startswith("2025-01-15T09:00:00")
    assert (await world.findings(status="resolved"))["total"] == 1
    assert (await world.findings(status="open"))["total"] == 3

    again = await world.svc.http.post(f"/compliance/findings/{target}/resolve", headers=world.admin)
    assert again.status_code == 409
    assert "resolved already" in again.json()["detail"]
    await eventually(
        lambda: [a for a in audits if a.data.action == "RESOLVE" and a.data.resource_id == target]
    )

    bad = await world.svc.http.post(
        f"/compliance/findings/{ids[1]}/resolve", json={"note": "x" * 2001}, headers=world.admin
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-1] == "note"
    bogus = await world.svc.http.get(
        "/compliance/findings", params={"kind": "bogus", "limit": 0}, headers=world.admin
    )
    assert bogus.status_code == 422
    assert {e["loc"][-1] for e in bogus.json()["detail"]} == {"kind", "limit"}


async def test_auth_roles_and_tenants(world: World, harness: Harness) -> None:
    await world.employee(40, EventType.EMPLOYEE_TERMINATED, status="terminated")
    await world.employee(40, EventType.EMPLOYEE_TERMINATED, status="terminated", tenant="globex")
    await world.processed()
    await world.attendance(40, 1, MONDAY, check_in=START)

    async def found() -> Any:
        return (await world.findings())["items"]

    (finding,) = await eventually(found)
    fid = finding["id"]
    http = world.svc.http

    # 401 without a token or with a bad one
    assert (await http.get("/compliance/findings")).status_code == 401
    assert (await http.post("/compliance/checks")).status_code == 401
    assert (await http.get(f"/compliance/findings/{fid}")).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await http.get("/compliance/findings", headers=bad)).status_code == 401

    # 403 for employees on the manager routes, and on another employee's finding
    other = world.svc.token(2, TENANT, Role.EMPLOYEE, employee_id=41)
    assert (await http.get("/compliance/findings", headers=other)).status_code == 403
    assert (await http.post("/compliance/checks", headers=other)).status_code == 403
    r = await http.post(f"/compliance/findings/{fid}/resolve", headers=other)
    assert r.status_code == 403
    assert (await http.get(f"/compliance/findings/{fid}", headers=other)).status_code == 403
    own = world.svc.token(3, TENANT, Role.EMPLOYEE, employee_id=40)
    r = await http.get(f"/compliance/findings/{fid}", headers=own)
    assert r.status_code == 200
    assert r.json()["employee_id"] == 40

    # another tenant sees none of it: 404, an empty list, a check of its own data only
    globex = world.svc.token(9, "globex", Role.ADMIN)
    assert (await http.get(f"/compliance/findings/{fid}", headers=globex)).status_code == 404
    r = await http.post(f"/compliance/findings/{fid}/resolve", headers=globex)
    assert r.status_code == 404
    assert (await world.findings(headers=globex))["total"] == 0
    assert (await world.check(headers=globex))["open_check_ins"] == 0
    assert (await world.check())["open_check_ins"] == 1
    r = await http.get("/compliance/findings/999999", headers=world.admin)
    assert r.status_code == 404
    still = await http.get(f"/compliance/findings/{fid}", headers=world.admin)
    assert still.json()["status"] == "open"


async def test_the_registry_builds_it_with_default_rules(harness: Harness) -> None:
    svc = await harness.start("compliance")
    assert (await svc.http.get("/health")).json() == {"status": "alive", "service": "compliance"}
    ready = await svc.http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["consumers"][0]["topics"] == [
        svc.service.settings.employee_topic,
        svc.service.settings.leave_topic,
        svc.service.settings.attendance_topic,
    ]
