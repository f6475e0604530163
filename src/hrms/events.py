"""The HRMS/ERP event catalog: event types, typed payloads, envelopes and factories.

This is the seeds' ``shared/kafka/schemas.py``. Every event travels in eventbus's
:class:`~eventbus.BaseEvent` envelope (seed 000's flat JSON); this module narrows the
envelope's ``data`` to one payload model per domain and registers the models with
eventbus's :data:`~eventbus.default_registry` when imported, so consumers decode records
into these classes::

    from hrms.events import EventType, create_notification_event

    event = create_notification_event(
        source_service="user-management-service",
        recipient_email="user@example.com",
        subject="Welcome to HRMS!",
        template_name="welcome_email",
        template_data={"name": "John Doe"},
        event_type=EventType.USER_CREATED,
    )

Identifiers are ``int | str``: the HRMS services use integer ids (``user_id: 123``), the
inventory service string ids (``"PRD-123"``). Fields holding personal data are marked
with :class:`~eventbus.PersonalData`, naming the field that identifies the data subject.
"""

from __future__ import annotations

import weakref
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, TypeAlias, TypeVar

from pydantic import AliasChoices, Field, model_validator

from eventbus import (
    BaseEvent,
    EventPayload,
    EventRegistry,
    PersonalData,
    Priority,
    dead_letter_topic,
    default_registry,
)
from hrms.topics import AUDIT_TOPIC, NOTIFICATION_TOPIC

__all__ = [
    "EVENT_MODELS",
    "HIGH_PRIORITY_DAYS_REMAINING",
    "AttendanceData",
    "AttendanceEvent",
    "AuditData",
    "AuditEvent",
    "ComplianceData",
    "ComplianceEvent",
    "CrmData",
    "CrmEvent",
    "DocumentData",
    "DocumentEvent",
    "EmployeeData",
    "EmployeeEvent",
    "EntityId",
    "EventType",
    "LeaveData",
    "LeaveEvent",
    "LowStockData",
    "LowStockEvent",
    "NotificationData",
    "NotificationEvent",
    "PayrollData",
    "PayrollEvent",
    "ServiceHealthData",
    "SystemEvent",
    "UserData",
    "UserEvent",
    "create_attendance_event",
    "create_audit_event",
    "create_compliance_event",
    "create_crm_event",
    "create_document_event",
    "create_employee_event",
    "create_leave_event",
    "create_low_stock_event",
    "create_notification_event",
    "create_payroll_event",
    "create_system_event",
    "create_user_event",
    "days_of_stock_remaining",
    "low_stock_priority",
    "register_catalog",
]


class EventType(StrEnum):
    """Every event type of the system, with its dotted wire value.

    Seed 000 lists the HRMS types; seed 004 adds ``inventory.low_stock``; seed 002 adds
    ``user.login``/``user.logout`` and the payroll, CRM, document and system (service
    heartbeat) types. The member name
    (``USER_CREATED``) is registered as an alias of the value, so the kafkajs services of
    seed 002 (``createEvent('USER_CREATED', ...)``) are understood.
    """

    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_DELETED = "user.deleted"
    USER_SUSPENDED = "user.suspended"
    USER_ACTIVATED = "user.activated"
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105 - an event name
    USER_LOGIN = "user.login"
    USER_LOGOUT = "user.logout"

    EMPLOYEE_CREATED = "employee.created"
    EMPLOYEE_UPDATED = "employee.updated"
    EMPLOYEE_TERMINATED = "employee.terminated"
    EMPLOYEE_STATUS_CHANGED = "employee.status_changed"

    LEAVE_REQUESTED = "leave.requested"
    LEAVE_APPROVED = "leave.approved"
    LEAVE_REJECTED = "leave.rejected"
    LEAVE_CANCELLED = "leave.cancelled"
    LEAVE_UPDATED = "leave.updated"

    ATTENDANCE_MARKED = "attendance.marked"
    ATTENDANCE_UPDATED = "attendance.updated"
    ATTENDANCE_DELETED = "attendance.deleted"

    COMPLIANCE_VIOLATION = "compliance.violation"
    COMPLIANCE_ALERT = "compliance.alert"
    COMPLIANCE_CHECK_COMPLETED = "compliance.check_completed"

    AUDIT_USER_ACTION = "audit.user.action"
    AUDIT_EMPLOYEE_ACTION = "audit.employee.action"
    AUDIT_LEAVE_ACTION = "audit.leave.action"
    AUDIT_ATTENDANCE_ACTION = "audit.attendance.action"
    AUDIT_COMPLIANCE_ACTION = "audit.compliance.action"

    INVENTORY_LOW_STOCK = "inventory.low_stock"

    PAYROLL_PROCESSED = "payroll.processed"
    SALARY_CALCULATED = "salary.calculated"
    PAYROLL_APPROVED = "payroll.approved"

    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_UPDATED = "customer.updated"
    ORDER_CREATED = "order.created"
    ORDER_UPDATED = "order.updated"

    DOCUMENT_UPLOADED = "document.uploaded"
    DOCUMENT_APPROVED = "document.approved"
    DOCUMENT_REJECTED = "document.rejected"

    SERVICE_HEALTH = "service.health"
    SERVICE_ERROR = "service.error"

    @property
    def domain(self) -> str:
        """The part of the wire value before the first dot, e.g. ``"audit"``."""
        return self.value.partition(".")[0]


