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
import time
from collections.abc import AsyncIterator, Callable, Sequence
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
from eventbus._stall import StallDetector
from eventbus._transport.base import TopicPartition
from eventbus.errors import BrokerUnavailableError
from eventbus.observe import Observer, PartitionProgress, fanout
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
        producer: the producer to own (one is made from ``settings`` when omitted).
        observers: told each consumer group's progress (lag per partition, stalls) every
            ``progress_interval_s`` (metrics); the process-wide observers when omitted.
        progress_interval_s: how often progress is sampled (default: a quarter of
            ``KAFKA_CONSUMER_STALL_THRESHOLD_S``, at most 5 s).
        clock: monotonic seconds, for stall detection (injectable for tests).
        **overrides: settings fields, e.g. ``client_id``.

    A consumer whose partition's committed offset has not moved while its lag grew for
    longer than ``KAFKA_CONSUMER_STALL_THRESHOLD_S`` is *stalled*: it is logged, listed
    by :meth:`stalled`, and the health route answers 503 until it moves again.
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        enable_producer: bool = True,
        retry_interval_s: float = 5.0,
        producer: KafkaProducer | None = None,
        observers: Sequence[Observer] | None = None,
        progress_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        **overrides: Any,
    ) -> None:
        self.settings = load_settings(settings, **overrides)
        threshold = self.settings.consumer_stall_threshold_s
        self.observers = fanout(observers)
        self.stalls = StallDetector(threshold, clock)
        self.progress_interval_s = progress_interval_s or min(5.0, threshold / 4)
        self._stalled: dict[tuple[str, TopicPartition], PartitionProgress] = {}
        self._monitor: asyncio.Task[None] | None = None
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
        if self._subs and self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="eventbus-progress")

    async def _watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.progress_interval_s)
            try:
                await self.check_progress()
            except Exception:  # a failed sample must not end the watching
                logger.exception("sampling consumer progress failed")

    async def check_progress(self) -> dict[str, dict[TopicPartition, PartitionProgress]]:
        """Sample every consumer's progress now: lag per partition and stalls.

        Tells the observers, logs a partition that became stalled (and one that moved
        again), and returns the sample per consumer group.
        """
        groups: dict[str, dict[TopicPartition, PartitionProgress]] = {}
        for sub in self._subs:
            consumer = sub.consumer
            group = groups.setdefault(consumer.group_id, {})
            for tp, p in (await consumer.progress()).items():
                stuck = self.stalls.check((consumer.group_id, tp), p.committed, p.lag)
                group[tp] = PartitionProgress(p.committed, p.high, p.lag, stuck)
        self.stalls.keep((g, tp) for g, parts in groups.items() for tp in parts)
        stalled = {
            (g, tp): p for g, parts in groups.items() for tp, p in parts.items() if p.stalled
        }
        for g, tp in stalled.keys() - self._stalled.keys():
            p = stalled[(g, tp)]
            logger.warning(
                "consumer group %s is stalled on %s[%d]: committed offset %d has not moved "
                "for over %gs while lag grew to %d",
                g,
                tp.topic,
                tp.partition,
                p.committed,
                self.stalls.threshold_s,
                p.lag,
            )
        for g, tp in self._stalled.keys() - stalled.keys():
            logger.info("consumer group %s moves again on %s[%d]", g, tp.topic, tp.partition)
        self._stalled = stalled
        for g, parts in groups.items():
            self.observers.progress(g, parts)
        return groups

    def stalled(self) -> list[dict[str, Any]]:
        """The stalled partitions as of the last sample (:meth:`check_progress`)."""
        return [
            {
                "group": g,
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": p.committed,
                "lag": p.lag,
            }
            for (g, tp), p in sorted(self._stalled.items())
        ]

    async def stop(self) -> None:
        """Stop consumers (draining in-flight work), then the producer."""
        self._closing = True
        for task in (self._connector, self._monitor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._connector = self._monitor = None
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
        """:meth:`health` plus ``lag`` per consumer group (:meth:`lag`) and the
        ``stalled`` partitions (:meth:`stalled`)."""
        return {**self.health(), "lag": await self.lag(), "stalled": self.stalled()}

    @property
    def healthy(self) -> bool:
        """Connected, and no consumer stalled."""
        return self.connected and not self._stalled

    def health_router(self, path: str = "/health") -> APIRouter:
        """A router with ``GET path``: 200 when connected and no consumer is stalled,
        503 (degraded) otherwise.

        The body is ``{"status": "ok"|"degraded", "kafka": {connected, producer,
        consumers, brokers, error, lag, stalled}}``.
        """
        router = APIRouter()

        @router.get(path)
        async def health() -> JSONResponse:
            kafka = await self.health_report()
            ok = self.healthy
            body = {"status": "ok" if ok else "degraded", "kafka": kafka}
            return JSONResponse(body, status_code=200 if ok else 503)

        return router
