"""The inventory HTTP API: products and stock adjustments, scoped to the caller's tenant.

Writes (admins and managers) commit the row, the product event and an
``audit.inventory.action`` event together; reads are open to anyone in the tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from eventbus import Priority
from hrms.events import days_of_stock_remaining
from hrms.service import Conflict, Principal, RuleBroken, Service
from hrms.service.auth import CurrentUser, Manager
from hrms.service.ids import MAX_ID
from hrms.services._common import (
    Clock,
    Page,
    Pagination,
    apply_changes,
    changed,
    event_ids,
    get_or_404,
    insert_row,
    paginate,
    read_or_404,
    read_page,
    refuse_clearing,
    tenant_rows,
)
from hrms.services.inventory.events import (
    AUDIT_INVENTORY_ACTION,
    PRODUCT_CREATED,
    PRODUCT_UPDATED,
    SOURCE,
    STOCK_ADJUSTED,
    Recorder,
)
from hrms.services.inventory.producer import InventoryEventProducer, is_low, stock_priority
from hrms.services.inventory.tables import adjustments, products

MAX_STOCK = 2_000_000_000
"""The most units a product may hold (the column is a 32-bit integer)."""

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Label = Annotated[str, Field(min_length=1, max_length=100)]
Price = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Units = Annotated[int, Field(ge=0, le=MAX_STOCK)]
Usage = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
ProductId = Annotated[int, Path(ge=1, le=MAX_ID, description="The product's id.")]


class ProductCreate(BaseModel):
    """A new product."""

    sku: Sku
    name: Name
    category: Label | None = None
    location: Label | None = None
    unit_price: Price = 0.0
    quantity_on_hand: Units = 0
    reorder_level: Units = 0
    reorder_quantity: Units = 0
    average_daily_usage: Usage = 0.0


class ProductUpdate(BaseModel):
    """Changes to a product; omitted fields stay, ``null`` clears category and location.

    Stock changes only through adjustments: ``quantity_on_hand`` here is refused (422).
    """

    sku: Sku | None = None
    name: Name | None = None
    category: Label | None = None
    location: Label | None = None
    unit_price: Price | None = None
    reorder_level: Units | None = None
    reorder_quantity: Units | None = None
    average_daily_usage: Usage | None = None
    quantity_on_hand: int | None = None


class ProductOut(BaseModel):
    """A product, with its stock situation."""

    id: int
    tenant_id: str
    sku: str
    name: str
    category: str | None
    location: str | None
    unit_price: float
    quantity_on_hand: int
    reorder_level: int
    reorder_quantity: int
    average_daily_usage: float
    needs_reorder: bool
    days_of_stock_remaining: float | None
    stock_priority: Priority
    created_at: datetime
    updated_at: datetime


class AdjustmentIn(BaseModel):
    """A stock adjustment: a signed change of units and why."""

    delta: Annotated[int, Field(ge=-MAX_STOCK, le=MAX_STOCK, description="units, signed")]
    reason: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


class AdjustmentOut(BaseModel):
    """A recorded stock adjustment."""

    id: int
    product_id: int
    delta: int
    reason: str
    quantity_before: int
    quantity_after: int
    created_by: int
    created_at: datetime


class LowStockOut(BaseModel):
    """The ``inventory.low_stock`` event an adjustment published."""

    event_id: str
    priority: Priority
    current_stock: int
    reorder_level: int
    days_of_stock_remaining: float | None


class AdjustmentResult(BaseModel):
    """An adjustment, the product after it, and the low-stock event if one was published."""

    adjustment: AdjustmentOut
    product: ProductOut
    low_stock: LowStockOut | None


def product_out(row: RowMapping) -> ProductOut:
    """A products row as the API shows it."""
    stock = int(row["quantity_on_hand"])
    return ProductOut.model_validate(
        {
            **row,
            "needs_reorder": is_low(row),
            "days_of_stock_remaining": days_of_stock_remaining(stock, row["average_daily_usage"]),
            "stock_priority": stock_priority(row),
        }
    )


def _adjustment_out(row: RowMapping) -> AdjustmentOut:
    return AdjustmentOut.model_validate(dict(row))


class InventoryApi:
    """The routes of the inventory service.

    Args:
        service: the inventory service.
        producer: where the product and low-stock events go.
        clock: the current time (timestamps).
    """

    def __init__(self, service: Service, producer: InventoryEventProducer, clock: Clock) -> None:
        self.service = service
        self.producer = producer
        self.clock = clock
        self.recorder = Recorder(service, SOURCE, AUDIT_INVENTORY_ACTION)

    def router(self) -> APIRouter:
        """The ``/products`` routes."""
        router = APIRouter(prefix="/products", tags=["inventory"])
        router.add_api_route("", self.create, methods=["POST"], status_code=201)
        router.add_api_route("", self.listing, methods=["GET"])
        router.add_api_route("/{product_id}", self.get, methods=["GET"])
        router.add_api_route("/{product_id}", self.update, methods=["PATCH"])
        router.add_api_route(
            "/{product_id}/adjustments", self.adjust, methods=["POST"], status_code=201
        )
        router.add_api_route("/{product_id}/adjustments", self.adjustments, methods=["GET"])
        return router

    # -- routes -----------------------------------------------------------------------------
    async def create(self, body: ProductCreate, principal: Manager) -> ProductOut:
        """Create a product (admin, manager); 409 if the SKU exists in the tenant."""
        now = self.clock()
        tenant = principal.tenant_id
        values = body.model_dump()
        try:
            async with self.service.transaction() as session:
                await _check_sku_free(session, tenant, body.sku)
                row = await insert_row(
                    session,
                    products,
                    tenant,
                    "product",
                    created_by=principal.user_id,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                await self._record(
                    session, principal, row, PRODUCT_CREATED, "CREATE", changed({}, values)
                )
        except IntegrityError as exc:  # a concurrent create took the SKU first
            raise Conflict(f"sku {body.sku!r} already exists") from exc
        return product_out(row)

    async def listing(
        self,
        principal: CurrentUser,
        page: Pagination,
        category: str | None = None,
        location: str | None = None,
        sku: str | None = None,
        low_stock: bool | None = None,
    ) -> Page[ProductOut]:
        """A page of the tenant's products by SKU; ``low_stock`` filters on needing a reorder."""
        query = tenant_rows(
            products, principal.tenant_id, category=category, location=location, sku=sku
        )
        if low_stock is not None:
            low = products.c.quantity_on_hand <= products.c.reorder_level
            query = query.where(low if low_stock else ~low)
        query = query.order_by(products.c.sku, products.c.id)
        return await read_page(self.service, query, page, product_out)

    async def get(self, product_id: ProductId, principal: CurrentUser) -> ProductOut:
        """One product of the caller's tenant."""
        row = await read_or_404(self.service, products, product_id, principal.tenant_id, "product")
        return product_out(row)

    async def update(
        self, product_id: ProductId, body: ProductUpdate, principal: Manager
    ) -> ProductOut:
        """Change a product (admin, manager); stock changes only through adjustments."""
        given = body.model_dump(exclude_unset=True)
        if "quantity_on_hand" in given:
            raise RuleBroken(
                "quantity_on_hand changes only through POST /products/{id}/adjustments"
            )
        refuse_clearing(given, ("sku", "name", "unit_price", "reorder_level", "reorder_quantity"))
        if given.get("average_daily_usage", 0.0) is None:
            raise RuleBroken("average_daily_usage cannot be cleared (set 0 for unknown)")
        tenant = principal.tenant_id
        try:
            async with self.service.transaction() as session:
                before = await get_or_404(session, products, product_id, tenant, "product")
                if given.get("sku") not in (None, before["sku"]):
                    await _check_sku_free(session, tenant, given["sku"])
                row, diff = await apply_changes(
                    session, products, before, given, "product", self.clock
                )
                if diff:
                    await self._record(session, principal, row, PRODUCT_UPDATED, "UPDATE", diff)
        except IntegrityError as exc:
            raise Conflict(f"sku {given.get('sku')!r} already exists") from exc
        return product_out(row)

    async def adjust(
        self, product_id: ProductId, body: AdjustmentIn, principal: Manager
    ) -> AdjustmentResult:
        """Change a product's stock by ``delta`` (admin, manager).

        422 ``insufficient stock`` when the result would be below zero. Publishes
        ``inventory.stock_adjusted`` and, when the product is left at or below its reorder
        level, ``inventory.low_stock`` with seed 004's priority.
        """
        tenant = principal.tenant_id
        now = self.clock()
        delta = body.delta
        async with self.service.transaction() as session:
            after = (
                await session.execute(
                    update(products)
                    .where(
                        products.c.id == product_id,
                        products.c.tenant_id == tenant,
                        products.c.quantity_on_hand + delta >= 0,
                        products.c.quantity_on_hand + delta <= MAX_STOCK,
                    )
                    .values(quantity_on_hand=products.c.quantity_on_hand + delta, updated_at=now)
                    .returning(products.c.quantity_on_hand)
                )
            ).scalar_one_or_none()
            if after is None:
                await _refuse(session, tenant, product_id, delta)
            before = int(after) - delta
            adjustment_id = (
                await session.execute(
                    insert(adjustments)
                    .values(
                        tenant_id=tenant,
                        product_id=product_id,
                        delta=delta,
                        reason=body.reason,
                        quantity_before=before,
                        quantity_after=after,
                        created_by=principal.user_id,
                        created_at=now,
                    )
                    .returning(adjustments.c.id)
                )
            ).scalar_one()
            row = await get_or_404(session, products, product_id, tenant, "product")
            adjustment = await get_or_404(session, adjustments, adjustment_id, tenant, "adjustment")
            await self._record(
                session,
                principal,
                row,
                STOCK_ADJUSTED,
                "ADJUST_STOCK",
                {"quantity_on_hand": after, "previous_quantity": before, "delta": delta},
                adjustment_id=adjustment_id,
                delta=delta,
                reason=body.reason,
                previous_quantity=before,
            )
            low = await self.producer.publish_low_stock_event(session, row, event_ids(principal))
        return AdjustmentResult(
            adjustment=_adjustment_out(adjustment),
            product=product_out(row),
            low_stock=None
            if low is None
            else LowStockOut(
                event_id=str(low.event_id),
                priority=low.priority,
                current_stock=low.data.current_stock,
                reorder_level=low.data.reorder_level,
                days_of_stock_remaining=low.data.days_of_stock_remaining,
            ),
        )

    async def adjustments(
        self, product_id: ProductId, principal: CurrentUser, page: Pagination
    ) -> Page[AdjustmentOut]:
        """A page of a product's stock adjustments, newest first."""
        tenant = principal.tenant_id
        query = (
            select(adjustments)
            .where(adjustments.c.tenant_id == tenant, adjustments.c.product_id == product_id)
            .order_by(adjustments.c.id.desc())
        )
        async with self.service.sessions() as session:
            await get_or_404(session, products, product_id, tenant, "product")
            return await paginate(session, query, page, _adjustment_out)

    # -- helpers ----------------------------------------------------------------------------
    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RowMapping,
        event_type: str,
        action: str,
        changes: dict[str, Any],
        **extra: Any,
    ) -> None:
        """The product event (the whole product) and its audit event."""
        ids = event_ids(principal)
        event = await self.producer.publish_product_event(session, event_type, row, ids, **extra)
        await self.recorder.audit(
            session,
            ids=ids,
            user_id=principal.user_id,
            action=action,
            resource_type="product",
            resource_id=row["id"],
            changes=changes,
            description=f"{action} product {row['id']} ({row['sku']}): {event.event_type}",
        )


