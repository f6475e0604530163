"""AsyncAPI 3.0.0: the documents validate against the official schema and say what the code does."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from eventbus import (
    BaseEvent,
    EventPayload,
    EventRegistry,
    PriorityLanes,
    RetryTopics,
    TopicSpec,
    headers,
)
from eventbus.asyncapi import ChannelSpec, OperationSpec, build_document, render_html, router
from eventbus.errors import ConfigurationError
from hrms import asyncapi as hrms_asyncapi
from hrms.events import register_catalog
from hrms.routing import TopicRouter
from hrms.service.settings import HrmsSettings
from hrms.services import PORTS, build

SCHEMA = Path(__file__).parents[1] / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"
ENVELOPE_HEADERS = {
    headers.EVENT_TYPE,
    headers.EVENT_ID,
    headers.EVENT_VERSION,
    headers.CONTENT_TYPE,
    headers.SOURCE_SERVICE,
    headers.PRIORITY,
    headers.CORRELATION_ID,
    headers.CAUSATION_ID,
    headers.TENANT_ID,
    headers.TRACEPARENT,
    headers.TRACESTATE,
}
DLQ_HEADERS = {getattr(headers, n) for n in headers.__all__ if n.startswith("DLQ_")}
RETRY_HEADERS = {getattr(headers, n) for n in headers.__all__ if n.startswith("RETRY_")}


@cache
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text("utf-8")))


def assert_valid(doc: dict[str, Any]) -> None:
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, [(list(e.absolute_path), e.message[:300]) for e in errors[:5]]
    # the schema does not follow the document's own references: every one must resolve
    for ref in _refs(doc):
        node: Any = doc
        for raw in ref.removeprefix("#/").split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict), f"dangling $ref {ref}"
            assert part in node, f"dangling $ref {ref}"
            node = node[part]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def settings(layout: str) -> HrmsSettings:
    return HrmsSettings(KAFKA_TOPIC_LAYOUT=layout, HRMS_HEARTBEAT_INTERVAL=30)


@cache
def hrms_doc(layout: str) -> dict[str, Any]:
    return hrms_asyncapi.system_document(settings(layout))


def addresses(doc: dict[str, Any]) -> set[str]:
    return {c["address"] for c in doc["channels"].values()}


def test_the_schema_is_the_official_one_and_catches_mistakes() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    doc = json.loads(json.dumps(hrms_doc("domain")))
    doc["channels"]["user-queue"]["bindings"]["kafka"]["partitions"] = 0
    assert list(validator().iter_errors(doc))
    doc = json.loads(json.dumps(hrms_doc("domain")))
    doc["asyncapi"] = "2.6.0"
    assert list(validator().iter_errors(doc))


@pytest.mark.parametrize("layout", ["domain", "event-type"])
def test_the_hrms_document_validates_and_has_every_topic(layout: str) -> None:
    doc = hrms_doc(layout)
    assert_valid(doc)
    assert doc["asyncapi"] == "3.0.0"
    catalog = TopicRouter.from_settings(settings(layout)).catalog
    names = addresses(doc)
    assert {s.name for s in catalog.specs(layout)} <= names  # catalog, dead-letter topics
    dead_letters = {d.dead_letter.name for d in catalog.domains.values() if d.dead_letter}
    assert len(dead_letters) == len(catalog.domains)
    for name in dead_letters:
        channel = doc["channels"][name]
        assert channel["x-eventbus-kind"] == "dead-letter"
        assert channel["bindings"]["kafka"]["partitions"] == 1
        assert "dead-letter.raw" in channel["messages"]
    lanes = PriorityLanes(topics=set(settings(layout).priority_topics))
    for topic in lanes.topics & names:
        assert set(lanes.lane_topics(topic).values()) <= names
    user = doc["channels"]["user-queue"]["bindings"]["kafka"]
    assert user == {
        "topic": "user-queue",
        "partitions": 3,
        "replicas": 3,
        "topicConfiguration": {"retention.ms": 7 * 86_400_000},
        "bindingVersion": "0.5.0",
    }
    assert doc["servers"]["kafka"]["protocol"] == "kafka"


def test_the_layout_changes_the_channels() -> None:
    domain, by_type = addresses(hrms_doc("domain")), addresses(hrms_doc("event-type"))
    assert "user.created" not in domain
    assert {"user.created", "user.login", "attendance.checkin", "user-queue"} <= by_type
    domain_msgs = hrms_doc("domain")["channels"]["user-queue"]["messages"]
    assert "user.created.v1" in domain_msgs
    assert "user.created.v1" in hrms_doc("event-type")["channels"]["user.created"]["messages"]
    # under event-type, declared types leave the domain topic
    assert "user.created.v1" not in hrms_doc("event-type")["channels"]["user-queue"]["messages"]
    ops = hrms_doc("event-type")["operations"]
    assert "leaves.receive.employee.created" in ops
    assert "leaves.receive.employee-queue" in ops
    assert "leaves.receive.employee.created" not in hrms_doc("domain")["operations"]


def test_every_event_type_and_version_is_a_message_with_its_models_schema() -> None:
    doc = hrms_doc("domain")
    messages, schemas = doc["components"]["messages"], doc["components"].get("schemas", {})
    registrations = register_catalog().registrations()
    assert len(registrations) > 40
    for reg in registrations:
        mid = (
            f"{reg.topic}.any-type.v{reg.version}"
            if reg.event_type is None
            else f"{reg.event_type}.v{reg.version}"
        )
        message = messages[mid]
        expected = reg.model.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = expected.pop("$defs", {})
        assert message["payload"] == expected, mid
        for name, schema in defs.items():
            assert schemas[name] == schema, name
        props = message["headers"]["properties"]
        assert set(props) >= ENVELOPE_HEADERS
        if reg.event_type is not None:
            assert props[headers.EVENT_TYPE]["const"] == reg.event_type
        assert props[headers.EVENT_VERSION]["const"] == str(reg.version)
    key = messages["user.created.v1"]["bindings"]["kafka"]["key"]
    assert key["type"] == "string"
    assert "user_id" in key["description"]
    dead = messages["user.created.v1.dead-letter"]["headers"]
    assert set(dead["properties"]) >= DLQ_HEADERS
    assert set(dead["required"]) == DLQ_HEADERS - {headers.DLQ_ORIGINAL_KEY}


def test_consumers_and_producers_become_operations(tmp_path: Path) -> None:
    doc = hrms_doc("domain")
    ops = doc["operations"]
    for name in PORTS:
        service = build(name, settings=settings("domain").model_copy(update={"data_dir": tmp_path}))
        service.engine.sync_engine.dispose()
        for spec, topics in service.declared_consumers():
            for topic in topics:
                op = ops[f"{name}.receive.{topic}"]
                assert op["action"] == "receive"
                assert op["channel"] == {"$ref": f"#/channels/{topic}"}
                assert op["bindings"]["kafka"]["groupId"] == {
                    "type": "string",
                    "enum": [spec.group],
                }
                assert op["messages"]
                dlq = TopicRouter.from_settings(service.settings).dead_letter_topic(topic)
                assert ops[f"{name}.send.{dlq}"]["action"] == "send"
        beat = ops[f"{name}.send.system-events"]
        assert beat["messages"] == [{"$ref": "#/channels/system-events/messages/service.health.v1"}]
    sends = {o.split(".send.")[1] for o in ops if o.startswith("users.send.")}
    assert sends == {"user-queue", "audit-queue", "notification-queue", "system-events"}
    sends = {o.split(".send.")[1] for o in ops if o.startswith("audit.send.")}
    assert sends == {"audit-dlq", "system-events"}  # it only reads audit records


def test_versions_retry_tiers_and_lanes_in_a_library_document() -> None:
    class V1(EventPayload):
        aggregate_key = "order_id"
        order_id: int

    class Line(BaseModel):
        sku: str

    class V2(V1):
        lines: list[Line]

    class OrderV1(BaseEvent):
        data: V1

    class OrderV2(BaseEvent):
        data: V2

    registry = EventRegistry()
    registry.register(OrderV1, event_type="order.placed", version=1)
    registry.register(OrderV2, event_type="order.placed", version=2)
    retry = RetryTopics(delays=(1.0, 60.0))
    lanes = PriorityLanes(topics={"orders"})
    doc = build_document(
        registry,
        [
            ChannelSpec(
                TopicSpec("orders", 6, 3, {"cleanup.policy": "delete"}),
                ("order.placed",),
                dead_letter=TopicSpec("orders-dlq", 1, 3),
                retry=retry,
                lanes=lanes,
            )
        ],
        [
            OperationSpec("shop", "send", ("orders",)),
            OperationSpec("billing", "receive", ("orders",), group_id="billing"),
        ],
        title="Shop",
        servers={"prod": "k1:9092,k2:9092"},
    )
    assert_valid(doc)
    tiers = [retry.topic("orders", i) for i in range(2)]
    assert tiers == ["orders-retry-1s", "orders-retry-1m"]
    assert {*tiers, "orders", "orders-dlq", *lanes.lane_topics("orders").values()} == addresses(doc)
    messages = doc["components"]["messages"]
    assert {"order.placed.v1", "order.placed.v2"} <= set(messages)
    for version, model in ((1, OrderV1), (2, OrderV2)):
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = expected.pop("$defs")
        assert messages[f"order.placed.v{version}"]["payload"] == expected
        assert all(doc["components"]["schemas"][n] == d for n, d in defs.items())
    assert messages["order.placed.v1"]["payload"] != messages["order.placed.v2"]["payload"]
    assert "Line" in doc["components"]["schemas"]
    retried = messages["order.placed.v2.retry"]["headers"]
    assert set(retried["properties"]) >= RETRY_HEADERS | DLQ_HEADERS
    assert doc["channels"]["orders-retry-1s"]["messages"] == {
        "order.placed.v1.retry": {"$ref": "#/components/messages/order.placed.v1.retry"},
        "order.placed.v2.retry": {"$ref": "#/components/messages/order.placed.v2.retry"},
    }
    ops = doc["operations"]
    assert "billing.receive.orders-retry-1m" in ops
    assert "billing.send.orders-retry-1m" in ops
    assert "billing.send.orders-dlq" in ops
    assert "shop.send.orders.critical" in ops
    assert "shop.send.orders-dlq" not in ops
    assert [s["host"] for s in doc["servers"].values()] == ["k1:9092", "k2:9092"]
    with pytest.raises(ConfigurationError, match="no channel documents"):
        build_document(registry, [], [OperationSpec("x", "send", ("elsewhere",))])


def test_the_html_page_lists_every_channel_and_message_and_loads_nothing() -> None:
    doc = hrms_doc("event-type")
    page = render_html(doc)
    for cid in doc["channels"]:
        assert f'id="channel-{cid}"' in page
    for mid in doc["components"]["messages"]:
        assert f'id="message-{mid}"' in page
    for oid in doc["operations"]:
        assert f'id="operation-{oid}"' in page
    assert "<script" not in page
    assert "<link" not in page
    assert "http://" not in page
    assert "https://" not in page


async def test_the_router_serves_the_page_and_the_json_over_http() -> None:
    doc = hrms_doc("domain")
    app = FastAPI()
    app.include_router(router(doc))
    app.include_router(router(lambda: doc, path="/lazy"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/asyncapi")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'id="channel-user-queue"' in page.text
        served = await client.get("/asyncapi.json")
        assert served.status_code == 200
        assert served.json() == json.loads(json.dumps(doc))
        assert (await client.get("/lazy.json")).json() == served.json()


async def test_the_hrms_router_builds_the_system_document() -> None:
    app = FastAPI()
    app.include_router(hrms_asyncapi.router(settings("event-type")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        served = (await client.get("/asyncapi.json")).json()
    assert served == json.loads(json.dumps(hrms_doc("event-type")))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventbus.cli", "docs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HRMS_DATA_DIR": str(cwd / ".hrms")},
    )


def test_eventbus_docs_writes_a_valid_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    done = run_cli("--app", "hrms.asyncapi:system_document", "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    doc = json.loads(out.read_text("utf-8"))
    assert_valid(doc)
    assert "user-dlq" in doc["channels"]
    page = tmp_path / "asyncapi.html"
    done = run_cli("--app", "hrms.asyncapi:system_document", "-o", str(page), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert page.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert not (tmp_path / ".hrms").exists()  # building the services left nothing behind


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--app", "no_such_module:doc"], 1, "cannot import no_such_module"),
        (["--app", "hrms.asyncapi:nothing"], 1, "has no 'nothing'"),
        (["--app", "hrms.asyncapi"], 1, "expected module:attr"),
        (["--app", "hrms.topics:USER_TOPIC"], 1, "neither an AsyncAPI document"),
        (["--app", "hrms.asyncapi:router", "--format", "xml"], 2, "--format must be"),
        ([], 2, "--app MODULE:ATTR is required"),
    ],
)
def test_eventbus_docs_errors_are_one_line(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:")
    assert says in lines[0]
    assert "Traceback" not in done.stderr
