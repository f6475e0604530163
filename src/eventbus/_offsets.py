"""Which offset of each partition may be committed: the highest contiguous finished one."""

from __future__ import annotations

from collections import deque

from eventbus._transport.base import Record, TopicPartition


class _Progress:
    __slots__ = ("done", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.done: set[int] = set()


class OffsetTracker:
    """Tracks records in flight per partition and finished ones, in any order.

    ``begin`` a record when it is taken, ``finish`` it when it is handled (or
    dead-lettered). :meth:`committable` is the offset after the longest finished prefix,
    so a slow record holds back the commit of the faster ones behind it, and nothing is
    ever committed past a record that has not finished.
    """

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Progress] = {}
        self.committable: dict[TopicPartition, int] = {}

    def begin(self, record: Record) -> None:
        """Record that ``record`` was taken for processing."""
        part = self._parts.get(record.tp)
        if part is None:
            part = self._parts[record.tp] = _Progress()
        part.pending.append(record.offset)

    def finish(self, record: Record) -> None:
        """Record that ``record`` is finished; advance the committable offset if possible."""
        part = self._parts.get(record.tp)
        if part is None:
            return  # the partition was revoked meanwhile
        pending = part.pending
        if pending and pending[0] == record.offset:
            pending.popleft()
            last = record.offset
            done = part.done
            while pending and pending[0] in done:
                last = pending.popleft()
                done.discard(last)
            self.committable[record.tp] = last + 1
        else:
            part.done.add(record.offset)

    def in_flight(self, tps: set[TopicPartition] | None = None) -> int:
        """How many records are taken but not finished (on ``tps``, or anywhere)."""
        return sum(len(p.pending) for tp, p in self._parts.items() if tps is None or tp in tps)

    def forget(self, tps: set[TopicPartition]) -> None:
        """Drop revoked partitions."""
        for tp in tps:
            self._parts.pop(tp, None)
            self.committable.pop(tp, None)
