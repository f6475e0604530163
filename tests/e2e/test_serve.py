"""``hrms serve <service>``: one service alone, as production runs it, in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eventbus._embedded import EmbeddedBroker
from hrms.service.auth import TokenIssuer
from hrms.system import free_port

pytestmark = pytest.mark.broker

SECRET = "serve-test-secret-" + "y" * 32


@pytest.mark.timeout(120)
def test_serve_runs_one_service_against_the_configured_cluster(
    noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "HRMS_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=noida_broker.bootstrap_servers,
        KAFKA_BROKER_PROFILE="noida",
        HRMS_JWT_SECRET=SECRET,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        EVENTBUS_DATA_DIR=str(tmp_path / "eventbus"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrms.cli", "serve", "employees", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=5) as client:
            while True:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    if client.get(base + "/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the service never became ready"
                time.sleep(0.2)
            token, _, _ = TokenIssuer(SECRET).issue(1, "serve-tenant", "admin")
            r = client.post(
                base + "/employees",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "employee_code": "S-1",
                    "name": "Sam Serve",
                    "email": "sam@serve.example",
                    "hire_date": "2026-02-02",
                },
            )
            assert r.status_code == 201, r.text
            while client.get(base + "/ready").json()["outbox"]["backlog"]:
                assert time.monotonic() < deadline, "the outbox never drained"
                time.sleep(0.2)
        assert (tmp_path / "employees.db").exists()  # DATABASE_URL with {service}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out, out