async def _check_sku_free(session: AsyncSession, tenant_id: str, sku: str) -> None:
    """409 if another product of the tenant has ``sku``."""
    taken = await session.scalar(
        select(products.c.id).where(products.c.tenant_id == tenant_id, products.c.sku == sku)
    )
    if taken is not None:
        raise Conflict(f"sku {sku!r} already exists (product {taken})")


async def _refuse(session: AsyncSession, tenant_id: str, product_id: int, delta: int) -> NoReturn:
    """Why an adjustment updated nothing: 404 (no such product here) or 422 (the rule)."""
    row = await get_or_404(session, products, product_id, tenant_id, "product")
    stock = int(row["quantity_on_hand"])
    if stock + delta < 0:
        raise RuleBroken(
            f"insufficient stock: product {product_id} ({row['sku']}) has {stock} on hand; "
            f"an adjustment of {delta} would leave {stock + delta}"
        )
    raise RuleBroken(
        f"stock limit: product {product_id} ({row['sku']}) has {stock} on hand; "
        f"an adjustment of {delta} would exceed {MAX_STOCK}"
    )


__all__ = [
    "AdjustmentIn",
    "AdjustmentOut",
    "AdjustmentResult",
    "InventoryApi",
    "ProductCreate",
    "ProductOut",
    "ProductUpdate",
    "product_out",
]
