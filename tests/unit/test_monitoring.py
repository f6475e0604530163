"""hrms.monitoring: the scrape configuration, and the committed copy of it."""

from __future__ import annotations

import json

import pytest

from hrms.monitoring import JOB_PREFIX, default_targets, render, scrape_config
from hrms.services import PORTS
from tests.prometheus import CONFIG


def test_committed_config_is_what_the_module_renders_for_the_default_ports() -> None:
    expected = render(scrape_config(default_targets()))
    assert CONFIG.read_text() == expected, (
        "deploy/prometheus/prometheus.yml is stale: "
        "uv run python -m hrms.monitoring > deploy/prometheus/prometheus.yml"
    )


def test_every_service_is_a_job_of_its_own_on_its_default_port() -> None:
    config = json.loads(render(scrape_config(default_targets())).split("\n", 3)[3])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == [JOB_PREFIX + name for name in PORTS]
    for name, port in PORTS.items():
        job = jobs[JOB_PREFIX + name]
        assert job["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]
        assert (job["scheme"], job["metrics_path"]) == ("http", "/metrics")
    assert config["rule_files"] == ["alerts.yml"]
    assert config["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}


def test_scheme_path_prefix_rules_and_intervals_are_kept() -> None:
    config = scrape_config(
        {"leaves": "https://hrms.example:8443/leaves/"},
        ["/etc/prometheus/alerts.yml"],
        scrape_interval="1s",
        evaluation_interval="5s",
    )
    assert config["scrape_configs"] == [
        {
            "job_name": "hrms-leaves",
            "scheme": "https",
            "metrics_path": "/leaves/metrics",
            "static_configs": [{"targets": ["hrms.example:8443"]}],
        }
    ]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "5s"}


@pytest.mark.parametrize("url", ["127.0.0.1:8001", "ftp://host:21", "http://host", "http://:80"])
def test_a_url_without_scheme_host_or_port_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="users"):
        scrape_config({"users": url})
