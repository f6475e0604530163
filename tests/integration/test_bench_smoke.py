"""The benchmark harness runs: ``python -m bench --quick`` writes its results.

This checks that the harness works (every contender runs and reports a rate), not how fast
anything is: throughput targets never belong in timed tests. Results go to a temp dir, so
the committed ``bench/results`` are left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("publish", "consume", "lanes", "outbox")  # lanes + outbox add ~20 s
DEADLINE_S = 240


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_benchmark_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    environ["COLUMNS"] = "200"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--scenario", *SCENARIOS, "--out", str(out)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the harness unwinds and stops its embedded brokers
        output, _ = proc.communicate(timeout=30)
        pytest.fail(f"python -m bench --quick took over {DEADLINE_S}s:\n{output[-4000:]}")

    assert proc.returncode == 0, output[-4000:]
    for name in SCENARIOS:
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["scenario"] == name
        assert doc["mode"] == "quick"
        assert doc["failed"] == [], doc["failed"]
        assert doc["results"], f"{name}: no contender was measured"
        for result in doc["results"]:
            assert result["status"] == "ok"
            assert result["msgs_per_s"]["median"] > 0, result["key"]
            assert result["runs"], result["key"]
        assert (out / f"{name}.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(SCENARIOS) <= set(summary["scenarios"])
