"""The audit service: batch consumption, idempotence, search, and the per-tenant hash chains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, event, func, select, update

from eventbus import KafkaProducer
from hrms.events import AuditEvent, EventType, create_audit_event
from hrms.service import Role, Service
from hrms.services import audit
from hrms.services.audit import chain_of, erase_personal_data, verify_chain
from tests.services.conftest import Harness, ServiceClient, eventually

T0 = datetime(2025, 11, 25, 18, 0, tzinfo=UTC)


@pytest.fixture
async def stack(harness: Harness) -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


@pytest.fixture
async def producer(harness: Harness) -> AsyncIterator[KafkaProducer]:
    p = KafkaProducer(transport=harness.broker)
    await p.start()
    yield p
    await p.stop()


def build(harness: Harness, database_url: str | None = None, **kwargs: Any) -> Service:
    """Build the audit service on the harness's broker (build kwargs pass through)."""
    settings = harness.settings
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    return audit.build(settings=settings, transport=harness.broker, **kwargs)


async def start(harness: Harness, stack: AsyncExitStack, **kwargs: Any) -> ServiceClient:
    """Start the audit service (build kwargs pass through)."""
    return await run(stack, build(harness, **kwargs))


async def run(stack: AsyncExitStack, service: Service) -> ServiceClient:
    """Run ``service`` until the end of the test, with an HTTP client."""
    app = service.app()
    await stack.enter_async_context(app.router.lifespan_context(app))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")
    await stack.enter_async_context(client)
    return ServiceClient(service, client)


