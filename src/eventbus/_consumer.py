"""The consumer: at-least-once delivery to handlers, with retry and dead-lettering.

Offsets are stored only after a handler succeeded (or the record was dead-lettered),
committed in the background every ``consumer_commit_interval_ms``, and synchronously
when partitions are revoked and on :meth:`KafkaConsumer.stop`. A handler exception
never kills the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self

from eventbus._clients import make_transport
from eventbus._codec import decode_json, header_value, normalise
from eventbus._deadletter import DeadLetterWriter, Failure, dead_letter_topic
from eventbus._handlers import Handler, HandlerSpec, MessageContext, inspect_handler
from eventbus._policy import NO_RETRY, RetryPolicy
from eventbus._registry import EventRegistry, default_registry
from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    ProducerConfig,
    ProducerTransport,
    Record,
    TopicPartition,
    Transport,
)
from eventbus.errors import (
    ConfigurationError,
    DecodeError,
    EventBusError,
    LifecycleError,
    UnknownEventTypeError,
)
from eventbus.headers import EVENT_TYPE
from eventbus.settings import KafkaSettings, load_settings

logger = logging.getLogger("eventbus.consumer")

DlqHandler = Callable[[dict[str, Any], BaseException], Awaitable[Any]]
CallNext = Callable[[], Awaitable[None]]
Middleware = Callable[[MessageContext, CallNext], Awaitable[None]]
"""A pipeline step: receives the context and the rest of the pipeline to call."""

_UNDECODABLE = (DecodeError, UnknownEventTypeError)


@dataclass
class ConsumerStats:
    """Counters of what the consumer did."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    commit_failures: int = 0


