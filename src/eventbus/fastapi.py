"""FastAPI integration: a lifespan that starts and stops Kafka clients, and a health route.

The application starts even when Kafka is unreachable (seed 001's graceful degradation):
the clients are retried in the background and the health response says what is down.

Example::

    bus = EventBus(client_id="user-service")
    bus.add_consumer(KafkaConsumer(group_id="g", topics=["user-queue"]), handle)
    app = FastAPI(lifespan=bus.lifespan)
    app.include_router(bus.health_router())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

try:
    from fastapi import APIRouter, FastAPI
    from fastapi.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "eventbus.fastapi needs FastAPI: pip install 'eventbus-hrms[fastapi]'"
    ) from exc

from eventbus._consumer import KafkaConsumer
from eventbus._dispatch import DlqHandler
from eventbus._handlers import Handler
from eventbus._producer import KafkaProducer
from eventbus.errors import BrokerUnavailableError
from eventbus.settings import KafkaSettings, load_settings

logger = logging.getLogger("eventbus.fastapi")


@dataclass
class _Subscription:
    consumer: KafkaConsumer
    handler: Handler | None
    dlq_handler: DlqHandler | None
    batch_size: int | None
    max_wait: float
    task: asyncio.Task[None] | None = None


class EventBus:
    """Owns an application's producer and consumers for the app's lifetime.

    Args:
        settings: Kafka settings (the environment when omitted).
        enable_producer: seed 001's ``KAFKA_ENABLE_PRODUCER``; False starts no producer.
        retry_interval_s: how often an unreachable broker is tried again.
        **overrides: settings fields, e.g. ``client_id``.
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        enable_producer: bool = True,
        retry_interval_s: float = 5.0,
        producer: KafkaProducer | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = load_settings(settings, **overrides)
        self.producer: KafkaProducer | None = None
        if enable_producer:
            self.producer = producer or KafkaProducer(settings=self.settings)
        self.retry_interval_s = retry_interval_s
        self.last_error: str | None = None
        self._subs: list[_Subscription] = []
        self._connector: asyncio.Task[None] | None = None
        self._closing = False

    def add_consumer(
        self,
        consumer: KafkaConsumer,
        handler: Handler | None = None,
        dlq_handler: DlqHandler | None = None,
        *,
        batch_size: int | None = None,
        max_wait: float = 1.0,
    ) -> None:
        """Run ``consumer`` with ``handler`` (batches if ``batch_size`` is set) in the app."""
        self._subs.append(_Subscription(consumer, handler, dlq_handler, batch_size, max_wait))

    @property
    def connected(self) -> bool:
        """Whether every client is connected."""
        producer_ok = self.producer is None or self.producer.is_started
        return producer_ok and all(s.consumer.is_started for s in self._subs)

    async def _try_start(self) -> bool:
        try:
            if self.producer is not None and not self.producer.is_started:
                await self.producer.start()
            for sub in self._subs:
                if not sub.consumer.is_started:
                    await sub.consumer.start()
                if sub.task is None:
                    sub.task = asyncio.create_task(self._run(sub))
        except BrokerUnavailableError as exc:
            self.last_error = str(exc)
            logger.warning("Kafka unavailable, the app runs degraded: %s", exc)
            return False
        self.last_error = None
        return True

    async def _run(self, sub: _Subscription) -> None:
        if sub.batch_size is not None:
            assert sub.handler is not None
            await sub.consumer.consume_batch(
                sub.handler, sub.batch_size, sub.max_wait, sub.dlq_handler
            )
        else:
            await sub.consumer.consume(sub.handler, sub.dlq_handler)

    async def _keep_connecting(self) -> None:
        while not self._closing and not await self._try_start():  # noqa: ASYNC110 - reconnect timer
            await asyncio.sleep(self.retry_interval_s)

    async def start(self) -> None:
        """Start every client; if Kafka is down, keep trying in the background."""
        self._closing = False
        if not await self._try_start():
            self._connector = asyncio.create_task(self._keep_connecting())

    async def stop(self) -> None:
        """Stop consumers (draining in-flight work), then the producer."""
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        for sub in self._subs:
            await sub.consumer.stop()
            if sub.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await sub.task
                sub.task = None
        if self.producer is not None:
            await self.producer.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """A FastAPI ``lifespan``: ``FastAPI(lifespan=bus.lifespan)``."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def health(self) -> dict[str, Any]:
        """Seed 002's health shape: ``{connected, producer, consumers, brokers}``."""
        return {
            "connected": self.connected,
            "producer": bool(self.producer and self.producer.is_started),
            "consumers": sum(1 for s in self._subs if s.consumer.is_started),
            "brokers": self.settings.servers,
            "error": self.last_error,
        }

    async def lag(self) -> dict[str, dict[str, Any]]:
        """Lag per consumer group: records not committed yet, in total and per partition.

        ``{"<group>": {"total": 12, "partitions": {"user-queue[0]": 12}}}``, from each
        started consumer's high watermarks and committed offsets
        (:meth:`KafkaConsumer.lag`); consumers sharing a group are summed.
        """
        out: dict[str, dict[str, Any]] = {}
        for sub in self._subs:
            consumer = sub.consumer
            group = out.setdefault(consumer.group_id, {"total": 0, "partitions": {}})
            for tp, behind in (await consumer.lag()).items():
                group["partitions"][f"{tp.topic}[{tp.partition}]"] = behind
                group["total"] += behind
        return out

    async def health_report(self) -> dict[str, Any]:
        """:meth:`health` plus ``lag`` per consumer group (:meth:`lag`)."""
        return {**self.health(), "lag": await self.lag()}

    def health_router(self, path: str = "/health") -> APIRouter:
        """A router with ``GET path``: 200 when connected, 503 (degraded) otherwise.

        The body is ``{"status": "ok"|"degraded", "kafka": {connected, producer,
        consumers, brokers, error, lag}}``.
        """
        router = APIRouter()

        @router.get(path)
        async def health() -> JSONResponse:
            kafka = await self.health_report()
            body = {"status": "ok" if self.connected else "degraded", "kafka": kafka}
            return JSONResponse(body, status_code=200 if self.connected else 503)

        return router
