"""The console's JSON API (``/console/api/...``): what the pages poll and post to.

A broker that is down or slow gives ``503 {"error": "..."}``, never a hung request.
Requests that change something (a replay) must carry ``X-Console: 1``: a custom header,
which a page on another site cannot send without the browser asking first (CORS), so a
link or form elsewhere cannot make the operator's browser replay dead letters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from eventbus.ops import EventFilter
from hrms.console import _views as views
from hrms.console._broker import ConsoleError

if TYPE_CHECKING:
    from hrms.console._console import Console

Text = Annotated[str | None, Query(max_length=200)]


class TailRequest(BaseModel):
    """What a tail reads: topics (every topic when empty) and filters."""

    topics: list[str] = Field(default_factory=list, max_length=200)
    event_type: str | None = Field(default=None, max_length=200)
    tenant: str | None = Field(default=None, max_length=200)
    key: str | None = Field(default=None, max_length=200)


def _error(exc: ConsoleError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=503)


def _require_console_header(x_console: str | None) -> None:
    if x_console != "1":
        raise HTTPException(403, "send the X-Console: 1 header (the console's pages do)")


def api_routes(console: Console) -> APIRouter:
    """The JSON routes of ``console``."""
    router = APIRouter()
    broker = console.broker

    @router.get("/overview", response_model=None)
    async def overview() -> dict[str, Any] | JSONResponse:
        services = await views.health(console.services())
        try:
            return {"cluster": await views.cluster(broker), "services": services}
        except ConsoleError as exc:
            return JSONResponse({"error": str(exc), "services": services}, status_code=503)

    @router.get("/topics", response_model=None)
    async def topics() -> list[dict[str, Any]] | JSONResponse:
        try:
            return await views.topics(broker)
        except ConsoleError as exc:
            return _error(exc)

    @router.get("/groups", response_model=None)
    async def groups() -> list[dict[str, Any]] | JSONResponse:
        try:
            return await views.groups(broker)
        except ConsoleError as exc:
            return _error(exc)

    @router.get("/dead-letters", response_model=None)
    async def dead_letters(
        topic: Annotated[str, Query(max_length=249)],
        event_type: Text = None,
        tenant: Text = None,
        error: Text = None,
    ) -> list[dict[str, Any]] | JSONResponse:
        filters = views.dead_letter_filter(event_type=event_type, tenant=tenant, error=error)
        try:
            return [d.to_dict() for d in await views.dead_letters(broker, topic, filters)]
        except ConsoleError as exc:
            return _error(exc)

    @router.get("/dead-letters/{topic}/{partition}/{offset}", response_model=None)
    async def dead_letter(topic: str, partition: int, offset: int) -> dict[str, Any] | JSONResponse:
        try:
            return (await views.dead_letter(broker, topic, partition, offset)).to_dict()
        except ConsoleError as exc:
            return _error(exc)

    @router.post("/dead-letters/{topic}/{partition}/{offset}/replay", response_model=None)
    async def replay(
        topic: str,
        partition: int,
        offset: int,
        x_console: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any] | JSONResponse:
        """Send the dead letter back to its original topic (via eventbus.redrive)."""
        _require_console_header(x_console)
        try:
            return await views.replay_one(broker, topic, partition, offset)
        except ConsoleError as exc:
            return _error(exc)

    @router.post("/tail", response_model=None)
    async def open_tail(
        body: TailRequest, x_console: Annotated[str | None, Header()] = None
    ) -> dict[str, Any] | JSONResponse:
        """Start a tail (no consumer group); poll ``GET /tail/{id}`` for its events."""
        _require_console_header(x_console)
        try:
            known = await broker.run(lambda admin: admin.topics())
        except ConsoleError as exc:
            return _error(exc)
        unknown = [t for t in body.topics if t not in known]
        if unknown:
            return JSONResponse({"error": f"no topic {', '.join(unknown)}"}, status_code=404)
        filters = EventFilter(body.event_type or None, body.tenant or None, body.key or None)
        session = await console.tails.open(body.topics or sorted(known), filters)
        return {"id": session.id, "topics": list(session.topics)}

    @router.get("/tail/{session_id}", response_model=None)
    async def poll_tail(
        session_id: str, after: Annotated[int, Query(ge=0)] = 0
    ) -> dict[str, Any] | JSONResponse:
        """The tail's events after number ``after``; 404 once the tail was closed."""
        await console.tails.reap()
        session = console.tails.get(session_id)
        if session is None:
            return JSONResponse({"error": "this tail was closed; reload the page"}, 404)
        return {"events": session.after(after), "ready": session.ready, "error": session.error}

    @router.post("/tail/{session_id}/close")
    async def close_tail(session_id: str) -> dict[str, bool]:
        """Stop a tail (the page does when it is left)."""
        await console.tails.close(session_id)
        return {"closed": True}

    @router.get("/mail")
    async def mail() -> list[dict[str, Any]]:
        """The mail the SMTP sink received, newest first (empty without a sink)."""
        sink = console.mail()
        return [m.to_dict() for m in reversed(sink.messages())] if sink else []

    return router
