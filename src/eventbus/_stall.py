"""Stall detection: a partition whose committed offset stopped while its lag grew."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from eventbus.errors import ConfigurationError


@dataclass
class _Mark:
    committed: int
    lag: int
    since: float


class StallDetector:
    """Tells, sample by sample, whether a partition's consumer is stalled.

    A partition is stalled when its committed offset has not moved for longer than
    ``threshold_s`` while its lag grew over that time: records keep arriving and none
    is finished. An idle partition (lag 0) never stalls, nor does one whose lag holds
    still (nothing new arrived since its last commit); each move of the committed offset
    starts the clock again.

    Args:
        threshold_s: how long the committed offset may stand still under growing lag.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self, threshold_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold_s <= 0:
            raise ConfigurationError("the stall threshold must be above 0 seconds")
        self.threshold_s = threshold_s
        self.clock = clock
        self._marks: dict[Hashable, _Mark] = {}

    def check(self, key: Hashable, committed: int, lag: int) -> bool:
        """Record a sample of ``key``'s partition; True if it is stalled now."""
        now = self.clock()
        mark = self._marks.get(key)
        if mark is None or mark.committed != committed or lag == 0:
            self._marks[key] = _Mark(committed, lag, now)
            return False
        return lag > mark.lag and now - mark.since > self.threshold_s

    def keep(self, keys: Iterable[Hashable]) -> None:
        """Forget every partition but ``keys`` (the others were revoked)."""
        wanted = set(keys)
        for key in [k for k in self._marks if k not in wanted]:
            del self._marks[key]
