"""The inventory service: products and their stock (seed 004's producer side).

Endpoints (scoped to the caller's tenant; another tenant's product is a 404). Admins and
managers write; anyone in the tenant reads.

* ``POST /products``: create (sku unique per tenant, 409); ``inventory.product_created``.
* ``GET /products``: a page of products by SKU (filters ``category``, ``location``,
  ``sku``, ``low_stock``).
* ``GET /products/{id}``: one product, with ``needs_reorder``,
  ``days_of_stock_remaining`` and ``stock_priority``.
* ``PATCH /products/{id}``: change the product (not its stock); ``inventory.product_updated``.
* ``POST /products/{id}/adjustments``: ``{"delta": -5, "reason": "..."}``; stock below
  zero is refused (422 ``insufficient stock``); ``inventory.stock_adjusted`` and, when the
  product is left at or below its reorder level, ``inventory.low_stock`` (seed 004's
  payload and priority: ``critical`` at 0, ``high`` under 3 days of stock or under 50% of
  the reorder level, ``medium`` at or below it).
* ``GET /products/{id}/adjustments``: a page of adjustments, newest first.

Every event goes to ``inventory-events`` (``KAFKA_INVENTORY_TOPIC``) through the outbox,
keyed by product id; every write also emits an ``audit.inventory.action`` event.
"""

from __future__ import annotations

from eventbus import KafkaSettings
from eventbus._transport.base import Transport
from hrms.service import HrmsSettings, Service
from hrms.services._common import Clock, utcnow
from hrms.services.inventory.api import InventoryApi
from hrms.services.inventory.events import inventory_topic
from hrms.services.inventory.producer import (
    InventoryEventProducer,
    get_inventory_producer,
    publish_low_stock_event,
    register_producer,
)
from hrms.services.inventory.tables import adjustments, metadata, products

__all__ = [
    "InventoryApi",
    "InventoryEventProducer",
    "adjustments",
    "build",
    "get_inventory_producer",
    "metadata",
    "products",
    "publish_low_stock_event",
]


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    clock: Clock = utcnow,
    topic: str | None = None,
) -> Service:
    """Build the inventory service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        clock: the current time, for timestamps.
        topic: the inventory topic (``KAFKA_INVENTORY_TOPIC`` or ``inventory-events``).
    """
    service = Service(
        "inventory",
        metadata,
        settings=settings,
        kafka=kafka,
        transport=transport,
        title="ERP inventory service",
    )
    producer = InventoryEventProducer(service, inventory_topic(topic))
    register_producer(service, producer)
    service.include(InventoryApi(service, producer, clock).router())
    return service
