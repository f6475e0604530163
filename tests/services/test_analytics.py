"""The analytics service on the in-memory broker: counts per event type, tenant and hour."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from eventbus import BaseEvent, KafkaProducer
from eventbus import headers as h
from hrms.events import (
    EventType,
    create_attendance_event,
    create_notification_event,
    create_payroll_event,
    create_user_event,
)
from hrms.service import Role
from tests.services.conftest import Harness, ServiceClient, eventually

T10 = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
T10_LATE = datetime(2026, 3, 2, 10, 59, 59, tzinfo=UTC)
T11 = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def at(event: BaseEvent, when: datetime) -> BaseEvent:
    """``event`` as if it happened at ``when``."""
    return event.model_copy(update={"timestamp": when})


def login(tenant: str, when: datetime, user_id: int = 1) -> BaseEvent:
    return at(create_user_event("auth", user_id, EventType.USER_LOGIN, tenant_id=tenant), when)


async def publish(harness: Harness, topic: str, *events: BaseEvent | bytes) -> None:
    """Publish to the harness's broker as any other service would."""
    producer = KafkaProducer(transport=harness.broker)
    await producer.start()
    try:
        for event in events:
            if isinstance(event, bytes):
                assert await producer.send_raw(topic, event)
            else:
                assert await producer.send_event(topic, event)
    finally:
        await producer.stop()


async def caught_up(analytics: ServiceClient) -> bool:
    """Whether the analytics consumer has committed everything on its topics (lag 0)."""
    body = (await analytics.http.get("/ready")).json()
    mine = [c for c in body["consumers"] if c["group"] == "hrms-analytics.counts"]
    return bool(mine) and all(c["running"] and c["lag"] == 0 for c in mine)


