"""Consumer Error Handling with DLQ (seed 000): failed notifications go to ``notification-dlq``."""

import asyncio
import logging
import os
from datetime import datetime

from eventbus import KafkaConsumer, KafkaProducer

logger = logging.getLogger(__name__)

dlq_producer: KafkaProducer = None
consumer: KafkaConsumer = None


async def handle_message(message: dict):
    """Process one notification; raise for a message this service cannot process."""
    data = message.get("data")
    if not isinstance(data, dict) or "recipient_email" not in data:
        raise ValueError(f"cannot process message {message.get('event_id')}: no recipient_email")
    print(f"Processing notification: {message}")


async def dlq_handler(message: dict, error: Exception):
    """Send failed messages to dead letter queue."""
    logger.error(f"Sending to DLQ: {error}")
    await dlq_producer.send_raw(
        topic="notification-dlq",
        value={
            "original_message": message,
            "error": str(error),
            "timestamp": datetime.utcnow().isoformat()
        }
    )


async def main():  # the seed's top-level awaits, wrapped so the file runs as a script
    global dlq_producer, consumer
    # read from the environment so the example runs anywhere (the seed: "kafka:9092")
    bootstrap_servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")

    # DLQ producer
    dlq_producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="dlq-producer"
    )
    await dlq_producer.start()

    # The consumer of the Consumer Example (the seed's DLQ snippet uses it without defining it)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id="notification-service-group",
        topics=["notification-queue"]
    )
    await consumer.start()

    # Use DLQ handler in consumer
    try:
        await consumer.consume(handle_message, dlq_handler=dlq_handler)
    finally:
        await consumer.stop()  # leave the group on Ctrl-C: noida never expires vanished members
        await dlq_producer.stop()  # the seed never stops it; an unclosed producer leaks


if __name__ == "__main__":
    asyncio.run(main())
