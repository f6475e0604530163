"""The aiokafka adapter: the only module that imports aiokafka.

Each setting is mapped explicitly onto aiokafka's own options:

* ``producer_acks``: ``acks`` (``"all"``/``-1``, ``1``, ``0``).
* ``producer_retries``: aiokafka has no ``retries`` option; it retries retriable errors
  internally until ``request_timeout_ms``. ``KafkaProducer.publish``/``send_event`` then
  re-send a record that still failed with a retriable error up to ``producer_retries``
  more times.
* ``producer_compression``: ``compression_type``; ``producer_linger_ms``: ``linger_ms``.
* idempotence: ``enable_idempotence`` when the broker profile says it works with aiokafka.
* consumer: ``enable_auto_commit`` is always False (eventbus commits after success);
  ``group_instance_id`` enables static membership.
* security: ``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username/password``,
  an SSL context from the file paths, an OAUTHBEARER token provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as AioTP
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from aiokafka.helpers import create_ssl_context

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

logger = logging.getLogger("eventbus.transport.aiokafka")


class _StaticToken(AbstractTokenProvider):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


def _security(settings: KafkaSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        ctx = create_ssl_context(
            cafile=settings.ssl_cafile,
            certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile,
            password=settings.ssl_password.get_secret_value() if settings.ssl_password else None,
        )
        ctx.check_hostname = settings.ssl_check_hostname
        opts["ssl_context"] = ctx
    if settings.security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER":
            if settings.sasl_oauth_token is not None:
                opts["sasl_oauth_token_provider"] = _StaticToken(
                    settings.sasl_oauth_token.get_secret_value()
                )
        else:
            opts["sasl_plain_username"] = settings.sasl_username
            opts["sasl_plain_password"] = (
                settings.sasl_password.get_secret_value() if settings.sasl_password else None
            )
    return opts


def _assignor(config: ConsumerConfig) -> dict[str, Any]:
    if not config.range_assignment:
        return {}
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    return {"partition_assignment_strategy": (RangePartitionAssignor,)}


async def _start(client: Any, settings: KafkaSettings, what: str) -> None:
    try:
        await asyncio.wait_for(client.start(), timeout=settings.connect_timeout_s)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await client.close() if hasattr(client, "close") else await client.stop()
        if not isinstance(exc, KafkaError | OSError | TimeoutError):
            raise
        raise BrokerUnavailableError(
            f"{what} could not connect to Kafka at {settings.servers} within "
            f"{settings.connect_timeout_s:g}s: {type(exc).__name__}: {exc}"
        ) from exc


class AiokafkaProducer:
    """:class:`ProducerTransport` over :class:`aiokafka.AIOKafkaProducer`."""

    def __init__(self, settings: KafkaSettings, config: ProducerConfig) -> None:
        self._settings = settings
        self._retries = settings.producer_retries
        self._stop_timeout_s = settings.producer_request_timeout_ms / 1000
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.servers,
            client_id=config.client_id,
            acks=-1 if config.acks in ("all", "-1") else int(config.acks),
            enable_idempotence=config.enable_idempotence,
            compression_type=config.compression,
            linger_ms=config.linger_ms,
            max_batch_size=config.max_batch_bytes,
            max_request_size=config.max_request_bytes,
            request_timeout_ms=config.request_timeout_ms,
            retry_backoff_ms=config.retry_backoff_ms,
            transactional_id=config.transactional_id,
            **_security(settings),
        )

    async def start(self) -> None:
        await _start(self._producer, self._settings, "producer")

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self._producer.flush(), self._stop_timeout_s)
        except TimeoutError:
            # aiokafka retries a batch for a known but unreachable leader forever, and its
            # stop() waits for that; give up on it after the timeout instead of hanging.
            logger.error(
                "producer stop: records still unacknowledged after %gs are abandoned",
                self._stop_timeout_s,
            )
            sender = getattr(self._producer, "_sender", None)
            task = getattr(sender, "sender_task", None)
            if task is not None:
                task.cancel()
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        # Hot path: hand back aiokafka's own future (its result has topic, partition and
        # offset; the producer core maps its exceptions to PublishError).
        try:
            fut = await self._producer.send(
                topic,
                value=value,
                key=key,
                partition=partition,
                headers=headers if isinstance(headers, list) else list(headers),
            )
        except KafkaError as exc:
            failed: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
            failed.set_exception(PublishError(f"{type(exc).__name__}: {exc}"))
            return failed
        return cast("asyncio.Future[RecordMetadata]", fut)

    async def flush(self) -> None:
        await self._producer.flush()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, config: ConsumerConfig) -> None:
        self._config = config

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self._config.on_revoked is not None:
            await self._config.on_revoked(
                {TopicPartition(tp.topic, tp.partition) for tp in revoked}
            )

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._config.on_assigned is not None:
            await self._config.on_assigned(
                {TopicPartition(tp.topic, tp.partition) for tp in assigned}
            )


class AiokafkaConsumer:
    """:class:`ConsumerTransport` over :class:`aiokafka.AIOKafkaConsumer`."""

    def __init__(self, settings: KafkaSettings, config: ConsumerConfig) -> None:
        self._settings = settings
        self._config = config
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.servers,
            client_id=config.client_id,
            group_id=None if config.assign is not None else config.group_id,
            group_instance_id=config.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset=config.auto_offset_reset,
            max_poll_records=config.max_poll_records,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            isolation_level=config.isolation_level,
            **_assignor(config),
            **_security(settings),
        )

    async def start(self) -> None:
        await _start(self._consumer, self._settings, "consumer")
        if self._config.assign is None:
            self._consumer.subscribe(list(self._config.topics), listener=_Listener(self._config))
            return
        positions = {AioTP(tp.topic, tp.partition): o for tp, o in self._config.assign.items()}
        self._consumer.assign(list(positions))
        for tp, offset in positions.items():
            self._consumer.seek(tp, offset)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def getmany(self, timeout_ms: int, max_records: int) -> list[Record]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        out: list[Record] = []
        for records in batches.values():
            out.extend(
                Record(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    tuple(r.headers or ()),
                    r.timestamp,
                )
                for r in records
            )
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if offsets:
            await self._consumer.commit(
                {AioTP(tp.topic, tp.partition): o for tp, o in offsets.items()}
            )

    async def committed(self, tp: TopicPartition) -> int | None:
        value = await self._consumer.committed(AioTP(tp.topic, tp.partition))
        return None if value is None else int(value)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(AioTP(tp.topic, tp.partition), offset)

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._consumer.pause(*(AioTP(t.topic, t.partition) for t in tps))

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._consumer.resume(*(AioTP(t.topic, t.partition) for t in tps))

    def highwater(self, tp: TopicPartition) -> int | None:
        value = self._consumer.highwater(AioTP(tp.topic, tp.partition))
        return None if value is None else int(value)

    async def group_metadata(self) -> object:
        return self._config.group_id

    async def position(self, tp: TopicPartition) -> int | None:
        try:
            return int(await self._consumer.position(AioTP(tp.topic, tp.partition)))
        except (KafkaError, AssertionError, IllegalStateError):
            return None


_PRODUCER_STATE_ERRORS = (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    UnknownProducerId,
)


class AiokafkaTransactionalProducer:
    """:class:`TransactionalProducer` over aiokafka's transactional producer.

    A transaction that fails is aborted. If the producer cannot abort, or aiokafka put it
    in its fatal state (e.g. ``OutOfOrderSequenceNumber`` after a broker lost its last
    transactions, or ``ProducerFenced``), it is replaced by a new producer with the same
    ``transactional.id``: starting it fences the old one and aborts its open transaction,
    so the caller's next attempt runs on a sound producer.
    """

    def __init__(self, settings: KafkaSettings, config: ProducerConfig, txn_id: str) -> None:
        self._settings = settings
        self._config = config
        self._txn_id = txn_id
        self._producer = self._make()
        self._lock = asyncio.Lock()

    def _make(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.servers,
            client_id=self._config.client_id,
            transactional_id=self._txn_id,
            enable_idempotence=True,
            acks=-1,
            request_timeout_ms=self._config.request_timeout_ms,
            **_security(self._settings),
        )

    async def start(self) -> None:
        await _start(self._producer, self._settings, "transactional producer")

    async def stop(self) -> None:
        await self._producer.stop()

    def _is_fatal(self) -> bool:
        manager = getattr(self._producer, "_txn_manager", None)
        return bool(manager is not None and manager.is_fatal_error())

    async def _abort_or_replace(self, exc: Exception) -> None:
        """Abort the open transaction; replace the producer if that is not enough.

        After a sequence or epoch error the producer's state no longer matches the
        broker's: aborting leaves it failing every later transaction, so it is replaced.
        """
        if not self._is_fatal() and not isinstance(exc, _PRODUCER_STATE_ERRORS):
            try:
                await self._producer.abort_transaction()
            except Exception as failed:  # noqa: BLE001 - a producer that cannot abort is replaced
                logger.warning("transaction abort failed (%s); replacing the producer", failed)
            else:
                return
        logger.warning("transactional producer %s is in a fatal state; replacing it", self._txn_id)
        with contextlib.suppress(Exception):
            await self._producer.stop()
        self._producer = self._make()
        await _start(self._producer, self._settings, "transactional producer")

    async def commit_atomically(
        self,
        records: Sequence[OutgoingRecord],
        offsets: dict[TopicPartition, int],
        consumer: ConsumerTransport,
        group_id: str,
    ) -> None:
        async with self._lock:
            try:
                await self._producer.begin_transaction()
                futures = [
                    await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                    for r in records
                ]
                await asyncio.gather(*futures)  # every record written before the offsets
                if offsets:
                    await self._producer.send_offsets_to_transaction(
                        {AioTP(tp.topic, tp.partition): o for tp, o in offsets.items()}, group_id
                    )
                await self._producer.commit_transaction()
            except Exception as exc:  # nothing of it is visible: abort (or replace) and report
                cause = f"transaction aborted: {type(exc).__name__}: {exc}"
                try:
                    await self._abort_or_replace(exc)
                except Exception as again:  # noqa: BLE001 - the next attempt tries again
                    logger.warning("replacing the transactional producer failed: %s", again)
                raise PublishError(cause) from exc


class AiokafkaAdmin:
    """:class:`AdminTransport` over :class:`aiokafka.admin.AIOKafkaAdminClient`."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.servers,
            client_id=f"{settings.client_id}-admin",
            request_timeout_ms=int(settings.connect_timeout_s * 1000),
            **_security(settings),
        )

    async def start(self) -> None:
        await _start(self._admin, self._settings, "admin client")

    async def stop(self) -> None:
        await self._admin.close()

    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        existing = await self.list_topics()
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        created: list[str] = []
        for spec in missing:  # one by one: a concurrent creator must not fail the rest
            topic = NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=dict(spec.configs),
            )
            try:
                await self._admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                continue
        return created

    async def list_topics(self) -> dict[str, int]:
        meta = await self._admin.describe_topics()
        return {
            t["topic"]: len(t["partitions"])
            for t in meta
            if not t["topic"].startswith("__") and t.get("error_code", 0) == 0
        }

    async def _topic_configs(self, names: Sequence[str]) -> dict[str, list[Any]]:
        """Each topic's config entries, as DescribeConfigs returns them."""
        responses = await self._admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        out: dict[str, list[Any]] = {}
        for response in responses:
            for error_code, error_message, _kind, name, entries in response.resources:
                if error_code:
                    raise BrokerError(f"cannot read the configs of topic {name}: {error_message}")
                out[name] = list(entries)
        return out

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicDescription]:
        # Metadata for a missing name may create it (auto-create): ask for existing ones only.
        meta = await self._admin.describe_topics()
        found = {
            t["topic"]: t for t in meta if t["topic"] in set(names) and t.get("error_code", 0) == 0
        }
        if not found:
            return {}
        configs = await self._topic_configs(list(found))
        return {
            name: TopicDescription(
                name,
                len(t["partitions"]),
                max((len(p["replicas"]) for p in t["partitions"]), default=0),
                {e[0]: e[1] for e in configs.get(name, []) if e[1] is not None},
            )
            for name, t in found.items()
        }

    async def create_partitions(self, counts: dict[str, int]) -> None:
        if counts:
            await self._admin.create_partitions(
                {name: NewPartitions(total) for name, total in counts.items()}
            )

    async def alter_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        # AlterConfigs replaces every topic-level config: send the current ones too.
        entries = (await self._topic_configs([name])).get(name, [])
        current = {e[0]: e[1] for e in entries if _is_topic_override(e)}
        responses = await self._admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {**current, **configs})]
        )
        for response in responses:
            for error_code, error_message, *_ in response.resources:
                if error_code:
                    raise BrokerError(f"cannot change the configs of topic {name}: {error_message}")

    async def _helper_consumer(self, group_id: str | None) -> AIOKafkaConsumer:
        """A started consumer for what aiokafka's admin client cannot do; never subscribes."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.servers,
            client_id=f"{self._settings.client_id}-admin",
            group_id=group_id,
            enable_auto_commit=False,
            **_security(self._settings),
        )
        await _start(consumer, self._settings, "admin client")
        return consumer

    async def list_offsets(
        self, partitions: Sequence[TopicPartition], spec: OffsetSpec
    ) -> dict[TopicPartition, int | None]:
        if not partitions:
            return {}
        tps = [AioTP(tp.topic, tp.partition) for tp in partitions]
        # ListOffsets through a consumer without a group: aiokafka's admin client has none
        consumer = await self._helper_consumer(None)
        try:
            if spec == "earliest":
                found: dict[Any, Any] = await consumer.beginning_offsets(tps)
            elif spec == "latest":
                found = await consumer.end_offsets(tps)
            else:
                times = await consumer.offsets_for_times(dict.fromkeys(tps, int(spec)))
                found = {tp: None if t is None else t.offset for tp, t in times.items()}
        except KafkaError as exc:
            raise BrokerError(f"cannot list offsets: {type(exc).__name__}: {exc}") from exc
        finally:
            await consumer.stop()
        return {
            TopicPartition(tp.topic, tp.partition): None if o is None else int(o)
            for tp, o in found.items()
        }

    async def list_groups(self) -> list[str]:
        try:
            groups = await self._admin.list_consumer_groups()
        except KafkaError as exc:
            raise BrokerError(f"cannot list consumer groups: {type(exc).__name__}: {exc}") from exc
        return sorted({str(g[0]) for g in groups})

    async def describe_groups(self, group_ids: Sequence[str]) -> dict[str, GroupDescription]:
        out: dict[str, GroupDescription] = {}
        for group_id in group_ids:  # one per request: noida garbles all but the first answer
            try:
                responses = await self._admin.describe_consumer_groups([group_id])
            except KafkaError as exc:
                raise BrokerError(
                    f"cannot describe consumer group {group_id}: {type(exc).__name__}: {exc}"
                ) from exc
            out[group_id] = GroupDescription(group_id, "Unknown")
            for response in responses:
                # (error_code, group, state, protocol_type, protocol, members, ...)
                for error_code, group, state, _ptype, _protocol, members, *_ in response.groups:
                    if group == group_id and not error_code:
                        out[group_id] = GroupDescription(
                            group_id,
                            state or "Unknown",
                            tuple(GroupMember(m[0], m[1] or "", m[2] or "") for m in members),
                        )
        return out

    async def group_offsets(
        self, group_id: str, topics: Sequence[str] | None = None
    ) -> dict[TopicPartition, int]:
        # Every partition named: Tansu cannot answer the all-partitions form of OffsetFetch.
        counts = await self.list_topics()
        names = [t for t in (counts if topics is None else topics) if t in counts]
        tps = [AioTP(t, p) for t in names for p in range(counts[t])]
        if not tps:
            return {}
        try:
            found = await self._admin.list_consumer_group_offsets(group_id, partitions=tps)
        except KafkaError as exc:
            raise BrokerError(
                f"cannot read the offsets of group {group_id}: {type(exc).__name__}: {exc}"
            ) from exc
        return {
            TopicPartition(tp.topic, tp.partition): int(meta.offset)
            for tp, meta in found.items()
            if meta.offset is not None and meta.offset >= 0
        }

    async def alter_group_offsets(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        # A commit with no generation, as Kafka's kafka-consumer-groups.sh makes: a
        # consumer of the group with manual assignment, which never joins it.
        consumer = await self._helper_consumer(group_id)
        try:
            consumer.assign([AioTP(tp.topic, tp.partition) for tp in offsets])
            await consumer.commit({AioTP(tp.topic, tp.partition): o for tp, o in offsets.items()})
        except CommitFailedError as exc:
            raise BrokerError(
                f"the broker refused the offsets of group {group_id}: it has active members"
            ) from exc
        except KafkaError as exc:
            raise BrokerError(
                f"cannot set the offsets of group {group_id}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            await consumer.stop()


def _is_topic_override(entry: Any) -> bool:
    """Whether a DescribeConfigs entry is set on the topic itself (not a default).

    Version 0 entries are ``(name, value, read_only, is_default, is_sensitive)``; later
    ones ``(name, value, read_only, source, is_sensitive, synonyms)`` with source 1 for
    a topic's own (dynamic) config.
    """
    if len(entry) == 5:
        return not entry[3]
    return bool(entry[3] == 1)


class AiokafkaTransport:
    """Creates aiokafka-backed clients for one cluster."""

    name = "aiokafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def producer(self, config: ProducerConfig) -> AiokafkaProducer:
        return AiokafkaProducer(self.settings, config)

    def consumer(self, config: ConsumerConfig) -> AiokafkaConsumer:
        return AiokafkaConsumer(self.settings, config)

    def admin(self) -> AiokafkaAdmin:
        return AiokafkaAdmin(self.settings)

    def transactional_producer(
        self, config: ProducerConfig, transactional_id: str
    ) -> AiokafkaTransactionalProducer:
        return AiokafkaTransactionalProducer(self.settings, config, transactional_id)