async def counts(
    analytics: ServiceClient, tenant: str = "acme", role: Role = Role.ADMIN, **params: Any
) -> dict[str, Any]:
    r = await analytics.http.get(
        "/analytics/counts",
        params={k.rstrip("_"): v for k, v in params.items()},
        headers=analytics.token(1, tenant, role),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def counted(analytics: ServiceClient, total: int, **params: Any) -> dict[str, Any]:
    """Wait until the counts (with ``params``) reach ``total``; then expect no more."""

    async def check() -> dict[str, Any] | None:
        body = await counts(analytics, **params)
        return body if body["total"] >= total else None

    body: dict[str, Any] = await eventually(check, what=f"{total} counted")
    await eventually(lambda: caught_up(analytics), what="analytics lag 0")
    body = await counts(analytics, **params)
    assert body["total"] == total, body
    return body


async def test_counts_per_event_type_tenant_and_hour(harness: Harness) -> None:
    analytics = await harness.start("analytics")
    logout = at(create_user_event("auth", 1, EventType.USER_LOGOUT, tenant_id="acme"), T10_LATE)
    await publish(
        harness,
        "user-queue",
        login("acme", T10),
        login("acme", T10_LATE, user_id=2),
        login("acme", T11),
        logout,
        login("globex", T10),
        login("globex", T10, user_id=3),
    )
    checkin = create_attendance_event("attendance", 7, tenant_id="acme")
    await publish(harness, "attendance-queue", at(checkin, T11))

    both = await counted(analytics, 5)
    assert both["tenant_id"] == "acme"
    assert [(b["event_type"], b["hour"], b["count"]) for b in both["buckets"]] == [
        ("user.login", "2026-03-02T10:00:00Z", 2),
        ("user.logout", "2026-03-02T10:00:00Z", 1),
        ("attendance.marked", "2026-03-02T11:00:00Z", 1),
        ("user.login", "2026-03-02T11:00:00Z", 1),
    ]
    hourly = await counts(analytics, group_by="hour")
    assert [(b["hour"], b["count"], b["event_type"]) for b in hourly["buckets"]] == [
        ("2026-03-02T10:00:00Z", 3, None),
        ("2026-03-02T11:00:00Z", 2, None),
    ]
    by_type = await counts(analytics, group_by="event_type")
    assert [(b["event_type"], b["count"], b["hour"]) for b in by_type["buckets"]] == [
        ("user.login", 3, None),
        ("attendance.marked", 1, None),
        ("user.logout", 1, None),
    ]

    assert (await counts(analytics, event_type="user.logout"))["total"] == 1
    assert (await counts(analytics, event_type="user.*", group_by="hour"))["total"] == 4
    assert (await counts(analytics, event_type="user"))["total"] == 0  # not a prefix match
    # the hours overlapping [from, to): 10:30-11:00 is within the 10 o'clock hour
    assert (await counts(analytics, from_="2026-03-02T10:30:00Z", to="2026-03-02T11:00:00Z"))[
        "total"
    ] == 3
    late = await counts(analytics, from_="2026-03-02T11:00:00+00:00", group_by="event_type")
    assert {b["event_type"]: b["count"] for b in late["buckets"]} == {
        "attendance.marked": 1,
        "user.login": 1,
    }
    # naive times are UTC; an offset is converted
    assert (await counts(analytics, to="2026-03-02T11:00:00"))["total"] == 3
    assert (await counts(analytics, to="2026-03-02T12:00:00+01:00"))["total"] == 3

    # another tenant sees only its own (and nobody sees the tenant-less heartbeats)
    globex = await counts(analytics, tenant="globex", role=Role.MANAGER, group_by="event_type")
    assert [(b["event_type"], b["count"]) for b in globex["buckets"]] == [("user.login", 2)]
    assert (await counts(analytics, tenant="initech"))["total"] == 0


async def test_each_event_counts_once_on_any_topic_and_redelivery(harness: Harness) -> None:
    analytics = await harness.start("analytics", topic_layout="event-type")
    event = login("acme", T10)
    # a redelivery, a replay, and the same event on its event-type topic
    await publish(harness, "user-queue", event, event)
    await publish(harness, "user.login", event, event)
    payroll = create_payroll_event("payroll", period="2026-02", tenant_id="acme")
    await publish(harness, "payroll.processed", payroll)
    body = await counted(analytics, 2, group_by="event_type")
    assert {b["event_type"]: b["count"] for b in body["buckets"]} == {
        "user.login": 1,
        "payroll.processed": 1,
    }


async def test_only_domain_events_are_counted(harness: Harness) -> None:
    analytics = await harness.start("analytics")
    created = create_user_event("users", 5, EventType.USER_CREATED, tenant_id="acme")
    welcome = create_notification_event(
        "users", "ada@acme.test", "Welcome", "welcome_email", tenant_id="acme"
    )  # a request of type user.created: not a second user.created
    assert welcome.event_type == "user.created"
    await publish(harness, "notification-queue", welcome)
    await publish(harness, "user-queue", b"not json", b'{"no": "envelope"}', created)
    body = await counted(analytics, 1, group_by="event_type")
    assert [(b["event_type"], b["count"]) for b in body["buckets"]] == [("user.created", 1)]
    ready = (await analytics.http.get("/ready")).json()
    assert ready["analytics"]["skipped_records"] == 3  # two non-events, one request


async def test_who_may_ask_and_bad_input(harness: Harness) -> None:
    analytics = await harness.start("analytics")
    url = "/analytics/counts"
    assert (await analytics.http.get(url)).status_code == 401
    employee = analytics.token(5, "acme", Role.EMPLOYEE, employee_id=5)
    assert (await analytics.http.get(url, headers=employee)).status_code == 403
    admin = analytics.token()
    for params, field in (
        ({"group_by": "day"}, "group_by"),
        ({"event_type": "user created"}, "event_type"),
        ({"event_type": "*"}, "event_type"),
        ({"from": "yesterday"}, "from"),
    ):
        r = await analytics.http.get(url, params=params, headers=admin)
        assert r.status_code == 422, (params, r.text)
        assert field in r.text
    backwards = await analytics.http.get(
        url, params={"from": "2026-03-02T11:00:00Z", "to": "2026-03-02T10:00:00Z"}, headers=admin
    )
    assert backwards.status_code == 422
    assert "'to' must be after 'from'" in backwards.text
    extremes = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    edge = await analytics.http.get(url, params=extremes, headers=admin)
    assert edge.status_code == 200, edge.text
    assert edge.json()["total"] == 0


@pytest.mark.parametrize("layout", ["domain", "event-type"])
async def test_logins_reach_analytics_and_audit_under_either_layout(
    harness: Harness, layout: str
) -> None:
    """Users, audit and analytics run unchanged on both layouts: only the topics differ."""
    harness.settings = harness.settings.model_copy(update={"topic_layout": layout})
    users = await harness.start("users")
    audit = await harness.start("audit")
    analytics = await harness.start("analytics")
    admin = users.token(1, "acme", Role.ADMIN)
    created = await users.http.post(
        "/users",
        json={
            "email": "ada@acme.test",
            "name": "Ada",
            "password": "pw-ada-123456",
            "role": "employee",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = {"tenant_id": "acme", "email": "ada@acme.test", "password": "pw-ada-123456"}
    token = (await users.http.post("/auth/login", json=body)).json()["access_token"]
    out = await users.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert out.status_code == 204

    by_type = await counted(analytics, 6, group_by="event_type")
    assert {b["event_type"]: b["count"] for b in by_type["buckets"]} == {
        "user.created": 1,
        "user.login": 1,
        "user.logout": 1,
        "audit.user.action": 3,  # CREATE, LOGIN, LOGOUT
    }

    async def audited() -> bool:
        r = await audit.http.get("/audit-logs", headers=audit.token(1, "acme", Role.ADMIN))
        return r.status_code == 200 and r.json()["total"] == 3

    await eventually(audited, what="three audit records")

    def where(event_type: str) -> set[str]:
        return {
            r.topic
            for name in harness.broker.topics
            for r in harness.broker.records(name)
            if (dict(r.headers).get(h.EVENT_TYPE) or b"").decode() == event_type
        }

    if layout == "event-type":
        assert where("user.login") == {"user.login"}
        assert where("audit.user.action") == {"audit.user.action"}
        assert where("user.created") == {"user.created", "notification-queue"}  # + welcome
    else:
        assert where("user.login") == {"user-queue"}
        assert where("audit.user.action") == {"audit-queue"}
        assert where("user.created") == {"user-queue", "notification-queue"}
