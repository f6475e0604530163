"""hrms.routing: the deployment's layout decides the topics; producers and consumers don't."""

from __future__ import annotations

import pytest

from hrms import topics
from hrms.events import (
    EventType,
    create_audit_event,
    create_notification_event,
    create_system_event,
    create_user_event,
)
from hrms.routing import TopicRouter, route, topics_for
from hrms.service import HrmsSettings


def settings(**env: str) -> HrmsSettings:
    return HrmsSettings(**env)  # type: ignore[arg-type]


LOGIN = create_user_event("users", 1, EventType.USER_LOGIN, tenant_id="acme")


def test_the_layout_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().topic_layout == "domain"
    monkeypatch.setenv("KAFKA_TOPIC_LAYOUT", "event-type")
    assert settings().topic_layout == "event-type"
    monkeypatch.setenv("KAFKA_TOPIC_LAYOUT", "per-tenant")
    with pytest.raises(ValueError, match=r"domain.*event-type"):
        settings()


def test_route_keeps_domain_topics_in_the_domain_layout() -> None:
    router = TopicRouter.from_settings(settings())
    assert router.route(LOGIN, topics.USER_TOPIC) == "user-queue"
    assert router.route(LOGIN) == "user-queue"
    assert router.route(create_system_event("svc", "leaves")) == "system-events"
    assert route(LOGIN, settings()) == "user-queue"


def test_route_gives_each_event_type_its_topic_in_the_event_type_layout() -> None:
    s = settings(KAFKA_TOPIC_LAYOUT="event-type")
    router = TopicRouter.from_settings(s)
    assert router.route(LOGIN, s.user_topic) == "user.login"
    audit = create_audit_event("users", "LOGIN", "session", event_type=EventType.AUDIT_USER_ACTION)
    assert router.route(audit, s.audit_topic) == "audit.user.action"
    assert router.route(create_system_event("svc", "leaves")) == "service.health"
    # a notification request of type user.created stays on the notification work queue
    welcome = create_notification_event("users", "a@acme.test", "Hi", "welcome_email")
    assert welcome.event_type == "user.created"
    assert router.route(welcome, s.notification_topic) == "notification-queue"
    assert route(LOGIN, s, s.user_topic) == "user.login"


def test_renamed_domain_topics_are_honoured() -> None:
    s = settings(KAFKA_USER_TOPIC="acme-users", KAFKA_TOPIC_LAYOUT="event-type")
    router = TopicRouter.from_settings(s)
    assert router.route(LOGIN, "acme-users") == "user.login"
    assert router.topics_for(["acme-users"])[-1] == "acme-users"
    assert router.dead_letter_topic("acme-users") == "user-dlq"
    domain = TopicRouter.from_settings(settings(KAFKA_USER_TOPIC="acme-users"))
    assert domain.route(LOGIN) == "acme-users"
    assert topics_for("user", "domain", settings=s) == ["acme-users"]


def test_topics_for_either_layout() -> None:
    assert topics_for("attendance") == ["attendance-queue"]
    assert topics_for(["user.login", "leave"], "domain") == ["user-queue", "leave-queue"]
    assert topics_for("attendance", "event-type") == [
        "attendance.checkin",
        "attendance.checkout",
        "attendance.approved",
        "attendance.marked",
        "attendance.updated",
        "attendance.deleted",
        "attendance-queue",  # types not declared yet still arrive here
    ]
    assert topics_for(["user.login"], "event-type") == ["user.login"]
    assert topics_for("a-topic-of-its-own", "event-type") == ["a-topic-of-its-own"]


def test_one_dead_letter_topic_per_domain_in_both_layouts() -> None:
    router = TopicRouter("event-type")
    assert router.dead_letter_topic("user.login") == "user-dlq"
    assert router.dead_letter_topic("user-queue") == "user-dlq"
    assert router.dead_letter_topic("audit.user.action") == "audit-dlq"
    names = {s.name for s in router.specs(replication_factor=1)}
    assert {"user.login", "user-queue", "user-dlq", "service.health"} <= names
    assert not any(n.endswith(".login-dlq") for n in names)
    assert {s.name for s in TopicRouter().specs()} == set(topics.TOPICS)
