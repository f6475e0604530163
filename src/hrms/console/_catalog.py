"""The event catalog page's content, read from an AsyncAPI 3.0 document.

Only the document's own structure is used (channels, operations, messages, ``$ref``
pointers inside the document), so the page shows exactly what ``/asyncapi.json`` says.
"""

from __future__ import annotations

import json
from typing import Any


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` (``#/components/messages/x``) points to, or None."""
    if not ref.startswith("#/"):
        return None
    node: Any = doc
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _resolve(doc: dict[str, Any], node: Any, depth: int = 0) -> Any:
    while isinstance(node, dict) and "$ref" in node and depth < 20:
        node, depth = _pointer(doc, str(node["$ref"])), depth + 1
    return node


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return str(node["$ref"]).rsplit("/", 1)[-1]
    return None


def _const(doc: dict[str, Any], message: dict[str, Any], header: str) -> str | None:
    """The constant value a message's header schema gives ``header`` (its event type)."""
    headers = _resolve(doc, message.get("headers"))
    props = headers.get("properties") if isinstance(headers, dict) else None
    prop = _resolve(doc, props.get(header)) if isinstance(props, dict) else None
    value = prop.get("const") if isinstance(prop, dict) else None
    return None if value is None else str(value)


def _fields(doc: dict[str, Any], payload: Any) -> list[dict[str, Any]]:
    """The payload's top-level properties (``data``'s too, for an envelope)."""
    schema = _resolve(doc, payload)
    if not isinstance(schema, dict):
        return []
    required = set(schema.get("required", []))
    out: list[dict[str, Any]] = []
    for name, node in (schema.get("properties") or {}).items():
        prop = _resolve(doc, node)
        if not isinstance(prop, dict):
            continue
        kind = prop.get("type") or prop.get("format") or ("object" if "properties" in prop else "")
        if isinstance(kind, list):
            kind = " | ".join(str(k) for k in kind)
        if not kind and ("anyOf" in prop or "oneOf" in prop):
            choices = prop.get("anyOf") or prop.get("oneOf") or []
            options = [_resolve(doc, o) for o in choices]
            kind = " | ".join(str(o.get("type", "?")) for o in options if isinstance(o, dict))
        out.append({"name": name, "type": str(kind), "required": name in required,
                    "description": str(prop.get("description", ""))})  # fmt: skip
        if name == "data" and "properties" in prop:
            out.extend({**f, "name": f"data.{f['name']}"} for f in _fields(doc, prop))
    return out


def _message(doc: dict[str, Any], name: str, message: dict[str, Any]) -> dict[str, Any]:
    payload = _resolve(doc, message.get("payload"))
    return {
        "name": name,
        "title": str(message.get("title", "")),
        "event_type": _const(doc, message, "event_type") or name,
        "version": _const(doc, message, "event_version") or "",
        "summary": str(message.get("summary") or message.get("description") or ""),
        "channels": [],
        "senders": [],
        "receivers": [],
        "fields": _fields(doc, payload),
        "payload": json.dumps(payload, indent=2, default=str),
    }


def event_catalog(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's title and version, and one entry per message with the channels
    (topics) it travels on and who sends and receives it there.

    Returns:
        ``{"title", "version", "description", "messages": [...], "channels": [...]}``;
        each message has ``name``, ``event_type``, ``version``, ``title``, ``summary``,
        ``channels`` (addresses),
        ``senders``, ``receivers``, ``fields`` and ``payload`` (JSON text).
    """
    info = doc.get("info") or {}
    channels = doc.get("channels") or {}
    messages: dict[str, dict[str, Any]] = {}
    channel_rows: list[dict[str, Any]] = []
    by_channel: dict[str, dict[str, list[str]]] = {}
    for op_name, node in (doc.get("operations") or {}).items():
        op = _resolve(doc, node) or {}
        channel_name = _ref_name(op.get("channel")) or ""
        action = "senders" if op.get("action") == "send" else "receivers"
        tags = [t.get("name") for t in op.get("tags") or [] if isinstance(t, dict)]
        who = str(tags[0] if tags and tags[0] else op.get("title") or op_name)
        by_channel.setdefault(channel_name, {"senders": [], "receivers": []})[action].append(who)
    for name, node in ((doc.get("components") or {}).get("messages") or {}).items():
        message = _resolve(doc, node)
        if isinstance(message, dict):  # every message, on a channel or not
            key = str(message.get("name") or name)
            messages[key] = _message(doc, key, message)
    for ch_name, node in sorted(channels.items()):
        channel = _resolve(doc, node) or {}
        address = str(channel.get("address") or ch_name)
        roles = by_channel.get(ch_name, {"senders": [], "receivers": []})
        names: list[str] = []
        for key, ref in (channel.get("messages") or {}).items():
            message = _resolve(doc, ref)
            if not isinstance(message, dict):
                continue
            name = str(message.get("name") or _ref_name(ref) or key)
            names.append(name)
            entry = messages.setdefault(name, _message(doc, name, message))
            entry["channels"].append(address)
            for role in ("senders", "receivers"):
                entry[role].extend(w for w in roles[role] if w not in entry[role])
        channel_rows.append({"name": ch_name, "address": address, "messages": sorted(names),
                             **roles})  # fmt: skip
    return {
        "title": str(info.get("title", "")),
        "version": str(info.get("version", "")),
        "description": str(info.get("description", "")),
        "messages": [messages[n] for n in sorted(messages)],
        "channels": channel_rows,
    }
