"""A topic catalog: every topic of a system declared in one TOML file, and applied to a cluster.

The catalog groups event types into business domains. It knows two topic layouts:

* ``domain``: one topic per domain (``user-queue`` carries every ``user.*`` event),
  plus each domain's dead-letter topic and any standalone topics;
* ``event-type``: the same topics plus one topic per declared event type
  (``user.created``, ``attendance.checkin``...). A domain topic stays: it carries the
  event types not declared yet, and what is not a domain event (the requests on a work
  queue, say).

:meth:`Catalog.route` and :meth:`Catalog.topics_for` give producers and consumers their
topics under either layout, so they run unchanged on both. :func:`plan_topics` compares
the catalog with a cluster and :func:`apply_plan` makes the cluster match it:
create the missing topics, add partitions, set configs; it never removes partitions,
never deletes a topic and never changes a replication factor (it says so instead).

The file format (every key but ``domains.<name>.topic`` optional)::

    format = 1

    [defaults]                      # every topic, unless it says otherwise
    partitions = 3
    replication_factor = 3
    retention = "7d"                # ms, s, m, h, d, w suffixes; or "forever"
    configs = { "min.insync.replicas" = "2" }   # any other topic configs

    [dead_letters]                  # each domain topic's dead-letter topic (<domain>-dlq)
    partitions = 1
    replication_factor = 2
    retention = "30d"

    [domains.user]
    topic = "user-queue"            # the domain layout's topic
    events = ["user.created", "user.login"]     # the event-type layout's topics
    partitions = 6                  # overrides for the domain topic and its event topics
    dead_letter = "users-dlq"       # its dead-letter topic's name (false: none)

    [topics."notification-queue"]   # a topic outside the layouts
    replication_factor = 2

Example::

    catalog = load_catalog("catalog.toml")
    plan = await apply_catalog(catalog.specs("event-type"), dry_run=True)
    print("\\n".join(plan.lines()))
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

from eventbus._clients import make_transport
from eventbus._deadletter import dead_letter_topic
from eventbus._transport.base import AdminTransport, TopicDescription, TopicSpec, Transport
from eventbus.errors import ConfigurationError
from eventbus.settings import KafkaSettings, load_settings

__all__ = [
    "LAYOUTS",
    "Catalog",
    "Domain",
    "Layout",
    "TopicPlan",
    "apply_catalog",
    "apply_plan",
    "as_layout",
    "load_catalog",
    "parse_catalog",
    "parse_duration_ms",
    "plan_topics",
]

Layout = Literal["domain", "event-type"]
"""A topic layout: one topic per domain, or one per event type as well."""
LAYOUTS: Final[tuple[Layout, ...]] = get_args(Layout)

FORMAT: Final = 1
RETENTION: Final = "retention.ms"
_TOPIC_NAME: Final = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_DOMAIN_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]*$")
_UNITS: Final[dict[str, int]] = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_DURATION: Final = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
_SETTINGS_KEYS: Final = frozenset({"partitions", "replication_factor", "retention", "configs"})


def parse_duration_ms(value: str | int) -> int:
    """Milliseconds of ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"500ms"``, ``"2w"``.

    An integer is already milliseconds; ``"forever"`` (or ``-1``) is Kafka's no limit.

    Raises:
        ConfigurationError: not a duration.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"not a duration: {value!r}")
    if isinstance(value, int):
        if value < -1:
            raise ConfigurationError(f"not a duration: {value} (ms must be -1 or more)")
        return value
    if value.strip().lower() in ("forever", "-1"):
        return -1
    match = _DURATION.match(value)
    if match is None:
        raise ConfigurationError(
            f"not a duration: {value!r} (use a number with ms, s, m, h, d or w, or 'forever')"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Domain:
    """A business domain: its topic, its event types and their topics' settings.

    Attributes:
        name: the domain, e.g. ``"user"``.
        topic: the domain layout's topic, e.g. ``"user-queue"``.
        events: the declared event types, e.g. ``("user.created", "user.login")``.
        spec: the domain topic's spec; each event topic is created like it.
        dead_letter: the dead-letter topic's spec, if the domain has one.
    """

    name: str
    topic: str
    events: tuple[str, ...]
    spec: TopicSpec
    dead_letter: TopicSpec | None = None

    def event_specs(self) -> list[TopicSpec]:
        """One spec per event type, with the domain topic's settings."""
        return [replace(self.spec, name=e, configs=dict(self.spec.configs)) for e in self.events]


@dataclass(frozen=True)
class Catalog:
    """Every topic of a system: its domains (with event types) and standalone topics.

    Build one with :func:`load_catalog` or :func:`parse_catalog`.
    """

    domains: Mapping[str, Domain]
    standalone: Mapping[str, TopicSpec] = field(default_factory=dict)
    _by_type: dict[str, Domain] = field(init=False, repr=False, compare=False)
    _by_topic: dict[str, Domain] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_type: dict[str, Domain] = {}
        by_topic: dict[str, Domain] = {}
        for domain in self.domains.values():
            for event_type in domain.events:
                other = by_type.setdefault(event_type, domain)
                if other is not domain:
                    raise ConfigurationError(
                        f"event type {event_type!r} is in domains {other.name!r} "
                        f"and {domain.name!r}"
                    )
            by_topic[domain.topic] = domain
        object.__setattr__(self, "domains", MappingProxyType(dict(self.domains)))
        object.__setattr__(self, "standalone", MappingProxyType(dict(self.standalone)))
        object.__setattr__(self, "_by_type", by_type)
        object.__setattr__(self, "_by_topic", by_topic)
        names: dict[str, str] = {}
        for spec in self.specs("event-type"):
            # Kafka's metrics treat '.' and '_' alike: such names collide.
            folded = spec.name.replace(".", "_")
            if folded in names:
                raise ConfigurationError(
                    f"topic {spec.name!r} collides with {names[folded]!r} "
                    "(declared twice, or equal with '.' and '_' exchanged)"
                )
            names[folded] = spec.name

    # -- what the cluster should have ---------------------------------------------------
    def specs(
        self, layout: Layout = "domain", replication_factor: int | None = None
    ) -> list[TopicSpec]:
        """Fresh specs of every topic of ``layout``.

        Args:
            layout: ``"domain"``: domain topics, dead-letter topics and standalone topics;
                ``"event-type"``: those and one topic per declared event type.
            replication_factor: the most replicas any topic may ask for (``1`` for a
                single broker); ``None`` keeps the catalog's.

        Raises:
            ConfigurationError: an unknown layout, or a cap below 1.
        """
        _check_layout(layout)
        if replication_factor is not None and replication_factor < 1:
            raise ConfigurationError(
                f"replication_factor must be at least 1, got {replication_factor}"
            )
        out: list[TopicSpec] = []
        for domain in self.domains.values():
            out.append(domain.spec)
            if layout == "event-type":
                out.extend(domain.event_specs())
        out.extend(d.dead_letter for d in self.domains.values() if d.dead_letter is not None)
        out.extend(self.standalone.values())
        cap = replication_factor
        return [
            replace(
                s,
                replication_factor=s.replication_factor
                if cap is None
                else min(cap, s.replication_factor),
                configs=dict(s.configs),
            )
            for s in out
        ]

    # -- routing --------------------------------------------------------------------------
    def domain_of_type(self, event_type: str) -> Domain | None:
        """The domain declaring ``event_type``, if any."""
        return self._by_type.get(str(event_type))

    def domain_of_topic(self, topic: str) -> Domain | None:
        """The domain whose domain topic, event topic or dead-letter topic ``topic`` is."""
        domain = self._by_topic.get(topic) or self._by_type.get(topic)
        if domain is not None:
            return domain
        for d in self.domains.values():
            if d.dead_letter is not None and d.dead_letter.name == topic:
                return d
        return None

    def route(self, event_type: str, topic: str | None = None, layout: Layout = "domain") -> str:
        """The topic an event of ``event_type`` goes to under ``layout``.

        Args:
            event_type: the event's type, e.g. ``"user.login"``.
            topic: the topic the producer names (its domain topic, or any other); without
                one, the domain topic of the event type's domain.
            layout: the deployment's layout.

        Returns:
            Under ``domain``: ``topic`` (or the domain topic). Under ``event-type``: the
            event type's own topic when the type is declared in the domain of ``topic``
            (or ``topic`` is omitted); else ``topic`` unchanged, so a request of type
            ``user.created`` put on ``notification-queue`` stays there, and a type not
            declared yet stays on its domain topic.

        Raises:
            ConfigurationError: no ``topic`` and ``event_type`` is declared in no domain.
        """
        _check_layout(layout)
        domain = self._by_type.get(str(event_type))
        if topic is None:
            if domain is None:
                raise ConfigurationError(
                    f"event type {str(event_type)!r} is in no domain of the catalog; "
                    "declare it, or name its topic"
                )
            return str(event_type) if layout == "event-type" else domain.topic
        if layout == "domain" or domain is None or domain.topic != topic:
            return topic
        return str(event_type)

    def topics_for(self, names: Iterable[str], layout: Layout = "domain") -> list[str]:
        """The topics to subscribe to for ``names`` under ``layout``, in order, once each.

        Args:
            names: domain names (``"user"``), domain topics (``"user-queue"``) or
                declared event types (``"user.login"``); any other name is a topic of
                its own and is kept as it is.
            layout: the deployment's layout.

        Returns:
            Under ``domain``: each domain's topic (an event type's domain topic). Under
            ``event-type``: each domain's event topics and its domain topic (which still
            carries types not declared yet); an event type's own topic.
        """
        _check_layout(layout)
        out: dict[str, None] = {}
        for name in names:
            domain = self.domains.get(name) or self._by_topic.get(name)
            if domain is not None:
                if layout == "event-type":
                    out.update(dict.fromkeys(domain.events))
                out[domain.topic] = None
                continue
            typed = self._by_type.get(name)
            if typed is not None:
                out[name if layout == "event-type" else typed.topic] = None
                continue
            out[name] = None
        return list(out)

    def dead_letter_topic(self, topic: str) -> str:
        """The dead-letter topic of ``topic``: its domain's, for a domain or event topic.

        Any other topic gets :func:`eventbus.dead_letter_topic`'s ``<domain>-dlq``.
        """
        domain = self._by_topic.get(topic) or self._by_type.get(topic)
        if domain is not None and domain.dead_letter is not None:
            return domain.dead_letter.name
        return dead_letter_topic(topic)

    def with_topics(self, topics: Mapping[str, str]) -> Catalog:
        """A copy whose domains of ``topics`` (domain name -> topic) use those topic names.

        For deployments that rename a domain topic (``KAFKA_USER_TOPIC=...``).

        Raises:
            ConfigurationError: a domain of ``topics`` is not in the catalog.
        """
        unknown = sorted(set(topics) - set(self.domains))
        if unknown:
            raise ConfigurationError(f"no domain named {', '.join(unknown)} in the catalog")
        domains = {
            name: (
                replace(d, topic=topics[name], spec=replace(d.spec, name=topics[name]))
                if name in topics and topics[name] != d.topic
                else d
            )
            for name, d in self.domains.items()
        }
        return Catalog(domains, dict(self.standalone))


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigurationError(
            f"unknown topic layout {layout!r}; use one of {', '.join(LAYOUTS)}"
        )


# -- reading the file ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Settings:
    partitions: int
    replication_factor: int
    configs: dict[str, str]

    def spec(self, name: str) -> TopicSpec:
        return TopicSpec(name, self.partitions, self.replication_factor, dict(self.configs))


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{where}: expected a whole number of at least 1, got {value!r}")
    return value


def _settings(
    raw: dict[str, Any], base: _Settings, where: str, extra: Iterable[str] = ()
) -> _Settings:
    unknown = sorted(set(raw) - _SETTINGS_KEYS - {"retention_ms"} - set(extra))
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)}")
    configs = dict(base.configs)
    if "configs" in raw:
        for key, value in _table(raw["configs"], f"{where}.configs").items():
            if isinstance(value, bool):
                configs[key] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                configs[key] = str(value)
            else:
                raise ConfigurationError(f"{where}.configs.{key}: expected a string or number")
    if "retention" in raw and "retention_ms" in raw:
        raise ConfigurationError(f"{where}: give retention or retention_ms, not both")
    for key in ("retention", "retention_ms"):
        if key in raw:
            try:
                configs[RETENTION] = str(parse_duration_ms(raw[key]))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}.{key}: {exc}") from exc
    return _Settings(
        _positive(raw.get("partitions", base.partitions), f"{where}.partitions"),
        _positive(
            raw.get("replication_factor", base.replication_factor), f"{where}.replication_factor"
        ),
        configs,
    )


