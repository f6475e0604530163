"""Live tails for the browser: a reader per open tail page, polled for new events.

A tail page opens a session (``POST /console/api/tail``); the session runs
:func:`eventbus.ops.tail` with ``follow=True`` (manual assignment: no consumer group, no
commits) in a task and keeps its latest events in a ring buffer; the page polls for the
events after the last one it has. A session nobody polled for ``idle_s`` is closed, and
every session is closed when the hub stops, so no reader outlives its page for long and
no request is held open (the hub's shutdown never waits for a browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eventbus.ops import Admin, EventFilter, tail
from eventbus.settings import KafkaSettings

logger = logging.getLogger("hrms.console")

_KEEP = 500
_IDLE_S = 30.0
_MAX_SESSIONS = 16
_STOP_S = 5.0


@dataclass
class TailSession:
    """One open tail: what it reads, the events it kept, and how it ended (if it did)."""

    id: str
    topics: tuple[str, ...]
    filters: EventFilter
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_KEEP))
    seq: int = 0
    error: str | None = None
    ready: bool = False
    polled_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None

    def after(self, seq: int) -> list[dict[str, Any]]:
        """The kept events numbered above ``seq``, oldest first."""
        self.polled_at = time.monotonic()
        return [e for e in self.events if e["seq"] > seq]


class Tails:
    """The open tail sessions of one hub.

    Args:
        settings: where the cluster is.
        last: how many records before each partition's end a new tail starts with.
        idle_s: a session not polled for this long is closed.
    """

    def __init__(self, settings: KafkaSettings, last: int = 20, idle_s: float = _IDLE_S) -> None:
        self.settings = settings
        self.last = last
        self.idle_s = idle_s
        self.sessions: dict[str, TailSession] = {}

    async def open(self, topics: Sequence[str], filters: EventFilter) -> TailSession:
        """Start a session reading ``topics`` (polled with :meth:`get`)."""
        await self.reap()
        while len(self.sessions) >= _MAX_SESSIONS:  # the oldest makes room
            await self.close(min(self.sessions.values(), key=lambda s: s.polled_at).id)
        session = TailSession(uuid.uuid4().hex, tuple(topics), filters)
        session.task = asyncio.create_task(self._run(session), name=f"console-tail-{session.id}")
        self.sessions[session.id] = session
        return session

    def get(self, session_id: str) -> TailSession | None:
        """The open session ``session_id``, if any."""
        return self.sessions.get(session_id)

    async def _run(self, session: TailSession) -> None:
        def started(_: object) -> None:
            session.ready = True

        admin = Admin(self.settings)
        try:
            await admin.start()
            async for view in tail(
                admin,
                session.topics,
                last=self.last,
                follow=True,
                filters=session.filters,
                ready=started,
            ):
                session.seq += 1
                session.events.append({"seq": session.seq, **view.to_dict()})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - shown on the page; the tail has ended
            logger.warning("console tail %s ended: %s: %s", session.id, type(exc).__name__, exc)
            session.error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_S):
                    await admin.stop()

    async def close(self, session_id: str) -> None:
        """Stop session ``session_id`` (nothing if it is not open)."""
        session = self.sessions.pop(session_id, None)
        if session is not None and session.task is not None:
            session.task.cancel()
            # bounded: a client stuck in its own shutdown must not hold up the hub's
            done, _ = await asyncio.wait({session.task}, timeout=_STOP_S)
            if not done:
                logger.warning("console tail %s did not stop within %g s", session_id, _STOP_S)

    async def reap(self) -> None:
        """Close the sessions nobody polled for ``idle_s``."""
        now = time.monotonic()
        for sid in [s.id for s in self.sessions.values() if now - s.polled_at > self.idle_s]:
            await self.close(sid)

    async def close_all(self) -> None:
        """Close every session (the hub is stopping)."""
        for sid in list(self.sessions):
            await self.close(sid)
