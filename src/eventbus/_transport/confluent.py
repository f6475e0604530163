"""The confluent-kafka (librdkafka) adapter: the only module that imports confluent_kafka.

confluent-kafka's ``AIOProducer`` cannot send headers in batch mode, and headers are not
optional for us, so this adapter drives the synchronous ``Producer`` and ``Consumer``:

* the producer's delivery callbacks run on a poll thread and are handed to the event loop
  in bulk (one ``call_soon_threadsafe`` per burst, not per record);
* the consumer's ``consume()`` runs on one dedicated thread; rebalance callbacks, which
  librdkafka calls inside ``consume()``, are bridged to the core's async callbacks;
* commits and metadata calls run on the default executor.

Each setting is mapped explicitly onto librdkafka's own names: ``producer_acks`` →
``acks``, ``producer_retries`` → ``retries``, ``producer_compression`` →
``compression.type``, ``producer_linger_ms`` → ``linger.ms``, idempotence →
``enable.idempotence``, ``producer_request_timeout_ms`` → ``request.timeout.ms``; the
consumer never auto-commits nor auto-stores offsets. The partitioner is ``murmur2_random``
so keys land on the same partitions as with the Java client and aiokafka.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from confluent_kafka.admin import OffsetSpec as KafkaOffsetSpec  # type: ignore[attr-defined]

from eventbus._transport.base import (
    ConsumerConfig,
    ConsumerTransport,
    GroupDescription,
    GroupMember,
    OffsetSpec,
    OutgoingRecord,
    ProducerConfig,
    Record,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
    TopicSpec,
)
from eventbus.errors import BrokerError, BrokerUnavailableError, PublishError
from eventbus.settings import KafkaSettings

logger = logging.getLogger("eventbus.transport.confluent")
_T = TypeVar("_T")
_rdkafka_log = logging.getLogger("eventbus.librdkafka")


def _common(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.servers,
        "client.id": client_id,
        "security.protocol": settings.security_protocol,
        "logger": _rdkafka_log,
        "socket.connection.setup.timeout.ms": int(settings.connect_timeout_s * 1000),
        # librdkafka backs off up to 10 s between reconnects by default; after a broker
        # restart that leaves clients idle long after it is back (aiokafka retries faster)
        "reconnect.backoff.max.ms": 1000,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        for key, value in (
            ("ssl.ca.location", settings.ssl_cafile),
            ("ssl.certificate.location", settings.ssl_certfile),
            ("ssl.key.location", settings.ssl_keyfile),
        ):
            if value:
                conf[key] = value
        if settings.ssl_password is not None:
            conf["ssl.key.password"] = settings.ssl_password.get_secret_value()
        conf["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.ssl_check_hostname else "none"
        )
    if settings.security_protocol.startswith("SASL"):
        conf["sasl.mechanisms"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER":
            if settings.sasl_oauth_token is not None:
                token = settings.sasl_oauth_token.get_secret_value()
                conf["oauth_cb"] = lambda _cfg: (token, time.time() + 3600)
        else:
            if settings.sasl_username is not None:
                conf["sasl.username"] = settings.sasl_username
            if settings.sasl_password is not None:
                conf["sasl.password"] = settings.sasl_password.get_secret_value()
    return conf


def _unavailable(settings: KafkaSettings, what: str, exc: BaseException) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"{what} could not connect to Kafka at {settings.servers} within "
        f"{settings.connect_timeout_s:g}s: {exc}"
    )


async def _check_reachable(client: Any, settings: KafkaSettings, what: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(
            None, partial(client.list_topics, timeout=settings.connect_timeout_s)
        )
    except KafkaException as exc:
        raise _unavailable(settings, what, exc) from exc


class ConfluentProducer:
    """:class:`ProducerTransport` over confluent-kafka's synchronous ``Producer``."""

    def __init__(self, settings: KafkaSettings, config: ProducerConfig) -> None:
        self._settings = settings
        conf = _common(settings, config.client_id)
        conf.update(
            {
                "acks": "all" if config.acks in ("all", "-1") else config.acks,
                "enable.idempotence": config.enable_idempotence,
                "compression.type": config.compression or "none",
                "linger.ms": config.linger_ms,
                "batch.size": config.max_batch_bytes,
                "message.max.bytes": max(config.max_request_bytes, 1_000_000),
                "request.timeout.ms": config.request_timeout_ms,
                "delivery.timeout.ms": config.delivery_timeout_ms,
                "retries": settings.producer_retries,
                "retry.backoff.ms": config.retry_backoff_ms,
                "partitioner": "murmur2_random",
            }
        )
        if config.transactional_id is not None:
            conf["transactional.id"] = config.transactional_id
        self._producer = Producer(conf)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: deque[tuple[asyncio.Future[RecordMetadata], Any, Any]] = deque()
        self._wake_scheduled = False
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await _check_reachable(self._producer, self._settings, "producer")
        self._thread = threading.Thread(
            target=self._poll_forever, name="eventbus-producer-poll", daemon=True
        )
        self._thread.start()

    def _poll_forever(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    def _on_delivery(self, fut: asyncio.Future[RecordMetadata], err: Any, msg: Any) -> None:
        # Runs on the poll thread: queue the outcome, wake the loop once per burst.
        self._done.append((fut, err, msg))
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._wake_scheduled = False
        done = self._done
        while done:
            fut, err, msg = done.popleft()
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(PublishError(f"{err.name()}: {err.str()}"))
            else:
                fut.set_result(RecordMetadata(msg.topic(), msg.partition(), msg.offset()))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._settings.producer_request_timeout_ms / 1000
        remaining = await loop.run_in_executor(None, self._producer.flush, timeout)
        if remaining:
            logger.error(
                "producer stop: %d records unacknowledged after %gs are abandoned",
                remaining,
                timeout,
            )
        self._closing.set()
        if self._thread is not None:
            await loop.run_in_executor(None, self._thread.join)
            self._thread = None
        self._drain()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[RecordMetadata] = loop.create_future()
        callback = partial(self._on_delivery, fut)
        hdrs = cast(
            "list[tuple[str, str | bytes | None]]",
            headers if isinstance(headers, list) else list(headers),
        )
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key, headers=hdrs, on_delivery=callback)
                else:
                    self._producer.produce(
                        topic, value, key, partition, headers=hdrs, on_delivery=callback
                    )
                return fut
            except BufferError:
                await asyncio.sleep(0.005)  # local queue full: wait for deliveries (backpressure)
            except KafkaException as exc:
                fut.set_exception(PublishError(str(exc)))
                return fut

    async def flush(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush)


