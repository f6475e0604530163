"""How a consumer with priority lanes picks its next record.

Fetched records go into one buffer per lane; the handlers are fed from the buffers in
*weighted turns*: among the lanes that have records, each turn goes to the lane whose
credit is highest, then that lane pays for it (smooth weighted round-robin, as nginx
balances upstreams). With weights critical 8 and low 1 and both lanes backlogged, 8 of
every 9 turns are CRITICAL and every 9th is LOW, spread evenly, so LOW never starves; a
lane that runs empty forgets its credit, so a CRITICAL record arriving alone is taken
at the very next turn.

The client is asked for newly fetched records at least every ``recheck_s`` while the
buffers hold work, so a CRITICAL record that arrives during a LOW backlog is picked
after about ``recheck_s`` instead of after the backlog. Each poll takes everything the
client has fetched (up to the buffer size): records left in aiokafka's buffer would hold
back its next fetch, the one that brings the CRITICAL record, for up to 100 ms.

A lane whose buffer holds ``buffer_s`` of work at the measured handling rate (at least
500 records, at most ``max_buffered``) has its partitions paused: the client stops
fetching them and, with librdkafka, drops what it prefetched, so it cannot sit in front
of a CRITICAL record. It is resumed when 60 % is left. The margin matters: while a lane
is paused the client's fetch for the other lanes waits at the broker (up to 500 ms,
the clients' default fetch wait) and the resumed lane is fetched only after it returns.

Records of a partition stay in offset order (one partition belongs to one lane and a
buffer is first in, first out); records still buffered when a partition is revoked are
dropped, uncommitted, for its next owner.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from eventbus._envelope import Priority
from eventbus._priority import PriorityLanes
from eventbus._transport.base import ConsumerTransport, Record, TopicPartition

Poll = Callable[[int, int], Awaitable[list[Record]]]
"""``poll(timeout_ms, max_records)``: the consumer's guarded ``getmany``."""

MIN_BUFFERED = 500
RESUME_AT = 0.6


class HandlingRate:
    """Records handled per second of busy time (the time spent on records handed out).

    Idle time does not count, so a consumer that waits for a fetch does not talk itself
    into a smaller buffer. Updated about every ``window_s`` of busy time, smoothed.
    """

    def __init__(self, window_s: float = 0.05) -> None:
        self.per_s: float | None = None
        self._window_s = window_s
        self._count = 0
        self._busy_s = 0.0

    def observe(self, count: int, busy_s: float) -> None:
        """``count`` records were handled in ``busy_s`` seconds."""
        self._count += count
        self._busy_s += max(busy_s, 0.0)
        if self._busy_s < self._window_s:
            return
        rate = self._count / self._busy_s
        self.per_s = rate if self.per_s is None else 0.5 * self.per_s + 0.5 * rate
        self._count = 0
        self._busy_s = 0.0


class WeightedTurns:
    """Smooth weighted round-robin over the lanes that are ready.

    ``pick(ready)`` returns the index of the lane whose turn it is among those marked
    ready (or -1). Over any stretch where the same lanes stay ready, lane ``i`` gets
    ``weights[i] / sum(ready weights)`` of the turns, interleaved rather than in bursts.
    """

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights or any(w < 1 for w in weights):
            raise ValueError("weights must be positive")
        self.weights = tuple(weights)
        self._credit = [0] * len(self.weights)

    def pick(self, ready: Sequence[bool]) -> int:
        """The lane that takes this turn, or -1 when no lane is ready."""
        best = -1
        total = 0
        credit = self._credit
        for i, weight in enumerate(self.weights):
            if not ready[i]:
                credit[i] = 0  # an empty lane does not save up turns for later
                continue
            credit[i] += weight
            total += weight
            if best < 0 or credit[i] > credit[best]:
                best = i
        if best >= 0:
            credit[best] -= total
        return best


