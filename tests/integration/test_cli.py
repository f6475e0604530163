"""The command lines, run as a user runs them: in a subprocess, on a temp data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventbus._embedded import read_state

pytestmark = pytest.mark.broker


def run(
    args: list[str], data_dir: Path, timeout: float = 90, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    environ.update({"EVENTBUS_DATA_DIR": str(data_dir), "COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )


def test_hrms_flow_runs_the_event_flow_end_to_end_and_stops_its_broker(tmp_path: Path) -> None:
    result = run(["hrms.cli", "flow"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "embedded noida" in out
    assert "10 published, 10 handled, 1 dead-lettered" in out
    assert "handled payroll.processed      by finance (payroll PR-2026-11)" in out
    assert "handled inventory.low_stock    by sales (priority critical)" in out
    assert "embedded broker stopped" in out
    assert read_state(tmp_path) is None  # no broker left behind


def test_broker_start_status_stop(tmp_path: Path) -> None:
    started = run(["eventbus.cli", "broker", "start"], tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        state = read_state(tmp_path)
        assert state is not None
        assert f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}" in started.stdout
        again = run(["eventbus.cli", "broker", "start"], tmp_path)
        assert "already running" in again.stdout
        status = run(["eventbus.cli", "broker", "status"], tmp_path)
        assert status.returncode == 0
        assert str(state.pid) in status.stdout
        listed = run(
            ["eventbus.cli", "topics", "list"],
            tmp_path,
            KAFKA_BOOTSTRAP_SERVERS=state.bootstrap_servers,
        )
        assert listed.returncode == 0, listed.stderr
    finally:
        stopped = run(["eventbus.cli", "broker", "stop"], tmp_path)
    assert stopped.returncode == 0
    assert read_state(tmp_path) is None
    status = run(["eventbus.cli", "broker", "status"], tmp_path)
    assert status.returncode == 3
    assert "not running" in status.stdout


def test_user_mistakes_are_messages_not_tracebacks(tmp_path: Path) -> None:
    bad_kind = run(["eventbus.cli", "broker", "start", "--kind", "zookeeper"], tmp_path)
    assert bad_kind.returncode == 2
    assert "--kind must be noida or tansu" in bad_kind.stderr
    stop = run(["eventbus.cli", "broker", "stop"], tmp_path)
    assert stop.returncode == 1
    assert "no broker is running" in stop.stderr
    bad_env = run(["eventbus.cli", "topics", "list"], tmp_path, KAFKA_PRODUCER_ACKS="2")
    assert bad_env.returncode == 1
    assert "invalid Kafka settings" in bad_env.stderr
    for r in (bad_kind, stop, bad_env):
        assert "Traceback" not in r.stderr
