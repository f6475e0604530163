"""A local SMTP sink (aiosmtpd) for development: every message is kept and can be read.

``hrms up`` starts one so the notification service sends real e-mail that a developer
can see: each message is stored as a file under ``<data dir>/mail/`` and listed by the
console's ``GET /mail``.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True, slots=True)
class Mail:
    """One received message."""

    message_id: str
    sender: str
    recipients: list[str]
    subject: str
    body: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        self._sink.store(envelope.mail_from or "", list(envelope.rcpt_tos), data)
        return "250 Message accepted for delivery"


class MailSink:
    """An SMTP server on ``host:port`` that keeps every message under ``directory``."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> None:
        """Start listening (aiosmtpd runs its own thread)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def store(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Keep one message (called by the SMTP handler)."""
        with self._lock:
            n = len(list(self.directory.glob("*.eml"))) + 1
            (self.directory / f"{n:06d}.eml").write_bytes(data)
            (self.directory / f"{n:06d}.json").write_text(
                json.dumps({"sender": sender, "recipients": recipients})
            )

    def messages(self) -> list[Mail]:
        """Every message received so far, oldest first."""
        out: list[Mail] = []
        for path in sorted(self.directory.glob("*.eml")):
            meta = json.loads(path.with_suffix(".json").read_text())
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body_part = (
                msg.get_body(preferencelist=("plain", "html")) if msg.is_multipart() else msg
            )
            body = body_part.get_content() if body_part is not None else ""
            out.append(
                Mail(
                    message_id=str(msg.get("Message-ID", "")),
                    sender=meta["sender"],
                    recipients=meta["recipients"],
                    subject=str(msg.get("Subject", "")),
                    body=str(body),
                )
            )
        return out
