"""The alert rules under Prometheus' own tool: they load, the scrape configuration loads,
and each alert fires on synthetic series and stays quiet on similar ones
(tests/data/prometheus/alerts_test.yml) — and the unit tests fail without it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hrms.monitoring import default_targets, render, scrape_config
from tests.conftest import require_tool
from tests.prometheus import ALERTS, CONFIG, RULE_TESTS, alert_rules, load


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_alert_rules_load(promtool: str) -> None:
    done = run(promtool, "check", "rules", ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_committed_and_rendered_configs_load_with_the_rules(promtool: str, tmp_path: Path) -> None:
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(render(scrape_config(default_targets(), [ALERTS], scrape_interval="1s")))
    for config in (CONFIG, rendered):
        done = run(promtool, "check", "config", config)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS: 1 rule files found" in done.stdout, done.stdout


def test_every_alert_waits_has_a_severity_and_says_what_and_why() -> None:
    for rule in alert_rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [c for test in load(RULE_TESTS)["tests"] for c in test["alert_rule_test"]]
    for name in (rule["alert"] for rule in alert_rules()):
        mine = [c.get("exp_alerts") for c in cases if c["alertname"] == name]
        assert any(mine), f"{name}: no case where it fires"
        assert not all(mine), f"{name}: no case where it stays quiet"


def test_alert_unit_tests_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def _without(rules: dict[str, Any], alert: str) -> dict[str, Any]:
    groups = [
        {**g, "rules": [r for r in g["rules"] if r.get("alert") != alert]} for g in rules["groups"]
    ]
    return {"groups": groups}


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alert_rules()])
def test_alert_unit_tests_fail_without_the_alert(promtool: str, tmp_path: Path, alert: str) -> None:
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump(_without(load(ALERTS), alert)))
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(yaml.safe_dump({**load(RULE_TESTS), "rule_files": [str(rules)]}))
    done = run(promtool, "test", "rules", tests)
    assert done.returncode != 0, done.stdout
    assert f"alertname: {alert}," in done.stdout + done.stderr
