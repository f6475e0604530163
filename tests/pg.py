"""A real PostgreSQL server for the tests (the ``pg_server`` and ``pg_url`` fixtures).

The server is this session's own: a cluster made by ``initdb`` in a temp directory,
started with ``pg_ctl`` on a free port (and a socket in that directory), and stopped and
deleted at the end (:class:`tests.pg_cluster.Cluster`, which the benchmarks share). It
does not use (or mind) a cluster the distribution may have started.

Without PostgreSQL installed the PostgreSQL tests skip, saying how to install it; with
``EVENTBUS_REQUIRE_SYSTEM_TOOLS=1`` (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest

from tests.pg_cluster import PG_USER, Cluster, find_bindir, pid_alive

PG_MISSING = "PostgreSQL not installed: apt-get install postgresql (CI installs it)"


@dataclass(frozen=True)
class PgServer:
    """A running PostgreSQL server of this test session."""

    host: str
    port: int
    pid: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (asyncpg driver)."""
        return f"postgresql+asyncpg://{PG_USER}@{self.host}:{self.port}/{database}"

    async def connect(self, database: str = "postgres") -> asyncpg.Connection:
        """A plain asyncpg connection, for administration."""
        return await asyncpg.connect(
            host=self.host, port=self.port, user=PG_USER, database=database
        )


def missing(message: str) -> NoReturn:
    """Skip (fail under ``EVENTBUS_REQUIRE_SYSTEM_TOOLS=1``) for want of ``message``'s tool."""
    if os.environ.get("EVENTBUS_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a PostgreSQL server, yield it, stop it and delete its files (skips without one)."""
    bindir = find_bindir()
    if bindir is None:
        missing(PG_MISSING)
    try:
        cluster = Cluster(bindir, prefix="eventbus-pg-", max_connections=200)
    except RuntimeError as exc:  # root without runuser
        pytest.fail(str(exc))
    try:
        cluster.start()
        cluster.wait_ready()
        assert cluster.pid is not None
        yield PgServer("127.0.0.1", cluster.port, cluster.pid, cluster.data)
    finally:
        if cluster.stop():
            raise RuntimeError(f"postmaster {cluster.pid} outlived pg_ctl stop; killed")
    pid = cluster.pid
    assert pid is None or not pid_alive(pid), f"postmaster {pid} still running"


@contextlib.asynccontextmanager
async def fresh_database(server: PgServer, prefix: str = "t") -> AsyncIterator[str]:
    """A new, empty database on ``server`` (its SQLAlchemy URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = await server.connect()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield server.url(name)
    finally:
        admin = await server.connect()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
