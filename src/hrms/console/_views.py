"""What each console page shows, as JSON-ready dicts: the work is eventbus.ops/redrive.

Every function here is bounded (see :class:`~hrms.console._broker.Broker`) and raises
:class:`~hrms.console._broker.ConsoleError` with a message for the page when the broker
cannot answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import httpx

from eventbus.errors import ConfigurationError
from eventbus.ops import Admin, consumer_lag, describe_topics
from eventbus.redrive import (
    DeadLetter,
    DeadLetterFilter,
    read_dead_letters,
    replay,
    select_offsets,
)
from hrms.console._broker import Broker, ConsoleError

DLQ_SUFFIX = "-dlq"
_READY_TIMEOUT_S = 3.0


def is_dlq(topic: str) -> bool:
    """Whether ``topic`` is a dead-letter topic (``<domain>-dlq``, the catalog's naming)."""
    return topic.endswith(DLQ_SUFFIX)


async def cluster(broker: Broker) -> dict[str, Any]:
    """The broker's address and kind, and how many topics and groups it has."""

    async def work(admin: Admin) -> dict[str, Any]:
        topics = await admin.topics()
        groups = await admin.client.list_groups()
        return {
            "topics": len(topics),
            "partitions": sum(topics.values()),
            "dead_letter_topics": sum(1 for t in topics if is_dlq(t)),
            "groups": len(groups),
        }

    s = broker.settings
    counts = await broker.run(work)
    flags = dataclasses.asdict(s.features)
    return {
        "servers": s.servers.split(","),
        "profile": s.features.name,
        "transport": s.transport,
        "features": {k: v for k, v in flags.items() if isinstance(v, bool)},
        **counts,
    }


async def health(services: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each service's ``/ready`` answer (status ``unreachable`` when it does not answer)."""

    async def one(client: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
        try:
            r = await client.get(f"{url}/ready")
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            return {
                "service": name,
                "url": url,
                "ready": False,
                "status": "unreachable",
                "detail": f"{type(exc).__name__}: {exc}",
            }
        detail = {k: v for k, v in body.items() if k not in ("status", "service")}
        return {
            "service": name,
            "url": url,
            "ready": r.status_code == 200,
            "status": body.get("status", str(r.status_code)),
            "detail": detail,
        }

    async with httpx.AsyncClient(timeout=_READY_TIMEOUT_S) as client:
        return list(await asyncio.gather(*(one(client, n, u) for n, u in services.items())))


async def topics(broker: Broker) -> list[dict[str, Any]]:
    """Every topic with its partitions' earliest and end offsets, sorted by name."""

    async def work(admin: Admin) -> list[dict[str, Any]]:
        infos = await describe_topics(admin, sorted(await admin.topics()))
        return [
            {**info.to_dict(), "records": info.records, "dlq": is_dlq(info.name)} for info in infos
        ]

    return await broker.run(work)


async def groups(broker: Broker) -> list[dict[str, Any]]:
    """Every consumer group: state, members (client ids), committed offset and lag per
    partition."""

    async def work(admin: Admin) -> list[dict[str, Any]]:
        lags = await consumer_lag(admin)
        described = await admin.client.describe_groups([g.group_id for g in lags])
        out = []
        for g in lags:
            found = described.get(g.group_id)
            members = sorted({m.client_id or m.member_id for m in found.members}) if found else []
            out.append({**g.to_dict(), "clients": members})
        return sorted(out, key=lambda d: str(d["group"]))

    return await broker.run(work)


def dead_letter_filter(
    *, event_type: str | None, tenant: str | None, error: str | None
) -> DeadLetterFilter:
    """The redrive filter of the page's fields; an error without wildcards matches any
    exception type containing it."""
    if error and not any(c in error for c in "*?["):
        error = f"*{error}*"
    return DeadLetterFilter(
        event_type=event_type or None, tenant_id=tenant or None, exception_type=error or None
    )


async def dead_letters(
    broker: Broker, topic: str, filters: DeadLetterFilter | None = None
) -> list[DeadLetter]:
    """The dead letters of ``topic`` that pass ``filters``, newest first."""
    letters = await broker.call(
        lambda: read_dead_letters(topic, settings=broker.settings, filters=filters, settle_s=0.5)
    )
    return sorted(letters, key=lambda d: (d.failed_at, d.dlq_offset), reverse=True)


async def dead_letter(broker: Broker, topic: str, partition: int, offset: int) -> DeadLetter:
    """The dead letter at ``topic`` ``partition`` ``offset``.

    Raises:
        ConsoleError: there is none there (or the broker did not answer).
    """
    letters = await dead_letters(broker, topic)
    try:
        return select_offsets(letters, [(partition, offset)])[0]
    except ConfigurationError as exc:
        raise ConsoleError(
            f"no dead letter at {topic} partition {partition} offset {offset}"
        ) from exc


async def replay_one(broker: Broker, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """Send the dead letter at ``topic`` ``partition`` ``offset`` back to its original
    topic; the outcome as a dict (``ok``, ``topic``, ``partition``, ``offset``, ``error``)."""
    letter = await dead_letter(broker, topic, partition, offset)
    result = await broker.call(lambda: replay([letter], settings=broker.settings))
    outcome = result.outcomes[0]
    meta = outcome.metadata
    return {
        "ok": outcome.ok,
        "dead_letter": letter.ref,
        "topic": outcome.topic,
        "partition": None if meta is None else meta.partition,
        "offset": None if meta is None else meta.offset,
        "error": outcome.error,
    }
