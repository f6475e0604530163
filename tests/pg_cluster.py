"""A throw-away PostgreSQL cluster, for the tests (``tests/pg.py``) and the benchmarks
(``bench/pg.py``).

``initdb`` in a temp directory, ``pg_ctl start`` on a free port (socket in that directory),
``pg_ctl stop`` and delete at the end. It never touches a cluster the distribution may run.
``initdb`` refuses to run as root, so as root the cluster belongs to an unprivileged user
and the server tools run under ``runuser``. Durability is off (``fsync=off``,
``synchronous_commit=off``): neither the tests nor the benchmarks measure the disk.

Nothing here skips or prints: :func:`find_bindir` returns None without PostgreSQL and the
caller decides (the tests skip or fail, the benchmarks print why they leave it out).
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
"""The cluster's superuser (trust authentication)."""
SYSTEM_USER = "eventbus-test"
"""The system user made to own the cluster when running as root without ``nobody``."""


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


def _unprivileged_user() -> pwd.struct_passwd:
    """``nobody``, or a system user made for the purpose (we are root here)."""
    for name in ("nobody", SYSTEM_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie has exited already)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


class Cluster:
    """One PostgreSQL cluster: :meth:`start`, :meth:`url`, :meth:`stop` (always call it).

    Args:
        bindir: where ``initdb`` and ``pg_ctl`` are (:func:`find_bindir`).
        prefix: the temp directory's name prefix.
        max_connections: the server's ``max_connections``.

    Raises:
        RuntimeError: running as root without ``runuser`` (util-linux).
    """

    def __init__(self, bindir: Path, *, prefix: str, max_connections: int) -> None:
        self.bindir = bindir
        self.max_connections = max_connections
        # As root, the server's user must reach the directory: /tmp, not a private TMPDIR.
        # A short path also keeps the Unix socket's path within its length limit.
        base = "/tmp" if os.geteuid() == 0 and Path("/tmp").is_dir() else None
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.prefix: list[str] = []
        self.port = 0
        self.pid: int | None = None
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root needs runuser (util-linux) for PostgreSQL")
            user = _unprivileged_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = [runuser, "-u", user.pw_name, "--"]
        self.root.chmod(0o700)
        self.env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}

    def run(self, tool: str, *args: str, timeout: float = 90.0) -> None:
        """Run one of the server tools (as the cluster's owner); RuntimeError if it fails."""
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
        """initdb, then start on a free port (:attr:`port`, :attr:`pid`); ``-w`` waits."""
        self.run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", PG_USER,
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            port = free_port()
            options = (
                f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off "
                f"-c max_connections={self.max_connections}"
            )
            try:
                self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                         "-w", "-t", "60", "start")  # fmt: skip
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            self.port = port
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
            return

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        """Wait until the server accepts TCP connections on :attr:`port`."""
        deadline = time.monotonic() + deadline_s
        while True:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.settimeout(1.0)
                s.connect(("127.0.0.1", self.port))
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not listen on {self.port} within {deadline_s}s")
            time.sleep(0.05)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (asyncpg driver)."""
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> bool:
        """Stop the server (fast shutdown) and delete its directory.

        Returns whether the postmaster outlived ``pg_ctl stop`` (30 s) and was killed.
        """
        killed = False
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            try:
                pid = self.pid
                if pid is not None:
                    deadline = time.monotonic() + 30
                    while pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
                        killed = True
            finally:
                shutil.rmtree(self.root, ignore_errors=True)
        return killed
