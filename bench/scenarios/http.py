"""http: requests/s of a FastAPI service whose POST writes a row, with and without events.

The service (:mod:`bench.httpapp`) runs in a **subprocess** (uvicorn, one worker, SQLite in
WAL mode, a fresh database file per run); the load generator is this process: an
``httpx.AsyncClient`` keeping :data:`CONCURRENCY` requests in flight on keep-alive
connections. After a warm-up (not timed) it sends N ``POST /actions``; timed: first request
sent -> last response received. Contenders differ only in what the handler does besides
the row:

* ``http-no-events``: nothing (the baseline).
* ``http-outbox``: ``outbox.add()`` in the same transaction; the relay runs in the service.
* ``http-background-send_event``: the seeds' way, ``BackgroundTasks`` calling
  ``producer.send_event`` after the response (fire-and-forget).

After the timed section the run waits (not timed) until every event was delivered and
reports how long that took (``drain_s``) and how many rows the outbox still held when the
last response arrived (``backlog_at_end``). A run fails if any request fails or any event
is not delivered. ``server_cpu_us`` is the service process's CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchError, Comparison, Contender, Measurement, RunContext, Scenario

CONCURRENCY = 32
SQLITE_POOL = 1
"""The service's SQLite connections. One writer connection, so concurrent requests queue in
the pool (asyncio) instead of in SQLite's busy handler, which sleeps 1-100 ms between lock
attempts: with SQLAlchemy's default pool (5 + 10 overflow) the service was idle 15-40 % of
the time waiting on those sleeps and p99 latency was 4x higher."""
ROOT = Path(__file__).resolve().parents[2]
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class Server:
    """The service subprocess: started, waited for, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, ctx: RunContext, mode: str, workdir: Path) -> None:
        self.ctx = ctx
        self.mode = mode
        self.workdir = workdir
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        cmd = [
            sys.executable, "-m", "bench.httpapp", "--mode", self.mode,
            "--port", str(self.port), "--db", str(self.workdir / "service.sqlite3"),
            "--bootstrap", self.ctx.bootstrap, "--broker-kind", self.ctx.broker.kind,
            "--topic", self.ctx.topic, "--client-id", f"bench-{self.ctx.run_id}",
            "--pool-size", str(SQLITE_POOL),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    async def start(self, client: httpx.AsyncClient, limit_s: float = 60.0) -> None:
        """Spawn the service and wait until ``GET /health`` answers (a port clash retries)."""
        for attempt in range(3):
            self._spawn()
            assert self.proc is not None
            deadline = time.perf_counter() + limit_s
            while self.proc.poll() is None and time.perf_counter() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{self.url}/health", timeout=2.0)
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.05)  # the next readiness probe
            if self.proc.poll() is None:
                break  # alive but not answering: give up
            if attempt == 2:
                break
        await self.stop()
        raise BenchError(f"the {self.mode} service did not start:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    async def stop(self) -> None:
        """SIGTERM (uvicorn runs the lifespan shutdown: relay, producer, engine), then wait."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
            raise BenchError(f"the {self.mode} service ignored SIGTERM:\n{self.tail()}") from None


async def _load(clients: list[httpx.AsyncClient], url: str, n: int, start: int) -> list[float]:
    """Send ``n`` POSTs, one in flight per client; return each request's latency (s)."""
    latencies: list[float] = []
    counter = iter(range(start, start + n))
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            t0 = time.perf_counter()
            response = await client.post(f"{url}/actions", json={"resource_id": i % 1000})
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:200]}")

    await asyncio.gather(*(worker(c) for c in clients))
    if failures:
        raise BenchError(f"{len(failures)} of {n} requests failed, e.g. {failures[0]}")
    return latencies


def _client() -> httpx.AsyncClient:
    """One keep-alive connection: one AsyncClient per in-flight request.

    A single ``AsyncClient`` with a pool of 32 connections costs ~4 ms of CPU per request
    here (httpcore's pool bookkeeping grows with the number of waiting requests), which
    made the load generator, not the service, the bottleneck.
    """
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), timeout=30.0
    )


def _delivered(mode: str, stats: dict[str, Any]) -> tuple[bool, int]:
    """(all events delivered?, how many) from the service's ``/stats``."""
    rows = int(stats["rows"])
    if mode == "outbox":
        done = int(stats["relay_delivered"])
        return stats["backlog"] == 0 and done >= rows, done
    if mode == "background":
        if stats["sent_failed"]:
            raise BenchError(f"{stats['sent_failed']} background send_event calls failed")
        done = int(stats["sent_ok"])
        return done >= rows, done
    return True, 0


