"""AsyncAPI 3.0.0 documents of an event system: its topics, events and who sends or reads them.

:func:`build_document` turns an :class:`~eventbus.EventRegistry`, the topics (as
:class:`ChannelSpec`: a :class:`~eventbus.TopicSpec` plus the event types it carries and
its dead-letter topic, retry tiers and priority lanes) and the declared operations
(:class:`OperationSpec`: which application sends or receives which topics, in which
consumer group) into an AsyncAPI 3.0.0 document, a plain ``dict``:

* one channel per topic, dead-letter topic, retry tier topic and lane topic, with the
  Kafka channel binding (partitions, replicas, ``retention.ms`` and other configs);
* one message per registered event type *and version*: ``payload`` is the envelope
  model's JSON Schema (its ``$defs`` under ``components/schemas``), ``headers`` the
  Kafka headers of :mod:`eventbus.headers`, the Kafka message binding's ``key`` the
  payload's aggregate id; dead-letter and retry variants add their ``dlq.*`` and
  ``retry.*`` headers;
* one operation per application, action and channel; a receiving one has the Kafka
  operation binding ``groupId``, and sends to the dead-letter (and retry) topics.

:func:`render_html` renders a self-contained page (no external URL) and :func:`router`
serves both (``GET /asyncapi`` and ``GET /asyncapi.json``); ``eventbus docs --app
module:attr`` writes them. Example::

    doc = build_document(
        registry,
        [ChannelSpec(TopicSpec("user-queue", 3, 3), ("user.created",),
                     dead_letter=TopicSpec("user-dlq", 1, 2))],
        [OperationSpec("mailer", "receive", ("user-queue",), group_id="mailer")],
        title="Users",
    )
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from eventbus._asyncapi_build import Builder
from eventbus._asyncapi_html import render_html
from eventbus._asyncapi_load import load_document
from eventbus._priority import PriorityLanes
from eventbus._registry import EventRegistry, Registration
from eventbus._retrytopics import RetryTopics
from eventbus._transport.base import TopicSpec

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = [
    "ASYNCAPI_VERSION",
    "ChannelSpec",
    "OperationSpec",
    "Registration",
    "build_document",
    "load_document",
    "render_html",
    "router",
]

ASYNCAPI_VERSION = "3.0.0"
"""The AsyncAPI version of the documents built here."""

Action = Literal["send", "receive"]


@dataclass(frozen=True)
class ChannelSpec:
    """A topic to document, with the topics that follow from it.

    Attributes:
        topic: the topic's name, partitions, replication and configs.
        event_types: the event types that travel on it; each registered version of
            each becomes one of its messages. Models registered for the topic itself
            (:meth:`EventRegistry.register` with ``topic=``) are added too.
        dead_letter: its dead-letter topic, if failed records go to one (several
            topics may share one).
        retry: its non-blocking retry tiers (one topic each), if its consumers use them.
        lanes: its priority lanes, if the topic is one of ``lanes.topics``.
        description: what the topic is for.
    """

    topic: TopicSpec
    event_types: tuple[str, ...] = ()
    dead_letter: TopicSpec | None = None
    retry: RetryTopics | None = None
    lanes: PriorityLanes | None = None
    description: str = ""


@dataclass(frozen=True)
class OperationSpec:
    """An application sending to or receiving from topics.

    Attributes:
        app: the application (service) name.
        action: ``"send"`` or ``"receive"``.
        topics: the topics (each a :class:`ChannelSpec`'s ``topic.name``).
        group_id: the consumer group of a receiving application (its Kafka binding).
        client_id: the Kafka client id, if fixed.
        event_types: only these event types' messages (all of the channel's when None).
        key: how the application keys its records, when it is not the default.
        description: what it does.
    """

    app: str
    action: Action
    topics: tuple[str, ...]
    group_id: str | None = None
    client_id: str | None = None
    event_types: tuple[str, ...] | None = None
    key: str | None = None
    description: str = ""


def build_document(
    registry: EventRegistry,
    channels: Sequence[ChannelSpec] = (),
    operations: Sequence[OperationSpec] = (),
    *,
    title: str = "Events",
    version: str = "1.0.0",
    description: str = "",
    servers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``channels`` and ``operations`` (see the module docs).

    Args:
        registry: the event models; every registration is documented as a message, also
            those of no channel (under ``components/messages``).
        channels: the topics.
        operations: who sends and receives; each names topics of ``channels``.
        title: ``info.title``.
        version: ``info.version``: the version of the system described.
        description: ``info.description`` (Markdown).
        servers: server name -> ``host:port`` (several, comma-separated: one server
            each); ``{"kafka": "localhost:9092"}`` by default.

    Raises:
        ConfigurationError: an operation names a topic no channel has.
    """
    builder = Builder(registry, servers or {"kafka": "localhost:9092"})
    for channel in channels:
        builder.add_channel(
            channel.topic,
            channel.event_types,
            channel.dead_letter,
            channel.retry,
            channel.lanes,
            channel.description,
        )
    for op in operations:
        builder.add_operation(
            op.app,
            op.action,
            op.topics,
            op.group_id,
            op.client_id,
            op.event_types,
            op.key,
            op.description,
        )
    return builder.document(title, version, description, ASYNCAPI_VERSION)


def router(
    document: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    *,
    path: str = "/asyncapi",
    tags: Sequence[str] = ("asyncapi",),
) -> APIRouter:
    """A FastAPI router serving the document: ``GET {path}`` (HTML) and ``{path}.json``.

    Args:
        document: the document, or a function building it (called once, on the first
            request, so that an app starts without building it).
        path: where the page is served.
        tags: the routes' OpenAPI tags.
    """
    from fastapi import APIRouter
    from fastapi.responses import HTMLResponse, JSONResponse

    @functools.cache
    def current() -> Mapping[str, Any]:
        return document() if callable(document) else document

    @functools.cache
    def page() -> str:
        return render_html(current())

    api = APIRouter(tags=list(tags))

    @api.get(path, response_class=HTMLResponse, summary="The AsyncAPI document, rendered")
    async def asyncapi_html() -> HTMLResponse:
        return HTMLResponse(page())

    @api.get(f"{path}.json", summary="The AsyncAPI 3.0.0 document")
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(dict(current()))

    return api
