"""The demo scenario over real HTTP, on the real broker, with a real SMTP sink."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hrms.walkthrough import walkthrough
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TENANT, SystemThread

pytestmark = pytest.mark.broker


@pytest.mark.timeout(180)
def test_demo_scenario_mails_audits_and_finds_the_violation(system: SystemThread) -> None:
    outcome = asyncio.run(
        walkthrough(
            system.hub, tenant=TENANT, admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD
        )
    )
    subjects = sorted(m["subject"].lower() for m in outcome.mail)
    assert sum("welcome" in s for s in subjects) >= 2, subjects
    assert any("approved" in s for s in subjects), subjects
    assert any("violation" in s for s in subjects), subjects
    # one e-mail per event: no subject twice for the same recipient
    pairs = [(tuple(m["recipients"]), m["message_id"]) for m in outcome.mail]
    assert len(pairs) == len(set(pairs))
    assert [f["rule"] for f in outcome.findings] == ["check_in_during_leave"]
    assert outcome.audit_chain["ok"] is True, outcome.audit_chain
    assert outcome.audit_records >= 7
    assert outcome.alert["priority"] == "critical", outcome.alert
    assert outcome.alert["current_stock"] == 0
    assert outcome.alert["at_risk_orders"] == 1
    # analytics counted the run's logins (admin, employee, manager) among the tenant's events
    assert outcome.analytics["user.login"] >= 3, outcome.analytics
    assert outcome.analytics["leave.approved"] >= 1, outcome.analytics


def test_every_service_is_alive_and_ready(system: SystemThread) -> None:
    with httpx.Client(timeout=10) as client:
        for name in system.system.running:
            assert client.get(system.url(name) + "/health").json()["status"] == "alive"
            ready = client.get(system.url(name) + "/ready")
            assert ready.status_code == 200, (name, ready.text)
            assert ready.json()["broker"]["connected"] is True
