"""The sales events (``sales.*`` on ``sales-events``), declared here since :mod:`hrms.events`
has no sales types; registered in eventbus's default registry on import.

* ``sales.order_created``, ``sales.order_cancelled``, ``sales.order_fulfilled``,
  ``sales.order_at_risk``: an order (:class:`OrderData`).
* ``sales.alert_raised``, ``sales.alert_updated`` (its priority rose),
  ``sales.alert_closed``: a low-stock alert (:class:`AlertData`); the envelope priority is
  the alert's.

All are keyed by ``product_id``, so one product's orders and alerts stay in order.
"""

from __future__ import annotations

import os
from typing import Annotated, ClassVar, Final

from pydantic import Field

from eventbus import BaseEvent, EventPayload, Priority, default_registry
from hrms.events import EntityId
from hrms.services._common import EventIds
from hrms.services.inventory.events import Row
from hrms.topics import SALES_TOPIC

SOURCE: Final = "sales-service"
"""The ``source_service`` of the sales service's events."""

ORDER_CREATED: Final = "sales.order_created"
ORDER_CANCELLED: Final = "sales.order_cancelled"
ORDER_FULFILLED: Final = "sales.order_fulfilled"
ORDER_AT_RISK: Final = "sales.order_at_risk"
ALERT_RAISED: Final = "sales.alert_raised"
ALERT_UPDATED: Final = "sales.alert_updated"
ALERT_CLOSED: Final = "sales.alert_closed"


def sales_topic(topic: str | None = None) -> str:
    """The topic of sales events: ``topic``, ``KAFKA_SALES_TOPIC``, or ``sales-events``."""
    return topic or os.environ.get("KAFKA_SALES_TOPIC") or SALES_TOPIC


def entity_id(value: str) -> EntityId:
    """A stored product id as the catalog's ``int | str`` (digits become an int again)."""
    return int(value) if value.isdigit() else value


class OrderData(EventPayload):
    """A sales order.

    Attributes:
        order_id: the order.
        product_id: the product ordered.
        quantity: units ordered.
        customer: who ordered.
        status: ``pending``, ``fulfilled`` or ``cancelled``.
        at_risk: whether the stock can no longer satisfy the pending order.
        available_stock: the stock sales knew of when the event was emitted.
    """

    aggregate_key: ClassVar[str | None] = "product_id"

    order_id: int
    product_id: EntityId
    quantity: Annotated[int, Field(gt=0)]
    customer: str
    status: str
    at_risk: bool = False
    available_stock: int | None = None


class AlertData(EventPayload):
    """A low-stock alert of the sales service.

    Attributes:
        alert_id: the alert.
        product_id: the product.
        product_sku: its SKU.
        product_name: its name.
        status: ``open`` or ``closed``.
        priority: the alert's priority (the highest while it is open).
        previous_priority: the priority before it rose (``sales.alert_updated``).
        current_stock: the stock when the event was emitted.
        reorder_level: the product's reorder level.
        reorder_quantity: the suggested reorder.
        days_of_stock_remaining: days of stock at the product's usage, if known.
        pending_orders: pending orders for the product.
        pending_quantity: units those orders want.
        at_risk_orders: pending orders the stock cannot satisfy.
        forecast_daily_demand: average units ordered per day recently.
    """

    aggregate_key: ClassVar[str | None] = "product_id"

    alert_id: int
    product_id: EntityId
    product_sku: str | None = None
    product_name: str | None = None
    status: str
    priority: Priority
    previous_priority: Priority | None = None
    current_stock: int
    reorder_level: int
    reorder_quantity: int | None = None
    days_of_stock_remaining: float | None = None
    pending_orders: int = 0
    pending_quantity: int = 0
    at_risk_orders: int = 0
    forecast_daily_demand: float | None = None


class OrderEvent(BaseEvent):
    """A ``sales.order_*`` event."""

    data: OrderData


class AlertEvent(BaseEvent):
    """A ``sales.alert_*`` event."""

    data: AlertData


for _type in (ORDER_CREATED, ORDER_CANCELLED, ORDER_FULFILLED, ORDER_AT_RISK):
    default_registry.register(OrderEvent, event_type=_type)
for _type in (ALERT_RAISED, ALERT_UPDATED, ALERT_CLOSED):
    default_registry.register(AlertEvent, event_type=_type)


def create_order_event(
    event_type: str,
    order: Row,
    ids: EventIds,
    available_stock: int | None = None,
) -> OrderEvent:
    """An order event carrying the order row."""
    data = OrderData(
        order_id=order["id"],
        product_id=entity_id(order["product_id"]),
        quantity=order["quantity"],
        customer=order["customer"],
        status=order["status"],
        at_risk=bool(order["at_risk"]),
        available_stock=available_stock,
    )
    return OrderEvent(event_type=event_type, source_service=SOURCE, data=data, **ids)


def create_alert_event(
    event_type: str,
    alert: Row,
    ids: EventIds,
    previous_priority: Priority | None = None,
) -> AlertEvent:
    """An alert event carrying the alert row; its envelope priority is the alert's."""
    priority = Priority(alert["priority"])
    data = AlertData(
        alert_id=alert["id"],
        product_id=entity_id(alert["product_id"]),
        product_sku=alert["product_sku"],
        product_name=alert["product_name"],
        status=alert["status"],
        priority=priority,
        previous_priority=previous_priority,
        current_stock=alert["current_stock"],
        reorder_level=alert["reorder_level"],
        reorder_quantity=alert["reorder_quantity"],
        days_of_stock_remaining=alert["days_of_stock_remaining"],
        pending_orders=alert["pending_orders"],
        pending_quantity=alert["pending_quantity"],
        at_risk_orders=alert["at_risk_orders"],
        forecast_daily_demand=alert["forecast_daily_demand"],
    )
    return AlertEvent(
        event_type=event_type, source_service=SOURCE, priority=priority, data=data, **ids
    )


__all__ = [
    "ALERT_CLOSED",
    "ALERT_RAISED",
    "ALERT_UPDATED",
    "ORDER_AT_RISK",
    "ORDER_CANCELLED",
    "ORDER_CREATED",
    "ORDER_FULFILLED",
    "SOURCE",
    "AlertData",
    "AlertEvent",
    "OrderData",
    "OrderEvent",
    "create_alert_event",
    "create_order_event",
    "entity_id",
    "sales_topic",
]