def _contender(mode: str) -> Callable[[RunContext], Any]:
    async def run(ctx: RunContext) -> Measurement:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-http-{mode}-"))
        server = Server(ctx, mode, workdir)
        try:
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(_client()) for _ in range(CONCURRENCY)]
                client = clients[0]
                await server.start(client)
                warmup = max(CONCURRENCY * 4, ctx.n // 20)
                await _load(clients, server.url, warmup, start=0)
                cpu0 = server.cpu_seconds()
                ctx.timer.start()
                latencies = await _load(clients, server.url, ctx.n, start=warmup)
                ctx.timer.stop()
                server_cpu = server.cpu_seconds() - cpu0
                t_end = time.perf_counter()
                at_end = (await client.get(f"{server.url}/stats")).json()
                deadline = t_end + 120.0
                stats = at_end
                while True:
                    done, delivered = _delivered(mode, stats)
                    if done:
                        break
                    if time.perf_counter() > deadline:
                        raise BenchError(f"events not all delivered within 120 s: {stats}")
                    await asyncio.sleep(0.02)  # the next look at /stats
                    stats = (await client.get(f"{server.url}/stats")).json()
                drain_s = time.perf_counter() - t_end
                if stats["rows"] != warmup + ctx.n:
                    raise BenchError(f"{stats['rows']} rows written, not {warmup + ctx.n}")
                q = statistics.quantiles(latencies, n=100, method="inclusive")
                extra = {
                    "p50_ms": q[49] * 1000,
                    "p99_ms": q[98] * 1000,
                    "server_cpu_us": server_cpu / ctx.n * 1e6,
                    "server_cpu_util": server_cpu / ctx.timer.seconds,
                    "concurrency": float(CONCURRENCY),
                }
                if mode != "none":
                    extra["events_delivered"] = float(delivered)
                    extra["drain_s"] = drain_s
                if mode == "outbox":
                    extra["backlog_at_end"] = float(at_end["backlog"])
                    extra["relay_cycles"] = float(stats["relay_cycles"])
                await server.stop()
                return ctx.timer.measurement(ctx.n, **extra)
        except BaseException:
            print(f"  service log ({mode}):\n{server.tail()}")
            raise
        finally:
            await server.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    return run


N_QUICK, N_FULL = 600, 8000
_SETTINGS = {
    "server": "uvicorn (h11, asyncio loop), 1 process",
    "database": f"sqlite+aiosqlite, WAL, synchronous=NORMAL, {SQLITE_POOL} connection",
    "load": f"httpx.AsyncClient, {CONCURRENCY} in flight, keep-alive",
}

SCENARIO = Scenario(
    name="http",
    title=f"http: POST writes a row, {CONCURRENCY} in flight (requests/s, higher is better)",
    description=(
        "A FastAPI service (uvicorn subprocess, SQLite WAL) whose POST /actions inserts a "
        "row and (a) emits no event, (b) adds an AuditEvent to the transactional outbox in "
        "the same transaction with the relay running in the service, (c) runs "
        "producer.send_event in FastAPI BackgroundTasks (the seeds' way). Load: httpx with "
        f"{CONCURRENCY} requests in flight; timed: first request -> last response, after a "
        "warm-up. Every event is then awaited (drain_s, not timed)."
    ),
    metric="throughput",
    unit="requests/s",
    order=60,
    columns=[("server_cpu_us", "server us/req"), ("p99_ms", "p99 ms"), ("drain_s", "drain s")],
    contenders=[
        Contender(
            "http-no-events",
            "POST: row only, no event",
            "eventbus",
            "sqlite",
            _contender("none"),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings=_SETTINGS,
            notes="the baseline",
        ),
        Contender(
            "http-outbox",
            "POST: row + outbox.add() in one transaction",
            "eventbus",
            "aiokafka",
            _contender("outbox"),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings=_SETTINGS,
            effective={"relay": "OutboxRelay defaults (500 rows/cycle, poll 0.2 s)"},
            notes="atomic with the row; the relay shares the service's process and database",
        ),
        Contender(
            "http-background-send_event",
            "POST: row, then BackgroundTasks send_event",
            "eventbus",
            "aiokafka",
            _contender("background"),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings=_SETTINGS,
            effective={"linger_ms": 5, "acks": "all"},
            notes="the seeds' way: fire-and-forget after the response; a crash loses it",
        ),
    ],
    comparisons=[
        Comparison("outbox / no events (target >= 0.8x)", "http-outbox", "http-no-events"),
        Comparison(
            "BackgroundTasks send_event / no events",
            "http-background-send_event",
            "http-no-events",
        ),
        Comparison(
            "outbox / BackgroundTasks send_event", "http-outbox", "http-background-send_event"
        ),
    ],
)
