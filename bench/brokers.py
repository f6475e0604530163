"""A fresh embedded broker per scenario, with topic administration and CPU accounting.

noida-db rewrites its whole state file about once a second while anything changes, so a
scenario never inherits another one's data: each gets its own broker in a temp dir, every
per-run topic is deleted after its run, and the runner waits for the broker to go idle
(:meth:`BrokerSession.settle`) before the next run starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventbus._embedded import BrokerKind, EmbeddedBroker

PARTITIONS = 3
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BrokerSession:
    """An :class:`EmbeddedBroker` in a fresh temp dir, owned by one scenario."""

    def __init__(self, kind: BrokerKind) -> None:
        self.kind: BrokerKind = kind
        self._broker = EmbeddedBroker(kind)  # data_dir=None: a temp dir, deleted on stop
        self._admin: Any = None
        self.started_s = 0.0

    def __enter__(self) -> Self:
        t0 = time.perf_counter()
        self._broker.start()
        self.started_s = time.perf_counter() - t0
        self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._admin = None
        gc.collect()  # destroy librdkafka handles before their broker goes away
        self._broker.stop()

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the broker."""
        return self._broker.bootstrap_servers

    @property
    def pid(self) -> int | None:
        """The broker's process id."""
        return self._broker.pid

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the broker process used so far."""
        pid = self._broker.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def create_topic(self, name: str, partitions: int = PARTITIONS) -> None:
        """Create ``name`` and wait until the broker confirmed it."""
        for fut in self._admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            operation_timeout=10,
            request_timeout=15,
        ).values():
            fut.result(timeout=20)

    def delete_topic(self, name: str) -> None:
        """Delete ``name``; failures are ignored (the broker is thrown away afterwards)."""
        with contextlib.suppress(KafkaException, TimeoutError, ValueError):
            for fut in self._admin.delete_topics([name], operation_timeout=10).values():
                fut.result(timeout=20)

    async def settle(self, max_wait_s: float = 15.0, window_s: float = 0.25) -> float:
        """Wait until the broker used < 5 % of a core for two windows; return the wait."""
        gc.collect()
        t0 = time.perf_counter()
        prev = self.cpu_seconds()
        if prev is None:
            return 0.0
        quiet = 0
        while time.perf_counter() - t0 < max_wait_s:
            await asyncio.sleep(window_s)
            cur = self.cpu_seconds()
            if cur is None:
                break
            quiet = quiet + 1 if cur - prev < 0.05 * window_s else 0
            prev = cur
            if quiet >= 2:
                break
        return time.perf_counter() - t0

    def describe(self) -> dict[str, Any]:
        """What to record about the broker."""
        return {"kind": self.kind, "start_s": round(self.started_s, 3)}