def audit_event(
    i: int = 0,
    tenant: str | None = "acme",
    *,
    action: str = "UPDATE",
    user_id: int = 1,
    resource_type: str = "employee",
    resource_id: int | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    event = create_audit_event(
        source_service="employees",
        action=action,
        resource_type=resource_type,
        user_id=user_id,
        resource_id=resource_id if resource_id is not None else i,
        description=f"changed employee {i}",
        ip_address="192.168.1.1",
        user_agent="Mozilla/5.0",
        changes={"email": f"e{i}@example.com"},
        event_type=EventType.AUDIT_EMPLOYEE_ACTION,
        correlation_id=f"corr-{i}",
        tenant_id=tenant,
    )
    return event.model_copy(update={"timestamp": at or T0 + timedelta(seconds=i)})


def log_table(svc: ServiceClient) -> Any:
    return svc.service.metadata.tables["audit_log"]


async def count(svc: ServiceClient, tenant: str | None = None) -> int:
    t = log_table(svc)
    stmt = select(func.count()).select_from(t)
    if tenant is not None:
        stmt = stmt.where(t.c.tenant_id == tenant)
    async with svc.service.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def seqs(svc: ServiceClient, tenant: str) -> list[int]:
    t = log_table(svc)
    async with svc.service.engine.connect() as conn:
        rows = await conn.execute(select(t.c.seq).where(t.c.tenant_id == tenant).order_by(t.c.seq))
        return [int(r[0]) for r in rows]


async def record(svc: ServiceClient, events: list[AuditEvent]) -> None:
    for e in events:
        resp = await svc.http.post("/audit-logs", json=e.model_dump(mode="json"))
        assert resp.status_code == 201, resp.text


async def sql(svc: ServiceClient, stmt: Any) -> None:
    """Tamper with the database directly, as someone with database access could."""
    async with svc.service.engine.begin() as conn:
        await conn.execute(stmt)


# ------------------------------------------------------------------------------ consuming


async def test_1200_events_land_in_three_batches_one_insert_each(
    harness: Harness, stack: AsyncExitStack, producer: KafkaProducer
) -> None:
    events = [audit_event(i, "acme" if i % 2 else "globex") for i in range(1200)]
    await producer.send_batch(harness.settings.audit_topic, events)  # waiting before start
    inserts: list[int] = []
    service = build(harness)

    def on_execute(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            inserts.append(len(params) if many else 1)

    event.listen(service.engine.sync_engine, "before_cursor_execute", on_execute)
    svc = await run(stack, service)

    await eventually(lambda: chain_of(service).stats.records == 1200, what="1200 records")
    assert inserts == [500, 500, 200]
    assert chain_of(service).stats.batch_sizes == [500, 500, 200]
    assert (await service.readiness["audit"]())["batches"] == 3
    assert await count(svc) == 1200
    for tenant in ("acme", "globex"):
        assert await seqs(svc, tenant) == list(range(1, 601))
        result = await verify_chain(service, tenant)
        assert result.ok, result
        assert result.records_checked == 600
        assert result.last_seq == 600
    cps = service.metadata.tables["audit_checkpoint"]
    async with service.engine.connect() as conn:
        marks = [
            int(r[0])
            for r in await conn.execute(
                select(cps.c.seq).where(cps.c.tenant_id == "acme").order_by(cps.c.seq)
            )
        ]
    assert marks == [100, 200, 250, 300, 400, 500, 600]  # every 100 and each batch's end


async def test_duplicates_are_ignored(
    harness: Harness, stack: AsyncExitStack, producer: KafkaProducer
) -> None:
    svc = await start(harness, stack)
    events = [audit_event(i) for i in range(5)]
    topic = svc.service.settings.audit_topic
    await producer.send_batch(topic, [*events, events[0], events[1]])  # repeats in one batch
    await eventually(lambda: count(svc), what="the first records")
    await eventually(lambda: chain_of(svc.service).stats.duplicates >= 2)
    await producer.send_batch(topic, [*events[2:], audit_event(99)])  # repeats in a later one
    await eventually(lambda: chain_of(svc.service).stats.records == 6, what="the new record")
    assert await seqs(svc, "acme") == [1, 2, 3, 4, 5, 6]
    assert chain_of(svc.service).stats.duplicates == 5
    again = await svc.http.post("/audit-logs", json=events[3].model_dump(mode="json"))
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert await count(svc) == 6
    assert (await verify_chain(svc.service, "acme")).ok


# ------------------------------------------------------------------------------ HTTP path


async def test_http_post_records_without_a_token_in_the_events_tenant(
    harness: Harness, stack: AsyncExitStack, producer: KafkaProducer
) -> None:
    svc = await start(harness, stack)
    first = audit_event(1)
    resp = await svc.http.post("/audit-logs", json=first.model_dump(mode="json"))
    assert resp.status_code == 201
    assert resp.json() == {
        "event_id": str(first.event_id),
        "tenant_id": "acme",
        "status": "recorded",
        "seq": 1,
    }
    await producer.publish(svc.service.settings.audit_topic, audit_event(2))  # same chain
    await eventually(lambda: chain_of(svc.service).stats.records == 2)
    untenanted = audit_event(3, tenant=None)
    with_token = await svc.http.post(
        "/audit-logs",
        json=untenanted.model_dump(mode="json"),
        headers=svc.token(5, "acme", Role.EMPLOYEE, 5),
    )
    assert with_token.json()["tenant_id"] == "acme"
    assert with_token.json()["seq"] == 3
    assert (await verify_chain(svc.service, "acme")).records_checked == 3

    other = await svc.http.post(
        "/audit-logs", json=audit_event(4).model_dump(mode="json"), headers=svc.token(1, "globex")
    )
    assert other.status_code == 403
    bad = await svc.http.post("/audit-logs", json={"event_type": "audit.user.action", "data": {}})
    assert bad.status_code == 422
    locs = {tuple(e["loc"]) for e in bad.json()["detail"]}
    assert ("body", "data", "action") in locs


async def test_concurrent_appends_of_one_tenant_keep_the_chain_contiguous(
    harness: Harness, stack: AsyncExitStack
) -> None:
    svc = await start(harness, stack)
    events = [audit_event(i, "acme" if i % 3 else "globex") for i in range(30)]
    results = await asyncio.gather(
        *(svc.http.post("/audit-logs", json=e.model_dump(mode="json")) for e in events)
    )
    assert {r.status_code for r in results} == {201}
    assert await seqs(svc, "acme") == list(range(1, 21))
    assert await seqs(svc, "globex") == list(range(1, 11))
    assert (await verify_chain(svc.service, "acme")).ok
    assert (await verify_chain(svc.service, "globex")).ok


# ------------------------------------------------------------------------------ searching


async def test_search_filters_and_pages_for_admins_of_the_tenant(
    harness: Harness, stack: AsyncExitStack
) -> None:
    svc = await start(harness, stack)
    await record(
        svc,
        [
            audit_event(0, action="CREATE", user_id=1, resource_type="employee", resource_id=10),
            audit_event(1, action="UPDATE", user_id=1, resource_type="employee", resource_id=10),
            audit_event(2, action="UPDATE", user_id=2, resource_type="leave", resource_id=20),
            audit_event(3, action="DELETE", user_id=2, resource_type="leave", resource_id=21),
            audit_event(4, action="UPDATE", user_id=3, resource_type="user", resource_id=30),
            audit_event(5, "globex", action="UPDATE", user_id=1, resource_id=10),
        ],
    )
    admin = svc.token(1, "acme", Role.ADMIN)

    async def get(query: str = "") -> dict[str, Any]:
        resp = await svc.http.get(f"/audit-logs{query}", headers=admin)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    everything = await get()
    assert everything["total"] == 5
    assert [i["seq"] for i in everything["items"]] == [5, 4, 3, 2, 1]  # newest first
    assert {i["tenant_id"] for i in everything["items"]} == {"acme"}
    item = everything["items"][-1]
    assert item["ip_address"] == "192.168.1.1"
    assert item["changes"] == {"email": "e0@example.com"}
    assert item["user_id"] == "1"
    assert item["timestamp"].startswith("2025-11-25T18:00:00")

    assert (await get("?user_id=2"))["total"] == 2
    assert [i["action"] for i in (await get("?action=UPDATE"))["items"]] == ["UPDATE"] * 3
    assert (await get("?resource_type=leave"))["total"] == 2
    leave = await get("?resource_type=leave&resource_id=21")
    assert [i["action"] for i in leave["items"]] == ["DELETE"]
    window = await get("?from=2025-11-25T18:00:01Z&to=2025-11-25T18:00:03Z")
    assert [i["seq"] for i in window["items"]] == [4, 3, 2]
    assert (await get("?from=2025-11-25T18:00:04")).get("total") == 1  # naive means UTC
    page1, page2 = await get("?limit=2"), await get("?limit=2&offset=4")
    assert ([i["seq"] for i in page1["items"]], page1["total"]) == ([5, 4], 5)
    assert [i["seq"] for i in page2["items"]] == [1]
    assert (await get("?tenant=acme"))["total"] == 5

    other_tenant = await svc.http.get("/audit-logs?tenant=globex", headers=admin)
    assert other_tenant.status_code == 403
    globex = await svc.http.get("/audit-logs", headers=svc.token(9, "globex"))
    assert globex.json()["total"] == 1
    employee = svc.token(2, "acme", Role.EMPLOYEE, 2)
    assert (await svc.http.get("/audit-logs", headers=employee)).status_code == 403
    assert (await svc.http.get("/audit-logs/verify", headers=employee)).status_code == 403
    assert (await svc.http.get("/audit-logs")).status_code == 401
    assert (await svc.http.get("/audit-logs?limit=0", headers=admin)).status_code == 422
    assert (await svc.http.get("/audit-logs?from=yesterday", headers=admin)).status_code == 422


# ------------------------------------------------------------------------------ the chain


async def chain_of_ten(harness: Harness, stack: AsyncExitStack) -> ServiceClient:
    svc = await start(harness, stack, checkpoint_every=4)
    await record(svc, [audit_event(i) for i in range(10)])
    await record(svc, [audit_event(i, "globex") for i in range(10, 13)])
    verdict = await svc.http.get("/audit-logs/verify", headers=svc.token(1, "acme"))
    assert verdict.json() == {
        "ok": True,
        "tenant_id": "acme",
        "records_checked": 10,
        "last_seq": 10,
        "checkpoints": 10,  # one per single-event append, 4 and 8 among them
        "problem": None,
    }
    return svc


async def test_verify_finds_a_changed_record(harness: Harness, stack: AsyncExitStack) -> None:
    svc = await chain_of_ten(harness, stack)
    t = log_table(svc)
    await sql(svc, update(t).where(t.c.tenant_id == "acme", t.c.seq == 5).values(action="READ"))
    result = await verify_chain(svc.service, "acme")
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.kind, result.problem.seq, result.records_checked) == ("changed", 5, 4)
    via_http = await svc.http.get("/audit-logs/verify", headers=svc.token(1, "acme"))
    assert via_http.json()["problem"]["kind"] == "changed"
    assert (await verify_chain(svc.service, "globex")).ok  # another tenant's chain


async def test_verify_finds_a_record_whose_hash_was_recomputed(
    harness: Harness, stack: AsyncExitStack
) -> None:
    svc = await chain_of_ten(harness, stack)
    t = log_table(svc)
    where = (t.c.tenant_id == "acme", t.c.seq == 6)
    async with svc.service.engine.connect() as conn:
        row = dict((await conn.execute(select(t).where(*where))).one()._mapping)
    forged = audit.chain_hash(row["prev_hash"], {**row, "action": "READ"})
    await sql(svc, update(t).where(*where).values(action="READ", hash=forged))
    result = await verify_chain(svc.service, "acme")
    assert result.problem is not None
    assert (result.problem.kind, result.problem.seq) == ("changed", 6)  # its checkpoint
    assert "checkpoint" in result.problem.detail

    cps = svc.service.metadata.tables["audit_checkpoint"]
    await sql(svc, update(cps).where(cps.c.tenant_id == "acme", cps.c.seq == 6).values(hash=forged))
    result = await verify_chain(svc.service, "acme")
    assert result.problem is not None
    assert (result.problem.kind, result.problem.seq) == ("changed", 7)  # 7 links to the old 6
    assert "does not link" in result.problem.detail


async def test_verify_finds_a_deleted_record(harness: Harness, stack: AsyncExitStack) -> None:
    svc = await chain_of_ten(harness, stack)
    t = log_table(svc)
    await sql(svc, delete(t).where(t.c.tenant_id == "acme", t.c.seq == 5))
    result = await verify_chain(svc.service, "acme")
    assert result.problem is not None
    assert (result.problem.kind, result.problem.seq, result.records_checked) == ("deleted", 5, 4)
    assert "record 5 missing" in result.problem.detail


async def test_verify_finds_a_truncated_tail(harness: Harness, stack: AsyncExitStack) -> None:
    svc = await chain_of_ten(harness, stack)
    t = log_table(svc)
    await sql(svc, delete(t).where(t.c.tenant_id == "acme", t.c.seq > 7))
    result = await verify_chain(svc.service, "acme")
    assert result.problem is not None
    assert (result.problem.kind, result.problem.seq) == ("truncated", 10)
    assert result.records_checked == 7
    await sql(svc, delete(t).where(t.c.tenant_id == "acme"))
    emptied = await verify_chain(svc.service, "acme")
    assert emptied.problem is not None
    assert emptied.problem.kind == "truncated"


async def test_erasing_personal_data_keeps_the_chain_valid(
    harness: Harness, stack: AsyncExitStack
) -> None:
    svc = await chain_of_ten(harness, stack)
    t = log_table(svc)
    where = (t.c.tenant_id == "acme", t.c.seq == 3)
    await sql(svc, update(t).where(*where).values(ip_address=None, changes=None))
    assert (await verify_chain(svc.service, "acme")).ok
    assert await erase_personal_data(svc.service, "acme", "1") == 10
    result = await verify_chain(svc.service, "acme")
    assert result.ok, result
    page = (await svc.http.get("/audit-logs", headers=svc.token(1, "acme"))).json()
    assert {(i["ip_address"], i["user_agent"], i["changes"]) for i in page["items"]} == {
        (None, None, None)
    }
    globex = (await svc.http.get("/audit-logs", headers=svc.token(1, "globex"))).json()
    assert globex["items"][0]["ip_address"] == "192.168.1.1"  # another tenant untouched


async def test_on_postgresql_appends_serialise_per_tenant_and_verify(
    harness: Harness,
    stack: AsyncExitStack,
    producer: KafkaProducer,
    pg_url: str,
) -> None:
    svc = await start(harness, stack, database_url=pg_url, checkpoint_every=7)
    assert svc.service.engine.dialect.name == "postgresql"
    await producer.send_batch(
        svc.service.settings.audit_topic, [audit_event(i, "acme") for i in range(40)]
    )
    posts = [audit_event(i, "acme" if i % 2 else "globex") for i in range(100, 140)]
    results = await asyncio.gather(
        *(svc.http.post("/audit-logs", json=e.model_dump(mode="json")) for e in posts)
    )
    assert {r.status_code for r in results} == {201}
    await eventually(lambda: chain_of(svc.service).stats.records == 80, what="80 records")
    assert await seqs(svc, "acme") == list(range(1, 61))
    assert await seqs(svc, "globex") == list(range(1, 21))
    for tenant in ("acme", "globex"):
        assert (await verify_chain(svc.service, tenant)).ok
    again = await svc.http.post("/audit-logs", json=posts[0].model_dump(mode="json"))
    assert again.json()["status"] == "duplicate"
    assert await erase_personal_data(svc.service, "acme", "1") == 60
    assert (await verify_chain(svc.service, "acme")).ok
    t = log_table(svc)
    await sql(svc, delete(t).where(t.c.tenant_id == "globex", t.c.seq == 20))
    result = await verify_chain(svc.service, "globex")
    assert result.problem is not None
    assert result.problem.kind == "truncated"


async def test_on_postgresql_two_replicas_serialise_by_advisory_lock(
    harness: Harness,
    stack: AsyncExitStack,
    pg_url: str,
) -> None:
    one = await start(harness, stack, database_url=pg_url)
    two = await start(harness, stack, database_url=pg_url)  # another process, in effect
    posts = [audit_event(i) for i in range(40)]
    results = await asyncio.gather(
        *(
            (one if i % 2 else two).http.post("/audit-logs", json=e.model_dump(mode="json"))
            for i, e in enumerate(posts)
        )
    )
    assert [r.status_code for r in results] == [201] * 40
    assert await seqs(one, "acme") == list(range(1, 41))
    assert (await verify_chain(one.service, "acme")).ok
