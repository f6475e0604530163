"""The HRMS system's AsyncAPI 3.0.0 document, and a FastAPI router serving it.

:func:`system_document` describes every topic of ``hrms/catalog.toml`` under the
deployment's layout (``KAFKA_TOPIC_LAYOUT``), with its dead-letter topic and priority
lanes; every event type and version of the registry (:func:`hrms.events.register_catalog`
plus the inventory and sales events the services register); what each service reads
(:meth:`hrms.service.Service.declared_consumers`, with its consumer group) and writes (the
domain topics its code names, :mod:`hrms._producers`, and its ``service.health``
heartbeats). ``eventbus docs --app hrms.asyncapi:system_document`` writes it; ``hrms up``'s
hub can serve :func:`router`.

Example::

    from hrms.asyncapi import router, system_document

    doc = system_document(HrmsSettings(KAFKA_TOPIC_LAYOUT="event-type"))
    app.include_router(router())      # GET /asyncapi and /asyncapi.json
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventbus import BaseEvent, PriorityLanes
from eventbus.asyncapi import ChannelSpec, OperationSpec, build_document
from eventbus.asyncapi import router as asyncapi_router
from eventbus.catalog import Catalog
from hrms import topics as hrms_topics
from hrms._producers import written_topics
from hrms.events import register_catalog
from hrms.routing import TopicRouter
from hrms.service.runtime import Service
from hrms.service.settings import HrmsSettings

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["router", "system_document"]

_DESCRIPTION = """\
The HRMS/ERP services and the events they exchange over Kafka, generated from the topic
catalog (`hrms/catalog.toml`), the event registry and the services' declared consumers.
Every value is eventbus's JSON envelope; its key attributes are mirrored in headers.
Layout: `{layout}`."""


def _channels(
    catalog: Catalog, layout: str, event_types: list[str], lanes: PriorityLanes | None
) -> list[ChannelSpec]:
    """One channel per catalog topic of ``layout``, with its event types and dead letters."""
    out: list[ChannelSpec] = []
    for domain in catalog.domains.values():
        # registered types the catalog does not declare travel on their domain topic
        extra = [
            t
            for t in event_types
            if t not in domain.events and catalog.domain_of_type(t) is None and _home(t) == domain
        ]
        on_domain_topic = extra if layout == "event-type" else [*domain.events, *extra]
        out.append(
            ChannelSpec(
                domain.spec,
                tuple(on_domain_topic),
                dead_letter=domain.dead_letter,
                lanes=lanes,
                description=f"The `{domain.name}` domain's topic.",
            )
        )
        if layout == "event-type":
            out.extend(
                ChannelSpec(
                    spec,
                    (spec.name,),
                    dead_letter=domain.dead_letter,
                    lanes=lanes,
                    description=f"`{spec.name}` events (domain `{domain.name}`).",
                )
                for spec in domain.event_specs()
            )
    out.extend(ChannelSpec(spec, lanes=lanes) for spec in catalog.standalone.values())
    return out


def _home(event_type: str) -> Any:
    """The catalog domain of an undeclared event type, by its prefix (``hrms.topics``)."""
    try:
        topic = hrms_topics.topic_for(event_type)
    except ValueError:
        return None
    return hrms_topics.catalog().domain_of_topic(topic)


def _probe_settings(settings: HrmsSettings, data_dir: Path) -> HrmsSettings:
    """``settings`` with a throwaway data directory: building a service opens nothing."""
    return settings.model_copy(update={"data_dir": data_dir, "database_url": None})


def _operations(service: Service) -> list[OperationSpec]:
    ops = [
        OperationSpec(
            service.name,
            "receive",
            read,
            group_id=spec.group,
            client_id=service.kafka.client_id,
            description=(
                f"`{service.name}` consumes"
                + (f" in batches of up to {spec.batch_size}" if spec.batch_size else "")
                + (f" with concurrency {spec.concurrency}" if spec.concurrency > 1 else "")
                + "; failures go to the dead-letter topic."
            ),
        )
        for spec, read in service.declared_consumers()
    ]
    if service.producer is None:  # KAFKA_ENABLE_PRODUCER=false: nothing is published
        return ops
    for topic in written_topics(service.name, service.settings):
        ops.append(
            OperationSpec(
                service.name,
                "send",
                tuple(service.router.topics_for([topic])),
                client_id=service.kafka.client_id,
                key="the payload's aggregate id unless the service names another",
                description=f"`{service.name}` writes to `{topic}` through its outbox.",
            )
        )
    if service.settings.heartbeat_interval_s > 0:
        beat = service.router.route(BaseEvent(event_type="service.health"))
        ops.append(
            OperationSpec(
                service.name,
                "send",
                (beat,),
                client_id=service.kafka.client_id,
                event_types=("service.health",),
                description=(
                    f"A `service.health` heartbeat every "
                    f"{service.settings.heartbeat_interval_s:g} s."
                ),
            )
        )
    return ops


def system_document(settings: HrmsSettings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the whole HRMS (see the module docs).

    Args:
        settings: the deployment's settings (layout, renamed topics, priority topics,
            heartbeats); the environment when omitted. Services are built with a
            temporary data directory: no database is opened and nothing is left behind.

    Returns:
        The document, a JSON-ready ``dict``.
    """
    from hrms.services import PORTS, build

    settings = settings or HrmsSettings()
    operations: list[OperationSpec] = []
    servers = "localhost:9092"
    with tempfile.TemporaryDirectory(prefix="hrms-asyncapi-") as tmp:
        probe = _probe_settings(settings, Path(tmp))
        for name in PORTS:
            service = build(name, settings=probe)
            try:
                operations.extend(_operations(service))
                servers = service.kafka.servers
            finally:
                service.engine.sync_engine.dispose()
    registry = register_catalog()  # after the builds: they register their own events too
    router_ = TopicRouter.from_settings(settings)
    lanes = (
        PriorityLanes(topics=set(settings.priority_topics)) if settings.priority_topics else None
    )
    channels = _channels(router_.catalog, router_.layout, registry.event_types(), lanes)
    return build_document(
        registry,
        channels,
        operations,
        title="HRMS",
        version=_version(),
        description=_DESCRIPTION.format(layout=router_.layout),
        servers={"kafka": servers},
    )


def _version() -> str:
    try:
        return importlib.metadata.version("eventbus-hrms")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def router(settings: HrmsSettings | None = None) -> APIRouter:
    """A FastAPI router serving :func:`system_document`: ``GET /asyncapi`` (the rendered
    page) and ``GET /asyncapi.json``. The document is built on the first request."""
    return asyncapi_router(lambda: system_document(settings))
