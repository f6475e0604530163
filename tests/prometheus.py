"""The Prometheus files under test: the deployment's rules and scrape configuration
(deploy/prometheus) and the rules' unit tests (tests/data/prometheus)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RULE_TESTS = REPO / "tests" / "data" / "prometheus" / "alerts_test.yml"


def load(path: Path) -> Any:
    """A YAML file's content."""
    return yaml.safe_load(path.read_text())


def alert_rules(rules: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every alerting rule of a rules file's content (alerts.yml's by default)."""
    groups = (rules if rules is not None else load(ALERTS))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
