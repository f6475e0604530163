"""Seed 004's ``InventoryEventProducer``, on the service's transactional outbox.

Seed 004 publishes after ``db.commit()``, so a crash between the two loses the event;
here every event goes into the outbox in the caller's transaction and the relay
publishes it (keyed by product id) once the transaction commits::

    producer = get_inventory_producer(service)
    async with service.transaction() as session:
        ...  # adjust the stock
        await producer.publish_low_stock_event(session, product, ids)
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import Priority
from hrms.events import (
    LowStockEvent,
    create_low_stock_event,
    days_of_stock_remaining,
    low_stock_priority,
)
from hrms.service import Service
from hrms.services._common import EventIds
from hrms.services.inventory.events import SOURCE, ProductEvent, Row, create_product_event

Product = Row
"""A product row."""


def is_low(product: Product) -> bool:
    """Whether ``product`` is at or below its reorder level (it needs reordering)."""
    return int(product["quantity_on_hand"]) <= int(product["reorder_level"])


def stock_priority(product: Product) -> Priority:
    """Seed 004's priority of ``product``'s stock level (``low`` above the reorder level)."""
    stock = int(product["quantity_on_hand"])
    days = days_of_stock_remaining(stock, product["average_daily_usage"])
    return low_stock_priority(stock, int(product["reorder_level"]), days)


class InventoryEventProducer:
    """Adds inventory events to ``service``'s outbox, on ``topic``.

    Args:
        service: the inventory service.
        topic: the inventory topic (``inventory-events``).
    """

    def __init__(self, service: Service, topic: str) -> None:
        self.service = service
        self.topic = topic

    async def publish_product_event(
        self,
        session: AsyncSession,
        event_type: str,
        product: Product,
        ids: EventIds,
        **extra: Any,
    ) -> ProductEvent:
        """Add a product event (the whole product, plus ``extra``) to the outbox."""
        event = create_product_event(event_type, product, ids, **extra)
        await self.service.emit(session, self.topic, event)
        return event

    async def publish_low_stock_event(
        self, session: AsyncSession, product: Product, ids: EventIds
    ) -> LowStockEvent | None:
        """Add ``inventory.low_stock`` for ``product`` to the outbox if it is low on stock.

        The event carries seed 004's payload (with ``days_of_stock_remaining``) and
        priority: ``critical`` at 0, ``high`` under 3 days of stock or under half the
        reorder level, ``medium`` at or below the reorder level. Above the reorder level
        nothing is published and ``None`` returned.
        """
        if not is_low(product):
            return None
        usage = float(product["average_daily_usage"])
        event = create_low_stock_event(
            source_service=SOURCE,
            product_id=product["id"],
            product_sku=product["sku"],
            product_name=product["name"],
            current_stock=int(product["quantity_on_hand"]),
            reorder_level=int(product["reorder_level"]),
            reorder_quantity=int(product["reorder_quantity"]),
            unit_price=float(product["unit_price"]),
            category=product["category"],
            location=product["location"],
            average_daily_usage=usage if usage > 0 else None,
            tenant_id=ids["tenant_id"],
            correlation_id=ids["correlation_id"],
            causation_id=ids["causation_id"],
        )
        await self.service.emit(session, self.topic, event)
        return event


_PRODUCERS: weakref.WeakKeyDictionary[Service, InventoryEventProducer] = weakref.WeakKeyDictionary()


def get_inventory_producer(service: Service) -> InventoryEventProducer:
    """The inventory producer of ``service`` (seed 004's ``get_inventory_producer``).

    Raises:
        KeyError: ``service`` is not an inventory service built by ``build``.
    """
    return _PRODUCERS[service]


def register_producer(service: Service, producer: InventoryEventProducer) -> None:
    """Make ``producer`` what :func:`get_inventory_producer` returns for ``service``."""
    _PRODUCERS[service] = producer


async def publish_low_stock_event(
    service: Service, session: AsyncSession, product: Product, ids: EventIds
) -> LowStockEvent | None:
    """Seed 004's ``publish_low_stock_event``: see
    :meth:`InventoryEventProducer.publish_low_stock_event`."""
    return await get_inventory_producer(service).publish_low_stock_event(session, product, ids)


__all__ = [
    "InventoryEventProducer",
    "get_inventory_producer",
    "is_low",
    "publish_low_stock_event",
    "register_producer",
    "stock_priority",
]
