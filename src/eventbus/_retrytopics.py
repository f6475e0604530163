"""Non-blocking retry through delay tiers of retry topics, with per-key parking.

A record whose handler still fails after the in-place retry policy is republished to
the first retry topic (``<domain>-retry-<delay>``) with the time it becomes due; the
consumer reads its retry topics too, pauses a retry partition until its head record is
due (no busy loop), and then hands the record to the handler again. A failure there
moves it to the next tier; after the last tier it is dead-lettered.

While a key has a record waiting in a retry tier, later records with the same key are
*parked*: held in memory, in order, with their offsets uncommitted, and handled right
after the waiting record finally succeeds or is dead-lettered. Other keys keep flowing.

Guarantee: per-key order is kept while this member owns the partitions. Parked records
are never committed before they are handled, so a crash loses none of them; but after
a crash they are redelivered from the main topic while their predecessor waits in a
retry topic, so across a crash a parked record may run before it (at-least-once, order
relaxed only then). Retry topics must have the main topic's partition count, and the
group must use range assignment (eventbus asks for it), so a key's main and retry
partitions belong to the same member.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventbus._codec import header_value
from eventbus._deadletter import Failure, dead_letter_headers, retry_topic
from eventbus._transport.base import OutgoingRecord, Record
from eventbus.errors import ConfigurationError
from eventbus.headers import RETRY_DUE_AT, RETRY_ORIGINAL_TOPIC, RETRY_TIER


def _label(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


@dataclass(frozen=True)
class RetryTopics:
    """Delay tiers for non-blocking retries.

    Attributes:
        delays: seconds to wait in each tier (default 1 s, 30 s, 5 min).
        clock: the wall clock (epoch seconds); inject a fake one in tests.
        max_parked: parked records held in memory at most; beyond it the consumer stops
            fetching main topics until parked records drain.
    """

    delays: tuple[float, ...] = (1.0, 30.0, 300.0)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    max_parked: int = 10_000

    def __post_init__(self) -> None:
        if not self.delays or any(d <= 0 for d in self.delays):
            raise ConfigurationError("RetryTopics.delays must be positive seconds")
        if len({_label(d) for d in self.delays}) != len(self.delays):
            raise ConfigurationError("RetryTopics.delays must differ: each names its topic")

    def topic(self, main_topic: str, tier: int) -> str:
        """The retry topic of ``main_topic`` for ``tier`` (0-based)."""
        return retry_topic(main_topic, _label(self.delays[tier]))


class RetryRouter:
    """The runtime side of :class:`RetryTopics` for one consumer."""

    def __init__(self, policy: RetryTopics, main_topics: tuple[str, ...]) -> None:
        self.policy = policy
        self.main_topics = main_topics
        self._tier_of: dict[str, tuple[str, int]] = {
            policy.topic(t, i): (t, i) for t in main_topics for i in range(len(policy.delays))
        }
        self.parked: dict[bytes, deque[Record]] = {}
        self.heads: dict[bytes, int] = {}

    @property
    def retry_topics(self) -> list[str]:
        """Every retry topic the consumer must also read."""
        return list(self._tier_of)

    def is_retry(self, record: Record) -> bool:
        """Whether ``record`` came from a retry topic."""
        return record.topic in self._tier_of

    def is_retry_topic(self, topic: str) -> bool:
        """Whether ``topic`` is one of the retry topics."""
        return topic in self._tier_of

    def due_in(self, record: Record) -> float:
        """Seconds until ``record`` (from a retry topic) may be handled again."""
        due = header_value(record.headers, RETRY_DUE_AT)
        return 0.0 if due is None else float(due) - self.policy.clock()

    def parked_count(self) -> int:
        """Records held behind a key that waits in a retry tier."""
        return sum(len(q) for q in self.parked.values())

    def next_hop(self, record: Record, failure: Failure) -> OutgoingRecord | None:
        """The record to write to the next tier, or None when the tiers are exhausted."""
        if record.topic in self._tier_of:
            main, tier = self._tier_of[record.topic]
            tier += 1
        else:
            main, tier = record.topic, 0
        if tier >= len(self.policy.delays):
            return None
        due = self.policy.clock() + self.policy.delays[tier]
        kept = [
            (k, v)
            for k, v in dead_letter_headers(record, failure)
            if k not in (RETRY_TIER, RETRY_DUE_AT, RETRY_ORIGINAL_TOPIC)
        ]
        headers = (
            *kept,
            (RETRY_TIER, str(tier).encode()),
            (RETRY_DUE_AT, f"{due:.3f}".encode()),
            (RETRY_ORIGINAL_TOPIC, main.encode()),
        )
        return OutgoingRecord(self.policy.topic(main, tier), record.value, record.key, headers)

    def forget(self, tps: set[tuple[str, int]]) -> None:
        """Drop parked records of revoked partitions (uncommitted: their next owner gets them)."""
        for key in list(self.parked):
            queue = deque(r for r in self.parked[key] if (r.topic, r.partition) not in tps)
            if queue:
                self.parked[key] = queue
            else:
                del self.parked[key]
                self.heads.pop(key, None)

    def main_topic_of(self, record: Record) -> str:
        """The main topic a (retry) record belongs to."""
        return self._tier_of.get(record.topic, (record.topic, -1))[0]

    @staticmethod
    def describe_due(seconds_from_now: float) -> str:
        """Human-readable due time, for logs."""
        return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).isoformat()
