"""Producer Example (seed 000): send a welcome notification to ``notification-queue``."""

import asyncio
import os

from eventbus import KafkaProducer
from hrms.events import EventType, create_notification_event


async def main():  # the seed's top-level awaits, wrapped so the file runs as a script
    # Initialize producer
    producer = KafkaProducer(
        # read from the environment so the example runs anywhere (the seed: "kafka:9092")
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
        client_id="user-service"
    )
    await producer.start()

    # Create and send an event
    event = create_notification_event(
        source_service="user-management-service",
        recipient_email="user@example.com",
        subject="Welcome to HRMS!",
        template_name="welcome_email",
        template_data={"name": "John Doe"},
        event_type=EventType.USER_CREATED
    )

    await producer.send_event("notification-queue", event)

    # Clean up
    await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
