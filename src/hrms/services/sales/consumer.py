"""Seed 004's ``LowStockConsumer``: the sales service's dispatcher of ``inventory-events``.

The framework's consumer (``@service.consumer``) reads the topic, decodes each record and
runs the handler in a database transaction with the inbox; this class is what it calls:
a registry of one handler per event type, each run in the event's tenant::

    consumer = LowStockConsumer()
    consumer.register_handler("inventory.low_stock", desk.handle_low_stock_event)

    @service.consumer(topic)
    async def on_inventory_event(event: BaseEvent, session: AsyncSession) -> None:
        await consumer.handle(event, session)

Events of a type with no handler are skipped (logged); so are events without a tenant,
since every row of the sales service belongs to one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent
from eventbus.errors import ConfigurationError

logger = logging.getLogger("hrms.services.sales")

Handler = Callable[[BaseEvent, AsyncSession], Awaitable[None]]
"""``async (event, session) -> None``, run in the consumer's transaction."""


class LowStockConsumer:
    """Routes each consumed inventory event to the handler registered for its type."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.handled: dict[str, int] = {}
        self.skipped = 0

    def register_handler(self, event_type: str, handler: Handler) -> None:
        """Handle events of ``event_type`` with ``handler`` (one handler per type).

        Raises:
            ConfigurationError: a handler is registered for ``event_type`` already.
        """
        key = str(event_type)
        if key in self.handlers:
            raise ConfigurationError(f"a handler for {key!r} is registered already")
        self.handlers[key] = handler

    async def handle(self, event: BaseEvent, session: AsyncSession) -> None:
        """Run the handler of ``event``'s type in its tenant (or skip it, logged)."""
        handler = self.handlers.get(event.event_type)
        if handler is None:
            logger.debug("no handler for %s %s: skipped", event.event_type, event.event_id)
            self.skipped += 1
            return
        if not event.tenant_id:
            logger.warning(
                "%s %s has no tenant_id: skipped (sales data is per tenant)",
                event.event_type,
                event.event_id,
            )
            self.skipped += 1
            return
        logger.info(
            "processing %s %s (tenant %s, priority %s)",
            event.event_type,
            event.event_id,
            event.tenant_id,
            event.priority.value,
        )
        await handler(event, session)
        self.handled[event.event_type] = self.handled.get(event.event_type, 0) + 1


__all__ = ["Handler", "LowStockConsumer"]
