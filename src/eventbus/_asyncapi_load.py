"""Finding a document by name, for ``eventbus docs --app module:attr``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from eventbus._registry import EventRegistry
from eventbus.errors import ConfigurationError


def load_document(spec: str) -> dict[str, Any]:
    """The AsyncAPI document ``module:attr`` names.

    ``attr`` is a document (a mapping with an ``asyncapi`` key), an
    :class:`~eventbus.EventRegistry` (documented with the topics its registrations
    name), or a function returning either, called without arguments
    (``hrms.asyncapi:system_document``).

    Raises:
        ConfigurationError: ``spec`` is not ``module:attr``, the module cannot be imported,
            it has no such attribute, or the attribute is neither of those.
    """
    from eventbus._transport.base import TopicSpec
    from eventbus.asyncapi import ChannelSpec, build_document

    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ConfigurationError(f"--app {spec}: expected module:attr, e.g. myapp.docs:document")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--app {spec}: cannot import {module_name}: {exc}") from exc
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise ConfigurationError(f"--app {spec}: {module_name} has no {attr!r}")
        found = getattr(found, part)
    if callable(found) and not isinstance(found, EventRegistry):
        try:
            found = found()
        except Exception as exc:  # the user's code: one line, not a traceback
            raise ConfigurationError(
                f"--app {spec}: calling {attr} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(found, EventRegistry):
        topics = sorted({r.topic for r in found.registrations() if r.topic is not None})
        document = build_document(
            found, [ChannelSpec(TopicSpec(t)) for t in topics], title=f"{module_name} events"
        )
        for channel in document["channels"].values():  # a registry knows no partitions
            binding = channel["bindings"]["kafka"]
            binding.pop("partitions", None)
            binding.pop("replicas", None)
        return document
    if isinstance(found, Mapping) and "asyncapi" in found:
        return dict(found)
    raise ConfigurationError(
        f"--app {spec}: {type(found).__name__} is neither an AsyncAPI document nor an EventRegistry"
    )
