"""The sales HTTP API: orders, low-stock alerts and the products sales knows of.

Everything is scoped to the caller's tenant (another tenant's order, alert or product is
a 404). Order writes commit the row, the ``sales.order_*`` event and an
``audit.sales.action`` event together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import Priority
from hrms.events import EntityId, days_of_stock_remaining
from hrms.service import Conflict, NotFound, Principal
from hrms.service.auth import CurrentUser, Manager
from hrms.service.ids import Id
from hrms.services._common import (
    Page,
    Pagination,
    event_ids,
    find_row,
    get_or_404,
    insert_row,
    read_or_404,
    read_page,
    tenant_rows,
    update_row,
)
from hrms.services.sales.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_FULFILLED,
    create_order_event,
    entity_id,
)
from hrms.services.sales.stock import CANCELLED, FULFILLED, PENDING, SalesDesk
from hrms.services.sales.tables import alerts, forecasts, orders, products

ProductKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
OrderStatus = Literal["pending", "fulfilled", "cancelled"]
AlertStatus = Literal["open", "closed"]


class OrderIn(BaseModel):
    """A new order for a product inventory has announced."""

    product_id: Id | ProductKey
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    customer: Annotated[str, Field(min_length=1, max_length=200)]


class OrderOut(BaseModel):
    """A sales order."""

    id: int
    tenant_id: str
    product_id: EntityId
    quantity: int
    customer: str
    status: OrderStatus
    at_risk: bool
    created_by: int
    created_at: datetime
    updated_at: datetime


class AlertOut(BaseModel):
    """A low-stock alert (one open alert per product)."""

    id: int
    tenant_id: str
    product_id: EntityId
    product_sku: str | None
    product_name: str | None
    status: AlertStatus
    priority: Priority
    current_stock: int
    reorder_level: int
    reorder_quantity: int | None
    days_of_stock_remaining: float | None
    pending_orders: int
    pending_quantity: int
    at_risk_orders: int
    forecast_daily_demand: float | None
    raised_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class ForecastOut(BaseModel):
    """Recent demand for a product."""

    window_days: int
    orders: int
    units: int
    average_daily_demand: float
    computed_at: datetime


class ProductView(BaseModel):
    """A product as sales knows it (from inventory events)."""

    product_id: EntityId
    sku: str
    name: str
    category: str | None
    location: str | None
    unit_price: float | None
    current_stock: int
    reorder_level: int
    reorder_quantity: int | None
    days_of_stock_remaining: float | None
    forecast: ForecastOut | None


def _order_out(row: RowMapping) -> OrderOut:
    return OrderOut.model_validate({**row, "product_id": entity_id(row["product_id"])})


def _alert_out(row: RowMapping) -> AlertOut:
    return AlertOut.model_validate({**row, "product_id": entity_id(row["product_id"])})


class SalesApi:
    """The routes of the sales service.

    Args:
        desk: the stock logic (at-risk orders, the topic, the clock).
    """

    def __init__(self, desk: SalesDesk) -> None:
        self.desk = desk
        self.service = desk.service

    def router(self) -> APIRouter:
        """The ``/orders``, ``/alerts`` and ``/products`` routes."""
        router = APIRouter(tags=["sales"])
        router.add_api_route("/orders", self.create, methods=["POST"], status_code=201)
        router.add_api_route("/orders", self.list_orders, methods=["GET"])
        router.add_api_route("/orders/{order_id}", self.get_order, methods=["GET"])
        router.add_api_route("/orders/{order_id}/cancel", self.cancel, methods=["POST"])
        router.add_api_route("/orders/{order_id}/fulfil", self.fulfil, methods=["POST"])
        router.add_api_route("/alerts", self.list_alerts, methods=["GET"])
        router.add_api_route("/alerts/{alert_id}", self.get_alert, methods=["GET"])
        router.add_api_route("/products", self.list_products, methods=["GET"])
        router.add_api_route("/products/{product_id}", self.get_product, methods=["GET"])
        return router

    # -- orders -----------------------------------------------------------------------------
    async def create(self, body: OrderIn, principal: CurrentUser) -> OrderOut:
        """Order a product (anyone in the tenant); 404 if sales has not heard of it.

        The order is pending; if the known stock cannot satisfy it after the earlier
        pending orders it is also ``at_risk`` (``sales.order_at_risk``).
        """
        tenant = principal.tenant_id
        product_id = str(body.product_id)
        now = self.desk.clock()
        async with self.service.transaction() as session:
            stock = await session.scalar(
                select(products.c.current_stock).where(
                    products.c.tenant_id == tenant, products.c.product_id == product_id
                )
            )
            if stock is None:
                raise NotFound(
                    f"product {product_id} not found: sales knows only products that "
                    "inventory has announced in this tenant"
                )
            values = {
                "product_id": product_id,
                "quantity": body.quantity,
                "customer": body.customer,
                "status": PENDING,
                "at_risk": False,
            }
            row = await insert_row(
                session,
                orders,
                tenant,
                "order",
                created_by=principal.user_id,
                created_at=now,
                updated_at=now,
                **values,
            )
            await self._record(session, principal, row, ORDER_CREATED, "CREATE", int(stock))
            await self.desk.reassess_orders(session, tenant, product_id)
            row = await get_or_404(session, orders, row["id"], tenant, "order")
        return _order_out(row)

    async def list_orders(
        self,
        principal: CurrentUser,
        page: Pagination,
        status: OrderStatus | None = None,
        product_id: str | None = None,
        at_risk: bool | None = None,
    ) -> Page[OrderOut]:
        """A page of the tenant's orders, newest first."""
        query = tenant_rows(orders, principal.tenant_id, status=status, product_id=product_id)
        if at_risk is not None:
            query = query.where(orders.c.at_risk.is_(at_risk))
        query = query.order_by(orders.c.id.desc())
        return await read_page(self.service, query, page, _order_out)

    async def get_order(self, order_id: Id, principal: CurrentUser) -> OrderOut:
        """One order of the caller's tenant."""
        return _order_out(
            await read_or_404(self.service, orders, order_id, principal.tenant_id, "order")
        )

    async def cancel(self, order_id: Id, principal: CurrentUser) -> OrderOut:
        """Cancel a pending order (anyone in the tenant); its units go back to the others."""
        return await self._close(order_id, principal, CANCELLED, ORDER_CANCELLED, "CANCEL")

    async def fulfil(self, order_id: Id, principal: Manager) -> OrderOut:
        """Mark a pending order fulfilled (admin, manager).

        The shipment itself is a stock adjustment in the inventory service, whose event
        updates what sales knows of the stock.
        """
        return await self._close(order_id, principal, FULFILLED, ORDER_FULFILLED, "FULFIL")

    # -- alerts -----------------------------------------------------------------------------
    async def list_alerts(
        self,
        principal: CurrentUser,
        page: Pagination,
        status: AlertStatus | None = None,
        priority: Priority | None = None,
        product_id: str | None = None,
    ) -> Page[AlertOut]:
        """A page of the tenant's low-stock alerts, newest first."""
        query = tenant_rows(
            alerts,
            principal.tenant_id,
            status=status,
            priority=priority,
            product_id=product_id,
        ).order_by(alerts.c.id.desc())
        return await read_page(self.service, query, page, _alert_out)

    async def get_alert(self, alert_id: Id, principal: CurrentUser) -> AlertOut:
        """One alert of the caller's tenant."""
        return _alert_out(
            await read_or_404(self.service, alerts, alert_id, principal.tenant_id, "alert")
        )

    # -- products ---------------------------------------------------------------------------
    async def list_products(self, principal: CurrentUser, page: Pagination) -> Page[ProductView]:
        """A page of the products sales knows of in the tenant, by SKU."""
        query = tenant_rows(products, principal.tenant_id).order_by(
            products.c.sku, products.c.product_id
        )
        return await read_page(self.service, query, page, lambda row: _product_view(row, None))

    async def get_product(
        self, product_id: Annotated[str, Path(min_length=1, max_length=128)], principal: CurrentUser
    ) -> ProductView:
        """One product as sales knows it, with its demand forecast once computed."""
        tenant = principal.tenant_id
        async with self.service.sessions() as session:
            row = await find_row(session, products, tenant_id=tenant, product_id=product_id)
            forecast = await find_row(session, forecasts, tenant_id=tenant, product_id=product_id)
        if row is None:
            raise NotFound(f"product {product_id} not found")
        return _product_view(row, forecast)

    # -- helpers ----------------------------------------------------------------------------
    async def _close(
        self, order_id: int, principal: Principal, status: str, event_type: str, action: str
    ) -> OrderOut:
        tenant = principal.tenant_id
        async with self.service.transaction() as session:
            before = await get_or_404(session, orders, order_id, tenant, "order")
            if before["status"] != PENDING:
                raise Conflict(
                    f"order {order_id} is {before['status']}: only pending orders can be {status}"
                )
            row = await update_row(
                session,
                orders,
                before,
                "order",
                status=status,
                at_risk=False,
                updated_at=self.desk.clock(),
            )
            await self._record(session, principal, row, event_type, action)
            if status == CANCELLED:
                await self.desk.reassess_orders(session, tenant, row["product_id"])
        return _order_out(row)

    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RowMapping,
        event_type: str,
        action: str,
        available_stock: int | None = None,
    ) -> None:
        ids = event_ids(principal)
        changes: dict[str, Any] = {"status": row["status"]}
        if action == "CREATE":
            changes.update(
                product_id=row["product_id"], quantity=row["quantity"], customer=row["customer"]
            )
        await self.desk.recorder.record(
            session,
            self.desk.topic,
            create_order_event(event_type, row, ids, available_stock),
            ids=ids,
            user_id=principal.user_id,
            action=action,
            resource_type="order",
            resource_id=row["id"],
            changes=changes,
        )


def _product_view(row: RowMapping, forecast: RowMapping | None) -> ProductView:
    return ProductView.model_validate(
        {
            **row,
            "product_id": entity_id(row["product_id"]),
            "days_of_stock_remaining": days_of_stock_remaining(
                row["current_stock"], row["average_daily_usage"]
            ),
            "forecast": None if forecast is None else dict(forecast),
        }
    )


__all__ = ["AlertOut", "OrderIn", "OrderOut", "ProductView", "SalesApi"]