EntityId: TypeAlias = int | str
"""An entity identifier: an integer (HRMS services) or a string (``"PRD-123"``)."""

_USER_PII: Final = PersonalData(subject="user_id")
_EMPLOYEE_PII: Final = PersonalData(subject="employee_id")


# --------------------------------------------------------------------------- payloads


class NotificationData(EventPayload):
    """A notification for the notification service (seed 000's ``NotificationEvent.data``).

    Keyed by ``user_id`` when given, so one person's notifications stay in order.

    Attributes:
        recipient_email: where to send it.
        subject: the message subject.
        template_name: the template the notification service renders.
        recipient_name: the recipient's display name.
        template_data: values for the template (may hold personal data).
        priority: seed 000's delivery priority, ``"normal"`` by default.
        user_id: the user the notification is about or addressed to (the data subject).
    """

    aggregate_key: ClassVar[str | None] = "user_id"

    recipient_email: Annotated[str, _USER_PII, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
    subject: str
    template_name: Annotated[str, Field(min_length=1)]
    recipient_name: Annotated[str | None, _USER_PII] = None
    template_data: Annotated[dict[str, Any], _USER_PII, Field(default_factory=dict)]
    priority: str = Priority.NORMAL.value
    user_id: EntityId | None = None


class AuditData(EventPayload):
    """One audited action (seed 000's ``AuditEvent.data``).

    Keyed by the resource, so the history of one resource stays in order; actions on no
    resource (a login) are keyed by the acting user instead.

    Attributes:
        action: what was done, e.g. ``"CREATE"``.
        resource_type: the kind of resource acted on, e.g. ``"user"``.
        user_id: the acting user (the data subject of the personal fields).
        resource_id: the resource acted on.
        description: a human-readable summary.
        ip_address: the actor's IP address.
        user_agent: the actor's user agent.
        changes: the changed fields and their new values.
    """

    aggregate_key: ClassVar[str | None] = "resource_id"

    action: Annotated[str, Field(min_length=1)]
    resource_type: Annotated[str, Field(min_length=1)]
    user_id: EntityId | None = None
    resource_id: EntityId | None = None
    description: str | None = None
    ip_address: Annotated[str | None, _USER_PII] = None
    user_agent: Annotated[str | None, _USER_PII] = None
    changes: Annotated[dict[str, Any], _USER_PII, Field(default_factory=dict)]

    def key(self) -> str | None:
        """Return the resource id, or the acting user's id when there is no resource."""
        value = self.resource_id if self.resource_id is not None else self.user_id
        return None if value is None else str(value)


class UserData(EventPayload):
    """A user account change (``user.*``).

    Accepts seed 002's camelCase ``userId`` on input.

    Attributes:
        user_id: the user.
        email: the user's e-mail address.
        name: the user's display name.
        role: the user's role.
        status: the account status after the change, e.g. ``"active"``.
    """

    aggregate_key: ClassVar[str | None] = "user_id"

    user_id: Annotated[EntityId, Field(validation_alias=AliasChoices("user_id", "userId"))]
    email: Annotated[str | None, _USER_PII] = None
    name: Annotated[str | None, _USER_PII] = None
    role: str | None = None
    status: str | None = None


class EmployeeData(EventPayload):
    """An employee record change (``employee.*``, seed 001's ``publish_employee_event``).

    Accepts seed 002's camelCase ``employeeId`` and ``employeeCode`` on input.

    Attributes:
        employee_id: the employee.
        name: the employee's name.
        age: the employee's age.
        email: the employee's e-mail address.
        employee_code: the HR employee code.
        department: the employee's department.
        position: the employee's job title.
        status: the employment status after the change.
        previous_status: the status before the change (``employee.status_changed``).
        user_id: the employee's user account, if any.
        manager_id: the employee's manager (an employee id).
        manager_email: where the manager's notifications go.
    """

    aggregate_key: ClassVar[str | None] = "employee_id"

    employee_id: Annotated[
        EntityId, Field(validation_alias=AliasChoices("employee_id", "employeeId"))
    ]
    name: Annotated[str | None, _EMPLOYEE_PII] = None
    age: Annotated[int | None, _EMPLOYEE_PII, Field(ge=0)] = None
    email: Annotated[str | None, _EMPLOYEE_PII] = None
    employee_code: Annotated[
        str | None, Field(validation_alias=AliasChoices("employee_code", "employeeCode"))
    ] = None
    department: str | None = None
    position: str | None = None
    status: str | None = None
    previous_status: str | None = None
    user_id: EntityId | None = None
    manager_id: EntityId | None = None
    manager_email: Annotated[str | None, _EMPLOYEE_PII] = None


class LeaveData(EventPayload):
    """A leave request change (``leave.*``, seed 001's ``publish_leave_event``).

    Attributes:
        leave_id: the leave request.
        employee_id: the employee on leave.
        leave_type: e.g. ``"annual"`` or ``"sick"``.
        start_date: the first day of leave.
        end_date: the last day of leave (not before ``start_date``).
        status: the request status after the change, e.g. ``"approved"``.
        reason: the employee's reason (personal data).
        approver_id: who approved or rejected it.
    """

    aggregate_key: ClassVar[str | None] = "leave_id"

    leave_id: EntityId
    employee_id: EntityId
    leave_type: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    status: str | None = None
    reason: Annotated[str | None, _EMPLOYEE_PII] = None
    approver_id: EntityId | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> LeaveData:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class AttendanceData(EventPayload):
    """An attendance record change (``attendance.*``).

    Keyed by the employee, not the record, so one employee's check-in and check-out
    stay in order on one partition.

    Attributes:
        employee_id: the employee.
        attendance_id: the attendance record, once it exists.
        attendance_date: the working day.
        check_in: when the employee checked in.
        check_out: when the employee checked out (not before ``check_in``).
        status: e.g. ``"present"``.
        hours_worked: hours between check-in and check-out.
    """

    aggregate_key: ClassVar[str | None] = "employee_id"

    employee_id: EntityId
    attendance_id: EntityId | None = None
    attendance_date: date | None = None
    check_in: datetime | None = None
    check_out: datetime | None = None
    status: str | None = None
    hours_worked: Annotated[float | None, Field(ge=0)] = None

    @model_validator(mode="after")
    def _times_in_order(self) -> AttendanceData:
        if self.check_in and self.check_out and self.check_out < self.check_in:
            raise ValueError(f"check_out {self.check_out} is before check_in {self.check_in}")
        return self


class ComplianceData(EventPayload):
    """A compliance finding (``compliance.*``).

    Keyed by the employee concerned; company-wide findings have no key.

    Attributes:
        employee_id: the employee concerned, if any.
        compliance_id: the violation, alert or check record.
        rule: the rule or policy checked.
        severity: e.g. ``"low"`` or ``"high"``.
        status: e.g. ``"open"``.
        description: a human-readable summary.
        details: further structured details.
    """

    aggregate_key: ClassVar[str | None] = "employee_id"

    employee_id: EntityId | None = None
    compliance_id: EntityId | None = None
    rule: str | None = None
    severity: str | None = None
    status: str | None = None
    description: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class LowStockData(EventPayload):
    """Seed 004's ``inventory.low_stock`` payload.

    Attributes:
        product_id: the product, e.g. ``"PRD-123"``.
        product_sku: e.g. ``"LAP-001"``.
        product_name: e.g. ``"Laptop Computer"``.
        current_stock: units on hand (negative when oversold).
        reorder_level: the stock level that triggers a reorder.
        reorder_quantity: how many units a reorder buys.
        unit_price: the unit price (a JSON number, as in seed 004).
        category: the product category.
        location: the warehouse.
        average_daily_usage: units used per day, when known.
        days_of_stock_remaining: days until stock runs out at that usage.
    """

    aggregate_key: ClassVar[str | None] = "product_id"

    product_id: EntityId
    product_sku: str
    product_name: str
    current_stock: int
    reorder_level: Annotated[int, Field(ge=0)]
    reorder_quantity: Annotated[int | None, Field(ge=0)] = None
    unit_price: Annotated[float | None, Field(ge=0)] = None
    category: str | None = None
    location: str | None = None
    average_daily_usage: Annotated[float | None, Field(ge=0)] = None
    days_of_stock_remaining: Annotated[float | None, Field(ge=0)] = None


class PayrollData(EventPayload):
    """A payroll run or salary calculation (``payroll.*``, ``salary.calculated``; seed 002).

    Attributes:
        employee_id: the employee paid, for one employee's salary.
        payroll_id: the payroll run.
        period: the pay period, e.g. ``"2025-11"``.
        gross_amount: the gross amount.
        net_amount: the net amount.
        currency: e.g. ``"EUR"``.
        status: e.g. ``"processed"``.
        approver_id: who approved the run.
    """

    aggregate_key: ClassVar[str | None] = "payroll_id"

    employee_id: EntityId | None = None
    payroll_id: EntityId | None = None
    period: str | None = None
    gross_amount: Annotated[float | None, _EMPLOYEE_PII, Field(ge=0)] = None
    net_amount: Annotated[float | None, _EMPLOYEE_PII, Field(ge=0)] = None
    currency: str | None = None
    status: str | None = None
    approver_id: EntityId | None = None

    def key(self) -> str | None:
        """Return the payroll run, or the employee when there is no run."""
        value = self.payroll_id if self.payroll_id is not None else self.employee_id
        return None if value is None else str(value)


class CrmData(EventPayload):
    """A customer or customer order change (``customer.*``, ``order.*``; seed 002's CRM).

    Keyed by the customer, so one customer's changes and orders stay in order.

    Attributes:
        customer_id: the customer.
        order_id: the order, for ``order.*``.
        name: the customer's name.
        email: the customer's e-mail address.
        status: e.g. ``"active"`` or ``"confirmed"``.
        total_amount: the order total.
    """

    aggregate_key: ClassVar[str | None] = "customer_id"

    customer_id: EntityId
    order_id: EntityId | None = None
    name: Annotated[str | None, PersonalData(subject="customer_id")] = None
    email: Annotated[str | None, PersonalData(subject="customer_id")] = None
    status: str | None = None
    total_amount: Annotated[float | None, Field(ge=0)] = None


class DocumentData(EventPayload):
    """An HR document's review (``document.*``; seed 002).

    Attributes:
        document_id: the document.
        employee_id: whose document it is.
        title: the document's title.
        document_type: e.g. ``"contract"``.
        status: e.g. ``"approved"``.
        reviewer_id: who approved or rejected it.
        reason: why it was rejected.
    """

    aggregate_key: ClassVar[str | None] = "document_id"

    document_id: EntityId
    employee_id: EntityId | None = None
    title: str | None = None
    document_type: str | None = None
    status: str | None = None
    reviewer_id: EntityId | None = None
    reason: Annotated[str | None, _EMPLOYEE_PII] = None


class ServiceHealthData(EventPayload):
    """A service's heartbeat or reported error (``service.*``; seed 002's system events).

    Keyed by the service, so one service's heartbeats stay in order.

    Attributes:
        service: the service, e.g. ``"leaves"``.
        status: ``"up"``, ``"degraded"`` or ``"error"``.
        instance: which replica (host and process).
        uptime_s: seconds since the replica started.
        error: what went wrong, for ``service.error``.
        details: further checks, e.g. ``{"outbox_backlog": 0}``.
    """

    aggregate_key: ClassVar[str | None] = "service"

    service: Annotated[str, Field(min_length=1)]
    status: str = "up"
    instance: str | None = None
    uptime_s: Annotated[float | None, Field(ge=0)] = None
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- envelopes


class NotificationEvent(BaseEvent):
    """A notification request; travels on ``notification-queue`` whatever its type."""

    data: NotificationData


class AuditEvent(BaseEvent):
    """An audit record; travels on ``audit-queue`` with an ``audit.*`` type."""

    data: AuditData


class UserEvent(BaseEvent):
    """A ``user.*`` event."""

    data: UserData


class EmployeeEvent(BaseEvent):
    """An ``employee.*`` event."""

    data: EmployeeData


class LeaveEvent(BaseEvent):
    """A ``leave.*`` event."""

    data: LeaveData


class AttendanceEvent(BaseEvent):
    """An ``attendance.*`` event."""

    data: AttendanceData


class ComplianceEvent(BaseEvent):
    """A ``compliance.*`` event."""

    data: ComplianceData


class LowStockEvent(BaseEvent):
    """Seed 004's ``inventory.low_stock`` event; its ``priority`` follows seed 004's rules."""

    data: LowStockData


class PayrollEvent(BaseEvent):
    """A ``payroll.*`` or ``salary.calculated`` event."""

    data: PayrollData


class CrmEvent(BaseEvent):
    """A ``customer.*`` or ``order.*`` event."""

    data: CrmData


class DocumentEvent(BaseEvent):
    """A ``document.*`` event."""

    data: DocumentData


class SystemEvent(BaseEvent):
    """A ``service.*`` event: a heartbeat (``service.health``) or an error."""

    data: ServiceHealthData


_DOMAIN_MODELS: Final[dict[str, type[BaseEvent]]] = {
    "user": UserEvent,
    "employee": EmployeeEvent,
    "leave": LeaveEvent,
    "attendance": AttendanceEvent,
    "compliance": ComplianceEvent,
    "audit": AuditEvent,
    "payroll": PayrollEvent,
    "salary": PayrollEvent,
    "customer": CrmEvent,
    "order": CrmEvent,
    "document": DocumentEvent,
    "service": SystemEvent,
}

EVENT_MODELS: Final = MappingProxyType(
    {
        member: (
            LowStockEvent
            if member is EventType.INVENTORY_LOW_STOCK
            else _DOMAIN_MODELS[member.domain]
        )
        for member in EventType
    }
)
"""Each event type's envelope model (notifications aside, which use any type)."""


# --------------------------------------------------------------------------- registration

_REGISTERED: weakref.WeakSet[EventRegistry] = weakref.WeakSet()


def register_catalog(registry: EventRegistry = default_registry) -> EventRegistry:
    """Register the catalog's models and aliases in ``registry``; idempotent.

    ``NotificationEvent`` is registered for ``notification-queue`` (and its DLQ) whatever
    the event type, ``AuditEvent`` for ``audit-queue`` (and its DLQ) and for every
    ``audit.*`` type, each other type for its domain model, and every member name as an
    alias of its wire value (``USER_CREATED`` -> ``user.created``). Importing this module
    registers the catalog in :data:`eventbus.default_registry`.

    Args:
        registry: the registry to fill; eventbus's default registry unless given.

    Returns:
        ``registry``, for chaining.
    """
    if registry in _REGISTERED:
        return registry
    for topic in (NOTIFICATION_TOPIC, dead_letter_topic(NOTIFICATION_TOPIC)):
        registry.register(NotificationEvent, topic=topic)
    for topic in (AUDIT_TOPIC, dead_letter_topic(AUDIT_TOPIC)):
        registry.register(AuditEvent, topic=topic)
    for member, model in EVENT_MODELS.items():
        registry.register(model, event_type=member.value, aliases=(member.name,))
    _REGISTERED.add(registry)
    return registry


# --------------------------------------------------------------------------- factories

_E = TypeVar("_E", bound=BaseEvent)


def _member(event_type: EventType | str, domain: str, factory: str, *others: str) -> EventType:
    """Resolve ``event_type`` (member, wire value or member name) within ``domain``.

    ``others`` are further type prefixes of the domain (``salary`` for ``payroll``).
    """
    member: EventType | None
    try:
        member = EventType(event_type)
    except ValueError:
        member = EventType.__members__.get(str(event_type))
    if member is None or member.domain not in (domain, *others):
        wanted = " or ".join(f"{d}.*" for d in (domain, *others))
        raise ValueError(f"{factory}() needs a {wanted} event type, got {str(event_type)!r}")
    return member


def _envelope(
    model: type[_E],
    event_type: EventType | str,
    source_service: str,
    data: EventPayload,
    correlation_id: str | None,
    causation_id: str | None,
    tenant_id: str | None,
    priority: Priority = Priority.NORMAL,
) -> _E:
    return model(
        event_type=str(event_type),
        source_service=source_service,
        correlation_id=correlation_id,
        causation_id=causation_id,
        tenant_id=tenant_id,
        priority=priority,
        data=data,
    )


def create_notification_event(
    source_service: str,
    recipient_email: str,
    subject: str,
    template_name: str,
    template_data: dict[str, Any] | None = None,
    event_type: EventType | str = EventType.USER_CREATED,
    recipient_name: str | None = None,
    priority: str = "normal",
    correlation_id: str | None = None,
    tenant_id: str | None = None,
    user_id: EntityId | None = None,
    *,
    causation_id: str | None = None,
    **extra: Any,
) -> NotificationEvent:
    """Build a notification event for ``notification-queue`` (seed 000).

    The envelope ``priority`` mirrors the payload's when it is one of eventbus's
    :class:`~eventbus.Priority` values, and is ``normal`` otherwise.

    Args:
        source_service: the sending service.
        recipient_email: where to send the notification.
        subject: the message subject.
        template_name: the template to render.
        template_data: values for the template.
        event_type: what happened; any event type (or dotted string) is allowed.
        recipient_name: the recipient's display name.
        priority: the delivery priority, ``"normal"`` by default.
        correlation_id: the id tying related events together.
        tenant_id: the tenant, in multi-tenant deployments.
        user_id: the user the notification concerns (its key and data subject).
        causation_id: the id of the event that caused this one.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        pydantic.ValidationError: a field is invalid (e.g. the e-mail has no ``@``).
    """
    data = NotificationData(
        recipient_email=recipient_email,
        subject=subject,
        template_name=template_name,
        template_data=dict(template_data or {}),
        recipient_name=recipient_name,
        priority=str(priority),
        user_id=user_id,
        **extra,
    )
    try:
        envelope_priority = Priority(str(priority))
    except ValueError:
        envelope_priority = Priority.NORMAL
    return _envelope(
        NotificationEvent,
        event_type,
        source_service,
        data,
        correlation_id,
        causation_id,
        tenant_id,
        envelope_priority,
    )


def create_audit_event(
    source_service: str,
    action: str,
    resource_type: str,
    user_id: EntityId | None = None,
    resource_id: EntityId | None = None,
    description: str | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    changes: dict[str, Any] | None = None,
    event_type: EventType | str = EventType.AUDIT_USER_ACTION,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> AuditEvent:
    """Build an audit event for ``audit-queue`` (seed 000).

    Args:
        source_service: the service where the action happened.
        action: what was done, e.g. ``"CREATE"``.
        resource_type: the kind of resource, e.g. ``"user"``.
        user_id: the acting user.
        resource_id: the resource acted on.
        description: a human-readable summary.
        ip_address: the actor's IP address.
        user_agent: the actor's user agent.
        changes: the changed fields.
        event_type: an ``audit.*`` type; ``audit.user.action`` by default.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: ``event_type`` is not an ``audit.*`` type, or a field is invalid.
    """
    member = _member(event_type, "audit", "create_audit_event")
    data = AuditData(
        action=action,
        resource_type=resource_type,
        user_id=user_id,
        resource_id=resource_id,
        description=description,
        ip_address=ip_address,
        user_agent=user_agent,
        changes=dict(changes or {}),
        **extra,
    )
    return _envelope(
        AuditEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_user_event(
    source_service: str,
    user_id: EntityId,
    event_type: EventType | str = EventType.USER_CREATED,
    email: str | None = None,
    name: str | None = None,
    role: str | None = None,
    status: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> UserEvent:
    """Build a ``user.*`` event.

    Args:
        source_service: the sending service.
        user_id: the user.
        event_type: a ``user.*`` type; ``user.created`` by default.
        email: the user's e-mail address.
        name: the user's display name.
        role: the user's role.
        status: the account status after the change.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: ``event_type`` is not a ``user.*`` type, or a field is invalid.
    """
    member = _member(event_type, "user", "create_user_event")
    data = UserData(user_id=user_id, email=email, name=name, role=role, status=status, **extra)
    return _envelope(
        UserEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_employee_event(
    source_service: str,
    employee_id: EntityId,
    event_type: EventType | str = EventType.EMPLOYEE_CREATED,
    name: str | None = None,
    age: int | None = None,
    email: str | None = None,
    employee_code: str | None = None,
    department: str | None = None,
    position: str | None = None,
    status: str | None = None,
    previous_status: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> EmployeeEvent:
    """Build an ``employee.*`` event (seed 001's ``create_employee_event``).

    Args:
        source_service: the sending service.
        employee_id: the employee.
        event_type: an ``employee.*`` type; ``employee.created`` by default.
        name: the employee's name.
        age: the employee's age.
        email: the employee's e-mail address.
        employee_code: the HR employee code.
        department: the employee's department.
        position: the employee's job title.
        status: the employment status after the change.
        previous_status: the status before the change.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: ``event_type`` is not an ``employee.*`` type, or a field is invalid.
    """
    member = _member(event_type, "employee", "create_employee_event")
    data = EmployeeData(
        employee_id=employee_id,
        name=name,
        age=age,
        email=email,
        employee_code=employee_code,
        department=department,
        position=position,
        status=status,
        previous_status=previous_status,
        **extra,
    )
    return _envelope(
        EmployeeEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_leave_event(
    source_service: str,
    leave_id: EntityId,
    employee_id: EntityId,
    event_type: EventType | str = EventType.LEAVE_REQUESTED,
    leave_type: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    status: str | None = None,
    reason: str | None = None,
    approver_id: EntityId | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> LeaveEvent:
    """Build a ``leave.*`` event (seed 001's ``publish_leave_event``).

    Args:
        source_service: the sending service.
        leave_id: the leave request.
        employee_id: the employee on leave.
        event_type: a ``leave.*`` type; ``leave.requested`` by default.
        leave_type: e.g. ``"annual"``.
        start_date: the first day of leave.
        end_date: the last day of leave.
        status: the request status after the change.
        reason: the employee's reason.
        approver_id: who approved or rejected it.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: ``event_type`` is not a ``leave.*`` type, ``end_date`` is before
            ``start_date``, or a field is invalid.
    """
    member = _member(event_type, "leave", "create_leave_event")
    data = LeaveData(
        leave_id=leave_id,
        employee_id=employee_id,
        leave_type=leave_type,
        start_date=start_date,
        end_date=end_date,
        status=status,
        reason=reason,
        approver_id=approver_id,
        **extra,
    )
    return _envelope(
        LeaveEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_attendance_event(
    source_service: str,
    employee_id: EntityId,
    event_type: EventType | str = EventType.ATTENDANCE_MARKED,
    attendance_id: EntityId | None = None,
    attendance_date: date | None = None,
    check_in: datetime | None = None,
    check_out: datetime | None = None,
    status: str | None = None,
    hours_worked: float | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> AttendanceEvent:
    """Build an ``attendance.*`` event (seed 001's ``publish_attendance_event``).

    Args:
        source_service: the sending service.
        employee_id: the employee.
        event_type: an ``attendance.*`` type; ``attendance.marked`` by default.
        attendance_id: the attendance record.
        attendance_date: the working day.
        check_in: when the employee checked in.
        check_out: when the employee checked out.
        status: e.g. ``"present"``.
        hours_worked: hours worked that day.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: ``event_type`` is not an ``attendance.*`` type, ``check_out`` is
            before ``check_in``, or a field is invalid.
    """
    member = _member(event_type, "attendance", "create_attendance_event")
    data = AttendanceData(
        employee_id=employee_id,
        attendance_id=attendance_id,
        attendance_date=attendance_date,
        check_in=check_in,
        check_out=check_out,
        status=status,
        hours_worked=hours_worked,
        **extra,
    )
    return _envelope(
        AttendanceEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_compliance_event(
    source_service: str,
    event_type: EventType | str,
    employee_id: EntityId | None = None,
    compliance_id: EntityId | None = None,
    rule: str | None = None,
    severity: str | None = None,
    status: str | None = None,
    description: str | None = None,
    details: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> ComplianceEvent:
    """Build a ``compliance.*`` event.

    ``event_type`` has no default: a violation, an alert and a completed check mean
    different things, so the caller says which.

    Args:
        source_service: the sending service.
        event_type: a ``compliance.*`` type.
        employee_id: the employee concerned, if any.
        compliance_id: the violation, alert or check record.
        rule: the rule or policy checked.
        severity: e.g. ``"high"``.
        status: e.g. ``"open"``.
        description: a human-readable summary.
        details: further structured details.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: ``event_type`` is not a ``compliance.*`` type, or a field is invalid.
    """
    member = _member(event_type, "compliance", "create_compliance_event")
    data = ComplianceData(
        employee_id=employee_id,
        compliance_id=compliance_id,
        rule=rule,
        severity=severity,
        status=status,
        description=description,
        details=dict(details or {}),
        **extra,
    )
    return _envelope(
        ComplianceEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_payroll_event(
    source_service: str,
    event_type: EventType | str = EventType.PAYROLL_PROCESSED,
    payroll_id: EntityId | None = None,
    employee_id: EntityId | None = None,
    period: str | None = None,
    gross_amount: float | None = None,
    net_amount: float | None = None,
    currency: str | None = None,
    status: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> PayrollEvent:
    """Build a ``payroll.*`` or ``salary.calculated`` event (seed 002).

    Args:
        source_service: the sending service.
        event_type: ``payroll.processed`` (default), ``payroll.approved`` or
            ``salary.calculated``.
        payroll_id: the payroll run.
        employee_id: the employee, for one salary.
        period: the pay period, e.g. ``"2025-11"``.
        gross_amount: the gross amount.
        net_amount: the net amount.
        currency: e.g. ``"EUR"``.
        status: e.g. ``"processed"``.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields (``approver_id``...).

    Returns:
        The event.

    Raises:
        ValueError: not a payroll event type, or a field is invalid.
    """
    member = _member(event_type, "payroll", "create_payroll_event", "salary")
    data = PayrollData(
        payroll_id=payroll_id,
        employee_id=employee_id,
        period=period,
        gross_amount=gross_amount,
        net_amount=net_amount,
        currency=currency,
        status=status,
        **extra,
    )
    return _envelope(
        PayrollEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_crm_event(
    source_service: str,
    customer_id: EntityId,
    event_type: EventType | str = EventType.CUSTOMER_CREATED,
    order_id: EntityId | None = None,
    name: str | None = None,
    email: str | None = None,
    status: str | None = None,
    total_amount: float | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> CrmEvent:
    """Build a ``customer.*`` or ``order.*`` event (seed 002's CRM events).

    Args:
        source_service: the sending service.
        customer_id: the customer.
        event_type: a ``customer.*`` or ``order.*`` type; ``customer.created`` by default.
        order_id: the order, for ``order.*``.
        name: the customer's name.
        email: the customer's e-mail address.
        status: e.g. ``"active"``.
        total_amount: the order total.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: not a CRM event type, or a field is invalid.
    """
    member = _member(event_type, "customer", "create_crm_event", "order")
    data = CrmData(
        customer_id=customer_id,
        order_id=order_id,
        name=name,
        email=email,
        status=status,
        total_amount=total_amount,
        **extra,
    )
    return _envelope(
        CrmEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_document_event(
    source_service: str,
    document_id: EntityId,
    event_type: EventType | str = EventType.DOCUMENT_UPLOADED,
    employee_id: EntityId | None = None,
    title: str | None = None,
    document_type: str | None = None,
    status: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> DocumentEvent:
    """Build a ``document.*`` event (seed 002).

    Args:
        source_service: the sending service.
        document_id: the document.
        event_type: a ``document.*`` type; ``document.uploaded`` by default.
        employee_id: whose document it is.
        title: the document's title.
        document_type: e.g. ``"contract"``.
        status: e.g. ``"approved"``.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields (``reviewer_id``, ``reason``).

    Returns:
        The event.

    Raises:
        ValueError: not a ``document.*`` type, or a field is invalid.
    """
    member = _member(event_type, "document", "create_document_event")
    data = DocumentData(
        document_id=document_id,
        employee_id=employee_id,
        title=title,
        document_type=document_type,
        status=status,
        **extra,
    )
    return _envelope(
        DocumentEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


def create_system_event(
    source_service: str,
    service: str,
    event_type: EventType | str = EventType.SERVICE_HEALTH,
    status: str = "up",
    instance: str | None = None,
    uptime_s: float | None = None,
    error: str | None = None,
    details: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> SystemEvent:
    """Build a ``service.health`` heartbeat or a ``service.error`` event (seed 002).

    Args:
        source_service: the sending service.
        service: the service the event is about (usually the sender).
        event_type: ``service.health`` (default) or ``service.error``.
        status: ``"up"``, ``"degraded"`` or ``"error"``.
        instance: which replica.
        uptime_s: seconds since the replica started.
        error: what went wrong.
        details: further checks.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant (heartbeats have none).
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        ValueError: not a ``service.*`` type, or a field is invalid.
    """
    member = _member(event_type, "service", "create_system_event")
    data = ServiceHealthData(
        service=service,
        status=status,
        instance=instance,
        uptime_s=uptime_s,
        error=error,
        details=dict(details or {}),
        **extra,
    )
    return _envelope(
        SystemEvent, member, source_service, data, correlation_id, causation_id, tenant_id
    )


HIGH_PRIORITY_DAYS_REMAINING: Final = 3
"""Seed 004: fewer days of stock than this makes a low-stock event ``high`` priority."""


def days_of_stock_remaining(current_stock: int, average_daily_usage: float | None) -> float | None:
    """Return how many days ``current_stock`` lasts at ``average_daily_usage``.

    Args:
        current_stock: units on hand; negative stock counts as none.
        average_daily_usage: units used per day.

    Returns:
        The number of days, or ``None`` when usage is unknown or not positive.
    """
    if average_daily_usage is None or average_daily_usage <= 0:
        return None
    return max(current_stock, 0) / average_daily_usage


_days_remaining = days_of_stock_remaining  # create_low_stock_event's parameter shadows it


def low_stock_priority(
    current_stock: int, reorder_level: int, days_remaining: float | None = None
) -> Priority:
    """Classify a stock level by seed 004's rules.

    ``critical`` when stock is 0 (or below); ``high`` when fewer than 3 days remain or
    stock is under 50% of the reorder level; ``medium`` at or below the reorder level;
    ``low`` otherwise.

    Args:
        current_stock: units on hand.
        reorder_level: the stock level that triggers a reorder.
        days_remaining: days of stock left, when known.

    Returns:
        The priority.
    """
    if current_stock <= 0:
        return Priority.CRITICAL
    if days_remaining is not None and days_remaining < HIGH_PRIORITY_DAYS_REMAINING:
        return Priority.HIGH
    if current_stock * 2 < reorder_level:
        return Priority.HIGH
    if current_stock <= reorder_level:
        return Priority.MEDIUM
    return Priority.LOW


def create_low_stock_event(
    source_service: str,
    product_id: EntityId,
    product_sku: str,
    product_name: str,
    current_stock: int,
    reorder_level: int,
    reorder_quantity: int | None = None,
    unit_price: float | None = None,
    category: str | None = None,
    location: str | None = None,
    average_daily_usage: float | None = None,
    days_of_stock_remaining: float | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant_id: str | None = None,
    **extra: Any,
) -> LowStockEvent:
    """Build seed 004's ``inventory.low_stock`` event.

    ``days_of_stock_remaining`` is computed from ``current_stock / average_daily_usage``
    when not given, and the envelope ``priority`` follows :func:`low_stock_priority`.

    Args:
        source_service: the sending service, e.g. ``"inventory-service"``.
        product_id: the product.
        product_sku: the product's SKU.
        product_name: the product's name.
        current_stock: units on hand.
        reorder_level: the stock level that triggers a reorder.
        reorder_quantity: how many units a reorder buys.
        unit_price: the unit price.
        category: the product category.
        location: the warehouse.
        average_daily_usage: units used per day, if known.
        days_of_stock_remaining: days of stock left; computed when omitted.
        correlation_id: the id tying related events together.
        causation_id: the id of the event that caused this one.
        tenant_id: the tenant, in multi-tenant deployments.
        **extra: further payload fields.

    Returns:
        The event.

    Raises:
        pydantic.ValidationError: a field is invalid (e.g. a negative reorder level).
    """
    days = days_of_stock_remaining
    if days is None:
        days = _days_remaining(current_stock, average_daily_usage)
    data = LowStockData(
        product_id=product_id,
        product_sku=product_sku,
        product_name=product_name,
        current_stock=current_stock,
        reorder_level=reorder_level,
        reorder_quantity=reorder_quantity,
        unit_price=unit_price,
        category=category,
        location=location,
        average_daily_usage=average_daily_usage,
        days_of_stock_remaining=days,
        **extra,
    )
    return _envelope(
        LowStockEvent,
        EventType.INVENTORY_LOW_STOCK,
        source_service,
        data,
        correlation_id,
        causation_id,
        tenant_id,
        low_stock_priority(data.current_stock, data.reorder_level, data.days_of_stock_remaining),
    )


register_catalog(default_registry)
