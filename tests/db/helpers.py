"""Small helpers shared by the outbox and inbox tests."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable

from eventbus import BaseEvent, KafkaProducer
from eventbus._codec import header_value
from eventbus._transport.base import Record
from eventbus.testing import MemoryBroker

TOPIC = "leave-queue"


def event(n: int, *, tenant: str | None = "acme", key: str | None = None) -> BaseEvent:
    """An event numbered ``n`` (the number travels in ``data`` to check order)."""
    data: dict[str, object] = {"n": n}
    if key is not None:
        data["key"] = key
    return BaseEvent(event_type="leave.approved", data=data, tenant_id=tenant)


def numbers(records: list[Record]) -> list[int]:
    """The ``n`` of each record's event, in log order."""
    return [int(json.loads(r.value or b"{}")["data"]["n"]) for r in records]


def by_key(records: list[Record]) -> dict[bytes | None, list[int]]:
    """Event numbers per key, in log order."""
    out: dict[bytes | None, list[int]] = defaultdict(list)
    for r, n in zip(records, numbers(records), strict=True):
        out[r.key].append(n)
    return dict(out)


def event_ids(records: list[Record]) -> list[str]:
    return [header_value(r.headers, "event_id") or "" for r in records]


def memory_producer(broker: MemoryBroker, **kw: object) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers="memory:0", broker_profile="memory", transport=broker, **kw
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll an async condition until it holds, or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.01)