def _record(m: Message) -> Record:
    raw = m.headers()
    if raw is None:
        headers: tuple[tuple[str, bytes], ...] = ()
    elif isinstance(raw, list):  # what librdkafka returns: (str, bytes | None) pairs
        headers = cast("tuple[tuple[str, bytes], ...]", tuple(raw))
    else:
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = tuple((k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs)
    ts = m.timestamp()
    return Record(
        str(m.topic()),
        int(m.partition() or 0),
        int(m.offset() or 0),
        _bytes(m.key()),
        _bytes(m.value()),
        headers,
        ts[1] if ts else 0,
    )


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class ConfluentConsumer:
    """:class:`ConsumerTransport` over confluent-kafka's synchronous ``Consumer``."""

    def __init__(self, settings: KafkaSettings, config: ConsumerConfig) -> None:
        self._settings = settings
        self._config = config
        conf = _common(settings, config.client_id)
        conf.update(
            {
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": config.auto_offset_reset,
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": config.heartbeat_interval_ms,
                "max.poll.interval.ms": config.max_poll_interval_ms,
                "isolation.level": config.isolation_level,
                "partition.assignment.strategy": (
                    "range" if config.range_assignment else "range,roundrobin"
                ),
            }
        )
        if config.group_instance_id:
            conf["group.instance.id"] = config.group_instance_id
        self._consumer = Consumer(conf)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "eventbus-consumer")
        self._inflight: concurrent.futures.Future[list[Message]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._in_callback = False
        self._calls: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.Queue()
        )

    def _bridge(
        self, callback: Callable[[set[TopicPartition]], Any] | None, parts: list[Any]
    ) -> None:
        # Called by librdkafka inside consume(), on the consumer thread. While the core's
        # async callback runs on the loop, this thread serves the consumer calls it makes
        # (confluent-kafka serialises calls on one consumer, so they must run here).
        if callback is None or self._loop is None:
            return
        tps = {TopicPartition(p.topic, p.partition) for p in parts}
        self._in_callback = True
        try:
            future = asyncio.run_coroutine_threadsafe(callback(tps), self._loop)
            deadline = time.monotonic() + self._config.max_poll_interval_ms / 1000
            while not future.done() and time.monotonic() < deadline:
                try:
                    work, result = self._calls.get(timeout=0.02)
                except queue.Empty:
                    continue
                try:
                    result.set_result(work())
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    result.set_exception(exc)
            future.result(timeout=0)
        except Exception:  # a failing callback must not kill librdkafka's thread
            logger.exception("rebalance callback failed")
        finally:
            self._in_callback = False

    async def _call(self, work: Callable[[], _T]) -> _T:
        """Run a consumer call on the consumer thread."""
        if self._in_callback:
            result: concurrent.futures.Future[_T] = concurrent.futures.Future()
            self._calls.put((work, result))
            return await asyncio.wrap_future(result)
        return await asyncio.wrap_future(self._thread.submit(work))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await _check_reachable(self._consumer, self._settings, "consumer")
        except BrokerUnavailableError:
            await self._close()
            raise
        if self._config.assign is not None:
            self._consumer.assign(
                [
                    KafkaTopicPartition(tp.topic, tp.partition, o)
                    for tp, o in self._config.assign.items()
                ]
            )
            return
        self._consumer.subscribe(
            list(self._config.topics),
            on_assign=lambda _c, parts: self._bridge(self._config.on_assigned, parts),
            on_revoke=lambda _c, parts: self._bridge(self._config.on_revoked, parts),
            on_lost=lambda _c, parts: self._bridge(self._config.on_revoked, parts),
        )

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._consumer.close)
        self._thread.shutdown(wait=True)

    async def stop(self) -> None:
        await self._close()

    async def getmany(self, timeout_ms: int, max_records: int) -> list[Record]:
        if self._inflight is None:
            self._inflight = self._thread.submit(
                self._consumer.consume, max_records, timeout_ms / 1000
            )
        # A cancelled wait leaves the poll in flight; the next call collects its records.
        messages = await asyncio.shield(asyncio.wrap_future(self._inflight))
        self._inflight = None
        out: list[Record] = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consume error: %s", err)
                continue
            out.append(_record(m))
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        parts = [KafkaTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            await self._call(partial(self._consumer.commit, offsets=parts, asynchronous=False))
        except KafkaException as exc:
            raise BrokerError(f"commit failed: {exc}") from exc

    async def committed(self, tp: TopicPartition) -> int | None:
        (part,) = await self._call(
            partial(
                self._consumer.committed, [KafkaTopicPartition(tp.topic, tp.partition)], timeout=10
            )
        )
        return None if part.offset < 0 else int(part.offset)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()}

    # seek/pause/resume queue behind the poll on the consumer thread, in call order
    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._thread.submit(
            self._consumer.seek, KafkaTopicPartition(tp.topic, tp.partition, offset)
        )

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        parts = [KafkaTopicPartition(t.topic, t.partition) for t in tps]
        self._thread.submit(self._consumer.pause, parts)

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        parts = [KafkaTopicPartition(t.topic, t.partition) for t in tps]
        self._thread.submit(self._consumer.resume, parts)

    async def group_metadata(self) -> object:
        return await self._call(self._consumer.consumer_group_metadata)

    async def position(self, tp: TopicPartition) -> int | None:
        (part,) = await self._call(
            partial(self._consumer.position, [KafkaTopicPartition(tp.topic, tp.partition)])
        )
        return None if part.offset < 0 else int(part.offset)

    def highwater(self, tp: TopicPartition) -> int | None:
        _, high = self._consumer.get_watermark_offsets(
            KafkaTopicPartition(tp.topic, tp.partition), cached=True
        )
        return None if high < 0 else int(high)


