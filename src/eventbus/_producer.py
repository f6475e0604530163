"""The producer: typed events in, acknowledged records out."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from eventbus import headers as h
from eventbus._clients import encode_key, make_transport
from eventbus._codec import encode_event, encode_raw, header_value
from eventbus._envelope import BaseEvent, Priority
from eventbus._priority import PriorityLanes, ensure_lane_topics
from eventbus._transport.base import ProducerConfig, ProducerTransport, RecordMetadata, Transport
from eventbus.errors import (
    BrokerUnavailableError,
    EventBusError,
    LifecycleError,
    PublishError,
)
from eventbus.observe import Fanout, Observer, fanout
from eventbus.settings import KafkaSettings, load_settings

logger = logging.getLogger("eventbus.producer")

Key = str | bytes | int | None
_PRIORITIES = frozenset(p.value for p in Priority)


class KafkaProducer:
    """Publishes events and waits for the broker's acknowledgement.

    ``send_event`` returns True only once the broker acknowledged the record, and False
    (with a log line) when it could not be delivered, as seed 000 promises. ``publish``
    is the same but raises :class:`~eventbus.errors.PublishError`. Neither is
    fire-and-forget: for durability across process crashes use the transactional outbox.

    Args:
        bootstrap_servers: overrides ``KAFKA_BOOTSTRAP_SERVERS``.
        client_id: overrides ``KAFKA_CLIENT_ID``.
        settings: a full :class:`KafkaSettings`; the environment is read when omitted.
        transport: ``"aiokafka"`` or ``"confluent"`` (overrides ``KAFKA_TRANSPORT``), or a
            transport object such as :class:`eventbus.testing.MemoryBroker`.
        delivery_timeout_s: how long ``send_event`` waits for an acknowledgement.
        priority_lanes: write events for the lanes' topics to their priority's lane
            topic (``inventory-events.critical``, ...), keeping the key; raw records
            (``enqueue_raw``, ``send_raw``: the outbox relay) are routed by their
            ``priority`` header. Missing lane topics are created at :meth:`start`.
        observers: told of every record sent and how it ended (metrics, tracing; see
            :mod:`eventbus.observe`); the process-wide observers when omitted.
        **overrides: any other :class:`KafkaSettings` field.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        client_id: str | None = None,
        *,
        settings: KafkaSettings | None = None,
        transport: Transport | str | None = None,
        delivery_timeout_s: float = 60.0,
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
        self._transport = transport
        self._client: ProducerTransport | None = None
        self.delivery_timeout_s = delivery_timeout_s
        self._max_bytes = self.settings.max_message_bytes
        self._start_lock = asyncio.Lock()
        self.priority_lanes = priority_lanes
        self._laned = priority_lanes.topics if priority_lanes is not None else frozenset()
        self.observers: Fanout = fanout(observers)

    @property
    def is_started(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`stop` was not called since."""
        return self._client is not None

    def _config(self) -> ProducerConfig:
        s = self.settings
        return ProducerConfig(
            client_id=s.client_id,
            acks=s.producer_acks,
            enable_idempotence=s.idempotence(),
            compression=None if s.producer_compression == "none" else s.producer_compression,
            linger_ms=s.producer_linger_ms,
            request_timeout_ms=s.producer_request_timeout_ms,
            retries=s.producer_retries,
        )

    async def start(self) -> None:
        """Connect to the broker.

        Raises:
            BrokerUnavailableError: the broker was not reachable within
                ``connect_timeout_s``; the message names the address.
        """
        async with self._start_lock:
            if self._client is not None:
                return
            transport = self._transport or make_transport(self.settings)
            if self.priority_lanes is not None:
                await self._ensure_lanes(transport)
            client = transport.producer(self._config())
            await client.start()
            self._client = client
        logger.info("producer %s connected to %s", self.settings.client_id, self.settings.servers)

    async def _ensure_lanes(self, transport: Transport) -> None:
        assert self.priority_lanes is not None
        admin = transport.admin()
        try:
            await admin.start()
            try:
                await ensure_lane_topics(admin, self.priority_lanes, self.priority_lanes.topics)
            finally:
                await admin.stop()
        except EventBusError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker may still auto-create them
            logger.warning("could not create the priority lane topics: %s", exc)

    def lane_topic(self, topic: str, priority: Priority | str) -> str:
        """The topic an event of ``priority`` for ``topic`` is written to."""
        if topic in self._laned:
            assert self.priority_lanes is not None
            return self.priority_lanes.topic_for(topic, priority)
        return topic

    def _raw_lane(self, topic: str, headers: Sequence[tuple[str, bytes]]) -> str:
        if topic not in self._laned:
            return topic
        priority = header_value(headers, h.PRIORITY)
        if priority is None or priority not in _PRIORITIES:
            return topic  # no (or an unknown) priority: the base lane, the topic itself
        return self.lane_topic(topic, priority)

    async def stop(self) -> None:
        """Flush pending records and disconnect. Safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            await client.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __del__(self) -> None:
        if getattr(self, "_client", None) is not None:
            warnings.warn(f"Unclosed KafkaProducer {self!r}", ResourceWarning, stacklevel=1)

    def _require(self) -> ProducerTransport:
        if self._client is None:
            raise LifecycleError("KafkaProducer is not started; call await producer.start()")
        return self._client

    async def enqueue(
        self,
        topic: str,
        event: BaseEvent,
        key: Key = None,
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Hand ``event`` to the client and return the future of its acknowledgement.

        Raises:
            SerializationError: the event cannot be encoded or is too large.
            LifecycleError: the producer is not started.
        """
        client = self._require()
        value, k, headers = self._encode(event, key)
        return await self._send(
            client, self.lane_topic(topic, event.priority), value, k, headers, partition
        )

    async def _send(
        self,
        client: ProducerTransport,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Every record goes to the client here, so the observers see each one."""
        if not self.observers:
            return await client.send(topic, value, key, headers, partition)
        done = self.observers.sending(topic, headers)
        try:
            fut = await client.send(topic, value, key, headers, partition)
        except BaseException as exc:
            if done is not None:
                done(exc)
            raise
        if done is not None:
            fut.add_done_callback(lambda f: done(_error_of(f)))
        return fut

    def _encode(
        self, event: BaseEvent, key: Key
    ) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
        """The record of ``event``: its JSON value, its key (default: the event's) and headers."""
        value, headers = encode_event(event, self._max_bytes)
        return value, encode_key(key if key is not None else event.default_key()), headers

    async def enqueue_raw(
        self,
        topic: str,
        value: bytes | None,
        key: Key = None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Hand already-encoded bytes to the client; return the future of the acknowledgement.

        For relays that store encoded records (the outbox). Raises LifecycleError when
        the producer is not started.
        """
        return await self._send(
            self._require(),
            self._raw_lane(topic, headers),
            value,
            encode_key(key),
            list(headers),
            partition,
        )

    async def publish(
        self, topic: str, event: BaseEvent, key: Key = None, partition: int | None = None
    ) -> RecordMetadata:
        """Send ``event`` and wait for the acknowledgement.

        A retriable failure is re-sent up to ``KAFKA_PRODUCER_RETRIES`` times.

        Raises:
            PublishError: not acknowledged within ``delivery_timeout_s``.
            SerializationError: the event cannot be encoded or is too large.
            LifecycleError: the producer is not started.
        """
        client = self._require()
        value, k, headers = self._encode(event, key)
        topic = self.lane_topic(topic, event.priority)
        what = f"{event.event_type} {event.event_id} to {topic}"
        retries = self.settings.producer_retries
        while True:
            fut = await self._send(client, topic, value, k, headers, partition)
            try:
                return await self._await(fut, what)
            except PublishError as exc:
                if retries <= 0 or not exc.retryable_cause:
                    raise
                retries -= 1
                logger.warning("re-sending %s after a retriable failure: %s", what, exc)

    async def _await(self, fut: asyncio.Future[RecordMetadata], what: str) -> RecordMetadata:
        try:
            return await asyncio.wait_for(fut, self.delivery_timeout_s)
        except TimeoutError as exc:
            raise PublishError(
                f"{what}: no acknowledgement within {self.delivery_timeout_s:g}s"
            ) from exc
        except PublishError:
            raise
        except EventBusError as exc:
            raise PublishError(f"{what}: {exc}") from exc
        except Exception as exc:  # the client's own error type, kept as the cause
            error = PublishError(f"{what}: {type(exc).__name__}: {exc}")
            error.retryable_cause = bool(getattr(exc, "retriable", False))
            raise error from exc

    async def send_event(self, topic: str, event: BaseEvent, key: Key = None) -> bool:
        """Send ``event``; True once acknowledged, False (and an error log) if it was not.

        Programming errors are raised, not hidden: an event that cannot be encoded or
        is too large raises :class:`~eventbus.errors.SerializationError`.
        """
        try:
            md = await self.publish(topic, event, key)
        except (PublishError, LifecycleError) as exc:
            logger.error(
                "failed to send event %s (%s) to %s: %s",
                event.event_id,
                event.event_type,
                topic,
                exc,
            )
            return False
        logger.debug(
            "sent %s %s to %s[%d]@%d",
            event.event_type,
            event.event_id,
            md.topic,
            md.partition,
            md.offset,
        )
        return True

    async def send_raw(
        self,
        topic: str,
        value: Any,
        key: Key = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> bool:
        """Send a raw value (bytes, str, or a JSON-able object); True once acknowledged."""
        data = encode_raw(value, self._max_bytes)
        try:
            fut = await self._send(
                self._require(),
                self._raw_lane(topic, headers),
                data,
                encode_key(key),
                list(headers),
            )
            await self._await(fut, f"raw record to {topic}")
        except (PublishError, LifecycleError) as exc:
            logger.error("failed to send raw record to %s: %s", topic, exc)
            return False
        return True

    async def send_batch(
        self, topic: str, events: Sequence[BaseEvent], key: Key = None
    ) -> list[bool]:
        """Send many events at once (pipelined); one acknowledgement result per event.

        Every event is encoded first, so a bad one raises before anything is sent.
        """
        client = self._require()
        encoded = [encode_event(e, self._max_bytes) for e in events]
        futures = []
        for event, (value, headers) in zip(events, encoded, strict=True):
            k = encode_key(key if key is not None else event.default_key())
            futures.append(
                await self._send(client, self.lane_topic(topic, event.priority), value, k, headers)
            )
        results = await asyncio.gather(
            *(self._await(f, f"batch to {topic}") for f in futures), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        for exc in failed:
            if not isinstance(exc, EventBusError):
                raise exc
        if failed:
            logger.error(
                "%d of %d events to %s not acknowledged: %s",
                len(failed),
                len(events),
                topic,
                failed[0],
            )
        return [not isinstance(r, BaseException) for r in results]


def _error_of(fut: asyncio.Future[RecordMetadata]) -> BaseException | None:
    if fut.cancelled():
        return asyncio.CancelledError()
    return fut.exception()


_producer: KafkaProducer | None = None


async def get_producer(
    bootstrap_servers: str | None = None, client_id: str | None = None, **overrides: Any
) -> KafkaProducer:
    """Return the process-wide producer, starting it on first use (seed 001's singleton).

    If the broker is unreachable the producer is returned unstarted (``is_started`` is
    False) and the failure is logged, so callers can degrade gracefully; the next call
    tries to start it again.
    """
    global _producer  # noqa: PLW0603 - the seed's module-level singleton
    if _producer is None:
        _producer = KafkaProducer(bootstrap_servers, client_id, **overrides)
    producer = _producer
    if not producer.is_started:
        try:
            await producer.start()
        except BrokerUnavailableError as exc:
            logger.warning("Kafka producer not available: %s", exc)
    return producer


async def close_producer() -> None:
    """Stop and forget the process-wide producer."""
    global _producer
    producer, _producer = _producer, None
    if producer is not None:
        await producer.stop()
