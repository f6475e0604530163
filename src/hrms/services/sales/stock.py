"""What sales does about stock: the product projection, at-risk orders, the demand forecast,
low-stock alerts and the sales team's notification.

:class:`SalesDesk` holds the handlers the :class:`~hrms.services.sales.consumer.LowStockConsumer`
dispatches to, each run in the consumer's transaction (with the inbox), in the event's
tenant, so a redelivered event changes nothing twice.

Seed 004's low-stock handler, :meth:`SalesDesk.handle_low_stock_event`:

1. checks the pending orders for the product;
2. sets the alert priority (seed 004's rules, from the payload and the envelope);
3. creates the product's open alert (``sales.alert_raised``) or updates it: its priority
   only rises (``sales.alert_updated``); stock figures are refreshed silently;
4. updates the demand forecast: units ordered per day over the last ``window_days``;
5. marks the pending orders the stock can no longer satisfy ``at_risk`` (first come,
   first served; ``sales.order_at_risk`` once per order);
6. notifies the sales team (template ``low_stock_alert``) when the alert is raised or its
   priority rises.

An ``inventory.stock_adjusted`` (or ``product_updated``) event that shows the stock above
the reorder level closes the open alert (``sales.alert_closed``); a stock change also
re-checks the at-risk orders.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import BaseEvent, Priority
from hrms.events import (
    EventType,
    LowStockData,
    create_notification_event,
    days_of_stock_remaining,
    low_stock_priority,
)
from hrms.service import Service
from hrms.services._common import Clock, EventIds, find_row, insert_row, update_row
from hrms.services.inventory.events import (
    AUDIT_SALES_ACTION,
    ProductData,
    Recorder,
    tenant_ids,
)
from hrms.services.sales.events import (
    ALERT_CLOSED,
    ALERT_RAISED,
    ALERT_UPDATED,
    ORDER_AT_RISK,
    SOURCE,
    create_alert_event,
    create_order_event,
)
from hrms.services.sales.tables import alerts, forecasts, orders, products

logger = logging.getLogger("hrms.services.sales")

PENDING = "pending"
FULFILLED = "fulfilled"
CANCELLED = "cancelled"
OPEN = "open"
CLOSED = "closed"

FORECAST_WINDOW_DAYS = 30
"""The forecast averages the units ordered over this many days."""


def sales_team_address(tenant_id: str) -> str:
    """The default sales-team address of a tenant: ``sales@<tenant>.example``."""
    domain = re.sub(r"[^a-z0-9-]+", "-", tenant_id.lower()).strip("-") or "tenant"
    return f"sales@{domain}.example"


def alert_priority(event: BaseEvent, data: LowStockData) -> Priority:
    """Seed 004's priority of a low-stock event: the envelope's or the payload's, the higher.

    The payload decides (``critical`` at 0, ``high`` under 3 days or half the reorder
    level, ``medium`` at or below it); an envelope marked more urgent by its producer is
    kept. Never below ``medium``: the event says the product needs reordering.
    """
    days = data.days_of_stock_remaining
    if days is None:
        days = days_of_stock_remaining(data.current_stock, data.average_daily_usage)
    computed = low_stock_priority(data.current_stock, data.reorder_level, days)
    return max(computed, event.priority, Priority.MEDIUM, key=lambda p: p.rank)


@dataclass(frozen=True)
class Forecast:
    """Recent demand for a product."""

    window_days: int
    orders: int
    units: int
    average_daily_demand: float


@dataclass
class SalesDesk:
    """The sales service's reactions to inventory events, and the order rules they share.

    Args:
        service: the sales service.
        topic: the sales topic.
        clock: the current time (forecast window, timestamps).
        sales_team_email: where low-stock notifications go (``sales@<tenant>.example``
            when ``None``).
        window_days: the forecast window.
    """

    service: Service
    topic: str
    clock: Clock
    sales_team_email: str | None = None
    window_days: int = FORECAST_WINDOW_DAYS

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.service, SOURCE, AUDIT_SALES_ACTION)

    # -- handlers (the consumer's registry) -------------------------------------------------
    async def on_product(self, event: BaseEvent, session: AsyncSession) -> None:
        """``inventory.product_created`` / ``product_updated``: project it; close the alert
        if the stock is now above the (new) reorder level."""
        data = ProductData.model_validate(event.data)
        row = await self.project(session, event, str(data.product_id), _product_values(data))
        if row is not None:
            await self._close_if_recovered(session, row)

    async def on_stock_adjusted(self, event: BaseEvent, session: AsyncSession) -> None:
        """``inventory.stock_adjusted``: project it, re-check at-risk orders, close the
        alert when the stock is above the reorder level."""
        data = ProductData.model_validate(event.data)
        row = await self.project(session, event, str(data.product_id), _product_values(data))
        if row is None:
            return
        await self.reassess_orders(session, row["tenant_id"], row["product_id"])
        await self._close_if_recovered(session, row)

    async def handle_low_stock_event(self, event: BaseEvent, session: AsyncSession) -> None:
        """Seed 004's handler of ``inventory.low_stock`` (see the module docstring)."""
        data = LowStockData.model_validate(event.data)
        product_id = str(data.product_id)
        values = {
            "sku": data.product_sku,
            "name": data.product_name,
            "category": data.category,
            "location": data.location,
            "unit_price": data.unit_price,
            "current_stock": data.current_stock,
            "reorder_level": data.reorder_level,
            "reorder_quantity": data.reorder_quantity,
            "average_daily_usage": data.average_daily_usage,
        }
        row = await self.project(session, event, product_id, values)
        if row is None:
            return
        tenant = row["tenant_id"]
        if data.current_stock > data.reorder_level:
            logger.info("low-stock event %s shows stock above reorder level", event.event_id)
            return
        priority = alert_priority(event, data)
        pending, pending_units = await self._pending(session, tenant, product_id)
        forecast = await self.update_forecast(session, tenant, product_id)
        at_risk = await self.reassess_orders(session, tenant, product_id)
        days = data.days_of_stock_remaining
        if days is None:
            days = days_of_stock_remaining(data.current_stock, data.average_daily_usage)
        figures = {
            "product_sku": data.product_sku,
            "product_name": data.product_name,
            "current_stock": data.current_stock,
            "reorder_level": data.reorder_level,
            "reorder_quantity": data.reorder_quantity,
            "days_of_stock_remaining": days,
            "pending_orders": pending,
            "pending_quantity": pending_units,
            "at_risk_orders": len(at_risk),
            "forecast_daily_demand": forecast.average_daily_demand,
            "last_event_id": str(event.event_id),
        }
        alert, previous, raised = await self._raise_or_update(
            session, tenant, product_id, priority, figures
        )
        if raised or previous is not None:
            await self._notify(session, alert, forecast)

    # -- projection -------------------------------------------------------------------------
    async def project(
        self, session: AsyncSession, event: BaseEvent, product_id: str, values: dict[str, Any]
    ) -> RowMapping | None:
        """Upsert the product into the projection under the event's tenant.

        Returns the projected row, or ``None`` when the event is older than the one last
        applied (it is then ignored).
        """
        tenant = str(event.tenant_id)
        key = (products.c.tenant_id == tenant) & (products.c.product_id == product_id)
        last = await session.scalar(select(products.c.event_at).where(key))
        if last is not None and last > event.timestamp:
            logger.info(
                "%s %s is older than the projection: ignored", event.event_type, event.event_id
            )
            return None
        given = {k: v for k, v in values.items() if v is not None}
        if last is None:
            await session.execute(
                insert(products).values(
                    tenant_id=tenant, product_id=product_id, event_at=event.timestamp, **given
                )
            )
        else:
            await session.execute(
                update(products).where(key).values(event_at=event.timestamp, **given)
            )
        return (await session.execute(select(products).where(key))).mappings().one()

    # -- orders -----------------------------------------------------------------------------
    async def reassess_orders(
        self, session: AsyncSession, tenant_id: str, product_id: str
    ) -> list[int]:
        """Mark the pending orders the known stock cannot satisfy ``at_risk``.

        Pending orders are served first come, first served from the projected stock; an
        order that does not fit is at risk (``sales.order_at_risk`` when it becomes so),
        one that fits again is no longer. Returns the ids of the orders at risk.
        """
        stock = await session.scalar(
            select(products.c.current_stock).where(
                products.c.tenant_id == tenant_id, products.c.product_id == product_id
            )
        )
        remaining = max(int(stock or 0), 0)
        pending = (
            (
                await session.execute(
                    select(orders)
                    .where(
                        orders.c.tenant_id == tenant_id,
                        orders.c.product_id == product_id,
                        orders.c.status == PENDING,
                    )
                    .order_by(orders.c.id)
                )
            )
            .mappings()
            .all()
        )
        at_risk: list[int] = []
        ids = tenant_ids(tenant_id)
        for order in pending:
            fits = order["quantity"] <= remaining
            if fits:
                remaining -= order["quantity"]
            else:
                at_risk.append(order["id"])
            if fits == (not order["at_risk"]):
                continue
            await session.execute(
                update(orders)
                .where(orders.c.id == order["id"])
                .values(at_risk=not fits, updated_at=self.clock())
            )
            if not fits:
                row = {**order, "at_risk": True}
                await self.recorder.record(
                    session,
                    self.topic,
                    create_order_event(ORDER_AT_RISK, row, ids, available_stock=int(stock or 0)),
                    ids=ids,
                    user_id=None,
                    action="AT_RISK",
                    resource_type="order",
                    resource_id=order["id"],
                    changes={"at_risk": True, "available_stock": int(stock or 0)},
                )
        return at_risk

    async def _pending(
        self, session: AsyncSession, tenant_id: str, product_id: str
    ) -> tuple[int, int]:
        count, units = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(orders.c.quantity), 0)).where(
                    orders.c.tenant_id == tenant_id,
                    orders.c.product_id == product_id,
                    orders.c.status == PENDING,
                )
            )
        ).one()
        return int(count), int(units)

    # -- forecast ---------------------------------------------------------------------------
    async def update_forecast(
        self, session: AsyncSession, tenant_id: str, product_id: str
    ) -> Forecast:
        """Recompute the product's demand forecast: units ordered (not cancelled) per day
        over the last ``window_days``, and store it."""
        now = self.clock()
        since = now - timedelta(days=self.window_days)
        count, units = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(orders.c.quantity), 0)).where(
                    orders.c.tenant_id == tenant_id,
                    orders.c.product_id == product_id,
                    orders.c.status != CANCELLED,
                    orders.c.created_at >= since,
                )
            )
        ).one()
        forecast = Forecast(
            window_days=self.window_days,
            orders=int(count),
            units=int(units),
            average_daily_demand=round(int(units) / self.window_days, 4),
        )
        values = {
            "window_days": forecast.window_days,
            "orders": forecast.orders,
            "units": forecast.units,
            "average_daily_demand": forecast.average_daily_demand,
            "computed_at": now,
        }
        key = (forecasts.c.tenant_id == tenant_id) & (forecasts.c.product_id == product_id)
        done = await session.execute(update(forecasts).where(key).values(**values))
        if done.rowcount == 0:  # type: ignore[attr-defined]
            await session.execute(
                insert(forecasts).values(tenant_id=tenant_id, product_id=product_id, **values)
            )
        return forecast

    # -- alerts -----------------------------------------------------------------------------
    async def _open_alert(
        self, session: AsyncSession, tenant_id: str, product_id: str
    ) -> RowMapping | None:
        return await find_row(
            session, alerts, tenant_id=tenant_id, product_id=product_id, status=OPEN
        )

    async def _raise_or_update(
        self,
        session: AsyncSession,
        tenant_id: str,
        product_id: str,
        priority: Priority,
        figures: dict[str, Any],
    ) -> tuple[RowMapping, Priority | None, bool]:
        """The product's open alert, created or updated.

        Returns ``(alert, previous priority if it rose, whether it was raised now)``.
        """
        now = self.clock()
        ids = tenant_ids(tenant_id)
        current = await self._open_alert(session, tenant_id, product_id)
        if current is None:
            alert = await insert_row(
                session,
                alerts,
                tenant_id,
                "alert",
                product_id=product_id,
                status=OPEN,
                priority=priority.value,
                raised_at=now,
                updated_at=now,
                **figures,
            )
            await self._announce(session, ALERT_RAISED, "RAISE", alert, ids)
            return alert, None, True
        previous = Priority(current["priority"])
        rises = priority.rank > previous.rank
        values = {**figures, "updated_at": now}
        if rises:
            values["priority"] = priority.value
        alert = await update_row(session, alerts, current, "alert", **values)
        if not rises:
            return alert, None, False
        await self._announce(session, ALERT_UPDATED, "ESCALATE", alert, ids, previous)
        return alert, previous, False

    async def _close_if_recovered(self, session: AsyncSession, product: RowMapping) -> None:
        """Close the product's open alert if its stock is above the reorder level."""
        if product["current_stock"] <= product["reorder_level"]:
            return
        tenant, product_id = product["tenant_id"], product["product_id"]
        current = await self._open_alert(session, tenant, product_id)
        if current is None:
            return
        now = self.clock()
        pending, units = await self._pending(session, tenant, product_id)
        alert = await update_row(
            session,
            alerts,
            current,
            "alert",
            status=CLOSED,
            closed_at=now,
            updated_at=now,
            current_stock=product["current_stock"],
            reorder_level=product["reorder_level"],
            days_of_stock_remaining=days_of_stock_remaining(
                product["current_stock"], product["average_daily_usage"]
            ),
            pending_orders=pending,
            pending_quantity=units,
            at_risk_orders=await self._count_at_risk(session, tenant, product_id),
        )
        await self._announce(session, ALERT_CLOSED, "CLOSE", alert, tenant_ids(tenant))

    async def _count_at_risk(self, session: AsyncSession, tenant_id: str, product_id: str) -> int:
        count = await session.scalar(
            select(func.count()).where(
                orders.c.tenant_id == tenant_id,
                orders.c.product_id == product_id,
                orders.c.status == PENDING,
                orders.c.at_risk.is_(True),
            )
        )
        return int(count or 0)

    async def _announce(
        self,
        session: AsyncSession,
        event_type: str,
        action: str,
        alert: RowMapping,
        ids: EventIds,
        previous: Priority | None = None,
    ) -> None:
        """The alert event and its audit record."""
        changes: dict[str, Any] = {
            "status": alert["status"],
            "priority": alert["priority"],
            "current_stock": alert["current_stock"],
        }
        if previous is not None:
            changes["previous_priority"] = previous.value
        await self.recorder.record(
            session,
            self.topic,
            create_alert_event(event_type, alert, ids, previous),
            ids=ids,
            user_id=None,
            action=action,
            resource_type="alert",
            resource_id=alert["id"],
            changes=changes,
            description=(
                f"{action} {alert['priority']} low-stock alert {alert['id']} "
                f"for product {alert['product_id']}"
            ),
        )

    # -- notification -----------------------------------------------------------------------
    async def _notify(self, session: AsyncSession, alert: RowMapping, forecast: Forecast) -> None:
        """Tell the sales team (``low_stock_alert``) through the notification service."""
        tenant = alert["tenant_id"]
        priority = Priority(alert["priority"])
        days = alert["days_of_stock_remaining"]
        event = create_notification_event(
            source_service=SOURCE,
            recipient_email=self.sales_team_email or sales_team_address(tenant),
            recipient_name="Sales team",
            subject=(
                f"[{priority.value.upper()}] Low stock: {alert['product_name']} "
                f"({alert['product_sku']}), {alert['current_stock']} left"
            ),
            template_name="low_stock_alert",
            template_data={
                "alert_id": alert["id"],
                "priority": priority.value,
                "product_id": alert["product_id"],
                "product_name": alert["product_name"],
                "product_sku": alert["product_sku"],
                "current_stock": alert["current_stock"],
                "reorder_level": alert["reorder_level"],
                "reorder_quantity": alert["reorder_quantity"],
                "days_of_stock_remaining": None if days is None else round(days, 1),
                "pending_orders": alert["pending_orders"],
                "pending_quantity": alert["pending_quantity"],
                "at_risk_orders": alert["at_risk_orders"],
                "forecast_daily_demand": forecast.average_daily_demand,
            },
            event_type=EventType.INVENTORY_LOW_STOCK,
            priority=priority.value,
            **tenant_ids(tenant),
        )
        await self.service.emit(session, self.service.settings.notification_topic, event)


def _product_values(data: ProductData) -> dict[str, Any]:
    return {
        "sku": data.sku,
        "name": data.name,
        "category": data.category,
        "location": data.location,
        "unit_price": data.unit_price,
        "current_stock": data.quantity_on_hand,
        "reorder_level": data.reorder_level,
        "reorder_quantity": data.reorder_quantity,
        "average_daily_usage": data.average_daily_usage,
    }


__all__ = [
    "CANCELLED",
    "CLOSED",
    "FORECAST_WINDOW_DAYS",
    "FULFILLED",
    "OPEN",
    "PENDING",
    "Forecast",
    "SalesDesk",
    "alert_priority",
    "sales_team_address",
]
