"""The web console end to end, in headless Chromium (Debian's, driven by Playwright)
against the running system: every page loads without JS errors and shows real data,
the lag updates live, the tail follows and filters, and a replay from the dead-letter
page reaches the consumer.

Screenshots of every page go to ``test-artifacts/console/<page>.png`` in the repository
(outside pytest's ``--basetemp``, so they survive the run).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from eventbus import KafkaProducer, TopicSpec, ensure_topics
from eventbus._transport.base import TopicPartition
from eventbus.ops import Admin
from eventbus.redrive import REPLAY_FROM, DeadLetter, DeadLetterFilter, read_dead_letters
from hrms.events import create_notification_event
from tests.conftest import require_tool
from tests.e2e.conftest import TENANT, SystemThread, login, wait_for

pytestmark = pytest.mark.broker

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile; closed after the module."""
    chromium = require_tool("chromium", "chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


class Console:
    """A browser page on the console that records JS errors and failed requests."""

    def __init__(self, page: Page, system: SystemThread) -> None:
        self.page = page
        self.root = system.hub + "/console"
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"),
        )

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    def open(self, path: str) -> Page:
        response = self.page.goto(self.root + path)
        assert response is not None
        assert response.status == 200, f"{path}: {response.status} {self.page.content()[:2000]}"
        expect(self.page.locator("#error")).to_have_count(0)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert not self.errors, self.errors


@pytest.fixture
def console(browser: BrowserContext, system: SystemThread) -> Iterator[Console]:
    page = browser.new_page()
    try:
        yield Console(page, system)
    finally:
        page.close()


