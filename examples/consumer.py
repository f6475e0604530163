"""Consumer Example (seed 000): print every notification on ``notification-queue``."""

import asyncio
import os

from eventbus import KafkaConsumer

consumer: KafkaConsumer = None


# Define message handler
async def handle_notification(message: dict):
    print(f"Processing notification: {message}")
    # Your processing logic here


async def main():  # the seed's top-level awaits, wrapped so the file runs as a script
    global consumer
    # Initialize consumer
    consumer = KafkaConsumer(
        # read from the environment so the example runs anywhere (the seed: "kafka:9092")
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
        group_id="notification-service-group",
        topics=["notification-queue"]
    )
    await consumer.start()

    # Start consuming
    try:
        await consumer.consume(handle_notification)
    finally:
        await consumer.stop()  # leave the group on Ctrl-C: noida never expires vanished members


if __name__ == "__main__":
    asyncio.run(main())
