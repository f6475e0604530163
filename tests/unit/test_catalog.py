"""The HRMS event catalog (hrms.events) and topic layout (hrms.topics)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from eventbus import headers as h
from eventbus._codec import decode_event, encode_event
from eventbus._deadletter import dead_letter_topic
from eventbus._envelope import BaseEvent, EventPayload, Priority
from eventbus._registry import EventRegistry, default_registry
from eventbus.errors import ConfigurationError
from hrms import events as catalog
from hrms import topics
from hrms.events import (
    AttendanceData,
    AttendanceEvent,
    AuditData,
    AuditEvent,
    ComplianceEvent,
    CrmData,
    CrmEvent,
    DocumentData,
    DocumentEvent,
    EmployeeData,
    EmployeeEvent,
    EventType,
    LeaveData,
    LeaveEvent,
    LowStockData,
    LowStockEvent,
    NotificationData,
    NotificationEvent,
    PayrollData,
    PayrollEvent,
    ServiceHealthData,
    SystemEvent,
    UserData,
    UserEvent,
    create_attendance_event,
    create_audit_event,
    create_compliance_event,
    create_crm_event,
    create_document_event,
    create_employee_event,
    create_leave_event,
    create_low_stock_event,
    create_notification_event,
    create_payroll_event,
    create_system_event,
    create_user_event,
    low_stock_priority,
    register_catalog,
)

# --------------------------------------------------------------------------- seed 000


def test_create_notification_event() -> None:
    event = create_notification_event(
        source_service="test-service",
        recipient_email="test@example.com",
        subject="Test",
        template_name="test_template",
        template_data={"key": "value"},
        event_type=EventType.USER_CREATED,
    )

    assert event.event_type == EventType.USER_CREATED
    assert event.source_service == "test-service"
    assert event.data.recipient_email == "test@example.com"


# --------------------------------------------------------------------------- event types

EXPECTED_TYPES = {
    "USER_CREATED": "user.created",
    "USER_UPDATED": "user.updated",
    "USER_DELETED": "user.deleted",
    "USER_SUSPENDED": "user.suspended",
    "USER_ACTIVATED": "user.activated",
    "USER_PASSWORD_CHANGED": "user.password_changed",
    "USER_LOGIN": "user.login",
    "USER_LOGOUT": "user.logout",
    "EMPLOYEE_CREATED": "employee.created",
    "EMPLOYEE_UPDATED": "employee.updated",
    "EMPLOYEE_TERMINATED": "employee.terminated",
    "EMPLOYEE_STATUS_CHANGED": "employee.status_changed",
    "LEAVE_REQUESTED": "leave.requested",
    "LEAVE_APPROVED": "leave.approved",
    "LEAVE_REJECTED": "leave.rejected",
    "LEAVE_CANCELLED": "leave.cancelled",
    "LEAVE_UPDATED": "leave.updated",
    "ATTENDANCE_MARKED": "attendance.marked",
    "ATTENDANCE_UPDATED": "attendance.updated",
    "ATTENDANCE_DELETED": "attendance.deleted",
    "COMPLIANCE_VIOLATION": "compliance.violation",
    "COMPLIANCE_ALERT": "compliance.alert",
    "COMPLIANCE_CHECK_COMPLETED": "compliance.check_completed",
    "AUDIT_USER_ACTION": "audit.user.action",
    "AUDIT_EMPLOYEE_ACTION": "audit.employee.action",
    "AUDIT_LEAVE_ACTION": "audit.leave.action",
    "AUDIT_ATTENDANCE_ACTION": "audit.attendance.action",
    "AUDIT_COMPLIANCE_ACTION": "audit.compliance.action",
    "INVENTORY_LOW_STOCK": "inventory.low_stock",
    "PAYROLL_PROCESSED": "payroll.processed",
    "SALARY_CALCULATED": "salary.calculated",
    "PAYROLL_APPROVED": "payroll.approved",
    "CUSTOMER_CREATED": "customer.created",
    "CUSTOMER_UPDATED": "customer.updated",
    "ORDER_CREATED": "order.created",
    "ORDER_UPDATED": "order.updated",
    "DOCUMENT_UPLOADED": "document.uploaded",
    "DOCUMENT_APPROVED": "document.approved",
    "DOCUMENT_REJECTED": "document.rejected",
    "SERVICE_HEALTH": "service.health",
    "SERVICE_ERROR": "service.error",
}


def test_event_types_are_the_seeds_41_with_their_wire_values() -> None:
    assert len(EventType) == 41
    assert {m.name: m.value for m in EventType} == EXPECTED_TYPES
    assert str(EventType.USER_CREATED) == "user.created"
    assert EventType("audit.user.action") is EventType.AUDIT_USER_ACTION


@pytest.mark.parametrize("member", list(EventType), ids=lambda m: m.name)
def test_every_event_type_has_a_model_and_a_topic(member: EventType) -> None:
    assert catalog.EVENT_MODELS[member] is not None
    assert topics.topic_for(member) in topics.DOMAIN_TOPICS
    assert topics.topic_for(member.value) == topics.topic_for(member)


# --------------------------------------------------------------------------- registry


@pytest.fixture
def registry() -> EventRegistry:
    return register_catalog(EventRegistry())


Builder = Callable[[], BaseEvent]

FACTORY_CASES: list[tuple[str, Builder, type[BaseEvent], str | None, str]] = [
    (
        "notification",
        lambda: create_notification_event(
            source_service="user-management-service",
            recipient_email="user@example.com",
            subject="Welcome to HRMS!",
            template_name="welcome_email",
            template_data={"name": "John Doe"},
            event_type=EventType.USER_CREATED,
            recipient_name="John Doe",
            user_id=123,
            correlation_id="corr-1",
            tenant_id="tenant-1",
        ),
        NotificationEvent,
        "123",
        topics.NOTIFICATION_TOPIC,
    ),
    (
        "audit",
        lambda: create_audit_event(
            source_service="user-management-service",
            user_id=123,
            action="CREATE",
            resource_type="user",
            resource_id=456,
            description="Created new user",
            ip_address="192.168.1.1",
            user_agent="Mozilla/5.0",
            changes={"email": "new@example.com"},
            causation_id="cause-1",
        ),
        AuditEvent,
        "456",
        topics.AUDIT_TOPIC,
    ),
    (
        "user",
        lambda: create_user_event(
            source_service="auth-service",
            event_type=EventType.USER_SUSPENDED,
            user_id="u-42",
            email="u42@example.com",
            role="employee",
            status="suspended",
        ),
        UserEvent,
        "u-42",
        topics.USER_TOPIC,
    ),
    (
        "employee",
        lambda: create_employee_event(
            source_service="employee-management-service",
            event_type=EventType.EMPLOYEE_CREATED,
            employee_id=7,
            name="Jane Roe",
            age=34,
        ),
        EmployeeEvent,
        "7",
        topics.EMPLOYEE_TOPIC,
    ),
    (
        "leave",
        lambda: create_leave_event(
            source_service="leave-management-service",
            event_type=EventType.LEAVE_APPROVED,
            leave_id=99,
            employee_id=7,
            leave_type="annual",
            start_date=date(2025, 12, 22),
            end_date=date(2025, 12, 31),
            status="approved",
            reason="Holidays",
            approver_id=3,
        ),
        LeaveEvent,
        "99",
        topics.LEAVE_TOPIC,
    ),
    (
        "attendance",
        lambda: create_attendance_event(
            source_service="attendance-management-service",
            event_type=EventType.ATTENDANCE_UPDATED,
            attendance_id=501,
            employee_id=7,
            attendance_date=date(2025, 11, 26),
            check_in=datetime(2025, 11, 26, 9, 0, tzinfo=UTC),
            check_out=datetime(2025, 11, 26, 17, 30, tzinfo=UTC),
            hours_worked=8.5,
        ),
        AttendanceEvent,
        "7",
        topics.ATTENDANCE_TOPIC,
    ),
    (
        "compliance",
        lambda: create_compliance_event(
            source_service="compliance-service",
            event_type=EventType.COMPLIANCE_VIOLATION,
            employee_id=7,
            rule="max-working-hours",
            severity="high",
            details={"hours": 61},
        ),
        ComplianceEvent,
        "7",
        topics.COMPLIANCE_TOPIC,
    ),
    (
        "low_stock",
        lambda: create_low_stock_event(
            source_service="inventory-service",
            product_id="PRD-123",
            product_sku="LAP-001",
            product_name="Laptop Computer",
            current_stock=8,
            reorder_level=10,
            reorder_quantity=50,
            unit_price=1200.00,
            category="electronics",
            location="Warehouse A",
            tenant_id="tenant-1",
        ),
        LowStockEvent,
        "PRD-123",
        topics.INVENTORY_TOPIC,
    ),
]


FACTORY_CASES += [
    (
        "payroll",
        lambda: create_payroll_event(
            source_service="payroll-service",
            event_type=EventType.SALARY_CALCULATED,
            employee_id=7,
            period="2025-11",
            gross_amount=5000.0,
            net_amount=3600.0,
            currency="EUR",
        ),
        PayrollEvent,
        "7",
        topics.PAYROLL_TOPIC,
    ),
    (
        "crm",
        lambda: create_crm_event(
            source_service="crm-service",
            event_type=EventType.ORDER_CREATED,
            customer_id="CUS-1",
            order_id="ORD-9",
            total_amount=250.0,
            status="confirmed",
        ),
        CrmEvent,
        "CUS-1",
        topics.CRM_TOPIC,
    ),
    (
        "document",
        lambda: create_document_event(
            source_service="document-service",
            event_type=EventType.DOCUMENT_REJECTED,
            document_id=12,
            employee_id=7,
            title="Contract",
            status="rejected",
            reason="unsigned",
        ),
        DocumentEvent,
        "12",
        topics.DOCUMENT_TOPIC,
    ),
    (
        "system",
        lambda: create_system_event(
            source_service="leave-management-service",
            service="leaves",
            uptime_s=12.5,
            details={"outbox_backlog": 0},
        ),
        SystemEvent,
        "leaves",
        topics.SYSTEM_TOPIC,
    ),
]


@pytest.mark.parametrize(
    ("build", "model", "key", "topic"),
    [pytest.param(*case[1:], id=case[0]) for case in FACTORY_CASES],
)
def test_factory_event_round_trips_into_its_model(
    registry: EventRegistry,
    build: Builder,
    model: type[BaseEvent],
    key: str | None,
    topic: str,
) -> None:
    event = build()
    assert type(event) is model
    assert event.default_key() == key

    value, headers = encode_event(event)
    assert json.loads(value)["event_type"] == event.event_type
    assert (h.EVENT_TYPE, event.event_type.encode()) in headers
    assert (h.PRIORITY, event.priority.value.encode()) in headers

    decoded = decode_event(value, registry, topic)
    assert type(decoded) is model
    assert decoded == event
    assert decoded.default_key() == key


MINIMAL_ARGS: list[tuple[Callable[..., BaseEvent], dict[str, object]]] = [
    (
        create_notification_event,
        {"recipient_email": "a@example.com", "subject": "s", "template_name": "t"},
    ),
    (create_audit_event, {"action": "X", "resource_type": "y"}),
    (create_user_event, {"user_id": 1}),
    (create_employee_event, {"employee_id": 1}),
    (create_leave_event, {"leave_id": 1, "employee_id": 1}),
    (create_attendance_event, {"employee_id": 1}),
    (create_compliance_event, {"event_type": EventType.COMPLIANCE_ALERT}),
    (create_payroll_event, {}),
    (create_crm_event, {"customer_id": 1}),
    (create_document_event, {"document_id": 1}),
    (create_system_event, {"service": "svc"}),
    (
        create_low_stock_event,
        {
            "product_id": 1,
            "product_sku": "s",
            "product_name": "n",
            "current_stock": 1,
            "reorder_level": 1,
        },
    ),
]


@pytest.mark.parametrize(
    ("factory", "kwargs"), MINIMAL_ARGS, ids=[f.__name__ for f, _ in MINIMAL_ARGS]
)
def test_every_factory_carries_correlation_causation_and_tenant(
    factory: Callable[..., BaseEvent], kwargs: dict[str, object]
) -> None:
    event = factory(
        source_service="svc", correlation_id="c", causation_id="d", tenant_id="t", **kwargs
    )
    assert (event.correlation_id, event.causation_id, event.tenant_id) == ("c", "d", "t")
    assert event.source_service == "svc"


def test_notification_on_its_topic_whatever_the_type(registry: EventRegistry) -> None:
    event = create_notification_event(
        "svc", "a@example.com", "Hi", "tpl", event_type=EventType.LEAVE_APPROVED, user_id=5
    )
    value, _ = encode_event(event)
    assert type(decode_event(value, registry, topics.NOTIFICATION_TOPIC)) is NotificationEvent
    dlq = dead_letter_topic(topics.NOTIFICATION_TOPIC)
    assert type(decode_event(value, registry, dlq)) is NotificationEvent


def test_notification_priority_mirrors_into_the_envelope() -> None:
    urgent = create_notification_event("svc", "a@example.com", "Hi", "tpl", priority="high")
    assert urgent.priority is Priority.HIGH
    assert urgent.data.priority == "high"
    odd = create_notification_event("svc", "a@example.com", "Hi", "tpl", priority="whenever")
    assert odd.priority is Priority.NORMAL


def test_notification_without_user_has_no_key() -> None:
    event = create_notification_event("svc", "a@example.com", "Hi", "tpl")
    assert event.default_key() is None


def test_notification_rejects_an_address_without_at() -> None:
    with pytest.raises(ValidationError):
        create_notification_event("svc", "not-an-address", "Hi", "tpl")


def test_audit_event_types_and_key_fallback(registry: EventRegistry) -> None:
    login = create_audit_event(
        "auth-service",
        action="LOGIN",
        resource_type="session",
        user_id=123,
        event_type=EventType.AUDIT_USER_ACTION,
    )
    assert login.default_key() == "123"
    for member in EventType:
        if member.domain == "audit":
            event = create_audit_event("svc", "UPDATE", "leave", event_type=member)
            value, _ = encode_event(event)
            assert type(decode_event(value, registry)) is AuditEvent


DOMAIN_FACTORIES = [
    (f, k) for f, k in MINIMAL_ARGS if f not in (create_notification_event, create_low_stock_event)
]


@pytest.mark.parametrize(
    ("factory", "kwargs"), DOMAIN_FACTORIES, ids=[f.__name__ for f, _ in DOMAIN_FACTORIES]
)
def test_factories_refuse_another_domains_type(
    factory: Callable[..., BaseEvent], kwargs: dict[str, object]
) -> None:
    kwargs = {**kwargs, "event_type": EventType.INVENTORY_LOW_STOCK}
    with pytest.raises(ValueError, match=r"event type"):
        factory("svc", **kwargs)


def test_factories_accept_wire_values_and_member_names() -> None:
    assert create_user_event("svc", 1, event_type="user.deleted").event_type == "user.deleted"
    by_name = create_employee_event("svc", 1, event_type="EMPLOYEE_TERMINATED")
    assert by_name.event_type == EventType.EMPLOYEE_TERMINATED


def test_extra_keyword_arguments_become_payload_fields() -> None:
    event = create_employee_event("svc", 1, manager_id=2, cost_centre="CC-7")
    assert event.data.manager_id == 2  # a declared field
    assert event.data.model_extra == {"cost_centre": "CC-7"}


def test_leave_dates_must_be_in_order() -> None:
    with pytest.raises(ValidationError, match="before start_date"):
        create_leave_event("svc", 1, 2, start_date=date(2025, 12, 31), end_date=date(2025, 12, 1))


def test_attendance_times_must_be_in_order() -> None:
    with pytest.raises(ValidationError, match="before check_in"):
        create_attendance_event(
            "svc",
            1,
            check_in=datetime(2025, 1, 1, 17, tzinfo=UTC),
            check_out=datetime(2025, 1, 1, 9, tzinfo=UTC),
        )


def test_ids_may_be_int_or_str() -> None:
    assert create_user_event("svc", 123).data.user_id == 123
    assert create_user_event("svc", "123").data.user_id == "123"
    assert create_user_event("svc", 123).default_key() == "123"


# --------------------------------------------------------------------------- low stock


@pytest.mark.parametrize(
    ("stock", "reorder", "days", "expected"),
    [
        (0, 10, None, Priority.CRITICAL),
        (0, 0, None, Priority.CRITICAL),
        (-2, 10, None, Priority.CRITICAL),
        (0, 10, 50.0, Priority.CRITICAL),
        (1, 10, None, Priority.HIGH),
        (4, 10, None, Priority.HIGH),  # under 50% of the reorder level
        (5, 10, None, Priority.MEDIUM),  # exactly 50% is not under it
        (5, 11, None, Priority.HIGH),  # 5 < 5.5
        (10, 10, None, Priority.MEDIUM),  # at the reorder level
        (11, 10, None, Priority.LOW),
        (100, 10, 2.99, Priority.HIGH),  # under 3 days
        (100, 10, 3.0, Priority.LOW),  # exactly 3 days is not under
        (8, 10, 3.5, Priority.MEDIUM),  # seed 004's example payload
        (1, 0, None, Priority.LOW),
    ],
)
def test_low_stock_priority_rules(
    stock: int, reorder: int, days: float | None, expected: Priority
) -> None:
    assert low_stock_priority(stock, reorder, days) is expected


def _low_stock(**kwargs: object) -> LowStockEvent:
    base: dict[str, object] = {
        "source_service": "inventory-service",
        "product_id": "PRD-1",
        "product_sku": "SKU-1",
        "product_name": "Widget",
    }
    return create_low_stock_event(**{**base, **kwargs})  # type: ignore[arg-type]


def test_low_stock_factory_sets_priority_and_days() -> None:
    assert _low_stock(current_stock=0, reorder_level=10).priority is Priority.CRITICAL
    assert _low_stock(current_stock=4, reorder_level=10).priority is Priority.HIGH
    assert _low_stock(current_stock=10, reorder_level=10).priority is Priority.MEDIUM
    assert _low_stock(current_stock=30, reorder_level=10).priority is Priority.LOW

    fast = _low_stock(current_stock=8, reorder_level=5, average_daily_usage=3.0)
    assert fast.data.days_of_stock_remaining == pytest.approx(8 / 3)
    assert fast.priority is Priority.HIGH

    three_days = _low_stock(current_stock=9, reorder_level=5, average_daily_usage=3.0)
    assert three_days.data.days_of_stock_remaining == 3.0
    assert three_days.priority is Priority.LOW

    idle = _low_stock(current_stock=9, reorder_level=5, average_daily_usage=0.0)
    assert idle.data.days_of_stock_remaining is None

    given = _low_stock(
        current_stock=8, reorder_level=10, average_daily_usage=1.0, days_of_stock_remaining=3.5
    )
    assert given.data.days_of_stock_remaining == 3.5
    assert given.priority is Priority.MEDIUM


def test_low_stock_rejects_negative_levels() -> None:
    with pytest.raises(ValidationError):
        _low_stock(current_stock=1, reorder_level=-1)
    with pytest.raises(ValidationError):
        _low_stock(current_stock=1, reorder_level=1, average_daily_usage=-1.0)


def test_seed_004_metadata_payload_shape_decodes(registry: EventRegistry) -> None:
    record = {
        "metadata": {
            "event_id": "7f1e3c9a-0a52-4b8e-9a43-5d1f0b7c2e11",
            "event_type": "inventory.low_stock",
            "event_version": "1.0",
            "timestamp": "2024-01-15T10:00:00Z",
            "source_service": "inventory-service",
            "tenant_id": "tenant-1",
            "correlation_id": "corr-789",
            "priority": "high",
        },
        "payload": {
            "product_id": "PRD-123",
            "product_sku": "LAP-001",
            "product_name": "Laptop Computer",
            "current_stock": 8,
            "reorder_level": 10,
            "reorder_quantity": 50,
            "unit_price": 1200.00,
            "category": "electronics",
            "location": "Warehouse A",
            "days_of_stock_remaining": 3.5,
        },
    }
    event = decode_event(json.dumps(record).encode(), registry, topics.INVENTORY_TOPIC)
    assert isinstance(event, LowStockEvent)
    assert event.priority is Priority.HIGH
    assert event.default_key() == "PRD-123"
    assert event.data.days_of_stock_remaining == 3.5


# --------------------------------------------------------------------------- aliases


@pytest.mark.parametrize("member", list(EventType), ids=lambda m: m.name)
def test_member_names_are_aliases(registry: EventRegistry, member: EventType) -> None:
    assert registry.canonical_type(member.name) == member.value


def test_kafkajs_user_created_decodes(registry: EventRegistry) -> None:
    record = {
        "type": "USER_CREATED",
        "data": {"userId": "64b7f0", "email": "a@example.com", "role": "admin", "name": "A"},
        "metadata": {
            "eventId": "0b6f7f3e-2a0e-4a8e-bb1e-0e0d4a8f9c21",
            "timestamp": "2025-11-25T18:00:00Z",
            "tenantId": "t1",
            "source": "auth-service",
        },
    }
    event = decode_event(json.dumps(record).encode(), registry)
    assert isinstance(event, UserEvent)
    assert event.event_type == EventType.USER_CREATED
    assert event.data.user_id == "64b7f0"
    assert event.default_key() == "64b7f0"


# --------------------------------------------------------------------------- registration


def test_registration_is_idempotent() -> None:
    fresh = EventRegistry()
    assert register_catalog(fresh) is fresh
    before = fresh.event_types()
    register_catalog(fresh)
    assert fresh.event_types() == before == sorted(m.value for m in EventType)


def test_import_registers_into_the_default_registry() -> None:
    for member in EventType:
        assert default_registry.knows(member.value)
        assert default_registry.model_for(member.value) is catalog.EVENT_MODELS[member]
    assert default_registry.model_for("user.created", topic="notification-queue") is (
        NotificationEvent
    )
    assert default_registry.model_for("audit.user.action", topic="audit-queue") is AuditEvent


def test_models_by_domain() -> None:
    expected = {
        "user": UserEvent,
        "employee": EmployeeEvent,
        "leave": LeaveEvent,
        "attendance": AttendanceEvent,
        "compliance": ComplianceEvent,
        "audit": AuditEvent,
        "inventory": LowStockEvent,
        "payroll": PayrollEvent,
        "salary": PayrollEvent,
        "customer": CrmEvent,
        "order": CrmEvent,
        "document": DocumentEvent,
        "service": SystemEvent,
    }
    for member, model in catalog.EVENT_MODELS.items():
        assert model is expected[member.domain]


# --------------------------------------------------------------------------- personal data


def test_personal_fields_are_marked() -> None:
    assert "recipient_email" in NotificationData.personal_fields()
    assert {"recipient_email", "recipient_name"} <= set(NotificationData.personal_fields())
    assert {"ip_address", "user_agent", "changes"} <= set(AuditData.personal_fields())
    assert {"email", "name"} <= set(UserData.personal_fields())
    assert {"name", "age", "email"} <= set(EmployeeData.personal_fields())
    assert "reason" in LeaveData.personal_fields()
    assert NotificationData.personal_fields()["recipient_email"].subject == "user_id"
    assert EmployeeData.personal_fields()["age"].subject == "employee_id"


@pytest.mark.parametrize(
    "payload",
    [
        NotificationData,
        AuditData,
        UserData,
        EmployeeData,
        LeaveData,
        AttendanceData,
        LowStockData,
        PayrollData,
        CrmData,
        DocumentData,
        ServiceHealthData,
    ],
    ids=lambda p: p.__name__,
)
def test_personal_subjects_and_aggregate_keys_name_real_fields(
    payload: type[EventPayload],
) -> None:
    fields = payload.model_fields
    for marker in payload.personal_fields().values():
        assert marker.subject in fields
    assert payload.aggregate_key in fields


# --------------------------------------------------------------------------- topics

SEVEN_DAYS_MS = str(7 * 24 * 3600 * 1000)
THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)


def test_topic_names() -> None:
    assert topics.USER_TOPIC == "user-queue"
    assert topics.EMPLOYEE_TOPIC == "employee-queue"
    assert topics.LEAVE_TOPIC == "leave-queue"
    assert topics.ATTENDANCE_TOPIC == "attendance-queue"
    assert topics.COMPLIANCE_TOPIC == "compliance-queue"
    assert topics.NOTIFICATION_TOPIC == "notification-queue"
    assert topics.AUDIT_TOPIC == "audit-queue"
    assert topics.INVENTORY_TOPIC == "inventory-events"
    assert topics.SALES_TOPIC == "sales-events"
    assert topics.PAYROLL_TOPIC == "payroll-queue"
    assert topics.CRM_TOPIC == "crm-events"
    assert topics.DOCUMENT_TOPIC == "document-queue"
    assert topics.SYSTEM_TOPIC == "system-events"
    assert len(topics.DOMAIN_TOPICS) == len(set(topics.DOMAIN_TOPICS)) == 13


@pytest.mark.parametrize(
    ("name", "partitions", "replicas", "retention_ms"),
    [
        ("notification-queue", 3, 2, SEVEN_DAYS_MS),
        ("audit-queue", 5, 3, THIRTY_DAYS_MS),
        ("notification-dlq", 1, 2, THIRTY_DAYS_MS),
        ("audit-dlq", 1, 2, THIRTY_DAYS_MS),
        ("user-queue", 3, 3, SEVEN_DAYS_MS),
        ("employee-queue", 3, 3, SEVEN_DAYS_MS),
        ("leave-queue", 3, 3, SEVEN_DAYS_MS),
        ("attendance-queue", 3, 3, SEVEN_DAYS_MS),
        ("compliance-queue", 3, 3, SEVEN_DAYS_MS),
        ("inventory-events", 3, 3, SEVEN_DAYS_MS),
        ("sales-events", 3, 3, SEVEN_DAYS_MS),
        ("payroll-queue", 3, 3, SEVEN_DAYS_MS),
        ("crm-events", 3, 3, SEVEN_DAYS_MS),
        ("document-queue", 3, 3, SEVEN_DAYS_MS),
        ("system-events", 3, 3, SEVEN_DAYS_MS),
        ("system-dlq", 1, 2, THIRTY_DAYS_MS),
    ],
)
def test_topic_specs_match_seed_003(
    name: str, partitions: int, replicas: int, retention_ms: str
) -> None:
    spec = topics.TOPICS[name]
    assert spec.name == name
    assert spec.partitions == partitions
    assert spec.replication_factor == replicas
    assert spec.configs["retention.ms"] == retention_ms


def test_every_domain_topic_has_a_dlq() -> None:
    dlqs = {f"{topic.rsplit('-', 1)[0]}-dlq" for topic in topics.DOMAIN_TOPICS}
    assert dlqs == {
        "user-dlq",
        "employee-dlq",
        "leave-dlq",
        "attendance-dlq",
        "compliance-dlq",
        "notification-dlq",
        "audit-dlq",
        "inventory-dlq",
        "sales-dlq",
        "payroll-dlq",
        "crm-dlq",
        "document-dlq",
        "system-dlq",
    }
    for topic in topics.DOMAIN_TOPICS:
        dlq = dead_letter_topic(topic)
        assert topics.DEAD_LETTER_TOPICS[topic] == dlq
        spec = topics.TOPICS[dlq]
        assert (spec.partitions, spec.replication_factor) == (1, 2)
        assert spec.configs["retention.ms"] == THIRTY_DAYS_MS
    assert set(topics.TOPICS) == set(topics.DOMAIN_TOPICS) | dlqs


def test_topic_specs_default_and_capped() -> None:
    specs = topics.topic_specs()
    assert {s.name: s for s in specs} == topics.TOPICS
    single = topics.topic_specs(replication_factor=1)
    assert {s.replication_factor for s in single} == {1}
    two = {s.name: s.replication_factor for s in topics.topic_specs(replication_factor=2)}
    assert two["audit-queue"] == 2
    assert two["notification-dlq"] == 2
    assert {s.name: s.partitions for s in single} == {
        n: s.partitions for n, s in topics.TOPICS.items()
    }


def test_topic_specs_are_fresh_copies() -> None:
    spec = topics.topic_specs()[0]
    spec.configs["retention.ms"] = "1"
    assert topics.TOPICS[spec.name].configs["retention.ms"] != "1"


def test_topic_specs_refuse_a_cap_below_one() -> None:
    with pytest.raises(ConfigurationError):
        topics.topic_specs(replication_factor=0)


def test_topic_for_routes_by_domain() -> None:
    assert topics.topic_for(EventType.USER_PASSWORD_CHANGED) == "user-queue"
    assert topics.topic_for(EventType.EMPLOYEE_STATUS_CHANGED) == "employee-queue"
    assert topics.topic_for(EventType.LEAVE_CANCELLED) == "leave-queue"
    assert topics.topic_for(EventType.ATTENDANCE_MARKED) == "attendance-queue"
    assert topics.topic_for(EventType.COMPLIANCE_ALERT) == "compliance-queue"
    assert topics.topic_for(EventType.AUDIT_LEAVE_ACTION) == "audit-queue"
    assert topics.topic_for(EventType.INVENTORY_LOW_STOCK) == "inventory-events"
    assert topics.topic_for(EventType.SALARY_CALCULATED) == "payroll-queue"
    assert topics.topic_for(EventType.ORDER_CREATED) == "crm-events"
    assert topics.topic_for(EventType.DOCUMENT_REJECTED) == "document-queue"
    assert topics.topic_for(EventType.SERVICE_HEALTH) == "system-events"
    for bad in ("benefits.enrolled", "USER_CREATED", ""):
        with pytest.raises(ValueError, match="no topic"):
            topics.topic_for(bad)


# --------------------------------------------------------------------------- seed 002's catalog

SEED_002_TOPICS = {
    "user": ["user.created", "user.updated", "user.deleted", "user.login", "user.logout"],
    "employee": ["employee.created", "employee.updated", "employee.deleted", "employee.transfer"],
    "attendance": ["attendance.checkin", "attendance.checkout", "attendance.approved"],
    "payroll": ["payroll.processed", "salary.calculated", "payroll.approved"],
    "crm": ["customer.created", "customer.updated", "order.created", "order.updated"],
    "sales": ["sale.created", "sale.completed", "sale.cancelled"],
    "inventory": ["inventory.stock.updated", "product.created", "product.updated"],
    "notification": ["notification.sent", "email.sent", "sms.sent"],
    "document": ["document.uploaded", "document.approved", "document.rejected"],
    "audit": ["audit.log", "security.event"],
    "system": ["service.health", "service.error"],
}


def test_the_catalog_declares_every_topic_seed_002_names() -> None:
    catalog_ = topics.catalog()
    event_topics = {s.name for s in catalog_.specs("event-type")}
    for domain, names in SEED_002_TOPICS.items():
        assert set(names) <= set(catalog_.domains[domain].events), domain
        assert set(names) <= event_topics
    assert len(SEED_002_TOPICS) == 11
    assert set(catalog_.domains) == set(SEED_002_TOPICS) | {"leave", "compliance"}


def _emitted_types() -> set[str]:
    """Every event type the services emit: the shared catalog's and the services' own."""
    from hrms.services.inventory import events as inventory
    from hrms.services.sales import events as sales

    local = {
        value
        for module in (inventory, sales)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and "." in value and name != "SOURCE"
    }
    return {m.value for m in EventType} | local


def test_every_emitted_event_type_has_its_own_topic_in_its_domain() -> None:
    catalog_ = topics.catalog()
    for event_type in sorted(_emitted_types()):
        domain = catalog_.domain_of_type(event_type)
        assert domain is not None, f"{event_type} is not in hrms/catalog.toml"
        # the domain layout's topic of the type is the one topic_for gives
        assert domain.topic == topics.topic_for(event_type), event_type


def test_topics_come_from_the_catalog_file() -> None:
    catalog_ = topics.catalog()
    assert {s.name: s for s in catalog_.specs("domain")} == topics.TOPICS
    assert [d.topic for d in catalog_.domains.values()] == topics.DOMAIN_TOPICS
    for domain in catalog_.domains.values():
        assert domain.dead_letter is not None
        assert domain.dead_letter.name == topics.DEAD_LETTER_TOPICS[domain.topic]
    # 13 domain topics, 13 dead-letter topics; the event-type layout adds one per type
    assert len(catalog_.specs("domain")) == 26
    events = sum(len(d.events) for d in catalog_.domains.values())
    assert len(catalog_.specs("event-type")) == 26 + events
