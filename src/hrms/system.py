"""The whole HRMS in one process: every service on its own port, an SMTP sink, a hub.

``hrms up`` uses it for development; in production each service runs alone
(``hrms serve <service>``), as many replicas as needed, against a real cluster. Here the
services share one event loop but nothing else: each has its own database, its own
Kafka clients and consumer groups, and they talk only through Kafka (or HTTP, for seed
001's fallback), exactly as separate processes would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from eventbus import KafkaSettings, ensure_topics
from hrms.asyncapi import router as asyncapi_router
from hrms.asyncapi import system_document
from hrms.console import PREFIX, Console
from hrms.mailbox import MailSink
from hrms.routing import TopicRouter
from hrms.service import HrmsSettings, Service
from hrms.services import PORTS, build

logger = logging.getLogger("hrms.system")

HUB_PORT = 8000
SMTP_PORT = 8025


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the caller (several share a loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class System:
    """Runs services on ``host`` with their ports, plus the SMTP sink and the hub.

    Args:
        settings: HRMS settings (data directory, JWT secret...); the service URLs and SMTP
            address are filled in from the ports chosen here.
        kafka: where Kafka is.
        services: which services to run (all by default).
        ports: port per service (``PORTS`` by default; 0 picks a free one).
        hub_port: the hub's port (service index, received mail, the web console at
            ``/console``); 0 picks a free one.
        smtp_port: the SMTP sink's port; ``None`` runs no sink (use ``SMTP_HOST``).
    """

    settings: HrmsSettings
    kafka: KafkaSettings
    services: Sequence[str] = tuple(PORTS)
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    hub_port: int = HUB_PORT
    smtp_port: int | None = SMTP_PORT
    host: str = "127.0.0.1"
    running: dict[str, Service] = field(default_factory=dict)
    mail: MailSink | None = None
    _servers: list[_Server] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def url(self, service: str) -> str:
        """The base URL of ``service``."""
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def hub_url(self) -> str:
        """The hub's base URL."""
        return f"http://{self.host}:{self.hub_port}"

    def _resolve_ports(self) -> None:
        for name in self.services:
            if not self.ports.get(name):
                self.ports[name] = free_port(self.host)
        if not self.hub_port:
            self.hub_port = free_port(self.host)
        if self.smtp_port == 0:
            self.smtp_port = free_port(self.host)

    async def start(self) -> None:
        """Create the topics, start the SMTP sink, every service, and the hub."""
        self._resolve_ports()
        updates: dict[str, Any] = {}
        if "audit" in self.ports:
            updates["audit_url"] = self.url("audit")
        if "notifications" in self.ports:
            updates["notification_url"] = self.url("notifications")
        if self.smtp_port is not None:
            updates.update(smtp_host=self.host, smtp_port=self.smtp_port)
            self.mail = MailSink(self.settings.data_dir / "mail", self.host, self.smtp_port)
            self.mail.start()
        self.settings = self.settings.model_copy(update=updates)
        replication = 1  # an embedded broker or a dev cluster of one
        # The deployment's layout (KAFKA_TOPIC_LAYOUT): hrms/catalog.toml's topics for it.
        specs = TopicRouter.from_settings(self.settings).specs(replication_factor=replication)
        await ensure_topics(specs, settings=self.kafka)
        for name in self.services:
            service = build(name, settings=self.settings, kafka=self.kafka)
            self.running[name] = service
            await self._serve(service.app(), self.ports[name])
        await self._serve(self._hub(), self.hub_port)

    async def _serve(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(app, host=self.host, port=port, log_level="warning", lifespan="on")
        server = _Server(config)
        task = asyncio.create_task(server.serve())
        self._servers.append(server)
        self._tasks.append(task)
        while not server.started:
            if task.done():
                task.result()  # raises why it stopped (e.g. the port is taken)
                raise RuntimeError(f"server on port {port} stopped during start-up")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop every server (each service's lifespan stops its clients), then the sink."""
        for server in reversed(self._servers):
            server.should_exit = True
        for task in reversed(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self._servers.clear()
        self._tasks.clear()
        if self.mail is not None:
            self.mail.stop()

    def _hub(self) -> FastAPI:
        console = Console(
            self.kafka,
            services=lambda: {name: self.url(name) for name in self.running},
            mail=lambda: self.mail,
            document=lambda: system_document(self.settings),
        )
        hub = FastAPI(
            title="HRMS hub",
            description="Where everything runs, received mail, and the web console.",
            lifespan=console.lifespan,
        )
        hub.include_router(console.router(), prefix=PREFIX)
        hub.include_router(asyncapi_router(self.settings))  # /asyncapi, /asyncapi.json

        @hub.get("/")
        async def index() -> dict[str, Any]:
            """The services with their URLs and API docs."""
            return {
                "services": {
                    name: {"url": self.url(name), "docs": f"{self.url(name)}/docs"}
                    for name in self.running
                },
                "kafka": self.kafka.servers,
                "smtp": f"{self.host}:{self.smtp_port}" if self.mail else None,
                "mail": f"{self.hub_url}/mail",
                "console": f"{self.hub_url}{PREFIX}",
                "asyncapi": f"{self.hub_url}/asyncapi",
            }

        @hub.get("/mail")
        async def mail() -> list[dict[str, Any]]:
            """Every e-mail the SMTP sink received, oldest first."""
            return [m.to_dict() for m in self.mail.messages()] if self.mail else []

        return hub


def data_dir_default() -> Path:
    """Where ``hrms up`` keeps its databases and mail: ``HRMS_DATA_DIR`` or ``./.hrms``."""
    return HrmsSettings().data_dir
