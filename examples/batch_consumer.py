"""Batch Consumer Example (seed 000): store audit events from ``audit-queue`` in batches."""

import asyncio
import os

from eventbus import KafkaConsumer


class InMemoryDB:
    """Stand-in for the seed's (undefined) ``db``: keeps inserted rows in a list."""

    def __init__(self):
        self.rows = []

    async def bulk_insert(self, rows):
        self.rows.extend(rows)


db = InMemoryDB()
consumer: KafkaConsumer = None


async def handle_batch(messages: list[dict]):
    print(f"Processing {len(messages)} audit events")
    # Batch insert to database
    await db.bulk_insert(messages)


async def main():  # the seed's top-level awaits, wrapped so the file runs as a script
    global consumer
    consumer = KafkaConsumer(
        # read from the environment so the example runs anywhere (the seed: "kafka:9092")
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
        group_id="audit-service-group",
        topics=["audit-queue"]
    )
    await consumer.start()
    try:
        await consumer.consume_batch(handle_batch, batch_size=500)
    finally:
        await consumer.stop()  # leave the group on Ctrl-C: noida never expires vanished members


if __name__ == "__main__":
    asyncio.run(main())
