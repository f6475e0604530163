"""The inventory service's tables: products and their stock adjustments."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from eventbus._sql import UTCDateTime

metadata = MetaData()
"""The inventory service's tables (the framework adds the outbox and inbox)."""

products = Table(
    "inventory_products",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("category", String(100), nullable=True),
    Column("location", String(100), nullable=True),
    Column("unit_price", Float, nullable=False),
    Column("quantity_on_hand", Integer, nullable=False),
    Column("reorder_level", Integer, nullable=False),
    Column("reorder_quantity", Integer, nullable=False),
    Column("average_daily_usage", Float, nullable=False),
    Column("created_by", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("tenant_id", "sku", name="uq_inventory_products_tenant_sku"),
    CheckConstraint("quantity_on_hand >= 0", name="ck_inventory_products_stock"),
    Index("ix_inventory_products_tenant_category", "tenant_id", "category"),
)

adjustments = Table(
    "inventory_adjustments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False),
    Column("product_id", Integer, ForeignKey("inventory_products.id"), nullable=False),
    Column("delta", Integer, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("quantity_before", Integer, nullable=False),
    Column("quantity_after", Integer, nullable=False),
    Column("created_by", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_inventory_adjustments_product", "tenant_id", "product_id", "id"),
)

__all__ = ["adjustments", "metadata", "products"]
