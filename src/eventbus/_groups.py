"""Consumer-group names by one convention."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["group_name"]

_PART: Final = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def group_name(service: str, purpose: str, env: str | None = None) -> str:
    """The consumer group of ``service`` consuming for ``purpose``: ``[<env>.]<service>.<purpose>``.

    Seed 002 derives every group from the consuming service
    (``getConsumerGroup('notification-service')``); naming the purpose too lets one
    service have several independent groups (each reads every record once), and the
    environment prefix keeps staging and production groups apart on a shared cluster.
    Replicas of a service share its group by calling this with the same arguments.

    Args:
        service: the consuming service, e.g. ``"notification-service"``.
        purpose: what it consumes for, e.g. ``"welcome-mail"`` or ``"counts"``.
        env: the deployment environment, e.g. ``"prod"``; omitted when ``None``.

    Returns:
        e.g. ``group_name("analytics", "counts", env="prod") == "prod.analytics.counts"``.

    Raises:
        ValueError: a part is empty, or not lowercase letters, digits, ``-`` and ``_``
            (``.`` separates the parts, so no part may hold one).
    """
    parts = [("env", env)] if env is not None else []
    parts += [("service", service), ("purpose", purpose)]
    for what, value in parts:
        if not isinstance(value, str) or not _PART.match(value):
            raise ValueError(
                f"group_name: {what} {value!r} must be lowercase letters, digits, '-' or '_' "
                "(not empty, no '.')"
            )
    return ".".join(value for _, value in parts if value is not None)
