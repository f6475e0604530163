"""The sales service: orders, and what sales does when inventory runs low (seed 004's
consumer side).

It consumes ``inventory-events`` (``KAFKA_INVENTORY_TOPIC``) through
:class:`LowStockConsumer`, a registry of one handler per event type:

* ``inventory.product_created`` / ``product_updated`` / ``stock_adjusted``: keep the
  product projection (id, SKU, name, stock, reorder level, ...) per tenant; a stock
  adjustment re-checks the at-risk orders, and stock above the reorder level closes the
  product's open alert (``sales.alert_closed``).
* ``inventory.low_stock``: seed 004's handler (:meth:`SalesDesk.handle_low_stock_event`):
  pending orders, alert priority, one open alert per product (``sales.alert_raised``;
  ``sales.alert_updated`` when its priority rises), the demand forecast, at-risk orders
  (``sales.order_at_risk``) and a ``low_stock_alert`` notification to the sales team.

Endpoints (scoped to the caller's tenant; another tenant's resource is a 404):

* ``POST /orders`` (anyone in the tenant): ``{"product_id", "quantity" > 0, "customer"}``;
  404 for a product sales has not heard of; ``sales.order_created``.
* ``GET /orders`` (filters ``status``, ``product_id``, ``at_risk``), ``GET /orders/{id}``.
* ``POST /orders/{id}/cancel`` (anyone), ``POST /orders/{id}/fulfil`` (admin, manager):
  pending orders only (409); ``sales.order_cancelled`` / ``sales.order_fulfilled``.
* ``GET /alerts`` (filters ``status``, ``priority``, ``product_id``), ``GET /alerts/{id}``.
* ``GET /products``, ``GET /products/{id}``: the projection, with the forecast.

Events go to ``sales-events`` (``KAFKA_SALES_TOPIC``) through the outbox, keyed by product
id; every write also emits an ``audit.sales.action`` event.
"""

from __future__ import annotations

import os

from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent, KafkaSettings
from eventbus._transport.base import Transport
from hrms.service import HrmsSettings, Service
from hrms.services._common import Clock, utcnow
from hrms.services.inventory.events import (
    LOW_STOCK,
    PRODUCT_CREATED,
    PRODUCT_UPDATED,
    STOCK_ADJUSTED,
    inventory_topic,
)
from hrms.services.sales.api import SalesApi
from hrms.services.sales.consumer import LowStockConsumer
from hrms.services.sales.events import sales_topic
from hrms.services.sales.stock import FORECAST_WINDOW_DAYS, SalesDesk, sales_team_address
from hrms.services.sales.tables import alerts, forecasts, metadata, orders, products

__all__ = [
    "LowStockConsumer",
    "SalesApi",
    "SalesDesk",
    "alerts",
    "build",
    "forecasts",
    "metadata",
    "orders",
    "products",
    "sales_team_address",
    "start_kafka_consumers",
    "stop_kafka_consumers",
]


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    clock: Clock = utcnow,
    sales_team_email: str | None = None,
    forecast_window_days: int = FORECAST_WINDOW_DAYS,
    topic: str | None = None,
    inventory: str | None = None,
) -> Service:
    """Build the sales service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        clock: the current time (forecast window, timestamps).
        sales_team_email: where low-stock notifications go: this address,
            ``HRMS_SALES_TEAM_EMAIL``, or ``sales@<tenant>.example`` per tenant.
        forecast_window_days: the days of orders the demand forecast averages.
        topic: the sales topic (``KAFKA_SALES_TOPIC`` or ``sales-events``).
        inventory: the inventory topic consumed (``KAFKA_INVENTORY_TOPIC`` or
            ``inventory-events``).
    """
    if forecast_window_days < 1:
        raise ValueError(f"forecast_window_days must be at least 1, got {forecast_window_days}")
    service = Service(
        "sales",
        metadata,
        settings=settings,
        kafka=kafka,
        transport=transport,
        title="ERP sales service",
    )
    desk = SalesDesk(
        service,
        sales_topic(topic),
        clock,
        sales_team_email or os.environ.get("HRMS_SALES_TEAM_EMAIL") or None,
        forecast_window_days,
    )
    consumer = LowStockConsumer()
    consumer.register_handler(PRODUCT_CREATED, desk.on_product)
    consumer.register_handler(PRODUCT_UPDATED, desk.on_product)
    consumer.register_handler(STOCK_ADJUSTED, desk.on_stock_adjusted)
    consumer.register_handler(LOW_STOCK, desk.handle_low_stock_event)

    @service.consumer(inventory_topic(inventory))
    async def on_inventory_event(event: BaseEvent, session: AsyncSession) -> None:
        """Dispatch an inventory event to its handler (once, in the inbox transaction)."""
        await consumer.handle(event, session)

    service.include(SalesApi(desk).router())
    return service


async def start_kafka_consumers(service: Service) -> None:
    """Seed 004's ``start_kafka_consumers``: run the sales service without its HTTP app.

    Migrates the database and starts the ``inventory-events`` consumer and the outbox
    relay (a worker process). Under ``hrms serve``/``hrms up`` the app's lifespan does it.
    """
    await service.start()


async def stop_kafka_consumers(service: Service) -> None:
    """Seed 004's ``stop_kafka_consumers``: stop what :func:`start_kafka_consumers` started."""
    await service.stop()