class LaneScheduler:
    """Per-lane buffers between a consumer's client and its handlers.

    Args:
        lanes: the lanes policy.
        topics: every topic the consumer subscribed to; a topic that is not a lane
            topic is read as the base lane.
        client: the consumer's client, for ``pause``/``resume``.
        poll: the consumer's poll (errors already handled).
        max_records: records asked for per poll.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        lanes: PriorityLanes,
        topics: Iterable[str],
        client: ConsumerTransport,
        poll: Poll,
        max_records: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lanes = lanes
        self.order: tuple[Priority, ...] = lanes.lanes
        base = self.order.index(lanes.base)
        self._lane_of_topic: dict[str, int] = {}
        for topic in topics:
            found = lanes.lane_of_topic(topic)
            self._lane_of_topic[topic] = base if found is None else self.order.index(found[1])
        self._base = base
        self._client = client
        self._poll = poll
        self._max_records = max_records
        self._clock = clock
        self._turns = WeightedTurns([lanes.weights[p] for p in self.order])
        self._buffers: list[deque[Record]] = [deque() for _ in self.order]
        self._tps: list[set[TopicPartition]] = [set() for _ in self.order]
        self._paused = [False] * len(self.order)
        self._cap = lanes.max_buffered
        self._floor = min(MIN_BUFFERED, lanes.max_buffered)
        self.rate = HandlingRate()
        self._handed = 0
        self._handed_at = 0.0
        self._last_poll = float("-inf")
        self.taken = dict.fromkeys(self.order, 0)
        """Records handed out per lane (how the turns were shared)."""

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers)

    def buffered(self) -> dict[Priority, int]:
        """Records waiting per lane."""
        return {p: len(b) for p, b in zip(self.order, self._buffers, strict=True)}

    def paused(self) -> set[Priority]:
        """Lanes whose partitions are paused because their buffer is full."""
        return {p for p, paused in zip(self.order, self._paused, strict=True) if paused}

    @property
    def high(self) -> int:
        """A lane holding this many records is paused (``buffer_s`` of work)."""
        rate = self.rate.per_s
        if rate is None:
            return self._cap
        return int(min(self._cap, max(self._floor, rate * self.lanes.buffer_s)))

    def _lane(self, topic: str) -> int:
        lane = self._lane_of_topic.get(topic)
        if lane is None:  # a topic the subscription did not name (a pattern, a test)
            found = self.lanes.lane_of_topic(topic)
            lane = self._base if found is None else self.order.index(found[1])
            self._lane_of_topic[topic] = lane
        return lane

    # -- records -----------------------------------------------------------------------
    def add(self, records: Iterable[Record]) -> None:
        """Buffer fetched records; pause a lane whose buffer is full."""
        touched: set[int] = set()
        for record in records:
            lane = self._lane(record.topic)
            self._buffers[lane].append(record)
            touched.add(lane)
        high = self.high
        for lane in touched:
            if not self._paused[lane] and len(self._buffers[lane]) >= high:
                self._set_paused(lane, True)

    def pop(self) -> Record | None:
        """The next record by weighted turns, or None when every buffer is empty."""
        buffers = self._buffers
        lane = self._turns.pick([bool(b) for b in buffers])
        if lane < 0:
            return None
        record = buffers[lane].popleft()
        self.taken[self.order[lane]] += 1
        if self._paused[lane] and len(buffers[lane]) <= RESUME_AT * self.high:
            self._set_paused(lane, False)
        return record

    async def take(self, limit: int, wait_ms: int) -> list[Record]:
        """Up to ``limit`` records by weighted turns.

        Polls the client first when nothing is buffered (waiting up to ``wait_ms`` for a
        first record) or when the last poll is ``recheck_s`` old (without waiting).
        """
        now = self._clock()
        if self._handed:  # the time since the last take went into those records
            self.rate.observe(self._handed, now - self._handed_at)
        size = max(self._max_records, self.high)
        if not any(self._buffers):
            # wait for one record only (librdkafka's consume(n) would wait for all n or
            # the whole timeout), then take whatever else is there
            first = await self._poll(wait_ms, 1)
            if first:
                self.add(first)
                self.add(await self._poll(0, size))
            self._last_poll = self._clock()
        elif now - self._last_poll >= self.lanes.recheck_s:
            self.add(await self._poll(0, size))
            self._last_poll = self._clock()
        out: list[Record] = []
        while len(out) < limit:
            record = self.pop()
            if record is None:
                break
            out.append(record)
        self._handed = len(out)
        self._handed_at = self._clock()
        return out

    # -- partitions --------------------------------------------------------------------
    def _set_paused(self, lane: int, paused: bool) -> None:
        self._paused[lane] = paused
        tps = sorted(self._tps[lane])
        if tps:
            (self._client.pause if paused else self._client.resume)(tps)

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions joined this member: paused if their lane is, else resumed (a client
        may keep the pause of a partition it had before)."""
        for lane, group in self._group(tps).items():
            self._tps[lane] |= group
            (self._client.pause if self._paused[lane] else self._client.resume)(sorted(group))

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions left this member: drop their buffered records (uncommitted)."""
        for lane, group in self._group(tps).items():
            self._tps[lane] -= group
            buffer = self._buffers[lane]
            kept = [r for r in buffer if r.tp not in group]
            buffer.clear()
            buffer.extend(kept)
            if self._paused[lane] and len(buffer) <= RESUME_AT * self.high:
                self._set_paused(lane, False)

    def _group(self, tps: Iterable[TopicPartition]) -> dict[int, set[TopicPartition]]:
        groups: dict[int, set[TopicPartition]] = {}
        for tp in tps:
            groups.setdefault(self._lane(tp.topic), set()).add(tp)
        return groups
