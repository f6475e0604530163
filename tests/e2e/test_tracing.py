"""One trace id from an HTTP request to the e-mail it caused, exported over real OTLP/HTTP.

The services are configured only by the standard ``OTEL_*`` variables and export to a
small OTLP/HTTP receiver on loopback (protobuf, as a collector would receive it): the
request's SERVER span, the relay's PRODUCER span, the notification consumer's CONSUMER
span and its SMTP CLIENT span all carry the trace id the test sent in ``traceparent``,
and so does the e-mail the SMTP sink received.
"""

from __future__ import annotations

import email
import email.policy
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from eventbus._embedded import EmbeddedBroker
from tests.e2e.conftest import SystemThread, login, make_system, wait_for

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str


class Collector:
    """An OTLP/HTTP trace receiver on a free loopback port."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                collector.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def add(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for rs in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    found.append(
                        Span(
                            attrs.get("service.name", ""),
                            s.name,
                            KINDS.get(s.kind, str(s.kind)),
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                        )
                    )
        with self._lock:
            self.spans.extend(found)

    def of_trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()
        c.server.server_close()
        c.thread.join(10)


@pytest.mark.timeout(240)
def test_one_trace_id_from_the_request_to_the_mail(
    own_broker: EmbeddedBroker,
    tmp_path: Path,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    system = SystemThread(
        make_system(
            tmp_path / "hrms", own_broker.bootstrap_servers, services=("users", "notifications")
        )
    ).start()
    trace_id = secrets.token_hex(16)
    parent = secrets.token_hex(8)
    recipient = f"traced-{secrets.token_hex(3)}@e2e.example"
    try:
        with httpx.Client(timeout=15) as client:
            auth = login(client, system)
            r = client.post(
                system.url("users") + "/users",
                headers={**auth, "traceparent": f"00-{trace_id}-{parent}-01"},
                json={"email": recipient, "name": "Traced Person", "password": "pw-" + "x" * 12,
                      "role": "employee"},
            )  # fmt: skip
            assert r.status_code == 201, r.text

        def mailed() -> email.message.EmailMessage | None:
            assert system.system.mail is not None
            for path in sorted(system.system.mail.directory.glob("*.eml")):
                msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                if recipient in str(msg.get("To", "")):
                    return msg  # type: ignore[return-value]
            return None

        mail = wait_for(mailed, 90, "the welcome mail")
        assert str(mail["traceparent"]).split("-")[1] == trace_id, mail["traceparent"]

        def kinds() -> set[tuple[str, str, str]]:
            return {(s.service, s.kind, s.name) for s in collector.of_trace(trace_id)}

        wanted = {
            ("hrms-users", "SERVER", "POST /users"),
            ("hrms-users", "PRODUCER", "notification-queue publish"),
            ("hrms-notifications", "CONSUMER", "notification-queue process"),
            ("hrms-notifications", "CLIENT", "smtp send"),
        }
        wait_for(lambda: wanted <= kinds(), 30, f"the spans {wanted} (have {kinds()})")
        spans = {(s.kind, s.name): s for s in collector.of_trace(trace_id)}
        server = spans[("SERVER", "POST /users")]
        publish = spans[("PRODUCER", "notification-queue publish")]
        process = spans[("CONSUMER", "notification-queue process")]
        smtp = spans[("CLIENT", "smtp send")]
        assert server.parent_id == parent  # the request continued the caller's trace
        assert process.parent_id == publish.span_id  # the consumer continued the record's
        assert smtp.parent_id == process.span_id
        assert str(mail["traceparent"]).split("-")[2] == smtp.span_id
        # the outbox row kept the request's context: the relay's publish is in its trace
        ids = {s.span_id for s in collector.of_trace(trace_id)}
        assert publish.parent_id in ids
    finally:
        system.stop()
