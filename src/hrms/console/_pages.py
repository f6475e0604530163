"""The console's HTML pages, rendered server-side from Jinja2 templates (autoescaped).

Each page shows its data as of the request; the groups and tail pages then update
themselves from the JSON API (``static/console.js``). A broker that is down or slow gives
the page with an error message (status 503) instead of its data.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from hrms.console import _views as views
from hrms.console._broker import ConsoleError
from hrms.console._catalog import event_catalog

if TYPE_CHECKING:
    from hrms.console._console import Console

Text = Annotated[str | None, Query(max_length=200)]

_STATIC = {"console.js": "text/javascript", "console.css": "text/css"}

_env = Environment(
    loader=PackageLoader("hrms.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates = Jinja2Templates(env=_env)


def page_routes(console: Console) -> APIRouter:
    """The HTML routes of ``console``."""
    router = APIRouter()
    broker = console.broker

    def render(request: Request, name: str, page: str, **context: Any) -> HTMLResponse:
        error = context.get("error")
        base = {"root": console.prefix, "page": page, "has_mail": console.mail() is not None,
                "servers": broker.settings.servers, "error": None}  # fmt: skip
        return _templates.TemplateResponse(
            request, name, {**base, **context}, status_code=503 if error else 200
        )

    @router.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> HTMLResponse:
        services = await views.health(console.services())
        try:
            cluster = await views.cluster(broker)
        except ConsoleError as exc:
            return render(request, "overview.html", "overview", cluster=None,
                          services=services, error=str(exc))  # fmt: skip
        return render(request, "overview.html", "overview", cluster=cluster, services=services)

    @router.get("/topics", response_class=HTMLResponse)
    async def topics(request: Request) -> HTMLResponse:
        try:
            found = await views.topics(broker)
        except ConsoleError as exc:
            return render(request, "topics.html", "topics", topics=[], error=str(exc))
        return render(request, "topics.html", "topics", topics=found)

    @router.get("/groups", response_class=HTMLResponse)
    async def groups(request: Request) -> HTMLResponse:
        try:
            found = await views.groups(broker)
        except ConsoleError as exc:
            return render(request, "groups.html", "groups", groups=[], error=str(exc))
        return render(request, "groups.html", "groups", groups=found)

    @router.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letters(
        request: Request,
        topic: Text = None,
        event_type: Text = None,
        tenant: Text = None,
        error: Text = None,
    ) -> HTMLResponse:
        form = {"topic": topic or "", "event_type": event_type or "", "tenant": tenant or "",
                "error": error or ""}  # fmt: skip
        try:
            dlqs = [t for t in await broker.run(lambda a: a.topics()) if views.is_dlq(t)]
            chosen = topic or (sorted(dlqs)[0] if dlqs else None)
            form["topic"] = chosen or ""
            filters = views.dead_letter_filter(event_type=event_type, tenant=tenant, error=error)
            letters = await views.dead_letters(broker, chosen, filters) if chosen else []
        except ConsoleError as exc:
            return render(request, "dead_letters.html", "dead-letters", dlqs=[], letters=[],
                          form=form, error=str(exc))  # fmt: skip
        return render(request, "dead_letters.html", "dead-letters", dlqs=sorted(dlqs),
                      letters=letters, form=form)  # fmt: skip

    @router.get("/dead-letters/{topic}/{partition}/{offset}", response_class=HTMLResponse)
    async def dead_letter(
        request: Request, topic: str, partition: int, offset: int
    ) -> HTMLResponse:
        try:
            letter = await views.dead_letter(broker, topic, partition, offset)
        except ConsoleError as exc:
            return render(request, "dead_letter.html", "dead-letters", letter=None,
                          error=str(exc))  # fmt: skip
        return render(request, "dead_letter.html", "dead-letters", letter=letter,
                      detail=letter.to_dict())  # fmt: skip

    @router.get("/tail", response_class=HTMLResponse)
    async def tail(
        request: Request,
        topic: Text = None,
        event_type: Text = None,
        tenant: Text = None,
        key: Text = None,
    ) -> HTMLResponse:
        form = {"topic": topic or "", "event_type": event_type or "", "tenant": tenant or "",
                "key": key or ""}  # fmt: skip
        try:
            known = sorted(await broker.run(lambda a: a.topics()))
        except ConsoleError as exc:
            return render(request, "tail.html", "tail", topics=[], form=form, error=str(exc))
        return render(request, "tail.html", "tail", topics=known, form=form)

    @router.get("/catalog", response_class=HTMLResponse)
    async def catalog(request: Request) -> HTMLResponse:
        try:
            document = await console.asyncapi()
        except Exception as exc:  # noqa: BLE001 - shown on the page instead of a 500
            return render(request, "catalog.html", "catalog", catalog=None,
                          error=f"the AsyncAPI document could not be built: {exc}")  # fmt: skip
        if document is None:
            return render(request, "catalog.html", "catalog", catalog=None,
                          error="this hub has no AsyncAPI document")  # fmt: skip
        return render(request, "catalog.html", "catalog", catalog=event_catalog(document))

    @router.get("/mail", response_class=HTMLResponse)
    async def mail(request: Request) -> HTMLResponse:
        sink = console.mail()
        if sink is None:
            raise HTTPException(404, "this system runs no SMTP sink (mail goes to SMTP_HOST)")
        return render(request, "mail.html", "mail", messages=list(reversed(sink.messages())))

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, "no such file")
        body = resources.files("hrms.console").joinpath("static", name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    return router
