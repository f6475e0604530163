"""The service framework itself: log redaction, correlation ids, settings from the seeds'
variables, readiness."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from hrms.service import HrmsSettings
from hrms.service.context import ContextFilter, correlation_id, redact
from tests.services.conftest import Harness


def test_redact_hides_emails_and_ip_addresses() -> None:
    text = "login of ann.lee+hr@example.co.uk from 192.168.10.4 and fe80:0:0:0:200:f8ff:fe21:67cf"
    out = redact(text)
    assert "ann.lee" not in out
    assert "192.168" not in out
    assert "fe80" not in out
    assert out == "login of <email> from <ip> and <ip>"


def test_log_records_carry_the_correlation_id_and_are_redacted() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "mail to %s", ("a@b.example",), None)
    token = correlation_id.set("cid-42")
    try:
        assert ContextFilter().filter(record)
    finally:
        correlation_id.reset(token)
    assert record.getMessage() == "mail to <email>"
    assert record.__dict__["correlation_id"] == "cid-42"


def test_seed_variables_name_the_topics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_NOTIFICATION_TOPIC", "acme-notifications")
    monkeypatch.setenv("KAFKA_AUDIT_TOPIC", "acme-audit")
    monkeypatch.setenv("KAFKA_ENABLE_PRODUCER", "false")
    monkeypatch.setenv("HRMS_DATA_DIR", str(tmp_path))
    s = HrmsSettings()
    assert (s.notification_topic, s.audit_topic, s.enable_producer) == (
        "acme-notifications",
        "acme-audit",
        False,
    )
    assert s.url_for("leaves").endswith(f"{tmp_path}/leaves.sqlite3")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://hrms@db/{service}")
    assert HrmsSettings().url_for("leaves") == "postgresql+asyncpg://hrms@db/leaves"


def test_a_generated_jwt_key_is_kept_and_reused(tmp_path: Path) -> None:
    first = HrmsSettings(HRMS_DATA_DIR=tmp_path).signing_key()
    assert len(first) >= 32
    assert HrmsSettings(HRMS_DATA_DIR=tmp_path).signing_key() == first
    assert (tmp_path / "jwt.key").stat().st_mode & 0o077 == 0  # not readable by others


async def test_correlation_id_is_echoed_or_made(harness: Harness) -> None:
    svc = await harness.start("employees")
    given = await svc.http.get("/health", headers={"X-Correlation-ID": "req-123"})
    assert given.headers["x-correlation-id"] == "req-123"
    made = await svc.http.get("/health")
    assert len(made.headers["x-correlation-id"]) == 36  # a new UUID
    unsafe = await svc.http.get("/health", headers={"X-Correlation-ID": "a b\tc"})
    assert unsafe.headers["x-correlation-id"] != "a b\tc"


async def test_ready_reports_database_broker_consumers_and_backlog(harness: Harness) -> None:
    svc = await harness.start("leaves")
    r = await svc.http.get("/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["database"] == "ok"
    assert body["broker"]["connected"] is True
    assert body["consumers"]
    assert all(c["running"] for c in body["consumers"])
    assert body["outbox"]["backlog"] == 0


async def test_metrics_count_what_the_service_published_and_consumed(harness: Harness) -> None:
    from tests.conftest import wait_until
    from tests.services.test_employees import new_employee

    svc = await harness.start("employees")
    leaves = await harness.start("leaves")  # consumes employee-queue
    await new_employee(svc, employee_code="MET-1")
    relay = svc.service.relay
    assert relay is not None
    await wait_until(lambda: relay.stats.delivered >= 3)  # employee, audit, welcome mail
    body = (await svc.http.get("/metrics")).text
    assert (
        'eventbus_events_published_total{event_type="employee.created",tenant="acme",'
        'topic="employee-queue"} 1.0' in body
    )
    assert 'eventbus_publish_latency_seconds_count{topic="employee-queue"} 1.0' in body
    assert "eventbus_outbox_backlog" in body  # sampled at the relay's first cycle
    consumed = (
        'eventbus_events_consumed_total{event_type="employee.created",'
        'group="hrms-leaves",tenant="acme",topic="employee-queue"} 1.0'
    )

    async def scraped() -> str:
        return (await leaves.http.get("/metrics")).text

    for _ in range(1000):
        if consumed in await scraped():
            break
        await asyncio.sleep(0.01)
    assert consumed in await scraped()
    # each service serves its own registry: the leaves service published nothing
    published = [
        line
        for line in (await scraped()).splitlines()
        if line.startswith("eventbus_events_published_total{")
    ]
    assert not [line for line in published if "employee.created" in line], published
