"""Where Kafka is: the configured cluster, or the embedded broker started on demand."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventbus._embedded import BrokerKind, default_data_dir, read_state, start_detached
from eventbus.errors import ConfigurationError
from eventbus.settings import KafkaSettings, load_settings

EMBEDDED_ENV = "KAFKA_EMBEDDED_BROKER"
DEFAULT_EMBEDDED: BrokerKind = "noida"


@dataclass(frozen=True, slots=True)
class Cluster:
    """The cluster clients should use, and whether we started it."""

    bootstrap_servers: str
    profile: str
    embedded: bool
    started_now: bool = False
    pid: int | None = None


def embedded_kind() -> BrokerKind:
    """The embedded broker to run: ``KAFKA_EMBEDDED_BROKER`` (``noida`` or ``tansu``)."""
    kind = os.environ.get(EMBEDDED_ENV, DEFAULT_EMBEDDED).strip().lower()
    if kind not in ("noida", "tansu"):
        raise ConfigurationError(f"{EMBEDDED_ENV} must be 'noida' or 'tansu', not {kind!r}")
    return "noida" if kind == "noida" else "tansu"


def resolve_cluster(data_dir: Path | None = None) -> Cluster:
    """Use ``KAFKA_BOOTSTRAP_SERVERS`` if set; otherwise reuse or start the embedded broker.

    The embedded broker runs detached and is recorded in ``<data_dir>/eventbus-broker.json``
    so later commands reuse it; ``eventbus broker stop`` stops it.
    """
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BROKERS")
    if configured:
        return Cluster(configured, os.environ.get("KAFKA_BROKER_PROFILE", "kafka"), False)
    path = data_dir or default_data_dir()
    state = read_state(path)
    if state is not None:
        return Cluster(state.bootstrap_servers, state.kind, True, False, state.pid)
    state = start_detached(embedded_kind(), path)
    return Cluster(state.bootstrap_servers, state.kind, True, True, state.pid)


def settings_for(cluster: Cluster, **overrides: Any) -> KafkaSettings:
    """Settings that point at ``cluster`` with its broker profile."""
    return load_settings(
        bootstrap_servers=cluster.bootstrap_servers, broker_profile=cluster.profile, **overrides
    )
