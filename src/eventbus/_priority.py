"""Priority lanes: one topic per priority level, read in weighted turns.

A logical topic such as ``inventory-events`` gets a *lane topic* per priority that has a
weight: ``inventory-events.critical``, ``inventory-events.high``, ``inventory-events.low``,
and the logical topic itself for the base lane (``normal``). A producer configured with
the lanes writes each event to its priority's lane topic, keeping the key; a consumer
configured with them reads every lane and, when several lanes have records waiting,
hands them to the handlers in proportion to the lanes' weights (see
:mod:`eventbus._scheduler`), so CRITICAL and HIGH events overtake a backlog of lower ones
and LOW still gets its share.

Order: records of one key stay in order *within a lane* (same topic, same partition).
Events of one key with different priorities travel in different topics, so their
relative order is not kept: a CRITICAL event overtakes the key's earlier LOW ones, which
is the point of the lanes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from eventbus._envelope import Priority
from eventbus._transport.base import AdminTransport, TopicSpec
from eventbus.errors import ConfigurationError

DEFAULT_WEIGHTS: Mapping[Priority, int] = MappingProxyType(
    {Priority.CRITICAL: 8, Priority.HIGH: 4, Priority.NORMAL: 2, Priority.LOW: 1}
)


class PriorityLanes:
    """Which topics have priority lanes, how lane topics are named and weighted.

    Give the same value to every producer and consumer of those topics::

        lanes = PriorityLanes(topics={"inventory-events"})
        producer = KafkaProducer(..., priority_lanes=lanes)   # routes by event.priority
        consumer = KafkaConsumer(..., topics=["inventory-events"], priority_lanes=lanes)

    Args:
        topics: the logical topics that have lanes. Other topics are untouched.
        weights: a lane per listed priority and its share of the consumer's turns when
            several lanes have records waiting (default critical 8, high 4, normal 2,
            low 1: with a CRITICAL and a LOW backlog, 8 of every 9 records handled are
            CRITICAL, and LOW never starves). A priority without a weight travels in
            the lane of the nearest listed one, the lower on a tie (MEDIUM with NORMAL
            by default).
        base: the priority whose lane is the logical topic itself. Records written
            there without lanes (another producer, a replay, a tool) are read as this
            priority.
        separator: lane topic = ``f"{topic}{separator}{priority}"``, e.g.
            ``inventory-events.critical``.
        buffer_s: how much work a consumer keeps buffered per lane, in seconds at its
            measured handling rate (at least 500 records). A lane holding more has its
            partitions paused, and they are resumed when it is down to 60 %: enough to
            keep the handlers busy while the client's next fetch (up to its 500 ms fetch
            wait) comes back. The buffer is what lets a CRITICAL record fetched later be
            picked before the LOW ones already there.
        max_buffered: at most this many records buffered per lane, whatever the rate
            (bounds memory; also the buffer before the first rate is measured).
        recheck_s: while records are buffered, the consumer asks its client for newly
            fetched records at least this often, so a CRITICAL record arriving during
            a backlog waits about this long plus the record in hand, not the backlog.
        partitions: partitions of lane topics created for a logical topic that does not
            exist yet; the lanes of an existing topic get its partition count.

    Raises:
        ConfigurationError: no topic, a weight below 1, a base lane without a weight,
            or a lane topic name that is also one of ``topics``.
    """

    __slots__ = (
        "_routes",
        "_weights",
        "base",
        "buffer_s",
        "max_buffered",
        "partitions",
        "recheck_s",
        "separator",
        "topics",
    )

    def __init__(
        self,
        topics: Iterable[str] | str,
        weights: Mapping[Priority, int] | Mapping[str, int] | None = None,
        *,
        base: Priority | str = Priority.NORMAL,
        separator: str = ".",
        buffer_s: float = 1.0,
        max_buffered: int = 20_000,
        recheck_s: float = 0.002,
        partitions: int = 3,
    ) -> None:
        names = frozenset((topics,) if isinstance(topics, str) else topics)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise ConfigurationError("PriorityLanes needs at least one topic name")
        try:
            given: Mapping[Any, int] = DEFAULT_WEIGHTS if weights is None else weights
            table = {Priority(p): int(w) for p, w in given.items()}
            base_priority = Priority(base)
        except ValueError as exc:
            raise ConfigurationError(f"PriorityLanes: {exc}") from exc
        if not table or any(w < 1 for w in table.values()):
            raise ConfigurationError("PriorityLanes.weights must be positive integers")
        if base_priority not in table:
            raise ConfigurationError(f"PriorityLanes.base {base_priority} has no weight")
        if not separator or buffer_s <= 0 or max_buffered < 2 or recheck_s <= 0:
            raise ConfigurationError(
                "PriorityLanes needs a separator, buffer_s > 0, max_buffered >= 2 and recheck_s > 0"
            )
        if partitions < 1:
            raise ConfigurationError("PriorityLanes.partitions must be at least 1")
        self.topics: frozenset[str] = names
        self._weights = dict(sorted(table.items(), key=lambda kv: -kv[0].rank))
        self.base: Priority = base_priority
        self.separator = separator
        self.buffer_s = buffer_s
        self.max_buffered = max_buffered
        self.recheck_s = recheck_s
        self.partitions = partitions
        clash = names & {
            self.lane_topic(t, p) for t in names for p in self._weights if p != base_priority
        }
        if clash:
            raise ConfigurationError(f"PriorityLanes: {sorted(clash)} are lanes of other topics")
        self._routes: dict[tuple[str, str], str] = {
            (t, p.value): self.lane_topic(t, self.lane_of(p)) for t in names for p in Priority
        }

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, name):
            raise AttributeError(f"PriorityLanes is immutable ({name})")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        weights = ", ".join(f"{p.value}={w}" for p, w in self._weights.items())
        return f"PriorityLanes(topics={sorted(self.topics)}, weights=({weights}))"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PriorityLanes):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (
            self.topics,
            tuple(self._weights.items()),
            self.base,
            self.separator,
            self.buffer_s,
            self.max_buffered,
            self.recheck_s,
            self.partitions,
        )

    @property
    def weights(self) -> dict[Priority, int]:
        """Lane priority -> weight, most urgent first."""
        return dict(self._weights)

    @property
    def lanes(self) -> tuple[Priority, ...]:
        """The lane priorities, most urgent first."""
        return tuple(self._weights)

    def lane_of(self, priority: Priority | str) -> Priority:
        """The lane an event of ``priority`` travels in."""
        p = Priority(priority)
        if p in self._weights:
            return p
        return min(self._weights, key=lambda lane: (abs(lane.rank - p.rank), lane.rank))

    def lane_topic(self, topic: str, lane: Priority) -> str:
        """The topic of ``lane`` for the logical ``topic`` (the base lane is ``topic``)."""
        if lane == self.base:
            return topic
        return f"{topic}{self.separator}{lane.value}"

    def topic_for(self, topic: str, priority: Priority | str) -> str:
        """Where an event of ``priority`` for ``topic`` is written (``topic`` if no lanes)."""
        route = self._routes.get((topic, priority))
        if route is not None:
            return route
        if topic not in self.topics:
            return topic
        return self.lane_topic(topic, self.lane_of(priority))  # ValueError: not a priority

    def lane_topics(self, topic: str) -> dict[Priority, str]:
        """Every lane topic of the logical ``topic``, most urgent first."""
        return {lane: self.lane_topic(topic, lane) for lane in self._weights}

    def lane_of_topic(self, name: str) -> tuple[str, Priority] | None:
        """``(logical topic, lane)`` of a lane topic (the base lane included), or None."""
        if name in self.topics:
            return name, self.base
        for lane in self._weights:
            suffix = f"{self.separator}{lane.value}"
            if name.endswith(suffix) and name.removesuffix(suffix) in self.topics:
                return name.removesuffix(suffix), lane
        return None

    def logical_topic(self, name: str) -> str:
        """The logical topic of a lane topic; any other name is returned unchanged."""
        found = self.lane_of_topic(name)
        return name if found is None else found[0]

    def specs(self, spec: TopicSpec) -> list[TopicSpec]:
        """``spec`` and one spec per lane topic of it, with the same settings.

        For :func:`eventbus.ensure_topics` or a topic catalog::

            await ensure_topics(lanes.specs(TopicSpec("inventory-events", 6)))
        """
        return [
            TopicSpec(name, spec.partitions, spec.replication_factor, dict(spec.configs))
            for name in self.lane_topics(spec.name).values()
        ]


async def ensure_lane_topics(
    admin: AdminTransport, lanes: PriorityLanes, topics: Iterable[str]
) -> list[str]:
    """Create the missing lane topics of ``topics`` (those with lanes); return the names.

    A lane topic gets its logical topic's partition count, or ``lanes.partitions`` when
    the logical topic does not exist yet (then it is created too, as the base lane).
    """
    laned = sorted(t for t in set(topics) if t in lanes.topics)
    if not laned:
        return []
    existing = await admin.list_topics()
    specs = [
        TopicSpec(name, existing.get(topic, lanes.partitions))
        for topic in laned
        for name in lanes.lane_topics(topic).values()
        if name not in existing
    ]
    return await admin.create_topics(specs) if specs else []
