"""What the employees, leaves and attendance services share.

* :class:`UTCDateTime`: a column type that always hands back aware UTC datetimes.
* :data:`Pagination`, :class:`Page`, :func:`paginate`: ``?limit=&offset=`` lists.
* :func:`get_or_404`: a tenant-scoped row fetch (another tenant's row is a 404).
* :class:`Journal`: the "write + domain event + audit event" step, and notifications.
* :func:`acting_employee`, :func:`ensure_can_act_for`, :func:`scope_to_self`: who a
  self-service request is for, and what an employee may see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypedDict, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, Table, func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent
from hrms.events import EventType, create_audit_event, create_notification_event
from hrms.service import (
    Forbidden,
    NotFound,
    Principal,
    Role,
    RuleBroken,
    Service,
    ServiceContext,
)
from hrms.service.ids import MAX_ID

Clock = Callable[[], datetime]
"""Returns the current time (aware); injectable so tests need not wait."""

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
"""A plausible e-mail address (the notification service does the real checking)."""

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default clock)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class PageParams:
    """Which slice of a list to return."""

    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="items to skip")] = 0,
) -> PageParams:
    """FastAPI dependency: the ``limit`` and ``offset`` query parameters."""
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(page_params)]
"""A route parameter: the requested page."""


class Page(BaseModel, Generic[T]):
    """One page of a list, with the total number of matching items."""

    items: list[T]
    total: int
    limit: int
    offset: int


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    page: PageParams,
    to_item: Callable[[RowMapping], T],
) -> Page[T]:
    """Run ``query`` (already filtered and ordered) for one page and count all matches."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.execute(query.limit(page.limit).offset(page.offset))).mappings().all()
    return Page[T](
        items=[to_item(row) for row in rows],
        total=int(total or 0),
        limit=page.limit,
        offset=page.offset,
    )


# --------------------------------------------------------------------------- access


async def get_or_404(
    session: AsyncSession, table: Table, resource_id: int, tenant_id: str, what: str
) -> RowMapping:
    """The row ``resource_id`` of ``table`` in the caller's tenant, or :class:`NotFound`."""
    row = (
        (
            await session.execute(
                select(table).where(table.c.id == resource_id, table.c.tenant_id == tenant_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"{what} {resource_id} not found")
    return row


def ensure_can_act_for(principal: Principal, employee_id: int, what: str) -> None:
    """Raise :class:`Forbidden` unless the caller is a manager/admin or ``employee_id``."""
    if not principal.can_act_for(employee_id):
        raise Forbidden(f"employees may {what} only their own records")


def acting_employee(principal: Principal, employee_id: int | None, what: str) -> int:
    """The employee a request is for: ``employee_id``, or the caller's own employee id.

    Raises:
        RuleBroken: no employee id was given and the caller has no employee record.
        Forbidden: an employee names someone else.
    """
    if employee_id is None:
        if principal.employee_id is None:
            raise RuleBroken("employee_id is required: the caller has no employee record")
        employee_id = principal.employee_id
    ensure_can_act_for(principal, employee_id, what)
    return employee_id


def scope_to_self(principal: Principal, employee_id: int | None, what: str) -> int | None:
    """The ``employee_id`` filter of a list: employees may list only their own records.

    Managers and admins get ``employee_id`` back as given (``None``: everyone); an employee
    gets their own id, and :class:`Forbidden` if they name someone else.
    """
    if principal.role is not Role.EMPLOYEE:
        return employee_id
    if principal.employee_id is None:
        raise Forbidden("the caller has no employee record")
    if employee_id not in (None, principal.employee_id):
        raise Forbidden(f"employees may list only their own {what}")
    return principal.employee_id


# --------------------------------------------------------------------------- events


class EventIds(TypedDict):
    """The ids every event factory takes: tenant, correlation, causation."""

    tenant_id: str | None
    correlation_id: str | None
    causation_id: str | None


def event_ids(principal: Principal) -> EventIds:
    """Tenant, correlation and causation ids for an event emitted on ``principal``'s behalf.

    The correlation id is the request's (``X-Correlation-ID``, or one made up for it).
    """
    ctx = ServiceContext(principal.tenant_id)
    return EventIds(
        tenant_id=ctx.tenant_id, correlation_id=ctx.correlation_id, causation_id=ctx.causation_id
    )


@dataclass
class Journal:
    """The event side of a write: the domain event, its audit record, notifications.

    Args:
        service: the service whose outbox receives the events.
        source: the ``source_service`` of the events, e.g. ``"leave-management-service"``.
        topic: the domain topic.
        resource_type: the audited resource, e.g. ``"leave"``.
        audit_type: the audit event type, e.g. ``EventType.AUDIT_LEAVE_ACTION``.
    """

    service: Service
    source: str
    topic: str
    resource_type: str
    audit_type: EventType

    async def record(
        self,
        session: AsyncSession,
        principal: Principal,
        event: BaseEvent,
        *,
        action: str,
        resource_id: int,
        changes: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """Emit ``event`` on the domain topic and an audit event, in ``session``'s transaction.

        The audit event names the action, the resource, the acting user and carries the
        request's correlation id (as does ``event``, built with :func:`event_ids`).
        """
        await self.service.emit(session, self.topic, event)
        audit = create_audit_event(
            source_service=self.source,
            action=action,
            resource_type=self.resource_type,
            user_id=principal.user_id,
            resource_id=resource_id,
            description=description or f"{action} {self.resource_type} {resource_id}",
            changes=changes,
            event_type=self.audit_type,
            **event_ids(principal),
        )
        await self.service.emit(session, self.service.settings.audit_topic, audit)

    async def notify(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        event_type: EventType,
        recipient_email: str,
        recipient_name: str | None,
        subject: str,
        template_name: str,
        template_data: dict[str, Any],
        user_id: int | None = None,
    ) -> None:
        """Emit a notification for the notification service, in ``session``'s transaction."""
        event = create_notification_event(
            source_service=self.source,
            recipient_email=recipient_email,
            subject=subject,
            template_name=template_name,
            template_data=template_data,
            event_type=event_type,
            recipient_name=recipient_name,
            user_id=user_id,
            **event_ids(principal),
        )
        await self.service.emit(session, self.service.settings.notification_topic, event)


def jsonable(value: Any) -> Any:
    """``value`` as JSON would carry it (dates and datetimes as ISO strings)."""
    return value.isoformat() if isinstance(value, date | datetime) else value


def changed(before: Mapping[Any, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``after`` whose values differ from ``before``'s (JSON-friendly)."""
    return {name: jsonable(value) for name, value in after.items() if before.get(name) != value}