class KafkaConsumer:
    """Consumes topics as a member of a consumer group.

    Args:
        bootstrap_servers: overrides ``KAFKA_BOOTSTRAP_SERVERS``.
        group_id: overrides ``KAFKA_CONSUMER_GROUP_ID``; required one way or the other.
        topics: the topics to subscribe to.
        settings: a full :class:`KafkaSettings`; the environment is read when omitted.
        transport: ``"aiokafka"`` or ``"confluent"`` (overrides ``KAFKA_TRANSPORT``), or a
            transport object such as :class:`eventbus.testing.MemoryBroker`.
        registry: the event registry for typed handlers (the default registry if omitted).
        retry: the in-place retry policy (default: 3 attempts within about a second).
        dead_letter_topic: maps a topic to its dead-letter topic (``<domain>-dlq``).
        drain_timeout_s: how long :meth:`stop` waits for in-flight work.
        poll_timeout_ms: how long one poll waits for records.
        **overrides: any other :class:`KafkaSettings` field.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        group_id: str | None = None,
        topics: Sequence[str] | str = (),
        *,
        settings: KafkaSettings | None = None,
        transport: Transport | str | None = None,
        registry: EventRegistry | None = None,
        retry: RetryPolicy | None = None,
        dead_letter_topic: Callable[[str], str] = dead_letter_topic,
        drain_timeout_s: float = 30.0,
        poll_timeout_ms: int = 200,
        client_id: str | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(transport, str):  # the name of a transport, as in KAFKA_TRANSPORT
            overrides["transport"] = transport
            transport = None
        self.settings = load_settings(
            settings, bootstrap_servers=bootstrap_servers, client_id=client_id, **overrides
        )
        self.group_id = group_id or self.settings.consumer_group_id or ""
        if not self.group_id:
            raise ConfigurationError("KafkaConsumer needs a group_id (or KAFKA_CONSUMER_GROUP_ID)")
        self.topics = (topics,) if isinstance(topics, str) else tuple(topics)
        if not self.topics or not all(isinstance(t, str) and t for t in self.topics):
            raise ConfigurationError("KafkaConsumer needs at least one topic name")
        self.registry = registry or default_registry
        self.retry = retry or RetryPolicy()
        self.stats = ConsumerStats()
        self._transport = transport
        self._dlq_topic = dead_letter_topic
        self._drain_timeout_s = drain_timeout_s
        self._poll_timeout_ms = poll_timeout_ms
        self._routes: dict[str, HandlerSpec] = {}
        self._middlewares: list[Middleware] = []
        self._client: ConsumerTransport | None = None
        self._dlq_producer: ProducerTransport | None = None
        self._dlq: DeadLetterWriter | None = None
        self._stored: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._committed: dict[TopicPartition, int] = {}
        self._busy = asyncio.Lock()
        self._stopping = False
        self._loop_task: asyncio.Task[Any] | None = None
        self._loop_done: asyncio.Event | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._stop_done: asyncio.Event | None = None
        self._poll_task: asyncio.Future[list[Record]] | None = None

    # -- registration -------------------------------------------------------------------
    def on(self, event_type: str) -> Callable[[Handler], Handler]:
        """Decorator: route records of ``event_type`` to the decorated handler."""

        def decorate(func: Handler) -> Handler:
            self.register(event_type, func)
            return func

        return decorate

    def register(self, event_type: str, handler: Handler) -> None:
        """Route records of ``event_type`` (from the header, else the envelope) to ``handler``."""
        self._routes[self.registry.canonical_type(str(event_type))] = inspect_handler(handler)

    def use(self, middleware: Middleware) -> None:
        """Add a pipeline step around every handler call (outermost first)."""
        self._middlewares.append(middleware)

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def is_started(self) -> bool:
        """Whether the consumer is connected."""
        return self._client is not None

    async def start(self) -> None:
        """Connect and join the group.

        Raises:
            BrokerUnavailableError: the broker was not reachable within ``connect_timeout_s``.
        """
        if self._client is not None:
            return
        s = self.settings
        transport = self._transport or make_transport(s)
        features = s.features
        if not features.commit_during_rebalance and not s.consumer_group_instance_id:
            logger.info(
                "broker %s rejects commits during a rebalance; set "
                "KAFKA_CONSUMER_GROUP_INSTANCE_ID to a stable id per replica",
                features.name,
            )
        config = ConsumerConfig(
            group_id=self.group_id,
            topics=self.topics,
            auto_offset_reset=s.consumer_auto_offset_reset,
            max_poll_records=s.consumer_max_poll_records,
            session_timeout_ms=s.consumer_session_timeout_ms,
            heartbeat_interval_ms=s.consumer_heartbeat_interval_ms,
            group_instance_id=s.consumer_group_instance_id,
            client_id=s.client_id,
            on_revoked=self._on_revoked,
            on_assigned=self._on_assigned,
        )
        dlq_producer = transport.producer(
            ProducerConfig(
                client_id=f"{s.client_id}-dlq",
                acks=s.producer_acks,
                enable_idempotence=s.idempotence(),
                request_timeout_ms=s.producer_request_timeout_ms,
            )
        )
        await dlq_producer.start()
        client = transport.consumer(config)
        try:
            await client.start()
        except BaseException:
            await dlq_producer.stop()
            raise
        self._stopping = False
        self._stop_done = None
        self._client = client
        self._dlq_producer = dlq_producer
        self._dlq = DeadLetterWriter(dlq_producer, self._dlq_topic)
        self._commit_task = asyncio.create_task(self._commit_loop())
        logger.info("consumer %s joined %s on %s", self.group_id, ",".join(self.topics), s.servers)

    async def stop(self) -> None:
        """Finish the message in hand (within ``drain_timeout_s``), commit, and leave."""
        if self._client is None or self._stopping:
            if self._stop_done is not None:
                await self._stop_done.wait()
            return
        self._stopping = True
        self._stop_done = asyncio.Event()
        try:
            await self._stop()
        finally:
            self._stop_done.set()

    async def _stop(self) -> None:
        assert self._client is not None
        if self._poll_task is not None and not self._poll_task.done():
            self._poll_task.cancel()  # a poll can block for a whole rebalance
        if self._loop_done is not None and self._loop_task is not asyncio.current_task():
            try:
                await asyncio.wait_for(self._loop_done.wait(), self._drain_timeout_s)
            except TimeoutError:
                logger.warning(
                    "in-flight work did not finish in %ss; cancelling", self._drain_timeout_s
                )
                if self._loop_task is not None:
                    self._loop_task.cancel()
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
            self._commit_task = None
        await self._commit()
        client, self._client = self._client, None
        dlq, self._dlq_producer = self._dlq_producer, None
        try:
            await client.stop()
        finally:
            if dlq is not None:
                await dlq.stop()
        logger.info("consumer %s stopped: %s", self.group_id, self.stats)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __del__(self) -> None:
        if getattr(self, "_client", None) is not None:
            warnings.warn(f"Unclosed KafkaConsumer {self!r}", ResourceWarning, stacklevel=1)

    def _require(self) -> ConsumerTransport:
        if self._client is None:
            raise LifecycleError("KafkaConsumer is not started; call await consumer.start()")
        return self._client

    # -- offsets ------------------------------------------------------------------------
    def _store(self, record: Record) -> None:
        self._stored[record.tp] = record.offset + 1

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        client = self._client
        if client is None:
            return
        pending = {
            tp: off
            for tp, off in self._stored.items()
            if self._committed.get(tp) != off and (only is None or tp in only)
        }
        if not pending:
            return
        try:
            await client.commit(pending)
        except Exception as exc:  # noqa: BLE001 - a failed commit means redelivery, not a crash
            self.stats.commit_failures += 1
            logger.warning("commit of %s failed (records may be redelivered): %s", pending, exc)
            return
        self._committed.update(pending)

    async def _commit_loop(self) -> None:
        interval = self.settings.consumer_commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._commit()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._busy:  # wait for the message in hand
            if self.settings.features.commit_during_rebalance or (
                self.settings.consumer_group_instance_id
            ):
                await self._commit(revoked)
            for tp in revoked:
                self._stored.pop(tp, None)
                self._committed.pop(tp, None)
            self._assigned -= revoked
        logger.info("consumer %s revoked %s", self.group_id, sorted(revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned |= assigned
        logger.info("consumer %s assigned %s", self.group_id, sorted(assigned))

    # -- consuming ----------------------------------------------------------------------
    async def _poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        client = self._require()
        poll = asyncio.ensure_future(client.getmany(timeout_ms, max_records))
        self._poll_task = poll
        try:
            return await poll
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and task is not None and not task.cancelling():
                return []  # stop() interrupted a poll that may wait on a rebalance
            raise
        except EventBusError:
            raise
        except Exception as exc:  # noqa: BLE001 - transient client errors must not kill us
            logger.warning("poll failed, retrying: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(min(1.0, timeout_ms / 1000))
            return []

    def _enter_loop(self) -> asyncio.Event:
        self._require()
        if self._loop_done is not None and not self._loop_done.is_set():
            raise LifecycleError("this consumer is already consuming")
        self._loop_task = asyncio.current_task()
        self._loop_done = asyncio.Event()
        return self._loop_done

    async def consume(
        self, handler: Handler | None = None, dlq_handler: DlqHandler | None = None
    ) -> None:
        """Deliver every record to ``handler`` (or the routed handlers) until :meth:`stop`.

        A failing handler is retried under the retry policy; then the record goes to
        ``dlq_handler(message, error)`` if given, else to the dead-letter topic. Records
        that cannot be decoded for the handler go to the dead-letter step at once.
        """
        default = inspect_handler(handler) if handler is not None else None
        if default is None and not self._routes:
            raise ConfigurationError("consume() needs a handler or registered routes")
        done = self._enter_loop()
        try:
            while not self._stopping:
                records = await self._poll(
                    self._poll_timeout_ms, self.settings.consumer_max_poll_records
                )
                for record in records:
                    if self._stopping:
                        break
                    if record.tp not in self._assigned:
                        continue  # revoked while this batch was in hand
                    async with self._busy:
                        if await self._process(record, default, dlq_handler):
                            self._store(record)
                        else:
                            break
        finally:
            done.set()

    async def consume_batch(
        self,
        handler: Handler,
        batch_size: int = 500,
        max_wait: float = 1.0,
        dlq_handler: DlqHandler | None = None,
    ) -> None:
        """Deliver records in lists of up to ``batch_size``, waiting at most ``max_wait`` s.

        If the handler raises, the whole batch is retried under the retry policy. If it
        keeps failing, the batch is split in halves, each tried once, recursively, until
        the failing records are isolated; an isolated record gets the full retry policy
        again and is then dead-lettered. Everything else is committed. Handlers should
        therefore be idempotent for records of a batch that was retried.
        """
        if batch_size < 1 or max_wait <= 0:
            raise ConfigurationError("batch_size must be >= 1 and max_wait > 0")
        spec = inspect_handler(handler, batch=True)
        done = self._enter_loop()
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                deadline = loop.time() + max_wait
                records: list[Record] = []
                while len(records) < batch_size and not self._stopping:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    records += await self._poll(
                        max(1, int(remaining * 1000)), batch_size - len(records)
                    )
                if not records:
                    continue
                async with self._busy:
                    assigned = self._assigned
                    records = [r for r in records if r.tp in assigned]
                    if not await self._process_batch(records, spec, dlq_handler):
                        break
                    for record in records:
                        self._store(record)
        finally:
            done.set()

    def start_background(
        self, handler: Handler | None = None, dlq_handler: DlqHandler | None = None
    ) -> asyncio.Task[None]:
        """Run :meth:`consume` in a task (for application lifespans)."""
        return asyncio.create_task(
            self.consume(handler, dlq_handler), name=f"consume-{self.group_id}"
        )

    # -- one record ---------------------------------------------------------------------
    def _route(self, record: Record, default: HandlerSpec | None) -> HandlerSpec | None:
        if not self._routes:
            return default
        etype = header_value(record.headers, EVENT_TYPE)
        if etype is None:
            try:
                etype = str(normalise(decode_json(record.value), self.registry)["event_type"])
            except DecodeError:
                return default
        return self._routes.get(self.registry.canonical_type(etype), default)

    async def _invoke(self, spec: HandlerSpec, payload: Any, ctx: MessageContext) -> None:
        async def last() -> None:
            await spec.call(payload, ctx)

        call: CallNext = last
        for mw in reversed(self._middlewares):
            call = partial(mw, ctx, call)
        await call()

    async def _process(
        self, record: Record, default: HandlerSpec | None, dlq_handler: DlqHandler | None
    ) -> bool:
        ctx = MessageContext(record, self.group_id, attempt=0)
        if (size := len(record.value or b"")) > self.settings.max_message_bytes:
            oversize = DecodeError(
                f"record of {size} bytes exceeds KAFKA_MAX_MESSAGE_BYTES "
                f"({self.settings.max_message_bytes})"
            )
            return await self._dead_letter(
                record, Failure(oversize, 1, "oversize", self.group_id), dlq_handler
            )
        spec = self._route(record, default)
        if spec is None:
            if self._routes and default is None and record.value is not None:
                try:
                    normalise(decode_json(record.value), self.registry)
                except DecodeError as exc:
                    return await self._dead_letter(
                        record, Failure(exc, 1, "decode", self.group_id), dlq_handler
                    )
            self.stats.skipped += 1
            return True
        try:
            payload = spec.payload(record, self.registry)
        except _UNDECODABLE as exc:
            return await self._dead_letter(
                record, Failure(exc, 1, "decode", self.group_id), dlq_handler
            )

        async def attempt() -> None:
            ctx.attempt += 1
            if ctx.attempt > 1:
                self.stats.retried += 1
            await self._invoke(spec, payload, ctx)

        outcome = await self.retry.run(attempt)
        if outcome.ok:
            self.stats.processed += 1
            return True
        self.stats.failed += 1
        assert outcome.error is not None
        failure = Failure(
            outcome.error, outcome.attempts, "handler", self.group_id, outcome.first_failure_at
        )
        return await self._dead_letter(record, failure, dlq_handler, payload)

    def _as_dict(self, record: Record, payload: Any = None) -> dict[str, Any]:
        if isinstance(payload, dict):
            return payload
        try:
            obj = decode_json(record.value)
        except DecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
        text = None if record.value is None else record.value.decode("utf-8", "replace")
        return {
            "value": text,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
        }

    async def _dead_letter(
        self,
        record: Record,
        failure: Failure,
        dlq_handler: DlqHandler | None,
        payload: Any = None,
    ) -> bool:
        if dlq_handler is not None:
            try:
                await dlq_handler(self._as_dict(record, payload), failure.error)
            except Exception as exc:  # noqa: BLE001 - fall back to the dead-letter topic
                logger.error("dlq_handler failed (%s); writing to the dead-letter topic", exc)
            else:
                self.stats.dead_lettered += 1
                return True
        assert self._dlq is not None
        written = await self._dlq.write(record, failure, lambda: self._stopping)
        if written:
            self.stats.dead_lettered += 1
        return written

    # -- batches ------------------------------------------------------------------------
    async def _call_batch(self, spec: HandlerSpec, items: list[tuple[Record, Any]]) -> None:
        payloads = [p for _, p in items]
        if spec.wants_ctx:
            await spec.func(payloads, [MessageContext(r, self.group_id) for r, _ in items])
        else:
            await spec.func(payloads)

    async def _process_batch(
        self, records: list[Record], spec: HandlerSpec, dlq_handler: DlqHandler | None
    ) -> bool:
        items: list[tuple[Record, Any]] = []
        for record in records:
            try:
                items.append((record, spec.payload(record, self.registry)))
            except _UNDECODABLE as exc:
                failure = Failure(exc, 1, "decode", self.group_id)
                if not await self._dead_letter(record, failure, dlq_handler):
                    return False
        if not items:
            return True
        outcome = await self.retry.run(partial(self._call_batch, spec, items))
        if outcome.ok:
            self.stats.processed += len(items)
            return True
        logger.warning(
            "batch of %d failed (%s); isolating the failing records", len(items), outcome.error
        )
        return await self._isolate(items, spec, dlq_handler)

    async def _isolate(
        self, items: list[tuple[Record, Any]], spec: HandlerSpec, dlq_handler: DlqHandler | None
    ) -> bool:
        if len(items) == 1:
            outcome = await self.retry.run(partial(self._call_batch, spec, items))
            if outcome.ok:
                self.stats.processed += 1
                return True
            self.stats.failed += 1
            assert outcome.error is not None
            record, payload = items[0]
            failure = Failure(
                outcome.error, outcome.attempts, "handler", self.group_id, outcome.first_failure_at
            )
            return await self._dead_letter(record, failure, dlq_handler, payload)
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            outcome = await NO_RETRY.run(partial(self._call_batch, spec, half))
            if outcome.ok:
                self.stats.processed += len(half)
            elif not await self._isolate(half, spec, dlq_handler):
                return False
        return True
