"""Tailing topics: records as events, filtered, from a chosen start, optionally following."""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventbus import headers as h
from eventbus._codec import decode_json, header_value, normalise
from eventbus._transport.base import Record, TopicPartition
from eventbus.errors import ConfigurationError, EventBusError
from eventbus.ops._admin import Admin
from eventbus.redrive import _header_text


@dataclass(frozen=True, slots=True)
class EventView:
    """A record seen as an event; fields are None where the record does not say.

    ``event_type``, ``event_id`` and ``tenant_id`` come from the headers, else from the
    envelope (any shape :func:`eventbus.normalise` reads); ``data`` is the envelope's
    ``data``, or the whole value when it is not an envelope.
    """

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: str | None
    event_type: str | None
    event_id: str | None
    tenant_id: str | None
    data: Any
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, record: Record) -> EventView:
        """View ``record`` as an event."""
        envelope: dict[str, Any] = {}
        data: Any = None
        if record.value:
            try:
                raw = decode_json(record.value)
            except EventBusError:
                data = record.value.decode("utf-8", "replace")
            else:
                try:
                    envelope = normalise(raw)
                    data = envelope.get("data")
                except EventBusError:
                    data = raw

        def field(header: str, name: str) -> str | None:
            value = header_value(record.headers, header) or envelope.get(name)
            return None if value is None or value == "" else str(value)

        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
            key=None if record.key is None else record.key.decode("utf-8", "replace"),
            event_type=field(h.EVENT_TYPE, "event_type"),
            event_id=field(h.EVENT_ID, "event_id"),
            tenant_id=field(h.TENANT_ID, "tenant_id"),
            data=data,
            headers=record.headers,
        )

    def preview(self, width: int = 80) -> str:
        """The data as compact JSON without its null fields, cut to ``width`` characters."""
        data = self.data
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if v is not None}
        text = (
            data
            if isinstance(data, str)
            else json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
        )
        return text if len(text) <= width else text[: max(0, width - 1)] + "…"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (headers decoded as UTF-8, else base64)."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "key": self.key,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "headers": {k: _header_text(v) for k, v in self.headers},
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to keep; every given criterion must hold.

    Attributes:
        event_type: shell-style pattern (``leave.*``) the event type must match.
        tenant_id: the tenant id, exactly.
        key: the record key (decoded as UTF-8), exactly.
        since: keep records whose time is at or after this.
    """

    event_type: str | None = None
    tenant_id: str | None = None
    key: str | None = None
    since: datetime | None = None

    def matches(self, view: EventView) -> bool:
        """Whether ``view`` passes every criterion."""
        return (
            (
                self.event_type is None
                or (
                    view.event_type is not None
                    and fnmatch.fnmatchcase(view.event_type, self.event_type)
                )
            )
            and (self.tenant_id is None or view.tenant_id == self.tenant_id)
            and (self.key is None or view.key == self.key)
            and (self.since is None or view.timestamp >= self.since)
        )


@dataclass(frozen=True, slots=True)
class TailStart:
    """Where a tail starts and, unless it follows, where it stops.

    Attributes:
        starts: the first offset read in each partition.
        ends: each partition's end offset when the tail began.
    """

    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]

    @property
    def backlog(self) -> int:
        """Offsets between the starts and the ends."""
        return sum(max(0, self.ends[tp] - o) for tp, o in self.starts.items())


async def tail(
    admin: Admin,
    topics: Sequence[str],
    *,
    from_beginning: bool = False,
    since: datetime | None = None,
    last: int | None = None,
    follow: bool = False,
    filters: EventFilter | None = None,
    limit: int | None = None,
    ready: Callable[[TailStart], None] | None = None,
    timeout_s: float = 60.0,
) -> AsyncGenerator[EventView, None]:
    """Yield the events of ``topics`` that pass ``filters``.

    Reading starts at the beginning (``from_beginning``), at the first record at or after
    ``since``, or ``last`` records before each partition's end (10 when none is given).
    Without ``follow`` it stops at the end offsets the partitions had when it began;
    with ``follow`` it waits for new records until cancelled. It stops after ``limit``
    events either way. Within a partition events come in offset order; each fetched batch
    is ordered by time across partitions. Reading uses manual assignment: no consumer
    group, no commits.

    Args:
        ready: called once the start and end offsets are known, before anything is read.

    Raises:
        UnknownTopicError: a topic does not exist.
        ConfigurationError: more than one start was given, or ``last``/``limit`` < 0.
    """
    if sum((from_beginning, since is not None, last is not None)) > 1:
        raise ConfigurationError("give one start: from the beginning, since a time, or the last N")
    if (last is not None and last < 0) or (limit is not None and limit < 0):
        raise ConfigurationError("--last and --limit must be zero or more")
    tps = [tp for topic in dict.fromkeys(topics) for tp in await admin.partitions(topic)]
    ends = await admin.end_offsets(tps)
    if from_beginning:
        starts = await admin.earliest_offsets(tps)
    elif since is not None:
        starts = await admin.offsets_at(tps, since)
        filters = _with_since(filters, since)
    else:
        earliest = await admin.earliest_offsets(tps)
        back = 10 if last is None else last
        starts = {tp: max(earliest[tp], ends[tp] - back) for tp in tps}
    if ready is not None:
        ready(TailStart(starts, ends))
    if limit == 0 or (not follow and all(starts[tp] >= ends[tp] for tp in tps)):
        return
    shown = 0
    async with admin.reader(starts) as reader:
        batches = reader.follow() if follow else reader.read_to(ends, timeout_s=timeout_s)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for record in sorted(batch, key=lambda r: (r.timestamp_ms, r.tp, r.offset)):
                    view = EventView.from_record(record)
                    if filters is not None and not filters.matches(view):
                        continue
                    yield view
                    shown += 1
                    if limit is not None and shown >= limit:
                        return


def _with_since(filters: EventFilter | None, since: datetime) -> EventFilter:
    base = filters or EventFilter()
    aware = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    return EventFilter(base.event_type, base.tenant_id, base.key, aware)
