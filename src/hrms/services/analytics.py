"""The analytics service: how many events of each type each tenant had, hour by hour.

Seed 002's analytics consumer. It reads every domain's topics (under either topic
layout, see :mod:`hrms.routing`) in batches and keeps one counter per tenant, event type
and UTC hour (the hour of the event's own timestamp). Counting is idempotent: each
event id is remembered (for ``seen_retention_days``), so a redelivered or replayed event,
or one seen on two topics while a deployment moves between layouts, counts once.

What is counted: every event on a domain topic, except records whose type belongs to
another domain than the topic's (the notification requests on ``notification-queue``
carry the type of what they announce, ``user.created``, and are not that event) and
records that are not events at all (logged and skipped: analytics only observes, it does
not dead-letter other services' records). Heartbeats (``service.health``) carry no
tenant and are kept under the empty tenant, which no caller can query.

Endpoint (admin or manager, own tenant only):

* ``GET /analytics/counts?event_type=&from=&to=&group_by=hour|event_type``: the counts of
  the hours overlapping ``[from, to)``, for one event type (``user.login``) or a family
  (``user.*``); per event type and hour, or summed per hour or per event type.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Select

from eventbus import KafkaSettings, Record, default_registry, group_name, normalise
from eventbus._sql import UTCDateTime
from eventbus._transport.base import Transport
from eventbus.errors import DecodeError
from hrms.service import HrmsSettings, RuleBroken, Service
from hrms.service.auth import Manager
from hrms.services._common import utcnow

logger = logging.getLogger("hrms.analytics")

NO_TENANT = ""
"""The tenant column of events without a tenant (heartbeats); no caller can ask for it."""
GROUP_PURPOSE = "counts"
"""The consumer group is ``group_name("hrms-analytics", "counts")``."""
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?$"
"""``user.login``, or a family such as ``user.*`` / ``audit.user.*``."""

metadata = MetaData()

event_counts = Table(
    "analytics_event_counts",
    metadata,
    Column("tenant_id", String(100), primary_key=True),
    Column("event_type", String(200), primary_key=True),
    Column("hour_start", UTCDateTime(), primary_key=True),
    Column("total", Integer, nullable=False),
)
"""One counter per tenant, event type and UTC hour (``hour_start`` is the hour's start)."""

seen_events = Table(
    "analytics_seen_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("hour_start", UTCDateTime(), nullable=False, index=True),
)
"""The events already counted (forgotten after ``seen_retention_days``)."""


def hour_of(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC hour (a naive ``moment`` is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


class Bucket(BaseModel):
    """One row of counts."""

    event_type: str | None = Field(default=None, description="absent with group_by=hour")
    hour: datetime | None = Field(default=None, description="absent with group_by=event_type")
    count: int


class Counts(BaseModel):
    """The counts of the caller's tenant."""

    tenant_id: str
    group_by: Literal["hour", "event_type"] | None
    event_type: str | None
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None
    total: int
    buckets: list[Bucket]

    model_config = {"populate_by_name": True}


class _Seen:
    """One record, as counted: its id, tenant, type and hour."""

    __slots__ = ("event_id", "event_type", "hour", "tenant_id")

    def __init__(self, event_id: str, tenant_id: str, event_type: str, hour: datetime) -> None:
        self.event_id = event_id
        self.tenant_id = tenant_id
        self.event_type = event_type
        self.hour = hour


class Analytics:
    """The counting consumer and the counts API of one analytics service.

    Args:
        service: the service (its router decides which records are domain events).
        seen_retention_days: how long event ids are remembered for deduplication (longer
            than any topic's retention, so a replay of the oldest record still counts once).
    """

    def __init__(self, service: Service, seen_retention_days: int = 31) -> None:
        self.service = service
        self.seen_retention = timedelta(days=seen_retention_days)
        self.skipped = 0
        self._pruned_at: datetime | None = None

    # -- counting -----------------------------------------------------------------------
    def parse(self, record: Record) -> _Seen | None:
        """What ``record`` counts as, or ``None`` when it is not a domain event of its topic."""
        try:
            env = normalise(json.loads(record.value or b""), default_registry)
        except (ValueError, DecodeError) as exc:  # JSONDecodeError is a ValueError
            logger.warning(
                "not an event, not counted: %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None
        event_type = str(env["event_type"])
        catalog = self.service.router.catalog
        domain, home = catalog.domain_of_topic(record.topic), catalog.domain_of_type(event_type)
        if domain is not None and home is not None and home is not domain:
            return None  # e.g. a notification request of type user.created
        when = _timestamp(env.get("timestamp"), record.timestamp_ms)
        event_id = env.get("event_id")
        if not event_id:  # a producer without ids: the record's place is its identity
            event_id = f"{record.topic}:{record.partition}:{record.offset}"
        tenant = env.get("tenant_id")
        return _Seen(str(event_id), str(tenant) if tenant else NO_TENANT, event_type, hour_of(when))

    async def count(self, records: list[Record], session: AsyncSession) -> None:
        """Count a batch of records once each, in one transaction."""
        batch: dict[str, _Seen] = {}
        for record in records:
            seen = self.parse(record)
            if seen is None:
                self.skipped += 1
            else:
                batch.setdefault(seen.event_id, seen)
        if not batch:
            return
        known = set(
            (
                await session.scalars(
                    select(seen_events.c.event_id).where(seen_events.c.event_id.in_(list(batch)))
                )
            ).all()
        )
        fresh = [s for s in batch.values() if s.event_id not in known]
        if not fresh:
            return
        await session.execute(
            seen_events.insert(),
            [{"event_id": s.event_id, "hour_start": s.hour} for s in fresh],
        )
        totals = Counter((s.tenant_id, s.event_type, s.hour) for s in fresh)
        rows = [
            {"tenant_id": t, "event_type": e, "hour_start": h, "total": n}
            for (t, e, h), n in totals.items()
        ]
        insert = (
            postgresql.insert(event_counts)
            if self.service.engine.dialect.name == "postgresql"
            else sqlite.insert(event_counts)
        )
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["tenant_id", "event_type", "hour_start"],
                set_={"total": event_counts.c.total + insert.excluded.total},
            ),
            rows,
        )
        await self._prune(session)

    async def _prune(self, session: AsyncSession) -> None:
        """Forget event ids older than the retention, at most once an hour."""
        now = utcnow()
        if self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1):
            return
        self._pruned_at = now
        await session.execute(
            delete(seen_events).where(seen_events.c.hour_start < hour_of(now - self.seen_retention))
        )

    # -- the API --------------------------------------------------------------------------
    def router(self) -> APIRouter:
        """``GET /analytics/counts``."""
        router = APIRouter(prefix="/analytics", tags=["analytics"])

        @router.get("/counts")
        async def counts(
            principal: Manager,
            event_type: Annotated[
                str | None,
                Query(
                    max_length=200,
                    pattern=EVENT_TYPE_PATTERN,
                    description="an event type (user.login) or a family (user.*)",
                ),
            ] = None,
            from_: Annotated[
                datetime | None,
                Query(alias="from", description="start (ISO 8601; UTC when no zone)"),
            ] = None,
            to: Annotated[
                datetime | None, Query(description="end, exclusive (ISO 8601; UTC when no zone)")
            ] = None,
            group_by: Annotated[
                Literal["hour", "event_type"] | None,
                Query(description="sum per hour, or per event type; absent: both"),
            ] = None,
        ) -> Counts:
            """Counts of the caller's tenant in the hours overlapping ``[from, to)``."""
            start = None if from_ is None else _utc(from_)
            end = None if to is None else _utc(to)
            if start is not None and end is not None and end <= start:
                raise RuleBroken("'to' must be after 'from'")
            query = _counts_query(principal.tenant_id, event_type, start, end, group_by)
            async with self.service.sessions() as session:
                rows = (await session.execute(query)).all()
            buckets = [_bucket(row._mapping, group_by) for row in rows]
            return Counts(
                tenant_id=principal.tenant_id,
                group_by=group_by,
                event_type=event_type,
                from_=start,
                to=end,
                total=sum(b.count for b in buckets),
                buckets=buckets,
            )

        return router


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _timestamp(value: Any, fallback_ms: int) -> datetime:
    """The event's timestamp (ISO 8601), else the record's (else now)."""
    if isinstance(value, str):
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            pass
    if fallback_ms > 0:
        return datetime.fromtimestamp(fallback_ms / 1000, UTC)
    return utcnow()


def _type_filter(event_type: str) -> ColumnElement[bool]:
    if event_type.endswith(".*"):
        prefix = event_type[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return event_counts.c.event_type.like(f"{prefix}%", escape="\\")
    return event_counts.c.event_type == event_type


def _counts_query(
    tenant_id: str,
    event_type: str | None,
    start: datetime | None,
    end: datetime | None,
    group_by: str | None,
) -> Select[Any]:
    c = event_counts.c
    columns: Sequence[Any]
    order: Sequence[Any]
    if group_by == "hour":
        columns, order = [c.hour_start], [c.hour_start]
    elif group_by == "event_type":
        columns = [c.event_type]
        order = [func.sum(c.total).desc(), c.event_type]
    else:
        columns, order = [c.event_type, c.hour_start], [c.hour_start, c.event_type]
    query = select(*columns, func.sum(c.total).label("count")).where(c.tenant_id == tenant_id)
    if event_type is not None:
        query = query.where(_type_filter(event_type))
    if start is not None and start > datetime.min.replace(tzinfo=UTC) + timedelta(hours=1):
        # the hours overlapping [start, end): the one that began before start counts too
        query = query.where(c.hour_start > start - timedelta(hours=1))
    if end is not None:
        query = query.where(c.hour_start < end)
    return query.group_by(*columns).order_by(*order)


def _bucket(row: Any, group_by: str | None) -> Bucket:
    hour = row.get("hour_start")
    return Bucket(
        event_type=row.get("event_type"),
        hour=None if hour is None else _utc(hour),
        count=int(row["count"]),
    )


def build(
    *,
    settings: HrmsSettings | None = None,
    kafka: KafkaSettings | None = None,
    transport: Transport | None = None,
    batch_size: int = 500,
    seen_retention_days: int = 31,
) -> Service:
    """Build the analytics service.

    Args:
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. the in-memory broker in tests).
        batch_size: the most records counted in one transaction.
        seen_retention_days: how long counted event ids are remembered.
    """
    service = Service("analytics", metadata, settings=settings, kafka=kafka, transport=transport)
    analytics = Analytics(service, seen_retention_days)
    domains = list(service.router.catalog.domains)

    @service.consumer(
        *domains,
        group=group_name("hrms-analytics", GROUP_PURPOSE),
        batch_size=batch_size,
    )
    async def count(records: list[Record], session: AsyncSession) -> None:
        await analytics.count(records, session)

    async def probe() -> dict[str, Any]:
        return {"skipped_records": analytics.skipped}

    service.readiness["analytics"] = probe
    service.include(analytics.router())
    return service


__all__ = [
    "Analytics",
    "Bucket",
    "Counts",
    "build",
    "event_counts",
    "hour_of",
    "metadata",
    "seen_events",
]