def hire(client: httpx.Client, system: SystemThread, auth: dict[str, str], code: str) -> Any:
    r = client.post(
        system.url("employees") + "/employees",
        headers=auth,
        json={"employee_code": code, "name": f"Cora {code}", "email": f"{code.lower()}@e2e.example",
              "hire_date": "2026-03-02"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()


def test_overview_and_topics_show_the_cluster(system: SystemThread, console: Console) -> None:
    with httpx.Client(timeout=15) as client:
        hire(client, system, login(client, system), f"C-{uuid.uuid4().hex[:6]}")
        index = client.get(system.hub + "/").json()
    assert index["console"] == system.hub + "/console"

    async def ends() -> dict[int, int]:
        async with Admin(system.system.kafka) as admin:
            tps = await admin.partitions("employee-queue")
            found = await admin.end_offsets(tps)
        return {tp.partition: end for tp, end in found.items()}

    known = system.call(ends())
    assert sum(known.values()) >= 1

    page = console.open("/")
    expect(page.locator("#profile")).to_contain_text("noida")
    assert int(page.locator("#topic-count").inner_text()) >= 10
    assert int(page.locator("#group-count").inner_text()) >= 1
    expect(page.locator('tr[data-service="users"] td.ok')).to_have_text("ready")
    assert page.locator("tr[data-service]").count() == len(system.system.running)
    console.shot("overview")

    page = console.open("/topics")
    rows = page.locator('tbody[data-topic="employee-queue"] td.end')
    assert rows.count() == len(known)
    for partition, end in known.items():
        cell = page.locator(
            f'tbody[data-topic="employee-queue"] td.end[data-partition="{partition}"]'
        )
        assert int(cell.inner_text()) >= end
    expect(page.locator('tbody[data-topic="notification-dlq"]')).to_contain_text("dead letters")
    console.shot("topics")
    console.assert_clean()


def test_group_lag_updates_live(system: SystemThread, console: Console) -> None:
    """A group with no members, committed at offset 1 of 3 records: lag 2; three more
    records make the page show 5 without a reload."""
    kafka = system.system.kafka
    run = uuid.uuid4().hex[:8]
    topic, group = f"console-lag-{run}", f"console-lag-group-{run}"

    async def produce(n: int) -> None:
        async with KafkaProducer(settings=kafka) as producer:
            for i in range(n):
                event = create_notification_event("e2e", f"lag-{i}@e2e.example", "lag", "generic")
                await producer.send_event(topic, event, key="one")

    async def setup() -> None:
        await ensure_topics([TopicSpec(topic, 1, 1)], settings=kafka)
        await produce(3)
        async with Admin(kafka) as admin:
            await admin.client.alter_group_offsets(group, {TopicPartition(topic, 0): 1})

    system.call(setup())
    page = console.open("/groups")
    lag = page.locator(f'tr[data-group="{group}"][data-topic="{topic}"] td.lag')
    expect(lag).to_have_text("2")
    console.shot("groups")
    system.call(produce(3))
    expect(lag).to_have_text("5", timeout=WAIT_MS)  # refreshed by polling, no reload
    expect(page.locator(f'tr[data-group="{group}"] td.end')).to_have_text("6")
    expect(page.locator("#refreshed")).to_contain_text("as of ")
    console.assert_clean()


def test_tail_follows_and_filters(system: SystemThread, console: Console) -> None:
    run = uuid.uuid4().hex[:6].upper()
    first, second = f"TA-{run}", f"TB-{run}"
    page = console.open("/tail?topic=employee-queue")
    expect(page.locator("#tail")).to_have_attribute("data-state", "following", timeout=WAIT_MS)
    with httpx.Client(timeout=15) as client:
        auth = login(client, system)
        hire(client, system, auth, first)
        hire(client, system, auth, second)
    rows = page.locator("#tail-rows tr")
    expect(rows.filter(has_text=first)).to_have_count(1, timeout=WAIT_MS)
    expect(rows.filter(has_text=second)).to_have_count(1, timeout=WAIT_MS)
    mine = rows.filter(has_text=second).first
    expect(mine.locator("td.type")).to_have_text("employee.created")
    expect(mine.locator("td.tenant")).to_have_text(TENANT)
    key = mine.get_attribute("data-key")
    assert key
    assert rows.filter(has_text=first).first.get_attribute("data-key") != key
    console.shot("tail")

    # the filters narrow it: the same type and tenant, and the second employee's key only
    page.locator("#t-event-type").fill("employee.*")
    page.locator("#t-tenant").fill(TENANT)
    page.locator("#t-key").fill(key)
    page.locator("#t-apply").click()
    page.wait_for_url(re.compile(r"key="))
    expect(page.locator("#tail")).to_have_attribute("data-key", key)
    expect(rows.filter(has_text=second)).to_have_count(1, timeout=WAIT_MS)
    assert rows.filter(has_text=first).count() == 0
    keys = {rows.nth(i).get_attribute("data-key") for i in range(rows.count())}
    assert keys == {key}
    console.shot("tail-filtered")
    console.assert_clean()


def test_mail_page_shows_the_welcome_mail(system: SystemThread, console: Console) -> None:
    email = f"mail-{uuid.uuid4().hex[:8]}@e2e.example"
    with httpx.Client(timeout=15) as client:
        r = client.post(
            system.url("users") + "/users",
            headers=login(client, system),
            json={"email": email, "name": "Mia Mail", "password": f"pw-{uuid.uuid4().hex}",
                  "role": "employee"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        wait_for(
            lambda: [
                m for m in client.get(system.hub + "/mail").json() if email in m["recipients"]
            ],
            30,
            "the welcome mail in the SMTP sink",
        )
    page = console.open("/mail")
    mail = page.locator("article.mail").filter(has_text=email)
    expect(mail).to_have_count(1)
    expect(mail.locator(".subject")).to_contain_text(re.compile("welcome", re.IGNORECASE))
    console.shot("mail")
    console.assert_clean()


def _letters(system: SystemThread, marker: str) -> list[DeadLetter]:
    async def read() -> list[DeadLetter]:
        found = await read_dead_letters(
            "notification-dlq",
            settings=system.system.kafka,
            filters=DeadLetterFilter(tenant_id=TENANT),
            settle_s=0.5,
        )
        return [d for d in found if marker.encode() in (d.value or b"")]

    result: list[DeadLetter] = system.call(read())
    return result


@pytest.mark.timeout(240)
def test_replay_from_the_console_reaches_the_consumer(
    system: SystemThread, console: Console
) -> None:
    """A notification with an unknown template is dead-lettered by the notification
    service; Replay on the console sends it back to notification-queue, where the same
    consumer handles it again (and, the template still unknown, dead-letters it again:
    the new dead letter says it is replay 1 of the one we clicked)."""
    marker = uuid.uuid4().hex[:8]
    recipient = f"replay-{marker}@e2e.example"
    event = create_notification_event(
        "e2e-console", recipient, f"poison {marker}", f"no-such-template-{marker}", tenant_id=TENANT
    )

    async def send() -> None:
        async with KafkaProducer(settings=system.system.kafka) as producer:
            await producer.send_event("notification-queue", event)

    system.call(send())
    (letter,) = wait_for(
        lambda: _letters(system, marker), 60, "the poison notification dead-lettered"
    )
    assert letter.replay_count == 0
    with httpx.Client(timeout=15) as client:
        auth = login(client, system)

        def logged() -> list[dict[str, Any]]:
            r = client.get(
                system.url("notifications") + "/notifications",
                headers=auth,
                params={"recipient": recipient},
            )
            return list(r.json()["items"])

        (before,) = wait_for(logged, 30, "the failed delivery in the delivery log")

        page = console.open(f"/dead-letters?topic=notification-dlq&tenant={TENANT}")
        page.locator("#f-error").fill("DeadLetter")
        page.locator("#f-event-type").fill(str(event.event_type))
        page.locator("#f-apply").click()
        page.wait_for_url(re.compile(r"error=DeadLetter"))
        rows = page.locator("#dead-letters tbody tr[data-ref]")
        expect(rows.first).to_be_visible()
        for i in range(rows.count()):
            expect(rows.nth(i).locator("td").nth(3)).to_have_text(TENANT)
        row = rows.filter(has_text=f"no-such-template-{marker}")
        expect(row).to_have_count(1)
        assert row.get_attribute("data-ref") == letter.ref
        console.shot("dead-letters")

        row.locator("a").first.click()
        expect(page.locator("#dead-letter")).to_have_attribute("data-ref", letter.ref)
        expect(page.locator("#value")).to_contain_text(marker)
        console.shot("dead-letter")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("button.replay").click()
        result = page.locator("output.replay-result")
        expect(result).to_contain_text("replayed to notification-queue", timeout=WAIT_MS)
        console.shot("dead-letter-replayed")

        # the notification consumer handled the replayed record: it logged the delivery
        # again and dead-lettered it again, as replay 1 of the letter we clicked
        def replayed() -> list[DeadLetter]:
            return [d for d in _letters(system, marker) if d.replay_count == 1]

        (again,) = wait_for(replayed, 60, "the replayed record handled by the consumer")
        assert dict(again.headers)[REPLAY_FROM].decode() == letter.ref
        assert again.consumer_group == letter.consumer_group
        assert again.event_id == letter.event_id
        (after,) = logged()
        assert after["updated_at"] > before["updated_at"]

    page = console.open(f"/dead-letters?topic=notification-dlq&tenant={TENANT}")
    replays = page.locator(f'tr[data-ref="{again.ref}"] td.replays')
    expect(replays).to_have_text("1")
    console.assert_clean()


def test_catalog_lists_the_event_types(system: SystemThread, console: Console) -> None:
    from hrms.asyncapi import system_document

    messages = system_document(system.system.settings)["components"]["messages"]
    page = console.open("/catalog")
    rows = page.locator("#catalog tbody tr")
    expect(rows).to_have_count(len(messages))
    for event_type in ("employee.created", "user.created", "leave.approved", "inventory.low_stock"):
        row = rows.filter(has=page.locator(f'td a:text-is("{event_type}")'))
        expect(row.first).to_be_visible()
    created = page.locator('tr[data-event-type="employee.created"]').first
    expect(created).to_contain_text("employee-queue")
    expect(created).to_contain_text("employees")  # sent by the employees service
    expect(page.locator("section.message").first.locator("table.fields")).to_contain_text("data.")
    console.shot("catalog")
    console.assert_clean()


def test_every_page_loads_without_errors(system: SystemThread, console: Console) -> None:
    for path in ("/", "/topics", "/groups", "/dead-letters", "/tail", "/catalog", "/mail"):
        page = console.open(path)
        expect(page.locator("header nav a.current")).to_have_count(1)
        if path == "/tail":  # left only once its reader runs, so every run is the same
            tail = page.locator("#tail")
            expect(tail).to_have_attribute("data-state", "following", timeout=WAIT_MS)
    console.assert_clean()


# -- no broker, or a broker that never answers: an error message, never a hang or a 500 --


@pytest.mark.parametrize("broker", ["down", "silent"])
def test_a_down_or_silent_broker_gives_an_error_page(broker: str) -> None:
    # in a thread of its own: Playwright's sync API keeps an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _error_pages(broker)).result(timeout=60)


async def _error_pages(broker: str) -> None:
    import socket

    from eventbus.settings import load_settings
    from hrms.console import PREFIX
    from hrms.console import Console as WebConsole

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if broker == "silent":  # connections are accepted by the kernel, never answered
            listener.listen(16)
        else:
            listener.close()
        kafka = load_settings(bootstrap_servers=f"127.0.0.1:{port}", connect_timeout_s=5.0)
        web = WebConsole(
            kafka,
            services=lambda: {"<script>alert(1)</script>": "http://127.0.0.1:9"},
            timeout_s=1.5,
        )
        app = FastAPI()
        app.include_router(web.router(), prefix=PREFIX)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                for path in ("/", "/topics", "/groups", "/dead-letters", "/tail"):
                    started = time.monotonic()
                    r = await client.get(PREFIX + path)
                    assert r.status_code == 503, (path, r.text)
                    assert 'id="error"' in r.text
                    assert f"127.0.0.1:{port}" in r.text
                    assert time.monotonic() - started < 10, path
                api = await client.get(PREFIX + "/api/groups")
                assert api.status_code == 503
                assert "127.0.0.1" in api.json()["error"]
                overview = await client.get(PREFIX + "/")
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in overview.text  # escaped
                assert "<script>alert" not in overview.text
                replay = await client.post(PREFIX + "/api/dead-letters/x-dlq/0/0/replay")
                assert replay.status_code == 403  # without X-Console: 1
                assert (await client.get(PREFIX + "/mail")).status_code == 404  # no sink
        finally:
            await web.aclose()
