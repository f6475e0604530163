"""Client factories with the configuration each contender family gets, written down once.

* **eventbus**: the library's own defaults (``KafkaSettings()``), with only the address,
  the broker profile (``noida``/``tansu``), the transport and a client id set.
* **raw, default**: the client's defaults, nothing changed.
* **raw, hand-written equivalent**: the client configured the way eventbus configures it
  for this broker (acks=all, linger 5 ms, 1 MiB batches, idempotence as eventbus resolves
  it), so the ratio ours / hand-written isolates the library's own overhead.
* **FastStream**: its defaults, with per-message logging turned off (``logger=None``; its
  default logs two INFO lines per message, eventbus logs none).

On Tansu every consumer gets ``session_timeout_ms=6000``: Tansu answers JoinGroup only
after half the session timeout (22.5 s with librdkafka's default). Joining is not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from bench.harness import RunContext, SkipContender
from eventbus import ConfigurationError, KafkaConsumer, KafkaProducer, KafkaSettings
from eventbus._transport.base import ProducerConfig

Transport = Literal["aiokafka", "confluent"]
TANSU_SESSION_TIMEOUT_MS = 6000
MIB = 1024 * 1024


def eventbus_settings(ctx: RunContext, transport: Transport, **overrides: Any) -> KafkaSettings:
    """eventbus settings for this broker: its defaults plus address, profile, transport."""
    values: dict[str, Any] = {
        "bootstrap_servers": ctx.bootstrap,
        "broker_profile": ctx.broker.kind,
        "transport": transport,
        "client_id": f"bench-{ctx.run_id}",
    }
    if ctx.broker.kind == "tansu":
        values["consumer_session_timeout_ms"] = TANSU_SESSION_TIMEOUT_MS
    values.update(overrides)
    return KafkaSettings(**values)


def eventbus_resolved(settings: KafkaSettings) -> dict[str, Any]:
    """The producer/consumer values eventbus resolves from ``settings`` (for the JSON)."""
    cfg = ProducerConfig()
    return {
        "transport": settings.transport,
        "acks": settings.producer_acks,
        "enable_idempotence": settings.idempotence(),
        "linger_ms": settings.producer_linger_ms,
        "compression": settings.producer_compression,
        "max_batch_bytes": cfg.max_batch_bytes,
        "consumer_max_poll_records": settings.consumer_max_poll_records,
        "consumer_commit_interval_ms": settings.consumer_commit_interval_ms,
        "consumer_session_timeout_ms": settings.consumer_session_timeout_ms,
    }


async def _start_or_skip(client: KafkaProducer | KafkaConsumer, transport: Transport) -> None:
    try:
        await client.start()
    except ConfigurationError as exc:
        if transport != "confluent":
            raise
        raise SkipContender(f"eventbus transport 'confluent' is not available: {exc}") from exc


@contextlib.asynccontextmanager
async def eventbus_producer(
    ctx: RunContext, transport: Transport, **overrides: Any
) -> AsyncIterator[KafkaProducer]:
    """A started eventbus producer; skips the contender if the transport is missing."""
    settings = eventbus_settings(ctx, transport, **overrides)
    ctx.resolved.update(eventbus_resolved(settings))
    producer = KafkaProducer(settings=settings)
    await _start_or_skip(producer, transport)
    try:
        yield producer
    finally:
        await producer.stop()


async def start_eventbus_consumer(
    ctx: RunContext,
    transport: Transport,
    group: str,
    consumer_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A started eventbus consumer (group joined asynchronously, as eventbus does).

    ``consumer_options`` go to :class:`KafkaConsumer` itself (e.g. ``concurrency``),
    ``overrides`` to its settings.
    """
    settings = eventbus_settings(ctx, transport, **overrides)
    ctx.resolved.update(eventbus_resolved(settings))
    consumer = KafkaConsumer(
        group_id=group, topics=[ctx.topic], settings=settings, **(consumer_options or {})
    )
    await _start_or_skip(consumer, transport)
    return consumer


def handwritten_aiokafka(ctx: RunContext) -> dict[str, Any]:
    """aiokafka producer options equal to what eventbus's aiokafka transport uses here."""
    s = eventbus_settings(ctx, "aiokafka")
    cfg = ProducerConfig()
    return {
        "acks": "all",
        "enable_idempotence": s.idempotence(),
        "linger_ms": s.producer_linger_ms,
        "max_batch_size": cfg.max_batch_bytes,
        "request_timeout_ms": s.producer_request_timeout_ms,
    }


def handwritten_confluent(ctx: RunContext) -> dict[str, Any]:
    """librdkafka producer options equal to eventbus's defaults for this broker."""
    s = eventbus_settings(ctx, "confluent")
    return {
        "acks": "all",
        "enable.idempotence": s.idempotence(),
        "linger.ms": s.producer_linger_ms,
        "partitioner": "murmur2_random",
    }


def confluent_consumer_config(ctx: RunContext, group: str) -> dict[str, Any]:
    """librdkafka consumer options: a group, from the beginning, manual commits."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": ctx.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if ctx.broker.kind == "tansu":
        cfg["session.timeout.ms"] = TANSU_SESSION_TIMEOUT_MS
    return cfg


def aiokafka_consumer_kwargs(ctx: RunContext, group: str) -> dict[str, Any]:
    """aiokafka consumer options: a group, from the beginning, manual commits, 500/poll."""
    kw: dict[str, Any] = {
        "bootstrap_servers": ctx.bootstrap,
        "group_id": group,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "max_poll_records": 500,
    }
    if ctx.broker.kind == "tansu":
        kw["session_timeout_ms"] = TANSU_SESSION_TIMEOUT_MS
    return kw


def faststream_subscriber_kwargs(ctx: RunContext, group: str) -> dict[str, Any]:
    """FastStream subscriber options: a group, from the beginning (default ack: ACK_FIRST)."""
    kw: dict[str, Any] = {"group_id": group, "auto_offset_reset": "earliest"}
    if ctx.broker.kind == "tansu":
        kw["session_timeout_ms"] = TANSU_SESSION_TIMEOUT_MS
    return kw


def faststream_broker(ctx: RunContext, **producer_options: Any) -> Any:
    """A FastStream (aiokafka) broker: defaults, per-message logging off."""
    from faststream.kafka import KafkaBroker

    return KafkaBroker(ctx.bootstrap, logger=None, **producer_options)


async def stop_faststream(broker: Any, limit_s: float = 30.0) -> None:
    """Stop a FastStream broker, giving up after ``limit_s`` (a wedged group can hang it)."""
    try:
        await asyncio.wait_for(broker.stop(), limit_s)
    except TimeoutError:
        logging.getLogger("bench").warning("FastStream broker did not stop in %gs", limit_s)
