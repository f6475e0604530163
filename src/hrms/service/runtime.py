"""One HRMS service: its database, outbox, inbox, producer, consumers and FastAPI app.

Every service is shaped alike::

    svc = Service("leaves", metadata)
    svc.include(router)

    @svc.consumer(svc.settings.employee_topic)
    async def on_employee(event: EmployeeEvent, session: AsyncSession) -> None: ...

    app = svc.app()

Writes go through :meth:`Service.transaction`; events emitted there with :meth:`Service.emit`
land in the outbox in the same database transaction, and the relay publishes them when
Kafka is reachable. Consumed events run in a transaction that also records their id in
the inbox, so a redelivered event has no second effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from eventbus import (
    BaseEvent,
    KafkaConsumer,
    KafkaProducer,
    KafkaSettings,
    MessageContext,
    PriorityLanes,
)
from eventbus._transport.base import Transport
from eventbus.fastapi import EventBus
from eventbus.inbox import Inbox
from eventbus.metrics import PrometheusMetrics, metrics_router
from eventbus.observe import Observer
from eventbus.outbox import Outbox, OutboxRelay
from eventbus.settings import load_settings
from eventbus.tracing import TracingObserver, configure_tracing, instrument_fastapi
from hrms.events import create_system_event, register_catalog
from hrms.routing import TopicRouter
from hrms.service import context
from hrms.service.auth import TokenIssuer
from hrms.service.errors import install_error_handlers
from hrms.service.settings import HrmsSettings

logger = logging.getLogger("hrms.service")

EventHandler = Callable[..., Awaitable[None]]
"""``async (event, session) -> None`` or ``async (events, session) -> None`` for batches."""


@dataclass
class ServiceContext:
    """The ids an event emitted now should carry (from the request or the event handled)."""

    tenant_id: str | None
    correlation_id: str | None = field(default_factory=context.correlation_id.get)
    causation_id: str | None = field(default_factory=context.causation_id.get)

    def ids(self) -> dict[str, str | None]:
        """Keyword arguments for the ``create_*_event`` factories."""
        return {
            "tenant_id": self.tenant_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }


@dataclass(frozen=True)
class ConsumerDeclaration:
    """A consumer a service declared: what it reads, in which group, and how.

    ``topics`` are the domain topics as declared; the deployment's layout decides the real
    topic names (:meth:`Service.declared_consumers`).
    """

    topics: tuple[str, ...]
    handler: EventHandler
    group: str
    batch_size: int | None
    concurrency: int


class Service:
    """An HRMS service: give it tables and routes; it runs them on eventbus.

    Args:
        name: the service name (database file, consumer groups, client id).
        metadata: the service's tables (copied; the copy gets the outbox and inbox tables).
        settings: HRMS settings (the environment when omitted).
        kafka: Kafka settings (the environment when omitted).
        transport: a broker transport (e.g. :class:`eventbus.testing.MemoryBroker`).
        title: the OpenAPI title.
    """

    def __init__(
        self,
        name: str,
        metadata: MetaData,
        *,
        settings: HrmsSettings | None = None,
        kafka: KafkaSettings | None = None,
        transport: Transport | None = None,
        title: str | None = None,
    ) -> None:
        register_catalog()
        self.name = name
        self.title = title or f"HRMS {name} service"
        self.settings = settings or HrmsSettings()
        self.kafka = load_settings(kafka, client_id=f"{self.settings.client_id}-{name}")
        self.transport = transport
        # A private copy: the outbox and inbox tables join it, and the caller's module-level
        # metadata stays reusable (a service can be built twice in one process).
        self.metadata = MetaData()
        for table in metadata.sorted_tables:
            table.to_metadata(self.metadata)
        # Metrics in a registry of the service's own (``hrms up`` runs ten in one
        # process); tracing when the OTEL_* environment asks for it.
        self.metrics = PrometheusMetrics()
        self.tracer_provider = configure_tracing(f"hrms-{name}")
        self.observers: list[Observer] = [self.metrics]
        if self.tracer_provider is not None:
            self.observers.append(TracingObserver(self.tracer_provider))
        self.outbox = Outbox("outbox", self.metadata, observers=self.observers)
        self.inbox = Inbox("inbox", self.metadata)
        self.tokens = TokenIssuer(self.settings.signing_key(), self.settings.jwt_ttl_s)
        self.routers: list[APIRouter] = []
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self.readiness: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
        self._consumers: list[ConsumerDeclaration] = []
        self.engine: AsyncEngine = create_async_engine(self.settings.url_for(name))
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.lanes = (
            PriorityLanes(topics=set(self.settings.priority_topics))
            if self.settings.priority_topics
            else None
        )
        self.producer: KafkaProducer | None = None
        if self.settings.enable_producer:
            self.producer = KafkaProducer(
                settings=self.kafka,
                transport=transport,
                priority_lanes=self.lanes,
                observers=self.observers,
            )
        self.relay: OutboxRelay | None = None
        self.bus: EventBus | None = None
        self.kafka_consumers: list[KafkaConsumer] = []
        self.router = TopicRouter.from_settings(self.settings)
        self._heartbeat: asyncio.Task[None] | None = None
        self._beat_stop = asyncio.Event()

    # -- building ---------------------------------------------------------------------------
    def include(self, router: APIRouter) -> None:
        """Serve ``router``'s routes."""
        self.routers.append(router)

    def consumer(
        self,
        *topics: str,
        group: str | None = None,
        batch_size: int | None = None,
        concurrency: int = 1,
    ) -> Callable[[EventHandler], EventHandler]:
        """Register a handler of ``topics``' events.

        A single-event handler ``async (event, session)`` runs in a database transaction
        that also records the event id in the inbox: its writes and emitted events commit
        once per event id. A batch handler (``batch_size`` set) ``async (events, session)``
        gets up to that many events at a time and must be idempotent itself.
        """

        def register(handler: EventHandler) -> EventHandler:
            self._consumers.append(
                ConsumerDeclaration(
                    tuple(topics),
                    handler,
                    group or f"hrms-{self.name}",
                    batch_size,
                    concurrency,
                )
            )
            return handler

        return register

    def declared_consumers(self) -> list[tuple[ConsumerDeclaration, tuple[str, ...]]]:
        """Every declared consumer with the topics it really reads under this layout
        (before priority lanes are added); for documentation such as AsyncAPI."""
        return [(spec, tuple(self.router.topics_for(spec.topics))) for spec in self._consumers]

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer of the service's spans (a no-op tracer when tracing is off)."""
        if self.tracer_provider is None:
            return trace.NoOpTracer()
        return self.tracer_provider.get_tracer(name)

    # -- writing ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed at the end of the block (rolled back on error)."""
        async with self.sessions() as session, session.begin():
            yield session
        if self.relay is not None:
            self.relay.notify()

    async def emit(
        self, session: AsyncSession, topic: str, event: BaseEvent, key: str | None = None
    ) -> None:
        """Add ``event`` to the outbox in ``session``'s transaction.

        ``topic`` is the domain topic (``settings.user_topic``); the deployment's layout
        decides where the event really goes (:meth:`hrms.routing.TopicRouter.route`).
        ``key`` is the partition key (the event's own key, e.g. its user id, by default).
        With ``KAFKA_ENABLE_PRODUCER=false`` nothing is published (seed 001's switch): the
        event is logged and dropped, as the seed's services did.
        """
        context.event_id.set(str(event.event_id))
        if self.producer is None:
            logger.info("producer disabled: %s %s not published", event.event_type, event.event_id)
            return
        topic = self.router.route(event, topic)
        await self.outbox.add(session, topic, event, key)
        logger.info("%s %s -> outbox (%s)", event.event_type, event.event_id, topic)

    # -- lifecycle --------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Create or upgrade the service's tables (Alembic migrations, see hrms.migrations)."""
        from hrms.migrations import upgrade

        await upgrade(self.name, self.engine, self.metadata)

    async def start(self) -> None:
        """Migrate the database, start the relay and the consumers (Kafka may be down)."""
        await self.migrate()
        self.bus = EventBus(
            self.kafka, enable_producer=False, retry_interval_s=2.0, observers=self.observers
        )
        for spec in self._consumers:
            consumer = KafkaConsumer(
                group_id=spec.group,
                topics=self.router.topics_for(spec.topics),
                settings=self.kafka,
                transport=self.transport,
                concurrency=spec.concurrency,
                dead_letter_topic=self.router.dead_letter_topic,
                priority_lanes=self._lanes_for(self.router.topics_for(spec.topics)),
                observers=self.observers,
            )
            self.kafka_consumers.append(consumer)
            if spec.batch_size is None:
                consumer.use(self.inbox.middleware(self.sessions))
                self.bus.add_consumer(consumer, self._single(spec.handler))
            else:
                self.bus.add_consumer(
                    consumer, self._batch(spec.handler), batch_size=spec.batch_size
                )
        if self.producer is not None:
            self.relay = OutboxRelay(
                self.outbox,
                self.engine,
                self.producer,
                poll_interval_s=0.5,
                observers=self.observers,
            )
            await self.relay.start()
        await self.bus.start()
        if self.producer is not None and self.settings.heartbeat_interval_s > 0:
            self._beat_stop = asyncio.Event()
            self._heartbeat = asyncio.create_task(self._beat(), name=f"{self.name}-heartbeat")
        for hook in self.on_start:
            await hook()
        logger.info("%s service started", self.name)

    async def stop(self) -> None:
        """Stop consumers, the relay and the producer; close the database."""
        for hook in self.on_stop:
            await hook()
        if self._heartbeat is not None:
            # A flag, not only cancel(): Python 3.11's wait_for (in a send) can swallow it.
            self._beat_stop.set()
            done, _ = await asyncio.wait([self._heartbeat], timeout=5.0)
            if not done:
                await wait_stopped([self._heartbeat])
            self._heartbeat = None
        if self.bus is not None:
            await self.bus.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.producer is not None:
            await self.producer.stop()
        await self.engine.dispose()
        self.kafka_consumers.clear()
        if self.tracer_provider is not None:  # export what this run traced
            await asyncio.to_thread(self.tracer_provider.force_flush, 5_000)

    async def _beat(self) -> None:
        """Publish a ``service.health`` heartbeat now and every ``heartbeat_interval_s``.

        Straight through the producer, not the outbox: a beat that cannot be sent now is
        worth nothing later. Beats are skipped while the producer is not connected.
        """
        assert self.producer is not None
        started = time.monotonic()
        instance = f"{socket.gethostname()}:{os.getpid()}"
        interval = self.settings.heartbeat_interval_s
        stop = self._beat_stop
        while not stop.is_set():
            if not self.producer.is_started:  # the relay is still connecting it
                await _wait_for_event(stop, min(interval, 1.0))
                continue
            event = create_system_event(
                self.kafka.client_id,
                service=self.name,
                status="up" if self.bus is not None and self.bus.connected else "degraded",
                instance=instance,
                uptime_s=round(time.monotonic() - started, 3),
            )
            try:
                await self.producer.send_event(self.router.route(event), event)
            except Exception:  # a lost beat must not end the beating
                logger.exception("heartbeat of %s not sent", self.name)
            await _wait_for_event(stop, interval)

    def _lanes_for(self, topics: Sequence[str]) -> PriorityLanes | None:
        """The priority lanes, for a consumer of ``topics`` that has some of them."""
        if self.lanes is None or not self.lanes.topics.intersection(topics):
            return None
        return self.lanes

    def _single(
        self, handler: EventHandler
    ) -> Callable[[BaseEvent, MessageContext], Awaitable[None]]:
        async def handle(event: BaseEvent, ctx: MessageContext) -> None:
            session: AsyncSession = ctx.state["session"]
            tokens = (
                context.correlation_id.set(event.correlation_id),
                context.causation_id.set(str(event.event_id)),
                context.event_id.set(str(event.event_id)),
            )
            try:
                await handler(event, session)
            finally:
                context.event_id.reset(tokens[2])
                context.causation_id.reset(tokens[1])
                context.correlation_id.reset(tokens[0])

        _copy_annotation(handler, handle)
        return handle

    def _batch(self, handler: EventHandler) -> Callable[[list[BaseEvent]], Awaitable[None]]:
        async def handle(events: list[BaseEvent]) -> None:
            async with self.transaction() as session:
                await handler(events, session)

        _copy_annotation(handler, handle)
        return handle

    # -- health -----------------------------------------------------------------------------
    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: database, broker, consumers (none stalled) and outbox backlog."""
        checks: dict[str, Any] = {}
        ok = True
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"error: {exc}"
            ok = False
        bus = self.bus
        checks["broker"] = {
            "connected": bool(bus and bus.connected),
            "error": bus.last_error if bus else "not started",
            "producer": self.producer is not None and self.producer.is_started,
        }
        checks["consumers"] = [
            {
                "group": c.group_id,
                "topics": list(c.topics),
                "running": c.is_started,
                "lag": sum((await c.lag()).values()),
            }
            for c in self.kafka_consumers
        ]
        if not (bus and bus.connected):
            ok = False
        stalled = bus.stalled() if bus is not None else []
        if stalled:
            checks["stalled"] = stalled
            ok = False
        if self.producer is not None:
            try:
                count, age = await self.outbox.backlog(self.engine)
                checks["outbox"] = {"backlog": count, "oldest_age_s": round(age, 3)}
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                checks["outbox"] = f"error: {exc}"
                ok = False
        for name, probe in self.readiness.items():
            checks[name] = await probe()
        return ok, checks

    # -- the app ----------------------------------------------------------------------------
    def app(self) -> FastAPI:
        """The service's FastAPI app (its lifespan starts and stops the service)."""

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=self.title, lifespan=lifespan)
        app.state.service = self
        app.state.tokens = self.tokens
        app.add_middleware(context.CorrelationMiddleware)
        install_error_handlers(app)
        app.include_router(metrics_router(self.metrics))
        if self.tracer_provider is not None:
            instrument_fastapi(app, self.tracer_provider)

        @app.get("/health", tags=["health"])
        async def health() -> dict[str, str]:
            """Liveness: the process answers."""
            return {"status": "alive", "service": self.name}

        @app.get("/ready", tags=["health"])
        async def ready() -> JSONResponse:
            """Readiness: database, broker, consumers (503 if one is stalled), outbox backlog."""
            ok, checks = await self.ready()
            body = {"status": "ready" if ok else "not ready", "service": self.name, **checks}
            return JSONResponse(body, status_code=200 if ok else 503)

        for router in self.routers:
            app.include_router(router)
        return app


def _copy_annotation(source: EventHandler, target: Callable[..., Any]) -> None:
    """Give ``target`` the event annotation of ``source``'s first parameter.

    The consumer decodes each record into that type (an event class, or ``list[...]``).
    """
    params: Sequence[inspect.Parameter] = list(inspect.signature(source).parameters.values())
    if not params:
        return
    hints = dict(getattr(target, "__annotations__", {}))
    first = next(iter(inspect.signature(target).parameters))
    annotation = params[0].annotation
    if isinstance(annotation, str):
        annotation = inspect.get_annotations(source, eval_str=True).get(params[0].name, Any)
    hints[first] = annotation
    target.__annotations__ = hints


async def _wait_for_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


async def wait_stopped(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel and await ``tasks``."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
