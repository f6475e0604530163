"""Rendering an AsyncAPI document as one self-contained HTML page (inline CSS, no URL)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jinja2


def _duration(value: Any) -> str:
    """``604800000`` (ms) -> ``7d``; ``-1`` -> ``forever``."""
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return str(value)
    if ms < 0:
        return "forever"
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("eventbus", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["duration"] = _duration
    env.filters["tojson_pretty"] = _pretty
    return env.get_template("asyncapi.html.j2")


def render_html(document: Mapping[str, Any]) -> str:
    """A readable, self-contained HTML page of an AsyncAPI document.

    It lists the servers, the channels (partitions, replicas, configs, messages), the
    operations (action, channel, consumer group) and every message with its headers, key
    and payload schema, then the shared schemas. The page loads nothing from elsewhere.

    Args:
        document: an AsyncAPI 3.0.0 document, such as :func:`build_document` returns.
    """
    components = document.get("components") or {}
    return _template().render(
        doc=document,
        info=document.get("info") or {},
        servers=document.get("servers") or {},
        channels=document.get("channels") or {},
        operations=document.get("operations") or {},
        messages=components.get("messages") or {},
        schemas=components.get("schemas") or {},
    )
