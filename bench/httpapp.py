"""The HTTP service of the ``http`` scenario: FastAPI on uvicorn, one POST that writes a row.

Run by the scenario as a subprocess (so the load generator does not share its CPU)::

    python -m bench.httpapp --mode none|outbox|background --port P --db FILE \\
        --bootstrap HOST:PORT --broker-kind noida --topic TOPIC

``POST /actions`` inserts one row into ``employee_actions`` (SQLite, WAL) and, by mode:

* ``none``: emits no event.
* ``outbox``: adds an ``AuditEvent`` to the transactional outbox **in the same database
  transaction**; an :class:`~eventbus.outbox.OutboxRelay` (its defaults) runs in the same
  process and publishes the rows.
* ``background``: the seeds' way: after the commit, ``BackgroundTasks.add_task`` runs
  ``producer.send_event(topic, event)`` once the response is sent (fire-and-forget: a
  failure is only logged, and a crash loses the event).

``GET /stats`` reports rows written and events delivered, so the load generator can wait
until every event left; ``GET /health`` answers once the lifespan has started everything.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bench.db import sqlite_engine
from eventbus import KafkaProducer, KafkaSettings
from eventbus.outbox import Outbox, OutboxRelay
from hrms.events import AuditEvent, EventType, create_audit_event

MODES = ("none", "outbox", "background")

metadata = MetaData()
actions = Table(
    "employee_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("resource_id", Integer, nullable=False),
    Column("action", String(32), nullable=False),
    Column("title", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False, server_default=func.current_timestamp()),
)


class ActionIn(BaseModel):
    """The request body."""

    resource_id: int
    action: str = "UPDATE"
    title: str = "Senior Engineer"


@dataclass
class Service:
    """What the app holds for its lifetime."""

    mode: str
    topic: str
    engine: AsyncEngine
    settings: KafkaSettings
    outbox: Outbox = field(default_factory=Outbox)
    producer: KafkaProducer | None = None
    relay: OutboxRelay | None = None
    sent_ok: int = 0
    sent_failed: int = 0

    def event(self, body: ActionIn, action_id: int) -> AuditEvent:
        return create_audit_event(
            source_service="employee-service",
            action=body.action,
            resource_type="employee",
            user_id=100_000 + action_id,
            resource_id=body.resource_id,
            changes={"title": body.title, "grade": "L5"},
            event_type=EventType.AUDIT_EMPLOYEE_ACTION,
        )

    async def send(self, event: AuditEvent) -> None:
        """The background task: the seeds' ``await producer.send_event(topic, event)``."""
        assert self.producer is not None
        if await self.producer.send_event(self.topic, event):
            self.sent_ok += 1
        else:
            self.sent_failed += 1


def build_app(service: Service) -> FastAPI:
    """The FastAPI app for ``service.mode``."""
    sessions = async_sessionmaker(service.engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        if service.mode != "none":
            service.producer = KafkaProducer(settings=service.settings)
            await service.producer.start()
        if service.mode == "outbox":
            assert service.producer is not None
            await service.outbox.create_tables(service.engine)
            service.relay = OutboxRelay(service.outbox, service.engine, service.producer)
            await service.relay.start()
        try:
            yield
        finally:
            if service.relay is not None:
                await service.relay.stop()
            if service.producer is not None:
                await service.producer.stop()
            await service.engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/actions", status_code=201)
    async def create_action(body: ActionIn, background_tasks: BackgroundTasks) -> dict[str, int]:
        async with sessions() as session, session.begin():
            result = await session.execute(
                insert(actions)
                .values(resource_id=body.resource_id, action=body.action, title=body.title)
                .returning(actions.c.id)
            )
            action_id = int(result.scalar_one())
            if service.mode == "outbox":
                await service.outbox.add(session, service.topic, service.event(body, action_id))
        if service.mode == "background":
            background_tasks.add_task(service.send, service.event(body, action_id))
        return {"id": action_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        async with service.engine.connect() as conn:
            rows = int((await conn.execute(select(func.count()).select_from(actions))).scalar_one())
        out: dict[str, Any] = {"mode": service.mode, "rows": rows}
        if service.relay is not None:
            out["backlog"] = (await service.outbox.backlog(service.engine)).count
            out["relay_delivered"] = service.relay.stats.delivered
            out["relay_failed"] = service.relay.stats.failed
            out["relay_cycles"] = service.relay.stats.batches
        if service.mode == "background":
            out["sent_ok"] = service.sent_ok
            out["sent_failed"] = service.sent_failed
        out["tasks"] = len(asyncio.all_tasks())
        return out

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the app until SIGTERM/SIGINT (uvicorn then runs the lifespan's shutdown)."""
    p = argparse.ArgumentParser(prog="python -m bench.httpapp")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--broker-kind", default="noida")
    p.add_argument("--topic", required=True)
    p.add_argument("--client-id", default="bench-http")
    p.add_argument("--pool-size", type=int, default=None, help="SQLite connections (no overflow)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = KafkaSettings(
        bootstrap_servers=args.bootstrap,
        broker_profile=args.broker_kind,
        transport="aiokafka",
        client_id=args.client_id,
    )
    service = Service(args.mode, args.topic, sqlite_engine(args.db, args.pool_size), settings)
    uvicorn.run(
        build_app(service),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
