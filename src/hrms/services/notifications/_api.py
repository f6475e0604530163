"""HTTP routes: ``POST /notifications`` (seed 001's fallback path) and the delivery log."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from hrms.events import EventType, NotificationData, NotificationEvent, create_notification_event
from hrms.service import context
from hrms.service.auth import Admin, Principal
from hrms.service.errors import RuleBroken
from hrms.service.ids import MAX_ID
from hrms.services._common import in_callers_tenant, optional_caller
from hrms.services.notifications._errors import PermanentDeliveryError, TransientDeliveryError
from hrms.services.notifications._log import Entry, Status
from hrms.services.notifications._notifier import Notifier, Outcome


class FlatNotification(NotificationData):
    """Seed 001's flat body: the notification fields, with optional envelope fields."""

    event_id: Annotated[str | None, Field(max_length=255)] = None
    tenant_id: Annotated[str | None, Field(max_length=128)] = None
    event_type: str = EventType.USER_CREATED.value
    source_service: str = "http"


class SendResult(BaseModel):
    """The outcome of ``POST /notifications``."""

    event_id: str
    status: Outcome


class LogEntry(Entry):
    """One delivery log entry."""


class LogPage(BaseModel):
    """A page of the delivery log."""

    items: list[LogEntry]
    total: int
    limit: int
    offset: int


def _parse(body: dict[str, Any]) -> NotificationEvent:
    """A NotificationEvent from an envelope body (has ``data``) or seed 001's flat one."""
    try:
        if "data" in body:
            return NotificationEvent.model_validate(body)
        flat = FlatNotification.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc
    fields = flat.model_dump(exclude={"event_id", "event_type", "source_service", "tenant_id"})
    event = create_notification_event(
        source_service=flat.source_service,
        event_type=flat.event_type,
        tenant_id=flat.tenant_id,
        correlation_id=context.correlation_id.get(),
        **fields,
    )
    if flat.event_id is not None:
        event = event.model_copy(update={"event_id": _event_id(flat.event_id)})
    return event


def _event_id(value: str) -> uuid.UUID | str:
    try:
        return uuid.UUID(value)
    except ValueError:
        return value


def routes(notifier: Notifier, *, allow_anonymous: bool, http_attempts: int) -> APIRouter:
    """The notification service's routes.

    Args:
        notifier: sends and logs notifications.
        allow_anonymous: accept ``POST /notifications`` without a token (service to
            service, as seed 001's services call it).
        http_attempts: SMTP tries for one request.
    """
    router = APIRouter(tags=["notifications"])
    caller = optional_caller(allow_anonymous=allow_anonymous)

    @router.post("/notifications", response_model=SendResult)
    async def send_notification(
        body: Annotated[
            dict[str, Any],
            Body(
                description="A NotificationEvent envelope, or seed 001's flat shape "
                "(recipient_email, subject, template_name, template_data, ...)."
            ),
        ],
        principal: Annotated[Principal | None, Depends(caller)],
    ) -> SendResult:
        """Send a notification now (the HTTP fallback of the notification topic).

        Deduplicated by event id like the Kafka path. With a token (any role) the event
        belongs to the caller's tenant; without one (service to service) it is scoped
        to the event's own ``tenant_id``.
        """
        event = in_callers_tenant(_parse(body), principal)
        context.event_id.set(str(event.event_id))
        try:
            outcome = await notifier.deliver(event, attempts=http_attempts, wait_when_open=False)
        except PermanentDeliveryError as exc:
            raise RuleBroken(f"notification cannot be sent: {exc}") from exc
        except TransientDeliveryError as exc:
            raise HTTPException(
                503, f"mail server unavailable, try again later: {exc}", {"Retry-After": "30"}
            ) from exc
        return SendResult(event_id=str(event.event_id), status=outcome)

    @router.get("/notifications", response_model=LogPage)
    async def delivery_log(
        admin: Admin,
        status: Status | None = None,
        recipient: Annotated[str | None, Query(max_length=320)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> LogPage:
        """The delivery log of the caller's tenant, newest first (admins)."""
        items, total = await notifier.log.search(
            admin.tenant_id, status=status, recipient=recipient, limit=limit, offset=offset
        )
        return LogPage(items=[_out(e) for e in items], total=total, limit=limit, offset=offset)

    return router


def _out(entry: Entry) -> LogEntry:
    return LogEntry.model_validate(entry, from_attributes=True)
