"""Debian's Prometheus against the running system on loopback: it scrapes every service's
``/metrics``, sees the eventbus metrics of real traffic, and loads the alert rules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hrms.monitoring import JOB_PREFIX, render, scrape_config
from hrms.system import free_port
from tests.conftest import require_tool
from tests.e2e.conftest import SystemThread, login, wait_for
from tests.prometheus import ALERTS, load

pytestmark = pytest.mark.broker


@pytest.fixture
def prometheus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping every running service each second; its base URL."""
    binary = require_tool("prometheus", "prometheus")  # before the system starts for nothing
    system: SystemThread = request.getfixturevalue("system")
    targets = {name: system.url(name) for name in system.system.running}
    config = tmp_path / "prometheus.yml"
    config.write_text(render(scrape_config(targets, [ALERTS], scrape_interval="1s")))
    url = f"http://127.0.0.1:{free_port()}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"prometheus exited: {log_path.read_text()}")
                try:
                    return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 30, "prometheus to be ready")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def api(client: httpx.Client, base: str, path: str, **params: str) -> Any:
    """The ``data`` of a successful Prometheus HTTP API answer."""
    r = client.get(f"{base}/api/v1/{path}", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def jobs_with(client: httpx.Client, base: str, query: str) -> set[str]:
    """The jobs of the series ``query`` returns now."""
    return {s["metric"]["job"] for s in api(client, base, "query", query=query)["result"]}


@pytest.mark.timeout(120)
def test_prometheus_scrapes_every_service_and_loads_the_alerts(
    system: SystemThread, prometheus: str
) -> None:
    running = system.system.running
    jobs = {JOB_PREFIX + name for name in running}
    consuming = {JOB_PREFIX + name for name, svc in running.items() if svc.declared_consumers()}
    assert consuming, "no service declares a consumer"
    with httpx.Client(timeout=10) as client:
        health: dict[str, str] = {}

        def every_target_up() -> bool:
            targets = api(client, prometheus, "targets", state="active")["activeTargets"]
            health.clear()
            health.update({t["labels"]["job"]: t["health"] for t in targets})
            return health == dict.fromkeys(jobs, "up")

        try:
            wait_for(every_target_up, 30, "every service target up")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {health}") from None

        # a login publishes user.login; the consuming services report lag once sampled
        login(client, system)
        published = 'eventbus_events_published_total{topic="user-queue"}'
        wait_for(
            lambda: JOB_PREFIX + "users" in jobs_with(client, prometheus, published),
            30,
            "the users service's published records",
        )
        wait_for(
            lambda: jobs_with(client, prometheus, "eventbus_consumer_lag") >= consuming,
            30,
            f"consumer lag from {sorted(consuming)}",
        )
        wait_for(
            lambda: jobs_with(client, prometheus, "eventbus_outbox_oldest_age_seconds") == jobs,
            30,
            "every service's outbox age",
        )

        expected = {g["name"]: [r["alert"] for r in g["rules"]] for g in load(ALERTS)["groups"]}

        def rules_evaluated() -> dict[str, Any] | None:
            groups = api(client, prometheus, "rules", type="alert")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if any(r["lastEvaluation"].startswith("0001-") for r in rules):
                return None  # not evaluated yet
            return {g["name"]: g for g in groups}

        groups = wait_for(rules_evaluated, 30, "every alert rule evaluated")
        assert {name: [r["name"] for r in g["rules"]] for name, g in groups.items()} == expected
        for g in groups.values():
            assert g["file"] == str(ALERTS)
            for rule in g["rules"]:
                assert (rule["health"], rule.get("lastError", "")) == ("ok", ""), rule
        down = next(r for r in groups["hrms"]["rules"] if r["name"] == "HrmsServiceDown")
        assert down["state"] == "inactive", down
