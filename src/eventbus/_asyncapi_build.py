"""Assembling an AsyncAPI 3.0.0 document: channels, operations and components."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from eventbus import _asyncapi_messages as m
from eventbus._priority import PriorityLanes
from eventbus._registry import EventRegistry, Registration
from eventbus._retrytopics import RetryTopics
from eventbus._transport.base import TopicSpec
from eventbus.errors import ConfigurationError

_INTEGER_CONFIGS: Final = frozenset(
    {"retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"}
)


def _topic_configuration(configs: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(configs.items()):
        if key in _INTEGER_CONFIGS and value.lstrip("-").isdigit():
            out[key] = int(value)
        elif key == "cleanup.policy":
            out[key] = [p.strip() for p in value.split(",") if p.strip()]
        else:
            out[key] = value
    return out


class Builder:
    """Collects channels and operations, then writes the document."""

    def __init__(self, registry: EventRegistry, servers: Mapping[str, str]) -> None:
        self.registrations = registry.registrations()
        self.payloads, self.schemas = m.payload_schemas(r.model for r in self.registrations)
        self.servers = servers
        self.messages: dict[str, dict[str, Any]] = {
            m.message_id(r): m.event_message(r, self.payloads[r.model]) for r in self.registrations
        }
        self.channels: dict[str, dict[str, Any]] = {}
        # channel -> message id -> its registration (None: the raw dead letter)
        self.sources: dict[str, dict[str, Registration | None]] = {}
        self.follow: dict[str, tuple[TopicSpec | None, RetryTopics | None, PriorityLanes | None]]
        self.follow = {}
        self.operations: dict[str, dict[str, Any]] = {}

    # -- channels ---------------------------------------------------------------------------
    def _regs_for(self, topic: str, event_types: Sequence[str]) -> list[Registration]:
        wanted = set(event_types)
        return [
            r
            for r in self.registrations
            if r.topic == topic or (r.topic is None and r.event_type in wanted)
        ]

    def _message(self, reg: Registration, kind: str) -> str:
        mid = m.message_id(reg) if kind in ("events", "lane") else f"{m.message_id(reg)}.{kind}"
        if mid not in self.messages:
            self.messages[mid] = m.event_message(reg, self.payloads[reg.model], kind)
        return mid

    def _channel(
        self,
        spec: TopicSpec,
        kind: str,
        main: str,
        regs: list[Registration],
        description: str,
    ) -> None:
        cid = m.component_id(spec.name)
        ids: dict[str, Registration | None] = {self._message(r, kind): r for r in regs}
        if kind == "dead-letter":
            if m.RAW_DEAD_LETTER not in self.messages:
                self.messages[m.RAW_DEAD_LETTER] = m.raw_dead_letter()
            ids[m.RAW_DEAD_LETTER] = None
        channel = self.channels.get(cid)
        if channel is None:
            binding: dict[str, Any] = {
                "topic": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication_factor,
            }
            if spec.configs:
                binding["topicConfiguration"] = _topic_configuration(spec.configs)
            binding["bindingVersion"] = m.BINDING_VERSION
            channel = {
                "address": spec.name,
                "title": spec.name,
                "description": description,
                "messages": {},
                "bindings": {"kafka": binding},
                "x-eventbus-kind": kind,
            }
            if main != spec.name:
                channel["x-eventbus-of"] = [main]
            self.channels[cid] = channel
        elif main != spec.name and main not in channel.setdefault("x-eventbus-of", []):
            channel["x-eventbus-of"].append(main)
        for mid in ids:
            channel["messages"][mid] = {"$ref": m.MESSAGES + mid}
        self.sources.setdefault(cid, {}).update(ids)

    def add_channel(
        self,
        spec: TopicSpec,
        event_types: Sequence[str],
        dead_letter: TopicSpec | None,
        retry: RetryTopics | None,
        lanes: PriorityLanes | None,
        description: str,
    ) -> None:
        """A topic's channel and those of its lanes, retry tiers and dead-letter topic."""
        regs = self._regs_for(spec.name, event_types)
        known = {r.event_type for r in regs}
        missing = [t for t in event_types if t not in known]
        text = description or f"Topic `{spec.name}`."
        if missing:
            text += f"\n\nDeclared without a registered model: {', '.join(missing)}."
        self._channel(spec, "events", spec.name, regs, text)
        if lanes is not None and spec.name in lanes.topics:
            for lane, name in lanes.lane_topics(spec.name).items():
                if name != spec.name:
                    lane_spec = TopicSpec(
                        name, spec.partitions, spec.replication_factor, dict(spec.configs)
                    )
                    text = f"The `{lane.value}` priority lane of `{spec.name}`."
                    self._channel(lane_spec, "lane", spec.name, regs, text)
        if retry is not None:
            for tier, delay in enumerate(retry.delays):
                name = retry.topic(spec.name, tier)
                text = f"Retry tier {tier} of `{spec.name}`: records wait {delay:g} s here."
                tier_spec = TopicSpec(name, spec.partitions, spec.replication_factor)
                self._channel(tier_spec, "retry", spec.name, regs, text)
        if dead_letter is not None:
            text = f"Dead letters: records no consumer could handle, from `{spec.name}`."
            self._channel(dead_letter, "dead-letter", spec.name, regs, text)
        self.follow[spec.name] = (dead_letter, retry, lanes)

    # -- operations -------------------------------------------------------------------------
    def _operation(
        self,
        app: str,
        action: str,
        topic: str,
        event_types: Sequence[str] | None,
        binding: dict[str, Any] | None,
        description: str,
    ) -> None:
        cid = m.component_id(topic)
        sources = self.sources[cid]
        allowed = None if event_types is None else set(event_types)
        picked = [
            mid
            for mid, reg in sources.items()
            if allowed is None or reg is None or reg.event_type in (None, *allowed)
        ]
        group = (binding or {}).get("groupId", {}).get("enum", [None])[0]
        oid = m.component_id(f"{app}.{action}.{topic}")
        if oid in self.operations and self.operations[oid].get("x-eventbus-group") != group:
            oid = m.component_id(f"{oid}.{group}")
        op = self.operations.get(oid)
        if op is None:
            op = {
                "action": action,
                "channel": {"$ref": f"#/channels/{cid}"},
                "title": f"{app} {action}s {topic}",
                "summary": f"{app} {'writes to' if action == 'send' else 'reads'} {topic}",
                "description": description,
                "messages": [],
                "tags": [{"name": m.component_id(app)}],
            }
            if binding:
                op["bindings"] = {"kafka": {**binding, "bindingVersion": m.BINDING_VERSION}}
            if group is not None:
                op["x-eventbus-group"] = group
            self.operations[oid] = op
        refs = {r["$ref"] for r in op["messages"]}
        for mid in picked:
            ref = f"#/channels/{cid}/messages/{mid}"
            if ref not in refs:
                op["messages"].append({"$ref": ref})

    def add_operation(
        self,
        app: str,
        action: str,
        topics: Sequence[str],
        group_id: str | None,
        client_id: str | None,
        event_types: Sequence[str] | None,
        key: str | None,
        description: str,
    ) -> None:
        """One operation per topic, and those that follow from it (lanes, retries, DLQ)."""
        if action not in ("send", "receive"):
            raise ConfigurationError(f"operation {app}: action must be send or receive")
        binding: dict[str, Any] = {}
        if group_id is not None:
            binding["groupId"] = {"type": "string", "enum": [group_id]}
        if client_id is not None:
            binding["clientId"] = {"type": "string", "enum": [client_id]}
        text = description + (f"\n\nKey: {key}." if key else "")
        for topic in topics:
            if m.component_id(topic) not in self.channels:
                raise ConfigurationError(
                    f"operation {app} {action} {topic!r}: no channel documents that topic"
                )
            self._operation(app, action, topic, event_types, binding, text)
            dead_letter, retry, lanes = self.follow.get(topic, (None, None, None))
            if lanes is not None and topic in lanes.topics:
                for name in lanes.lane_topics(topic).values():
                    if name != topic:
                        self._operation(app, action, name, event_types, binding, text)
            if action != "receive":
                continue
            if retry is not None:
                for tier in range(len(retry.delays)):
                    name = retry.topic(topic, tier)
                    self._operation(app, "receive", name, event_types, binding, text)
                    self._operation(app, "send", name, event_types, binding, "A failed record.")
            if dead_letter is not None:
                why = f"Records of {topic} that {app} could not handle."
                self._operation(app, "send", dead_letter.name, event_types, binding, why)

    # -- the document -----------------------------------------------------------------------
    def _servers(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, hosts in self.servers.items():
            for i, host in enumerate(h.strip() for h in hosts.split(",") if h.strip()):
                out[m.component_id(name if i == 0 else f"{name}-{i + 1}")] = {
                    "host": host,
                    "protocol": "kafka",
                    "description": f"Kafka bootstrap server {host}",
                    "bindings": {"kafka": {"bindingVersion": m.BINDING_VERSION}},
                }
        return out

    def document(self, title: str, version: str, description: str, asyncapi: str) -> dict[str, Any]:
        """The document built so far."""
        info: dict[str, Any] = {"title": title, "version": version}
        if description:
            info["description"] = description
        components: dict[str, Any] = {"messages": dict(sorted(self.messages.items()))}
        if self.schemas:
            components["schemas"] = self.schemas
        return {
            "asyncapi": asyncapi,
            "info": info,
            "defaultContentType": "application/json",
            "servers": self._servers(),
            "channels": self.channels,
            "operations": self.operations,
            "components": components,
        }
