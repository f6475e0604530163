"""The sales service's tables: its product projection, orders, alerts and forecasts.

Product ids are stored as strings: inventory's are integers, seed 004's producers send
``"PRD-123"``. Every row carries the tenant of the request or event that wrote it.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from eventbus._sql import UTCDateTime

metadata = MetaData()
"""The sales service's tables (the framework adds the outbox and inbox)."""

products = Table(
    "sales_products",
    metadata,
    Column("tenant_id", String(100), primary_key=True),
    Column("product_id", String(128), primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("category", String(100), nullable=True),
    Column("location", String(100), nullable=True),
    Column("unit_price", Float, nullable=True),
    Column("current_stock", Integer, nullable=False),
    Column("reorder_level", Integer, nullable=False),
    Column("reorder_quantity", Integer, nullable=True),
    Column("average_daily_usage", Float, nullable=True),
    Column("event_at", UTCDateTime, nullable=False),
)
"""What sales knows of each product, from ``inventory-events`` (last event wins)."""

orders = Table(
    "sales_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False),
    Column("product_id", String(128), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("customer", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("at_risk", Boolean, nullable=False),
    Column("created_by", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_sales_orders_product_status", "tenant_id", "product_id", "status"),
    Index("ix_sales_orders_tenant_created", "tenant_id", "created_at"),
)

alerts = Table(
    "sales_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(100), nullable=False),
    Column("product_id", String(128), nullable=False),
    Column("product_sku", String(64), nullable=True),
    Column("product_name", String(200), nullable=True),
    Column("status", String(20), nullable=False),
    Column("priority", String(20), nullable=False),
    Column("current_stock", Integer, nullable=False),
    Column("reorder_level", Integer, nullable=False),
    Column("reorder_quantity", Integer, nullable=True),
    Column("days_of_stock_remaining", Float, nullable=True),
    Column("pending_orders", Integer, nullable=False),
    Column("pending_quantity", Integer, nullable=False),
    Column("at_risk_orders", Integer, nullable=False),
    Column("forecast_daily_demand", Float, nullable=True),
    Column("last_event_id", String(128), nullable=True),
    Column("raised_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Index("ix_sales_alerts_tenant_status", "tenant_id", "status", "id"),
    Index(
        "uq_sales_alerts_open_product",
        "tenant_id",
        "product_id",
        unique=True,
        sqlite_where=text("status = 'open'"),
        # as PostgreSQL reflects it, so the migration check compares like with like
        postgresql_where=text("(status)::text = 'open'::text"),
    ),
)
"""Low-stock alerts; at most one open alert per product (a partial unique index)."""

forecasts = Table(
    "sales_forecasts",
    metadata,
    Column("tenant_id", String(100), primary_key=True),
    Column("product_id", String(128), primary_key=True),
    Column("window_days", Integer, nullable=False),
    Column("orders", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    Column("average_daily_demand", Float, nullable=False),
    Column("computed_at", UTCDateTime, nullable=False),
)
"""The demand forecast of each product: average units ordered per day over a window."""

__all__ = ["alerts", "forecasts", "metadata", "orders", "products"]
