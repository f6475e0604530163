"""The services keep working when Kafka does not: writes are accepted while the broker is
down and every event is delivered once when it returns; and with the producer switched
off (``KAFKA_ENABLE_PRODUCER=false``) audit records and mail go over HTTP instead."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventbus._embedded import EmbeddedBroker
from tests.e2e.conftest import SystemThread, login, make_system, wait_for

pytestmark = pytest.mark.broker


@pytest.mark.timeout(240)
def test_writes_are_accepted_while_the_broker_is_down_and_delivered_once_after(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    system = SystemThread(
        make_system(
            tmp_path / "hrms",
            own_broker.bootstrap_servers,
            services=("users", "employees", "audit"),
        )
    ).start()
    try:
        with httpx.Client(timeout=15) as client:
            employees, audit = system.url("employees"), system.url("audit")
            auth = login(client, system)
            # quiet broker: everything so far is in noida-db's snapshot before it stops
            # (noida-db loses writes acknowledged in its last second, even on a graceful stop)
            wait_for(
                lambda: (
                    client.get(employees + "/ready").json().get("outbox", {}).get("backlog") == 0
                ),
                30,
                "an empty outbox",
            )
            snapshot = own_broker.data_dir / "kafka.json"
            quiet_since = time.time()
            wait_for(
                lambda: snapshot.exists() and snapshot.stat().st_mtime > quiet_since + 0.2,
                15,
                "a snapshot",
            )
            own_broker.stop()
            assert not own_broker.is_running

            codes = [f"DOWN-{i:03d}" for i in range(20)]
            for code in codes:
                r = client.post(
                    employees + "/employees",
                    headers=auth,
                    json={"employee_code": code, "name": f"Worker {code}",
                          "email": f"{code.lower()}@e2e.example", "hire_date": "2026-01-05"},
                )  # fmt: skip
                assert r.status_code == 201, r.text  # accepted with Kafka down
            ready = client.get(employees + "/ready").json()
            assert ready["outbox"]["backlog"] >= len(codes), ready  # held, not lost
            assert not own_broker.is_running

            own_broker.start()  # same port: the clients reconnect by themselves
            wait_for(
                lambda: client.get(employees + "/ready").json()["outbox"]["backlog"] == 0,
                120,
                "the outbox to drain",
            )

            def audited() -> Counter[str]:
                r = client.get(
                    audit + "/audit-logs",
                    headers=auth,
                    params={"resource_type": "employee", "action": "CREATE", "limit": 200},
                )
                assert r.status_code == 200, r.text
                return Counter(str(item["resource_id"]) for item in r.json()["items"])

            counts = wait_for(lambda: (c := audited()) and len(c) >= len(codes) and c, 60, "audit")
            assert len(counts) == len(codes), counts
            assert set(counts.values()) == {1}, counts  # each once
            chain = client.get(audit + "/audit-logs/verify", headers=auth).json()
            assert chain["ok"] is True, chain
    finally:
        system.stop()


@pytest.mark.timeout(180)
def test_without_the_producer_audit_and_mail_go_over_http(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # its own broker: the shared system's consumer groups must not see a second member
    system = SystemThread(
        make_system(
            tmp_path / "hrms",
            own_broker.bootstrap_servers,
            services=("users", "audit", "notifications"),
            KAFKA_ENABLE_PRODUCER=False,
        )
    ).start()
    try:
        assert system.system.running["users"].producer is None
        with httpx.Client(timeout=15) as client:
            users, audit = system.url("users"), system.url("audit")
            auth = login(client, system)
            r = client.post(
                users + "/users",
                headers=auth,
                json={"email": "http-path@e2e.example", "name": "Hattie Http",
                      "password": "a-long-password-1", "role": "employee"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            user_id = r.json()["id"]

            def audit_record() -> list[dict[str, Any]]:
                r = client.get(
                    audit + "/audit-logs",
                    headers=auth,
                    params={"resource_type": "user", "resource_id": str(user_id)},
                )
                return list(r.json()["items"])

            records = wait_for(audit_record, 30, "the audit record posted over HTTP")
            assert records[0]["action"] == "CREATE"

            def mail() -> list[dict[str, Any]]:
                box = client.get(system.hub + "/mail").json()
                return [m for m in box if "http-path@e2e.example" in m["recipients"]]

            mails = wait_for(mail, 30, "the welcome mail sent over HTTP")
            assert len(mails) == 1, mails
            assert "welcome" in mails[0]["subject"].lower()
    finally:
        system.stop()
