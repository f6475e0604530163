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
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from eventbus._clients import make_transport
from eventbus._deadletter import (
    DeadLetterWriter,
    Failure,
    dead_letter_topic,
    deliver_until_acked,
)
from eventbus._dispatch import Dispatcher, DlqHandler, Middleware
from eventbus._handlers import Handler, HandlerSpec, inspect_handler
from eventbus._lanes import Lanes
from eventbus._offsets import OffsetTracker
from eventbus._policy import RetryPolicy
from eventbus._priority import PriorityLanes, ensure_lane_topics
from eventbus._registry import EventRegistry, default_registry
from eventbus._retrytopics import RetryRouter, RetryTopics
from eventbus._scheduler import LaneScheduler
from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    OutgoingRecord,
    ProducerConfig,
    ProducerTransport,
    Record,
    TopicPartition,
    TopicSpec,
    TransactionalProducer,
    Transport,
)
from eventbus.errors import (
    ConfigurationError,
    EventBusError,
    LifecycleError,
    UnsupportedFeatureError,
)
from eventbus.observe import Observer, PartitionProgress, fanout
from eventbus.settings import KafkaSettings, load_settings

logger = logging.getLogger("eventbus.consumer")


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
        concurrency: lanes of key-ordered concurrency (1 = partition-serial, the default).
            With N > 1, records with the same key are handled in order on one lane while
            other keys run concurrently, and each partition commits only its highest
            contiguous finished offset.
        transactional: consume-transform-produce exactly once: events a handler queues
            with ``ctx.produce()`` and the record's offset are committed in one Kafka
            transaction (partition-serial only; the consumer reads ``read_committed``).
            Raises :class:`UnsupportedFeatureError` at start on a broker without
            transactions.
        atomic_dead_letters: write each dead-letter record and commit its offset in one
            transaction, so a poison message is never dead-lettered twice after a crash.
            Default: on where the broker supports transactions and concurrency is 1.
        retry_topics: non-blocking retry tiers (see :class:`RetryTopics`): a record that
            keeps failing waits in ``<domain>-retry-<delay>`` topics instead of blocking
            its partition, and later records with the same key are parked behind it.
        priority_lanes: read every lane topic of the ``topics`` that have lanes (see
            :class:`PriorityLanes`; missing lane topics are created at start) and hand
            records to the handlers in weighted turns across lanes, so CRITICAL and
            HIGH records overtake a backlog of lower ones and LOW keeps a share. A lane
            record that fails goes to its logical topic's dead-letter topic. Not
            combined with ``retry_topics``.
        observers: told of every record handled and its outcome (metrics, tracing; see
            :mod:`eventbus.observe`); the process-wide observers when omitted.
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
        concurrency: int = 1,
        transactional: bool = False,
        atomic_dead_letters: bool | None = None,
        retry_topics: RetryTopics | None = None,
        client_id: str | None = None,
        priority_lanes: PriorityLanes | None = None,
        observers: Sequence[Observer] | None = None,
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
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if transactional and concurrency > 1:
            raise ConfigurationError("transactional=True needs concurrency=1")
        if retry_topics is not None and concurrency > 1:
            raise ConfigurationError("retry_topics needs concurrency=1")
        if priority_lanes is not None:
            dead_letter_topic = _lane_dead_letters(
                priority_lanes, self.topics, retry_topics, dead_letter_topic
            )
        self.priority_lanes = priority_lanes
        self._scheduler: LaneScheduler | None = None
        self.transactional = transactional
        self._atomic_dead_letters = atomic_dead_letters
        self._router = RetryRouter(retry_topics, self.topics) if retry_topics else None
        self._forwarded = False
        self._deferred: set[TopicPartition] = set()
        self.registry = registry or default_registry
        self.concurrency = concurrency
        self._dispatch = Dispatcher(
            self.registry,
            retry or RetryPolicy(),
            self.group_id,
            self.settings.max_message_bytes,
            lambda: self._stopping,
            fanout(observers),
        )
        self.stats = self._dispatch.stats
        self._transport = transport
        self._dlq_topic = dead_letter_topic
        self._drain_timeout_s = drain_timeout_s
        self._poll_timeout_ms = poll_timeout_ms
        self._client: ConsumerTransport | None = None
        self._dlq_producer: ProducerTransport | None = None
        self._txn: TransactionalProducer | None = None
        self._offsets = OffsetTracker()
        self._lanes: Lanes | None = None
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
        self._dispatch.routes[self.registry.canonical_type(str(event_type))] = inspect_handler(
            handler
        )

    def use(self, middleware: Middleware) -> None:
        """Add a pipeline step around every handler call (outermost first)."""
        self._dispatch.middlewares.append(middleware)

    @property
    def retry(self) -> RetryPolicy:
        """The in-place retry policy."""
        return self._dispatch.retry

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
        if self.transactional and not features.transactions:
            raise UnsupportedFeatureError(
                f"transactional=True needs Kafka transactions, which broker profile "
                f"{features.name!r} does not provide (read_committed isolation)"
            )
        atomic = self._atomic_dead_letters
        if atomic is None:
            atomic = (
                features.transactions
                and self.concurrency == 1
                and (features.idempotence_for(s.transport) or self._transport is not None)
            )
        topics = self.topics
        if self._router is not None:
            await self._ensure_retry_topics(transport)
            topics = (*self.topics, *self._router.retry_topics)
        topics = await self._with_lanes(transport, topics)
        config = ConsumerConfig(
            group_id=self.group_id,
            topics=topics,
            range_assignment=self._router is not None,
            auto_offset_reset=s.consumer_auto_offset_reset,
            max_poll_records=s.consumer_max_poll_records,
            session_timeout_ms=s.consumer_session_timeout_ms,
            heartbeat_interval_ms=s.consumer_heartbeat_interval_ms,
            group_instance_id=s.consumer_group_instance_id,
            client_id=s.client_id,
            on_revoked=self._on_revoked,
            on_assigned=self._on_assigned,
            isolation_level="read_committed" if self.transactional else s.consumer_isolation_level,
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
        txn: TransactionalProducer | None = None
        if self.transactional or atomic:
            txn = transport.transactional_producer(
                ProducerConfig(
                    client_id=f"{s.client_id}-txn", request_timeout_ms=s.producer_request_timeout_ms
                ),
                # A stable id per replica (static membership) lets a restarted consumer
                # fence and abort its predecessor's open transaction; without one, the id
                # is random and an open transaction waits for the broker's timeout.
                f"{self.group_id}-{s.consumer_group_instance_id}-txn"
                if s.consumer_group_instance_id
                else f"{self.group_id}-{s.client_id}-{uuid.uuid4().hex[:12]}",
            )
            try:
                await txn.start()
            except BaseException:
                await dlq_producer.stop()
                raise
        self._offsets = OffsetTracker()
        self._assigned = set()  # before joining: the join's assignment callback fills it
        self._committed = {}
        client = transport.consumer(config)
        # before joining: the join's assignment callback feeds the scheduler
        self._scheduler = self._lane_scheduler(topics, client)
        try:
            await client.start()
        except BaseException:
            await dlq_producer.stop()
            if txn is not None:
                await txn.stop()
            raise
        self._stopping = False
        self._txn = txn
        self._stop_done = None
        self._client = client
        self._dlq_producer = dlq_producer
        self._dispatch.writer = DeadLetterWriter(
            dlq_producer, self._dlq_topic, atomic=self._write_atomically if atomic else None
        )
        self._dispatch.commit_txn = self._commit_outputs if self.transactional else None
        self._dispatch.on_failure = self._to_retry_tier if self._router is not None else None
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
        txn, self._txn = self._txn, None
        try:
            await client.stop()
        finally:
            if dlq is not None:
                await dlq.stop()
            if txn is not None:
                await txn.stop()
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

    async def lag(self) -> dict[TopicPartition, int]:
        """How many records of each assigned partition the group has not committed yet.

        The partition's high watermark (from the last fetch) minus the group's committed
        offset (0 when it never committed). Partitions whose high watermark is not known
        yet are left out; a consumer that is not started has no lag to report.
        """
        return {tp: p.lag for tp, p in (await self.progress()).items()}

    async def progress(self) -> dict[TopicPartition, PartitionProgress]:
        """The committed offset, high watermark and lag of every assigned partition.

        The high watermark is the one the last fetch returned, not a ListOffsets answer,
        so it is right on brokers whose end offsets cannot be trusted (Tansu's).
        Partitions not fetched from yet are left out.
        """
        client = self._client
        if client is None:
            return {}
        out: dict[TopicPartition, PartitionProgress] = {}
        for tp in sorted(client.assignment()):
            high = client.highwater(tp)
            if high is None:
                continue
            committed = self._committed.get(tp)
            if committed is None:
                committed = await client.committed(tp)
                if committed is not None:  # known now: the next sample need not ask again
                    self._committed[tp] = committed
            done = committed or 0
            out[tp] = PartitionProgress(done, high, max(high - done, 0))
        return out

    # -- offsets ------------------------------------------------------------------------
    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        client = self._client
        if client is None:
            return
        pending = {
            tp: off
            for tp, off in self._offsets.committable.items()
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

    async def _commit_outputs(self, record: Record, outputs: list[OutgoingRecord]) -> None:
        """Commit a handler's outputs and its record's offset in one transaction."""
        await self._write_atomically(record, *outputs)

    async def _write_atomically(self, record: Record, *outputs: OutgoingRecord) -> None:
        assert self._txn is not None
        client = self._require()
        offsets: dict[TopicPartition, int] = {}
        if self._lanes is None:  # serial: every earlier offset of the partition is finished
            offsets[record.tp] = record.offset + 1
        await self._txn.commit_atomically(outputs, offsets, client, self.group_id)
        self._committed.update(offsets)

    def _lane_scheduler(
        self, topics: tuple[str, ...], client: ConsumerTransport
    ) -> LaneScheduler | None:
        lanes = self.priority_lanes
        if lanes is None:
            return None
        return LaneScheduler(
            lanes, topics, client, self._poll, self.settings.consumer_max_poll_records
        )

    async def _with_lanes(self, transport: Transport, topics: tuple[str, ...]) -> tuple[str, ...]:
        """``topics`` with every lane topic of those that have priority lanes (created
        when missing)."""
        lanes = self.priority_lanes
        if lanes is None:
            return topics
        admin = transport.admin()
        await admin.start()
        try:
            await ensure_lane_topics(admin, lanes, topics)
        finally:
            await admin.stop()
        return tuple(
            name
            for topic in topics
            for name in (lanes.lane_topics(topic).values() if topic in lanes.topics else [topic])
        )

    # -- retry tiers ----------------------------------------------------------------------
    async def _ensure_retry_topics(self, transport: Transport) -> None:
        assert self._router is not None
        admin = transport.admin()
        await admin.start()
        try:
            existing = await admin.list_topics()
            specs = [
                TopicSpec(self._router.policy.topic(main, tier), existing.get(main, 1))
                for main in self.topics
                for tier in range(len(self._router.policy.delays))
            ]
            await admin.create_topics(specs)
        finally:
            await admin.stop()

    def _hold(self, record: Record) -> bool:
        """Defer a retry record that is not due, or park a record whose key waits."""
        router = self._router
        assert router is not None
        client = self._require()
        if record.tp in self._deferred:
            return True  # an earlier record of this retry partition is not due yet
        if router.is_retry(record):
            wait = router.due_in(record)
            if wait > 0:
                self._deferred.add(record.tp)
                client.pause([record.tp])
                client.seek(record.tp, record.offset)
                asyncio.get_running_loop().call_later(wait, self._resume, record.tp)
                return True
            return False
        queue = router.parked.get(record.key) if record.key is not None else None
        if queue is None:
            return False
        self._offsets.begin(record)  # held back: not committed until it is handled
        queue.append(record)
        if router.parked_count() >= router.policy.max_parked:
            client.pause([tp for tp in self._assigned if not router.is_retry_topic(tp.topic)])
        return True

    def _resume(self, tp: TopicPartition) -> None:
        if self._client is not None and tp in self._assigned:
            self._client.resume([tp])

    async def _to_retry_tier(self, record: Record, failure: Failure) -> bool:
        """Republish a failing record to its next retry tier; False when none is left."""
        router = self._router
        assert router is not None
        assert self._dlq_producer is not None
        hop = router.next_hop(record, failure)
        if hop is None:
            return False
        producer = self._dlq_producer

        async def attempt() -> None:
            await (await producer.send(hop.topic, hop.value, hop.key, hop.headers))

        if not await deliver_until_acked(
            attempt, f"retry-tier write to {hop.topic}", lambda: self._stopping
        ):
            return False
        self._forwarded = True
        if record.key is not None and not router.is_retry(record):
            router.parked.setdefault(record.key, deque())
            router.heads[record.key] = router.heads.get(record.key, 0) + 1
        self.stats.retried_later += 1
        self._dispatch.observers.outcome(self.group_id, record, "retried")
        logger.info(
            "%s[%d]@%d waits in %s", record.topic, record.partition, record.offset, hop.topic
        )
        return True

    async def _after(
        self, record: Record, default: HandlerSpec | None, dlq_handler: DlqHandler | None
    ) -> bool:
        """After a retry record finished for good, handle what was parked behind its key."""
        router = self._router
        assert router is not None
        key = record.key
        if key is None or not router.is_retry(record) or self._forwarded:
            return True
        left = router.heads.get(key, 1) - 1
        if left > 0:
            router.heads[key] = left
            return True
        router.heads.pop(key, None)
        queue = router.parked.pop(key, deque())
        while queue:
            parked = queue.popleft()
            self._forwarded = False
            if not await self._dispatch.process(parked, default, dlq_handler):
                return False
            self._offsets.finish(parked)
            if self._forwarded:  # it failed too and now waits: the rest stays behind it
                router.parked[key].extend(queue)
                return True
        if self._client is not None and router.parked_count() < router.policy.max_parked:
            self._client.resume(list(self._assigned))
        return True

    async def _commit_loop(self) -> None:
        interval = self.settings.consumer_commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._commit()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._lanes is not None:
            try:  # let the lanes finish what they hold of these partitions
                await asyncio.wait_for(self._lanes.drain(revoked), self._drain_timeout_s)
            except TimeoutError:
                logger.warning("revoked partitions still busy after %ss", self._drain_timeout_s)
        async with self._busy:  # wait for the message in hand
            if self.settings.features.commit_during_rebalance or (
                self.settings.consumer_group_instance_id
            ):
                await self._commit(revoked)
            self._offsets.forget(revoked)
            self._deferred -= revoked
            if self._scheduler is not None:
                self._scheduler.revoke(revoked)
            if self._router is not None:
                self._router.forget({(tp.topic, tp.partition) for tp in revoked})
            for tp in revoked:
                self._committed.pop(tp, None)
            self._assigned -= revoked
        logger.info("consumer %s revoked %s", self.group_id, sorted(revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned |= assigned
        if self._scheduler is not None:
            self._scheduler.assign(assigned)
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
            await asyncio.sleep(min(1.0, max(timeout_ms, 50) / 1000))
            return []

    async def _take(self, limit: int, timeout_ms: int) -> list[Record]:
        """Up to ``limit`` records: by weighted turns across priority lanes, else as polled."""
        if self._scheduler is not None:
            return await self._scheduler.take(limit, timeout_ms)
        return await self._poll(timeout_ms, limit)

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
        if default is None and not self._dispatch.routes:
            raise ConfigurationError("consume() needs a handler or registered routes")
        done = self._enter_loop()
        process = self._dispatch.process
        offsets = self._offsets
        if self.concurrency > 1:

            async def on_lane(record: Record) -> None:
                if record.tp in self._assigned and await process(record, default, dlq_handler):
                    offsets.finish(record)

            max_in_flight = (
                self.concurrency * 2  # the backlog waits in the priority buffers instead
                if self._scheduler is not None
                else max(self.concurrency * 4, self.settings.consumer_max_poll_records)
            )
            self._lanes = Lanes(self.concurrency, on_lane, max_in_flight)
        # with priority lanes, one record per turn so a newly fetched CRITICAL one is next
        limit = 1 if self._scheduler is not None else self.settings.consumer_max_poll_records
        try:
            while not self._stopping:
                records = await self._take(limit, self._poll_timeout_ms)
                self._deferred.clear()
                for record in records:
                    if self._stopping:
                        break
                    if record.tp not in self._assigned:
                        continue  # revoked while this batch was in hand
                    if self._lanes is not None:
                        offsets.begin(record)
                        await self._lanes.submit(record)
                        continue
                    if self._router is not None and self._hold(record):
                        continue
                    if not await self._one(record, default, dlq_handler):
                        break  # stopping before the record was finished: it comes back
            if self._lanes is not None:
                await self._lanes.drain()
        finally:
            if self._lanes is not None:
                await self._lanes.close()
                self._lanes = None
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
        if self.concurrency > 1 or self._router is not None:
            raise ConfigurationError(
                "consume_batch() does not combine with concurrency > 1 or retry_topics"
            )
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
                    records += await self._take(
                        batch_size - len(records), max(1, int(remaining * 1000))
                    )
                if not records:
                    continue
                async with self._busy:
                    assigned = self._assigned
                    records = [r for r in records if r.tp in assigned]
                    for record in records:
                        self._offsets.begin(record)
                    if not await self._dispatch.process_batch(records, spec, dlq_handler):
                        break
                    for record in records:
                        self._offsets.finish(record)
        finally:
            done.set()

    async def _one(
        self, record: Record, default: HandlerSpec | None, dlq_handler: DlqHandler | None
    ) -> bool:
        """Handle one record in partition-serial mode; False if stopped before finishing."""
        async with self._busy:
            self._offsets.begin(record)
            self._forwarded = False
            if not await self._dispatch.process(record, default, dlq_handler):
                return False
            self._offsets.finish(record)
            if self._router is not None:
                return await self._after(record, default, dlq_handler)
            return True

    def start_background(
        self, handler: Handler | None = None, dlq_handler: DlqHandler | None = None
    ) -> asyncio.Task[None]:
        """Run :meth:`consume` in a task (for application lifespans)."""
        return asyncio.create_task(
            self.consume(handler, dlq_handler), name=f"consume-{self.group_id}"
        )


def _lane_dead_letters(
    lanes: PriorityLanes,
    topics: tuple[str, ...],
    retry_topics: RetryTopics | None,
    topic_for: Callable[[str], str],
) -> Callable[[str], str]:
    """Check ``lanes`` against the consumer's options; a lane record dead-letters to its
    logical topic's dead-letter topic."""
    if retry_topics is not None:
        raise ConfigurationError("priority_lanes does not combine with retry_topics")
    if not lanes.topics.intersection(topics):
        raise ConfigurationError(f"priority_lanes has lanes for none of the topics {list(topics)}")

    def dead_letters(topic: str) -> str:
        return topic_for(lanes.logical_topic(topic))

    return dead_letters
