"""Both transports agree with each other where users can see it."""

from __future__ import annotations

import socket

import pytest

from eventbus import (
    BaseEvent,
    BrokerUnavailableError,
    KafkaConsumer,
    KafkaProducer,
    TopicSpec,
    ensure_topics,
)
from eventbus._embedded import EmbeddedBroker

pytestmark = pytest.mark.broker


async def test_same_key_same_partition_on_both_transports(noida_broker: EmbeddedBroker) -> None:
    servers = noida_broker.bootstrap_servers
    topic = "keys-agree-queue"
    await ensure_topics([TopicSpec(topic, 6)], bootstrap_servers=servers)
    placements: dict[str, dict[str, int]] = {}
    for transport in ("aiokafka", "confluent"):
        async with KafkaProducer(
            bootstrap_servers=servers, broker_profile="noida", transport=transport
        ) as producer:
            placements[transport] = {}
            for i in range(50):
                key = f"employee-{i}"
                md = await producer.publish(topic, BaseEvent(event_type="k.v"), key=key)
                placements[transport][key] = md.partition
    assert placements["aiokafka"] == placements["confluent"]
    assert len(set(placements["aiokafka"].values())) > 1


@pytest.mark.parametrize("transport", ["aiokafka", "confluent"])
async def test_unreachable_broker_is_a_clear_error(transport: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    producer = KafkaProducer(bootstrap_servers=address, transport=transport, connect_timeout_s=2)
    with pytest.raises(BrokerUnavailableError, match=address):
        await producer.start()
    consumer = KafkaConsumer(address, "g", ["t"], transport=transport, connect_timeout_s=2)
    with pytest.raises(BrokerUnavailableError, match=address):
        await consumer.start()
