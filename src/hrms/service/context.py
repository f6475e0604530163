"""Correlation ids across HTTP and Kafka, and logs that name them without personal data."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CORRELATION_HEADER = "x-correlation-id"
correlation_id: ContextVar[str | None] = ContextVar("hrms_correlation_id", default=None)
"""The correlation id of the request or event being handled."""
causation_id: ContextVar[str | None] = ContextVar("hrms_causation_id", default=None)
"""The id of the event being handled (the cause of any event emitted now)."""
event_id: ContextVar[str | None] = ContextVar("hrms_event_id", default=None)
"""The id of the event being handled or last emitted, for the logs."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class CorrelationMiddleware:
    """Take ``X-Correlation-ID`` from the request (or make one) and echo it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", []):
            if name == CORRELATION_HEADER.encode():
                given = value.decode("latin-1")
                break
        cid = given if given and _SAFE_ID.match(given) else str(uuid.uuid4())
        token = correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.encode(), cid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}\b")


def redact(text: str) -> str:
    """Replace e-mail addresses and IP addresses in ``text``."""
    text = _EMAIL.sub("<email>", text)
    text = _IPV6.sub("<ip>", text)
    return _IPV4.sub("<ip>", text)


class ContextFilter(logging.Filter):
    """Add ``correlation_id`` and ``event_id`` to records and redact personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get() or "-"
        record.event_id = event_id.get() or "-"
        if record.args:
            try:
                record.msg = record.getMessage()
            except (TypeError, ValueError):
                return True
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [cid=%(correlation_id)s eid=%(event_id)s] %(message)s"
)


def configure_logging(level: int = logging.INFO, **kwargs: Any) -> None:
    """Log to stderr with correlation and event ids, e-mails and IPs redacted."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, lvl in kwargs.items():
        logging.getLogger(name.replace("__", ".")).setLevel(lvl)
