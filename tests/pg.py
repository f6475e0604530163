"""A real PostgreSQL server for the tests (the ``pg_server`` and ``pg_url`` fixtures).

The server is this session's own: a cluster made by ``initdb`` in a temp directory,
started with ``pg_ctl`` on a free port (and a socket in that directory), and stopped and
deleted at the end. It does not use (or mind) a cluster the distribution may have
started. ``initdb`` refuses to run as root, so as root the cluster belongs to an
unprivileged user and the server tools run under ``runuser``.

Without PostgreSQL installed the PostgreSQL tests skip, saying how to install it; with
``EVENTBUS_REQUIRE_SYSTEM_TOOLS=1`` (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest

PG_MISSING = "PostgreSQL not installed: apt-get install postgresql (CI installs it)"
PG_USER = "eventbus"
TEST_USER = "eventbus-test"


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


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)


def find_pg_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    PATH first, then Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first).
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _unprivileged_user() -> pwd.struct_passwd:
    """``nobody``, or a system user made for the purpose (we are root here)."""
    for name in ("nobody", TEST_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(TEST_USER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has exited already
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


class _Cluster:
    """initdb / pg_ctl in a temp directory, as an unprivileged user when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # As root, the server's user must reach the directory: /tmp, not a private TMPDIR.
        # A short path also keeps the Unix socket's path within its length limit.
        base = "/tmp" if os.geteuid() == 0 and Path("/tmp").is_dir() else None
        self.root = Path(tempfile.mkdtemp(prefix="eventbus-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.fail("running as root needs runuser (util-linux) to start PostgreSQL")
            user = _unprivileged_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = [runuser, "-u", user.pw_name, "--"]
        self.root.chmod(0o700)
        self.env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}

    def run(self, tool: str, *args: str, timeout: float = 90.0) -> None:
        cmd = [*self.prefix, str(self.bindir / tool), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )

    def initdb(self) -> None:
        self.run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", PG_USER,
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self, port: int) -> int:
        options = (
            f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                 "-w", "-t", "60", "start")  # fmt: skip
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def wait_ready(self, port: int, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.settimeout(1.0)
                s.connect(("127.0.0.1", port))
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not listen on {port} within {deadline_s}s")
            time.sleep(0.05)

    def stop(self, pid: int | None) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            try:
                if pid is not None:
                    deadline = time.monotonic() + 30
                    while _pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if _pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
                        raise RuntimeError(f"postmaster {pid} outlived pg_ctl stop; killed")
            finally:
                shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a PostgreSQL server, yield it, stop it and delete its files (skips without one)."""
    bindir = find_pg_bindir()
    if bindir is None:
        missing(PG_MISSING)
    cluster = _Cluster(bindir)
    pid: int | None = None
    try:
        cluster.initdb()
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            port = _free_port()
            try:
                pid = cluster.start(port)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        cluster.wait_ready(port)
        yield PgServer("127.0.0.1", port, pid, cluster.data)
    finally:
        cluster.stop(pid)
    assert pid is None or not _pid_alive(pid), f"postmaster {pid} still running"


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