def _topic_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOPIC_NAME.match(value) or value in (".", ".."):
        raise ConfigurationError(
            f"{where}: {value!r} is not a Kafka topic name (letters, digits, '.', '_', '-')"
        )
    return value


def parse_catalog(data: Mapping[str, Any], source: str = "catalog") -> Catalog:
    """Build a :class:`Catalog` from parsed TOML (see the module docs for the format).

    Raises:
        ConfigurationError: the data does not follow the format; the message names the key.
    """
    raw = dict(data)
    version = raw.pop("format", FORMAT)
    if version != FORMAT:
        raise ConfigurationError(f"{source}: format {version!r} is not supported (only {FORMAT})")
    unknown = sorted(set(raw) - {"defaults", "dead_letters", "domains", "topics"})
    if unknown:
        raise ConfigurationError(f"{source}: unknown key(s) {', '.join(unknown)}")
    defaults = _settings(
        _table(raw.get("defaults", {}), f"{source}: defaults"),
        _Settings(1, 1, {}),
        f"{source}: defaults",
    )
    dlq_raw = raw.get("dead_letters")
    dlq = (
        None
        if dlq_raw is None
        else _settings(
            _table(dlq_raw, f"{source}: dead_letters"), defaults, f"{source}: dead_letters"
        )
    )
    domains: dict[str, Domain] = {}
    for name, value in _table(raw.get("domains", {}), f"{source}: domains").items():
        where = f"{source}: domains.{name}"
        if not _DOMAIN_NAME.match(name):
            raise ConfigurationError(
                f"{where}: a domain name is lowercase letters, digits, '-', '_'"
            )
        table = _table(value, where)
        if "topic" not in table:
            raise ConfigurationError(f"{where}: needs a topic")
        topic = _topic_name(table["topic"], f"{where}.topic")
        settings = _settings(table, defaults, where, extra=("topic", "events", "dead_letter"))
        events = table.get("events", [])
        if not isinstance(events, list):
            raise ConfigurationError(f"{where}.events: expected a list of event types")
        types = tuple(_topic_name(e, f"{where}.events") for e in events)
        if len(set(types)) != len(types):
            raise ConfigurationError(f"{where}.events: an event type is listed twice")
        dead_letter: TopicSpec | None = None
        dl_name = table.get("dead_letter", True)
        if dl_name is not False and dlq is not None:
            name_ = dead_letter_topic(topic) if dl_name is True else dl_name
            dead_letter = dlq.spec(_topic_name(name_, f"{where}.dead_letter"))
        domains[name] = Domain(name, topic, types, settings.spec(topic), dead_letter)
    standalone: dict[str, TopicSpec] = {}
    for name, value in _table(raw.get("topics", {}), f"{source}: topics").items():
        where = f"{source}: topics.{name}"
        table = _table(value, where)
        settings = _settings(table, defaults, where)
        standalone[_topic_name(name, where)] = settings.spec(name)
    return Catalog(domains, standalone)


