"""Creating topics from declared specs."""

from __future__ import annotations

from collections.abc import Sequence

from eventbus._clients import make_transport
from eventbus._transport.base import TopicSpec, Transport
from eventbus.settings import KafkaSettings, load_settings

__all__ = ["TopicSpec", "ensure_topics"]


async def ensure_topics(
    specs: Sequence[TopicSpec],
    *,
    settings: KafkaSettings | None = None,
    transport: Transport | None = None,
    bootstrap_servers: str | None = None,
) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; return the names created.

    Replication is capped at what a single-broker cluster can hold only when the caller
    passes specs that say so; nothing is changed silently.
    """
    s = load_settings(settings, bootstrap_servers=bootstrap_servers)
    admin = (transport or make_transport(s)).admin()
    await admin.start()
    try:
        return await admin.create_topics(specs)
    finally:
        await admin.stop()
