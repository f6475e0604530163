"""The console object: what it reads from (cluster, services, mail, AsyncAPI), its
shared clients, and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI

from eventbus.settings import KafkaSettings
from hrms.console._broker import DEFAULT_TIMEOUT_S, Broker
from hrms.console._tail import Tails
from hrms.mailbox import MailSink

PREFIX = "/console"
"""Where the hub mounts the console."""


@dataclass
class Console:
    """The web console of a running system.

    Example::

        console = Console(kafka, services=lambda: {"users": "http://127.0.0.1:8001"})
        hub = FastAPI(lifespan=console.lifespan)
        hub.include_router(console.router(), prefix=PREFIX)

    Args:
        kafka: where the cluster is.
        services: service name -> base URL, asked each time (for ``/ready``).
        mail: the SMTP sink whose mail the mail page lists (None: no mail page).
        document: the system's AsyncAPI document, for the event catalog (None: no catalog).
        timeout_s: the deadline of one broker call.
    """

    kafka: KafkaSettings
    services: Callable[[], Mapping[str, str]] = dict
    mail: Callable[[], MailSink | None] = lambda: None
    document: Callable[[], dict[str, Any]] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    prefix: str = PREFIX
    broker: Broker = field(init=False)
    tails: Tails = field(init=False)
    _document: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _document_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.broker = Broker(self.kafka, self.timeout_s)
        self.tails = Tails(self.kafka)

    async def asyncapi(self) -> dict[str, Any] | None:
        """The AsyncAPI document, built once (in a thread: building it takes a moment and
        the hub shares its event loop with the services)."""
        if self.document is None:
            return None
        async with self._document_lock:
            if self._document is None:
                self._document = await asyncio.to_thread(self.document)
            return self._document

    def router(self) -> APIRouter:
        """The pages, the JSON API under ``api/`` and the static files under ``static/``."""
        from hrms.console._api import api_routes
        from hrms.console._pages import page_routes

        router = APIRouter(include_in_schema=False)
        router.include_router(page_routes(self))
        router.include_router(api_routes(self), prefix="/api")
        return router

    async def aclose(self) -> None:
        """Close every tail and the admin connection."""
        await self.tails.close_all()
        await self.broker.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """A FastAPI lifespan that closes the console's clients when the app stops."""
        try:
            yield
        finally:
            await self.aclose()