def load_catalog(path: str | Path) -> Catalog:
    """Read a catalog file (TOML; see the module docs for the format).

    Raises:
        ConfigurationError: the file is missing, not TOML, or does not follow the format.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read catalog {p}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{p} is not valid TOML: {exc}") from exc
    return parse_catalog(data, str(p))


# -- comparing with a cluster and applying ---------------------------------------------------


@dataclass
class TopicPlan:
    """What applying specs to a cluster changes, and what it refuses to change.

    Attributes:
        create: topics to create.
        partitions: topic -> (partitions now, partitions wanted), to grow.
        configs: topic -> config -> (value now, value wanted), to set.
        refused: what it will not do, one sentence each (fewer partitions, another
            replication factor).
        unchanged: topics that already match.
    """

    create: list[TopicSpec] = field(default_factory=list)
    partitions: dict[str, tuple[int, int]] = field(default_factory=dict)
    configs: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """How many changes applying makes (topics created, grown, reconfigured)."""
        return len(self.create) + len(self.partitions) + len(self.configs)

    def lines(self) -> list[str]:
        """The plan as a diff, one line each: ``+`` create, ``~`` change, ``!`` refuse."""
        out: list[str] = []
        for spec in self.create:
            configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
            out.append(
                f"+ create {spec.name}: {spec.partitions} partitions, "
                f"replication {spec.replication_factor}" + (f", {configs}" if configs else "")
            )
        for name, (count, grown) in self.partitions.items():
            out.append(f"~ partitions {name}: {count} -> {grown}")
        for name, changes in self.configs.items():
            for key, (value, wanted) in sorted(changes.items()):
                shown = value if value is not None else "(unset)"
                out.append(f"~ config {name}: {key} {shown} -> {wanted}")
        out.extend(f"! {reason}" for reason in self.refused)
        summary = (
            f"{len(self.create)} to create, {len(self.partitions)} to grow, "
            f"{len(self.configs)} to reconfigure, {len(self.unchanged)} unchanged"
        )
        if self.refused:
            summary += f", {len(self.refused)} refused"
        out.append(summary)
        return out


def _compare(spec: TopicSpec, now: TopicDescription, plan: TopicPlan) -> None:
    changed = False
    if spec.partitions > now.partitions:
        plan.partitions[spec.name] = (now.partitions, spec.partitions)
        changed = True
    elif spec.partitions < now.partitions:
        plan.refused.append(
            f"{spec.name} has {now.partitions} partitions, the catalog {spec.partitions}: "
            "partitions are never removed (it would reorder keys); change the catalog"
        )
    if now.replication_factor and spec.replication_factor != now.replication_factor:
        plan.refused.append(
            f"{spec.name} has replication factor {now.replication_factor}, the catalog "
            f"{spec.replication_factor}: not changed here (reassign its partitions)"
        )
    diff = {
        key: (now.configs.get(key), wanted)
        for key, wanted in spec.configs.items()
        if now.configs.get(key) != wanted
    }
    if diff:
        plan.configs[spec.name] = diff
        changed = True
    if not changed:
        plan.unchanged.append(spec.name)


async def plan_topics(specs: Sequence[TopicSpec], admin: AdminTransport) -> TopicPlan:
    """Compare ``specs`` with the cluster behind the started ``admin``; change nothing."""
    existing = await admin.describe_topics([s.name for s in specs])
    plan = TopicPlan()
    for spec in specs:
        now = existing.get(spec.name)
        if now is None:
            plan.create.append(spec)
        else:
            _compare(spec, now, plan)
    return plan


async def apply_plan(plan: TopicPlan, admin: AdminTransport) -> None:
    """Make the changes of ``plan`` through the started ``admin`` (refusals stay undone).

    Creating is idempotent (a topic created meanwhile is skipped); re-planning after an
    apply gives an empty plan.
    """
    if plan.create:
        await admin.create_topics(plan.create)
    if plan.partitions:
        await admin.create_partitions(
            {name: wanted for name, (_, wanted) in plan.partitions.items()}
        )
    for name, changes in plan.configs.items():
        await admin.alter_topic_configs(name, {k: wanted for k, (_, wanted) in changes.items()})


async def apply_catalog(
    specs: Sequence[TopicSpec],
    *,
    settings: KafkaSettings | None = None,
    transport: Transport | None = None,
    dry_run: bool = False,
) -> TopicPlan:
    """Plan ``specs`` against the cluster and, unless ``dry_run``, apply the plan.

    Returns:
        The plan (what was, or with ``dry_run`` would be, changed and refused).

    Raises:
        BrokerUnavailableError: the cluster cannot be reached.
        BrokerError: the cluster refused a change.
    """
    admin = (transport or make_transport(load_settings(settings))).admin()
    await admin.start()
    try:
        plan = await plan_topics(specs, admin)
        if not dry_run:
            await apply_plan(plan, admin)
        return plan
    finally:
        await admin.stop()


def as_layout(value: str | None) -> Layout:
    """``value`` as a :data:`Layout` (``"domain"`` when ``None``).

    Raises:
        ConfigurationError: not a layout.
    """
    layout = (value or "domain").strip().lower()
    _check_layout(layout)
    return cast(Layout, layout)
