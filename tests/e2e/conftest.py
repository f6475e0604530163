"""The whole system running for real: embedded broker, every service on its own free port
over real HTTP (uvicorn), SQLite files in a temp dir, a real SMTP sink (aiosmtpd).

The system runs in a thread with its own event loop, as ``hrms up`` runs it; tests talk
to it only over HTTP, as a user would. One system is shared by the whole session
(``system``); tests that stop the broker get their own (``isolated_system``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventbus._embedded import EmbeddedBroker
from eventbus.settings import load_settings
from hrms.service import HrmsSettings
from hrms.services import PORTS
from hrms.system import System, free_port

ADMIN_EMAIL = "admin@e2e.example"
ADMIN_PASSWORD = "e2e-admin-password"
TENANT = "e2e"


class SystemThread:
    """Runs a :class:`System` in a thread; ``stop()`` stops every server and the sink."""

    def __init__(self, system: System) -> None:
        self.system = system
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hrms-system")

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run ``coro`` on the system's loop and return its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def start(self) -> SystemThread:
        self._thread.start()
        self.call(self.system.start(), timeout=120)
        from hrms.services.users import bootstrap_admin

        self.call(
            bootstrap_admin(self.system.running["users"], TENANT, ADMIN_EMAIL, ADMIN_PASSWORD)
        )
        return self

    def stop(self) -> None:
        try:
            self.call(self.system.stop(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()

    @property
    def hub(self) -> str:
        return self.system.hub_url

    def url(self, service: str) -> str:
        return self.system.url(service)


def make_system(
    data_dir: Path, bootstrap: str, services: Sequence[str] = tuple(PORTS), **settings: Any
) -> System:
    """A system of ``services`` on free ports, on the broker at ``bootstrap``."""
    hrms = HrmsSettings(
        HRMS_DATA_DIR=data_dir, HRMS_JWT_SECRET="e2e-secret-" + "x" * 40, **settings
    )
    kafka = load_settings(
        bootstrap_servers=bootstrap, broker_profile="noida", connect_timeout_s=3.0
    )
    return System(
        hrms,
        kafka,
        services=services,
        ports=dict.fromkeys(services, 0),
        hub_port=0,
        smtp_port=0,
    )


@pytest.fixture(scope="session")
def system(
    noida_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SystemThread]:
    running = SystemThread(
        make_system(tmp_path_factory.mktemp("hrms"), noida_broker.bootstrap_servers)
    ).start()
    try:
        yield running
    finally:
        running.stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (and return it), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def login(
    client: httpx.Client,
    system: SystemThread,
    tenant: str = TENANT,
    email: str = ADMIN_EMAIL,
    password: str = ADMIN_PASSWORD,
) -> dict[str, str]:
    """Authorization headers of a fresh login (the e2e admin by default)."""
    body = {"tenant_id": tenant, "email": email, "password": password}
    r = client.post(system.url("users") + "/auth/login", json=body)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, on a fixed port (so a restart keeps the address)."""
    broker = EmbeddedBroker("noida", data_dir=tmp_path / "noida", port=free_port()).start()
    try:
        yield broker
    finally:
        broker.stop()
