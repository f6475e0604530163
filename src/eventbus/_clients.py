"""Choosing a transport for a client from its settings."""

from __future__ import annotations

from eventbus._transport.base import Transport
from eventbus.errors import ConfigurationError
from eventbus.settings import KafkaSettings


def make_transport(settings: KafkaSettings) -> Transport:
    """Return the transport named by ``settings.transport``."""
    if settings.transport == "aiokafka":
        from eventbus._transport.aiokafka import AiokafkaTransport

        return AiokafkaTransport(settings)
    if settings.transport == "confluent":
        try:
            from eventbus._transport.confluent import ConfluentTransport
        except ImportError as exc:
            raise ConfigurationError(
                "KAFKA_TRANSPORT=confluent needs confluent-kafka: "
                "pip install 'eventbus-hrms[confluent]'"
            ) from exc
        return ConfluentTransport(settings)
    raise ConfigurationError(f"unknown transport {settings.transport!r}")


def encode_key(key: str | bytes | int | None) -> bytes | None:
    """Kafka keys are bytes; str and int keys are UTF-8 encoded."""
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode()
