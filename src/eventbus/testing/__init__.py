"""Testing helpers: an in-memory broker with Kafka semantics.

Example::

    broker = MemoryBroker()
    async with KafkaProducer(transport=broker) as producer:
        await producer.send_event("user-queue", event)
"""

from eventbus.testing._broker import MemoryAdmin, MemoryBroker, MemoryConsumer, MemoryProducer

__all__ = ["MemoryAdmin", "MemoryBroker", "MemoryConsumer", "MemoryProducer"]
