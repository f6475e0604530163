"""The inventory events that :mod:`hrms.events` lacks, and an audit helper for ERP services.

``inventory.low_stock`` is in the shared catalog (:func:`hrms.events.create_low_stock_event`);
the product events are declared here and registered in eventbus's default registry when
this module is imported, so the sales service (which imports it) decodes them:

* ``inventory.product_created`` / ``inventory.product_updated``: the whole product.
* ``inventory.stock_adjusted``: the whole product after the adjustment, plus the
  adjustment (``adjustment_id``, ``delta``, ``reason``, ``previous_quantity``).

All are keyed by ``product_id`` (as ``inventory.low_stock`` is), so one product's events
stay in order on one partition.

The audit types ``audit.inventory.action`` and ``audit.sales.action`` are not
:class:`hrms.events.EventType` members either, so :func:`create_erp_audit_event` builds the
:class:`~hrms.events.AuditEvent` envelope directly (the audit service takes any
``audit.*`` type from ``audit-queue``), and :class:`Recorder` is the
:class:`hrms.services._common.Journal` step (domain event + audit event) for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final

from pydantic import Field
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent, EventPayload, Priority, default_registry
from hrms.events import AuditData, AuditEvent, EntityId
from hrms.service import Service, ServiceContext
from hrms.services._common import EventIds
from hrms.topics import INVENTORY_TOPIC

SOURCE: Final = "inventory-service"
"""The ``source_service`` of the inventory service's events (seed 004's name)."""

PRODUCT_CREATED: Final = "inventory.product_created"
PRODUCT_UPDATED: Final = "inventory.product_updated"
STOCK_ADJUSTED: Final = "inventory.stock_adjusted"
LOW_STOCK: Final = "inventory.low_stock"
"""The same wire value as :attr:`hrms.events.EventType.INVENTORY_LOW_STOCK`."""

AUDIT_INVENTORY_ACTION: Final = "audit.inventory.action"
AUDIT_SALES_ACTION: Final = "audit.sales.action"


Row = RowMapping | Mapping[str, Any]
"""A table row (or a dict standing in for one)."""


def tenant_ids(tenant_id: str | None) -> EventIds:
    """The ids of an event emitted in ``tenant_id`` now (the correlation and causation
    ids of the request or event being handled)."""
    ctx = ServiceContext(tenant_id)
    return EventIds(
        tenant_id=ctx.tenant_id, correlation_id=ctx.correlation_id, causation_id=ctx.causation_id
    )


def inventory_topic(topic: str | None = None) -> str:
    """The topic of inventory events: ``topic``, ``KAFKA_INVENTORY_TOPIC``, or the default."""
    return topic or os.environ.get("KAFKA_INVENTORY_TOPIC") or INVENTORY_TOPIC


class ProductData(EventPayload):
    """A product as the inventory service holds it (the payload of the product events).

    Attributes:
        product_id: the product.
        sku: the stock-keeping unit, unique per tenant.
        name: the product's name.
        category: e.g. ``"electronics"``.
        location: the warehouse.
        unit_price: the unit price.
        quantity_on_hand: units in stock.
        reorder_level: at or below this, the product is low on stock.
        reorder_quantity: how many units a reorder buys.
        average_daily_usage: units used per day.
        adjustment_id: the adjustment (``inventory.stock_adjusted`` only).
        delta: the signed change of stock (``inventory.stock_adjusted`` only).
        reason: why stock changed (``inventory.stock_adjusted`` only).
        previous_quantity: stock before the adjustment (``inventory.stock_adjusted`` only).
    """

    aggregate_key: ClassVar[str | None] = "product_id"

    product_id: EntityId
    sku: str
    name: str
    category: str | None = None
    location: str | None = None
    unit_price: Annotated[float, Field(ge=0)] = 0.0
    quantity_on_hand: int
    reorder_level: Annotated[int, Field(ge=0)] = 0
    reorder_quantity: Annotated[int, Field(ge=0)] = 0
    average_daily_usage: Annotated[float, Field(ge=0)] = 0.0
    adjustment_id: EntityId | None = None
    delta: int | None = None
    reason: str | None = None
    previous_quantity: int | None = None


class ProductEvent(BaseEvent):
    """An ``inventory.product_created``, ``inventory.product_updated`` or
    ``inventory.stock_adjusted`` event."""

    data: ProductData


for _type in (PRODUCT_CREATED, PRODUCT_UPDATED, STOCK_ADJUSTED):
    default_registry.register(ProductEvent, event_type=_type)


def create_product_event(
    event_type: str,
    product: Row,
    ids: EventIds,
    **extra: Any,
) -> ProductEvent:
    """Build a product event carrying the whole product row (and ``extra`` payload fields).

    Args:
        event_type: one of :data:`PRODUCT_CREATED`, :data:`PRODUCT_UPDATED`,
            :data:`STOCK_ADJUSTED`.
        product: the product row.
        ids: tenant, correlation and causation ids.
        **extra: the adjustment fields of a ``stock_adjusted`` event.
    """
    data = ProductData(
        product_id=product["id"],
        sku=product["sku"],
        name=product["name"],
        category=product["category"],
        location=product["location"],
        unit_price=product["unit_price"],
        quantity_on_hand=product["quantity_on_hand"],
        reorder_level=product["reorder_level"],
        reorder_quantity=product["reorder_quantity"],
        average_daily_usage=product["average_daily_usage"],
        **extra,
    )
    return ProductEvent(event_type=event_type, source_service=SOURCE, data=data, **ids)


def create_erp_audit_event(
    source_service: str,
    event_type: str,
    *,
    action: str,
    resource_type: str,
    resource_id: EntityId | None,
    user_id: EntityId | None,
    description: str,
    changes: dict[str, Any] | None,
    ids: EventIds,
) -> AuditEvent:
    """An audit event of a type the shared catalog has no member for (``audit.sales.action``)."""
    data = AuditData(
        action=action,
        resource_type=resource_type,
        user_id=user_id,
        resource_id=resource_id,
        description=description,
        changes=dict(changes or {}),
    )
    return AuditEvent(
        event_type=event_type,
        source_service=source_service,
        priority=Priority.NORMAL,
        data=data,
        **ids,
    )


@dataclass
class Recorder:
    """The event side of a write: the domain event and its audit record, in one transaction.

    Args:
        service: the service whose outbox receives the events.
        source: the ``source_service`` of the audit events.
        audit_type: e.g. :data:`AUDIT_INVENTORY_ACTION`.
    """

    service: Service
    source: str
    audit_type: str

    async def record(
        self,
        session: AsyncSession,
        topic: str,
        event: BaseEvent,
        *,
        ids: EventIds,
        user_id: int | None,
        action: str,
        resource_type: str,
        resource_id: EntityId,
        changes: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """Emit ``event`` on ``topic`` and its audit event (same tenant and correlation ids).

        ``user_id`` is the acting user; ``None`` for writes made by a consumer.
        """
        await self.service.emit(session, topic, event)
        await self.audit(
            session,
            ids=ids,
            user_id=user_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            changes=changes,
            description=description,
        )

    async def audit(
        self,
        session: AsyncSession,
        *,
        ids: EventIds,
        user_id: int | None,
        action: str,
        resource_type: str,
        resource_id: EntityId,
        changes: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """Emit only the audit event of a write."""
        audit = create_erp_audit_event(
            self.source,
            self.audit_type,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            user_id=user_id,
            description=description or f"{action} {resource_type} {resource_id}",
            changes=changes,
            ids=ids,
        )
        await self.service.emit(session, self.service.settings.audit_topic, audit)


__all__ = [
    "AUDIT_INVENTORY_ACTION",
    "AUDIT_SALES_ACTION",
    "LOW_STOCK",
    "PRODUCT_CREATED",
    "PRODUCT_UPDATED",
    "SOURCE",
    "STOCK_ADJUSTED",
    "ProductData",
    "ProductEvent",
    "Recorder",
    "Row",
    "create_erp_audit_event",
    "create_product_event",
    "inventory_topic",
    "tenant_ids",
]
