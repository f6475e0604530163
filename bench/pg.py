"""A throw-away PostgreSQL server for the benchmarks (as ``tests/pg.py`` makes one).

The cluster itself is the tests' (:class:`tests.pg_cluster.Cluster`: ``initdb`` in a temp
directory, ``pg_ctl`` on a free port, durability off, ``runuser`` as root); this adds the
CPU time of the server's processes, which the benchmark reports.

:func:`find_bindir` returns None when PostgreSQL is not installed; callers skip then,
printing :data:`MISSING`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tests.pg_cluster import PG_USER, Cluster, find_bindir

MISSING = "PostgreSQL not installed (initdb/pg_ctl not found): apt-get install postgresql"


class PgServer(Cluster):
    """One PostgreSQL cluster: :meth:`start`, :meth:`url`, :meth:`stop` (always call it)."""

    def __init__(self, bindir: Path) -> None:
        super().__init__(bindir, prefix="eventbus-bench-pg-", max_connections=100)

    def cpu_seconds(self) -> float:
        """CPU seconds of all the server's processes (postmaster and its backends)."""
        total = 0.0
        tck = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = stat.read_text()
                fields = text.rsplit(")", 1)[1].split()
                pid, ppid = int(stat.parent.name), int(fields[1])
                if self.pid is not None and self.pid in (pid, ppid):
                    total += (int(fields[11]) + int(fields[12])) / tck
        return total


__all__ = ["MISSING", "PG_USER", "PgServer", "find_bindir"]
