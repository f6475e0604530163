"""The FastAPI lifespan over real HTTP: degraded while Kafka is down, healthy once it is up."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from eventbus import KafkaConsumer, KafkaProducer, TopicSpec, ensure_topics
from eventbus._embedded import EmbeddedBroker
from eventbus.fastapi import EventBus
from hrms.events import create_audit_event
from tests.conftest import wait_until

pytestmark = pytest.mark.broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    def __init__(self, app: FastAPI) -> None:
        super().__init__(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.ready = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    @property
    def url(self) -> str:
        port = self.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


async def serve(app: FastAPI) -> AsyncIterator[str]:
    server = _Server(app)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(server.ready.wait(), 20)
        yield server.url
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_app_starts_degraded_without_kafka_and_recovers_when_it_comes(
    tmp_path: Path,
) -> None:
    port = free_port()
    servers = f"127.0.0.1:{port}"
    received: list[int] = []

    async def handle_batch(messages: list[dict[str, Any]]) -> None:
        received.extend(len(m["data"]) for m in messages)

    bus = EventBus(
        bootstrap_servers=servers,
        broker_profile="noida",
        connect_timeout_s=1,
        client_id="api",
        retry_interval_s=0.2,
    )
    bus.add_consumer(
        KafkaConsumer(
            group_id="audit-service-group", topics=["audit-queue"], settings=bus.settings
        ),
        handle_batch,
        batch_size=100,
    )
    app = FastAPI(lifespan=bus.lifespan)
    app.include_router(bus.health_router())
    async for url in serve(app):
        async with httpx.AsyncClient(base_url=url) as http:
            down = await http.get("/health")
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "degraded"
            assert body["kafka"]["connected"] is False
            assert body["kafka"]["brokers"] == servers
            assert servers in body["kafka"]["error"]
            broker = EmbeddedBroker("noida", data_dir=tmp_path, port=port).start()
            try:
                await ensure_topics([TopicSpec("audit-queue", 1)], bootstrap_servers=servers)

                async def healthy() -> bool:
                    return (await http.get("/health")).status_code == 200

                ok = False
                for _ in range(300):  # bounded: the reconnect timer is 0.2 s
                    if await healthy():
                        ok = True
                        break
                    await asyncio.sleep(0.05)
                assert ok, "the app never reconnected"
                up = (await http.get("/health")).json()
                lag = up["kafka"].pop("lag")
                assert up["kafka"].pop("stalled") == []
                assert up["kafka"] == {
                    "connected": True,
                    "producer": True,
                    "consumers": 1,
                    "brokers": servers,
                    "error": None,
                }
                # plus lag per group (partitions appear once a fetch has answered)
                assert set(lag) == {"audit-service-group"}
                assert lag["audit-service-group"]["total"] == 0
                assert bus.producer is not None
                event = create_audit_event(
                    source_service="api",
                    action="CREATE",
                    resource_type="user",
                    user_id=1,
                    resource_id=2,
                )
                assert await bus.producer.send_event("audit-queue", event)
                await wait_until(lambda: len(received) == 1, timeout=30)
            finally:
                await bus.stop()  # before the broker goes, so the group is left cleanly
                broker.stop()


async def test_send_event_returns_false_when_the_broker_dies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = EmbeddedBroker("noida", data_dir=tmp_path).start()
    try:
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap_servers,
            broker_profile="noida",
            delivery_timeout_s=3,
            producer_request_timeout_ms=1000,
            producer_retries=0,
        )
        await producer.start()
        try:
            await ensure_topics(
                [TopicSpec("gone-queue", 1)], bootstrap_servers=broker.bootstrap_servers
            )
            event = create_audit_event(source_service="t", action="A", resource_type="r")
            assert await producer.send_event("gone-queue", event) is True
            broker.stop()
            assert await producer.send_event("gone-queue", event) is False
            assert "failed to send event" in caplog.text
        finally:
            await producer.stop()
    finally:
        broker.stop()
