"""Fixtures for service tests: a service app on the in-memory broker and a temp SQLite dir.

``ServiceClient`` runs one service's FastAPI app in-process (its lifespan included) and
talks to it over httpx's ASGI transport; the in-memory broker behaves like Kafka, so the
service's outbox relay and consumers run for real. End-to-end tests over real HTTP and
the real broker live in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventbus import BaseEvent, KafkaConsumer, PriorityLanes
from eventbus.testing import MemoryBroker
from hrms.service import HrmsSettings, Role, Service
from hrms.services import build


class ServiceClient:
    """An httpx client for one running service, with token helpers."""

    def __init__(self, service: Service, client: httpx.AsyncClient) -> None:
        self.service = service
        self.http = client

    def token(
        self,
        user_id: int = 1,
        tenant: str = "acme",
        role: Role | str = Role.ADMIN,
        employee_id: int | None = None,
    ) -> dict[str, str]:
        """Authorization headers of a token for that caller."""
        token, _, _ = self.service.tokens.issue(user_id, tenant, role, employee_id)
        return {"Authorization": f"Bearer {token}"}


class Harness:
    """Builds services sharing one in-memory broker and one data directory."""

    def __init__(self, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.broker = MemoryBroker()
        self.settings = HrmsSettings(
            HRMS_DATA_DIR=tmp_path, HRMS_JWT_SECRET="test-secret-" + "x" * 40
        )
        self._stack = stack

    async def start(
        self, name: str, build_kwargs: dict[str, Any] | None = None, **settings: Any
    ) -> ServiceClient:
        """Start service ``name``; ``settings`` override HRMS settings fields and
        ``build_kwargs`` go to the service's ``build`` (e.g. a clock)."""
        hs = self.settings.model_copy(update=settings) if settings else self.settings
        service = build(name, settings=hs, transport=self.broker, **(build_kwargs or {}))
        app = service.app()
        await self._stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
        )
        await self._stack.enter_async_context(client)
        return ServiceClient(service, client)

    async def collect(self, topic: str, group: str = "test-observer") -> list[BaseEvent]:
        """Start a consumer recording every event of ``topic`` into the returned list."""
        seen: list[BaseEvent] = []
        lanes = None  # a topic with priority lanes is read with them, as the services do
        if topic in self.settings.priority_topics:
            lanes = PriorityLanes(topics=set(self.settings.priority_topics))
        consumer = KafkaConsumer(
            group_id=group, topics=[topic], transport=self.broker, priority_lanes=lanes
        )

        async def record(event: BaseEvent) -> None:
            seen.append(event)

        await consumer.start()
        task = consumer.start_background(record)

        async def stop() -> None:
            await consumer.stop()
            await task

        self._stack.push_async_callback(stop)
        return seen


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with AsyncExitStack() as stack:
        yield Harness(tmp_path, stack)
