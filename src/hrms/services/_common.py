"""What the HRMS services share.

* :data:`Pagination`, :class:`Page`, :func:`paginate`, :func:`read_page`: ``?limit=&offset=``
  lists; :func:`tenant_rows`: a list's ``SELECT`` with its optional equality filters.
* :func:`find_row`, :func:`get_or_404`, :func:`read_or_404`: tenant-scoped row fetches
  (another tenant's row is a 404).
* :func:`insert_row`, :func:`update_row`, :func:`apply_changes`, :func:`refuse_clearing`:
  the write steps of the create and update routes (each reads the row back).
* :class:`Journal`: the "write + domain event + audit event" step, and notifications.
* :func:`acting_employee`, :func:`ensure_can_act_for`, :func:`scope_to_self`: who a
  self-service request is for, and what an employee may see.
* :func:`optional_caller`, :func:`in_callers_tenant`: the seed-001 fallback routes that
  take an event with or without a token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated, Any, Generic, TypedDict, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import Select, Table, func, insert, select, update
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
from hrms.service.auth import current_principal
from hrms.service.ids import MAX_ID

Clock = Callable[[], datetime]
"""Returns the current time (aware); injectable so tests need not wait."""

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
"""A plausible e-mail address (the notification service does the real checking)."""

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")
E = TypeVar("E", bound=BaseEvent)


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


async def read_page(
    service: Service, query: Select[Any], page: PageParams, to_item: Callable[[RowMapping], T]
) -> Page[T]:
    """:func:`paginate` in a session of its own (a list route)."""
    async with service.sessions() as session:
        return await paginate(session, query, page, to_item)


def tenant_rows(table: Table, tenant_id: str, **filters: Any) -> Select[Any]:
    """``SELECT`` the rows of ``table`` in ``tenant_id`` whose columns equal ``filters``.

    A list's filters: a ``None`` value is a query parameter left out, so no filter; an
    enum member stands for its value. The tenant is always a filter.
    """
    query = select(table).where(table.c.tenant_id == tenant_id)
    for name, value in filters.items():
        if value is not None:
            query = query.where(
                table.c[name] == (value.value if isinstance(value, Enum) else value)
            )
    return query


# --------------------------------------------------------------------------- access


async def find_row(session: AsyncSession, table: Table, **match: Any) -> RowMapping | None:
    """The first row of ``table`` whose columns equal ``match``'s values, or ``None``."""
    query = select(table).where(*(table.c[name] == value for name, value in match.items()))
    return (await session.execute(query)).mappings().first()


async def get_or_404(
    session: AsyncSession, table: Table, resource_id: int, tenant_id: str, what: str
) -> RowMapping:
    """The row ``resource_id`` of ``table`` in the caller's tenant, or :class:`NotFound`."""
    row = await find_row(session, table, id=resource_id, tenant_id=tenant_id)
    if row is None:
        raise NotFound(f"{what} {resource_id} not found")
    return row


async def read_or_404(
    service: Service, table: Table, resource_id: int, tenant_id: str, what: str
) -> RowMapping:
    """:func:`get_or_404` in a session of its own (a read route)."""
    async with service.sessions() as session:
        return await get_or_404(session, table, resource_id, tenant_id, what)


# --------------------------------------------------------------------------- writes


async def insert_row(
    session: AsyncSession, table: Table, tenant_id: str, what: str, **values: Any
) -> RowMapping:
    """Insert a row of ``tenant_id`` into ``table`` and read it back (with its id)."""
    new_id = (
        await session.execute(
            insert(table).values(tenant_id=tenant_id, **values).returning(table.c.id)
        )
    ).scalar_one()
    return await get_or_404(session, table, new_id, tenant_id, what)


async def update_row(
    session: AsyncSession, table: Table, before: RowMapping, what: str, **values: Any
) -> RowMapping:
    """Set ``values`` on ``before``, a row of ``table``, and read it back."""
    await session.execute(update(table).where(table.c.id == before["id"]).values(**values))
    return await get_or_404(session, table, before["id"], before["tenant_id"], what)


async def apply_changes(
    session: AsyncSession,
    table: Table,
    before: RowMapping,
    given: dict[str, Any],
    what: str,
    clock: Clock,
) -> tuple[RowMapping, dict[str, Any]]:
    """Write ``given`` over ``before`` (stamping ``updated_at``) if it changes anything.

    Returns the row as it now stands and what changed (:func:`changed`; empty: nothing was
    written, and the row is ``before``).
    """
    diff = changed(before, given)
    if not diff:
        return before, diff
    return await update_row(session, table, before, what, updated_at=clock(), **given), diff


def refuse_clearing(given: Mapping[str, Any], required: Iterable[str]) -> None:
    """:class:`RuleBroken` if a change sets one of the ``required`` fields to ``null``."""
    for name in required:
        if name in given and given[name] is None:
            raise RuleBroken(f"{name} cannot be cleared")


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


# --------------------------------------------------------------------------- fallbacks

_bearer = HTTPBearer(auto_error=False)


def optional_caller(*, allow_anonymous: bool) -> Callable[..., Principal | None]:
    """A FastAPI dependency: the caller, or ``None`` for a request without a token.

    Without ``allow_anonymous`` a token is required (401 without one), as for any route.
    """

    def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal | None:
        if credentials is None and allow_anonymous:
            return None
        return current_principal(request, credentials)

    return caller


def in_callers_tenant(event: E, principal: Principal | None) -> E:
    """``event`` in the caller's tenant: a token's tenant fills in a missing ``tenant_id``
    and must match a given one (:class:`Forbidden`); without a token (service to service)
    the event keeps its own."""
    if principal is None:
        return event
    if event.tenant_id is None:
        return event.model_copy(update={"tenant_id": principal.tenant_id})
    if event.tenant_id != principal.tenant_id:
        raise Forbidden("the event's tenant is not the caller's tenant")
    return event
