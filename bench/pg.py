"""A throw-away PostgreSQL server for the benchmarks (as ``tests/db/conftest.py`` makes one).

``initdb`` in a temp directory, ``pg_ctl start`` on a free port (socket in that directory),
``pg_ctl stop`` and delete at the end. It never touches a cluster the distribution may run.
``initdb`` refuses to run as root, so as root the cluster belongs to an unprivileged user
(``nobody``) and the server tools run under ``runuser``. Durability is off (``fsync=off``,
``synchronous_commit=off``), as in the tests: the benchmark measures the library, not the
disk.

:func:`find_bindir` returns None when PostgreSQL is not installed; callers skip then.
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
from pathlib import Path

PG_USER = "eventbus"
MISSING = "PostgreSQL not installed (initdb/pg_ctl not found): apt-get install postgresql"


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

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


class PgServer:
    """One PostgreSQL cluster: :meth:`start`, :meth:`url`, :meth:`stop` (always call it)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        base = "/tmp" if os.geteuid() == 0 and Path("/tmp").is_dir() else None
        self.root = Path(tempfile.mkdtemp(prefix="eventbus-bench-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.prefix: list[str] = []
        self.port = 0
        self.pid: int | None = None
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root needs runuser (util-linux) for PostgreSQL")
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = [runuser, "-u", user.pw_name, "--"]
        self.root.chmod(0o700)
        self.env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}

    def _run(self, tool: str, *args: str, timeout: float = 90.0) -> None:
        cmd = [*self.prefix, str(self.bindir / tool), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )

    def start(self) -> None:
        """initdb, then start on a free port; wait until it accepts connections."""
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", PG_USER,
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            port = _free_port()
            options = (
                f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
            )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "60", "start")  # fmt: skip
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            self.port = port
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
            return

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (asyncpg driver)."""
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{database}"

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

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            try:
                pid = self.pid
                if pid is not None:
                    deadline = time.monotonic() + 30
                    while _pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if _pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
            finally:
                shutil.rmtree(self.root, ignore_errors=True)