class ConfluentTransactionalProducer:
    """:class:`TransactionalProducer` over confluent-kafka's transactional ``Producer``.

    A failed transaction is aborted; after a fatal error (librdkafka's ``fatal()``, e.g. a
    fenced producer or a sequence gap after a broker lost its last transactions) the
    producer is replaced by a new one with the same ``transactional.id``, whose
    ``init_transactions`` fences the old one, so the caller's next attempt can succeed.
    """

    def __init__(self, settings: KafkaSettings, config: ProducerConfig, txn_id: str) -> None:
        self._settings = settings
        self._conf = _common(settings, config.client_id)
        self._conf.update(
            {
                "transactional.id": txn_id,
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "request.timeout.ms": config.request_timeout_ms,
            }
        )
        self._producer = Producer(self._conf)
        self._timeout = config.request_timeout_ms / 1000
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "eventbus-txn")

    async def start(self) -> None:
        await _check_reachable(self._producer, self._settings, "transactional producer")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._thread, self._producer.init_transactions, self._timeout
            )
        except KafkaException as exc:
            raise BrokerError(f"cannot initialise transactions: {exc}") from exc

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._producer.flush, self._timeout)
        self._thread.shutdown(wait=True)

    def _run(
        self, records: Sequence[OutgoingRecord], offsets: list[KafkaTopicPartition], metadata: Any
    ) -> None:
        p = self._producer
        try:
            p.begin_transaction()
            for r in records:
                p.produce(r.topic, r.value, key=r.key, headers=list(r.headers))
            if offsets:
                p.send_offsets_to_transaction(offsets, metadata, self._timeout)
            p.commit_transaction(self._timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            fatal = bool(error is not None and hasattr(error, "fatal") and error.fatal())
            if not fatal:
                try:
                    p.abort_transaction(self._timeout)
                except KafkaException:
                    fatal = True
            if fatal:
                self._replace()
            raise

    def _replace(self) -> None:
        """Swap in a new producer with the same transactional.id (runs on the txn thread)."""
        logger.warning(
            "transactional producer %s failed fatally; replacing it",
            self._conf.get("transactional.id"),
        )
        with contextlib.suppress(Exception):
            self._producer.flush(0)
        self._producer = Producer(self._conf)
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:  # the next attempt's begin_transaction reports it
            logger.warning("new transactional producer not initialised yet: %s", exc)

    async def commit_atomically(
        self,
        records: Sequence[OutgoingRecord],
        offsets: dict[TopicPartition, int],
        consumer: ConsumerTransport,
        group_id: str,
    ) -> None:
        metadata = await consumer.group_metadata() if offsets else None
        parts = [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._run, records, parts, metadata)
        except KafkaException as exc:
            raise PublishError(f"transaction aborted: {exc}") from exc


class ConfluentAdmin:
    """:class:`AdminTransport` over confluent-kafka's ``AdminClient``."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._admin = AdminClient(_common(settings, f"{settings.client_id}-admin"))

    async def start(self) -> None:
        await _check_reachable(self._admin, self._settings, "admin client")

    async def stop(self) -> None:
        return None

    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        existing = await self.list_topics()
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=dict(s.configs),
                )
                for s in missing
            ],
            operation_timeout=self._settings.connect_timeout_s,
        )
        created: list[str] = []
        for name, fut in futures.items():
            try:
                await asyncio.wrap_future(fut)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(f"cannot create topic {name}: {exc}") from exc
        return created

    async def list_topics(self) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        meta = await loop.run_in_executor(
            None, partial(self._admin.list_topics, timeout=self._settings.connect_timeout_s)
        )
        return {
            name: len(t.partitions)
            for name, t in meta.topics.items()
            if not name.startswith("__") and t.error is None
        }

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicDescription]:
        loop = asyncio.get_running_loop()
        meta = await loop.run_in_executor(
            None, partial(self._admin.list_topics, timeout=self._settings.connect_timeout_s)
        )
        found = {n: t for n, t in meta.topics.items() if n in set(names) and t.error is None}
        if not found:
            return {}
        futures = self._admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, name) for name in found],
            request_timeout=self._settings.connect_timeout_s,
        )
        configs: dict[str, dict[str, str]] = {}
        for resource, fut in futures.items():
            try:
                entries = await asyncio.wrap_future(fut)
            except KafkaException as exc:
                raise BrokerError(
                    f"cannot read the configs of topic {resource.name}: {exc}"
                ) from exc
            configs[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
        return {
            name: TopicDescription(
                name,
                len(t.partitions),
                max((len(p.replicas) for p in t.partitions.values()), default=0),
                configs.get(name, {}),
            )
            for name, t in found.items()
        }

    async def create_partitions(self, counts: dict[str, int]) -> None:
        if not counts:
            return
        futures = self._admin.create_partitions(
            [NewPartitions(name, total) for name, total in counts.items()],
            operation_timeout=self._settings.connect_timeout_s,
        )
        for name, fut in futures.items():
            try:
                await asyncio.wrap_future(fut)
            except KafkaException as exc:
                raise BrokerError(f"cannot add partitions to {name}: {exc}") from exc

    async def alter_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        resource = ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in configs.items()
            ],
        )
        futures = self._admin.incremental_alter_configs(
            [resource], request_timeout=self._settings.connect_timeout_s
        )
        for fut in futures.values():
            try:
                await asyncio.wrap_future(fut)
            except KafkaException as exc:
                raise BrokerError(f"cannot change the configs of topic {name}: {exc}") from exc

    async def list_offsets(
        self, partitions: Sequence[TopicPartition], spec: OffsetSpec
    ) -> dict[TopicPartition, int | None]:
        if not partitions:
            return {}
        if spec == "earliest":
            wanted = KafkaOffsetSpec.earliest()  # type: ignore[no-untyped-call]
        elif spec == "latest":
            wanted = KafkaOffsetSpec.latest()  # type: ignore[no-untyped-call]
        else:
            wanted = KafkaOffsetSpec.for_timestamp(int(spec))
        futures = self._admin.list_offsets(
            {KafkaTopicPartition(tp.topic, tp.partition): wanted for tp in partitions},
            request_timeout=self._settings.connect_timeout_s,
        )
        out: dict[TopicPartition, int | None] = {}
        for part, fut in futures.items():
            try:
                offset = (await asyncio.wrap_future(fut)).offset
            except KafkaException as exc:
                raise BrokerError(
                    f"cannot list offsets of {part.topic}[{part.partition}]: {exc}"
                ) from exc
            out[TopicPartition(part.topic, part.partition)] = None if offset < 0 else int(offset)
        return out

    async def list_groups(self) -> list[str]:
        fut = self._admin.list_consumer_groups(request_timeout=self._settings.connect_timeout_s)
        try:
            result = await asyncio.wrap_future(fut)
        except KafkaException as exc:
            raise BrokerError(f"cannot list consumer groups: {exc}") from exc
        return sorted({g.group_id for g in result.valid})

    async def describe_groups(self, group_ids: Sequence[str]) -> dict[str, GroupDescription]:
        if not group_ids:
            return {}
        futures = self._admin.describe_consumer_groups(
            list(group_ids), request_timeout=self._settings.connect_timeout_s
        )
        out: dict[str, GroupDescription] = {}
        for group, fut in futures.items():
            try:
                found = await asyncio.wrap_future(fut)
            except KafkaException as exc:
                raise BrokerError(f"cannot describe consumer group {group}: {exc}") from exc
            out[group] = GroupDescription(
                group,
                _GROUP_STATES.get(found.state, "Unknown"),
                tuple(
                    GroupMember(m.member_id, m.client_id or "", m.host or "") for m in found.members
                ),
            )
        return out

    async def group_offsets(
        self, group_id: str, topics: Sequence[str] | None = None
    ) -> dict[TopicPartition, int]:
        futures = self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group_id)],
            request_timeout=self._settings.connect_timeout_s,
        )
        out: dict[TopicPartition, int] = {}
        for fut in futures.values():
            try:
                found = await asyncio.wrap_future(fut)
            except KafkaException as exc:
                raise BrokerError(f"cannot read the offsets of group {group_id}: {exc}") from exc
            for part in found.topic_partitions or ():
                if part.offset >= 0 and (topics is None or part.topic in topics):
                    out[TopicPartition(part.topic, part.partition)] = int(part.offset)
        return out

    async def alter_group_offsets(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        request = ConsumerGroupTopicPartitions(
            group_id, [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        )
        futures = self._admin.alter_consumer_group_offsets(
            [request], request_timeout=self._settings.connect_timeout_s
        )
        for fut in futures.values():
            try:
                done = await asyncio.wrap_future(fut)
            except KafkaException as exc:
                raise BrokerError(_refused(group_id, exc)) from exc
            failed = [p for p in done.topic_partitions or () if p.error is not None]
            if failed:
                raise BrokerError(_refused(group_id, failed[0].error))


_GROUP_STATES = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
}


def _refused(group_id: str, error: object) -> str:
    text = str(error)
    if "UNKNOWN_MEMBER_ID" in text or "REBALANCE_IN_PROGRESS" in text:
        return f"the broker refused the offsets of group {group_id}: it has active members"
    return f"cannot set the offsets of group {group_id}: {text}"


class ConfluentTransport:
    """Creates confluent-kafka-backed clients for one cluster."""

    name = "confluent"

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def producer(self, config: ProducerConfig) -> ConfluentProducer:
        return ConfluentProducer(self.settings, config)

    def consumer(self, config: ConsumerConfig) -> ConfluentConsumer:
        return ConfluentConsumer(self.settings, config)

    def admin(self) -> ConfluentAdmin:
        return ConfluentAdmin(self.settings)

    def transactional_producer(
        self, config: ProducerConfig, transactional_id: str
    ) -> ConfluentTransactionalProducer:
        return ConfluentTransactionalProducer(self.settings, config, transactional_id)
