"""The operator's commands of ``eventbus``: ``topics describe``, ``tail``, ``publish``,
``lag``, ``groups reset-offsets`` and ``replay``; the work is :mod:`eventbus.ops`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from eventbus._cli_common import Bootstrap, Profile, console, err, fail, kafka_settings, run, when
from eventbus.errors import ConfigurationError

if TYPE_CHECKING:
    from eventbus.ops import Admin, EventView, ReplayPlan, ResetPlan, ResetTo

_T = TypeVar("_T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
PartitionsOpt = Annotated[
    list[int] | None,
    typer.Option("--partition", "-p", min=0, help="Only this partition; repeatable."),
]


def _with_admin(
    bootstrap_servers: str | None,
    broker_profile: str | None,
    work: Callable[[Admin], Coroutine[Any, Any, _T]],
) -> _T:
    """Run ``work`` with a started admin connection; errors become one line."""
    from eventbus.ops import Admin

    settings = kafka_settings(bootstrap_servers, broker_profile)

    async def go() -> _T:
        async with Admin(settings) as admin:
            return await work(admin)

    return run(go())


def _confirm(question: str, yes: bool, refusal: str) -> None:
    if yes:
        return
    try:
        confirmed = typer.confirm(question)
    except typer.Abort:  # end of input
        console.print()
        confirmed = False
    if not confirmed:
        raise fail(f"{refusal} (answer y, or pass --yes)")


def _offset(value: int | None) -> str:
    return "-" if value is None else str(value)


# -- topics describe ----------------------------------------------------------------------


def topics_describe(
    topic: Annotated[str, typer.Argument(help="The topic.")],
    as_json: JsonOpt = False,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Show a topic's partitions with their earliest and end offsets, and its configs."""
    from eventbus.ops import describe_topic

    info = _with_admin(bootstrap_servers, broker_profile, lambda a: describe_topic(a, topic))
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    console.print(
        f"[bold]{info.name}[/]: {len(info.partitions)} partition(s), replication "
        f"{info.replication_factor}, {info.records} record(s)",
        highlight=False,
    )
    table = Table("partition", "earliest", "end offset", "records")
    for column in table.columns:
        column.justify = "right"
    for p in info.partitions:
        table.add_row(str(p.partition), str(p.earliest), str(p.end), str(p.records))
    console.print(table)
    configs = Table("config", "value")
    configs.columns[1].overflow = "fold"
    for name, value in sorted(info.configs.items()):
        configs.add_row(name, value)
    console.print(configs)


# -- tail ---------------------------------------------------------------------------------


def _event_line(view: EventView, width: int) -> Text:
    line = Text(no_wrap=False)
    line.append(view.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], "dim")
    line.append(f"  {view.topic}[{view.partition}]@{view.offset}", "cyan")
    line.append(f"  {view.event_type or '-'}", "bold")
    line.append(f"  key={view.key if view.key is not None else '-'}")
    line.append(f"  tenant={view.tenant_id or '-'}")
    line.append(f"  id={view.event_id or '-'}", "dim")
    line.append(f"  {view.preview(width)}")
    return line


def tail(
    topics: Annotated[list[str], typer.Argument(help="The topic(s) to read.")],
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type (wildcards allowed: 'leave.*').")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant id (exact).")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Record key (exact).")] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the first record.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start at this time: ISO 8601 (2025-11-25T18:00Z) or 2h, 7d."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--last", min=0, help="Start this many records before each partition's end (10)."
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new events until Ctrl-C.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="Stop after this many events.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    width: Annotated[
        int, typer.Option("--width", min=10, help="Characters of data shown per event.")
    ] = 80,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds allowed to read to the end (no -f)."),
    ] = 60.0,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Print a topic's events: time, type, key, tenant, event id and a data preview.

    Starts 10 records before each partition's end unless --from-beginning, --since or
    --last says otherwise; stops at the end the partitions had when it started, or with
    --follow waits for new events until Ctrl-C. Reads by manual assignment: no consumer
    group, no commits.
    """
    from eventbus.ops import EventFilter, TailStart
    from eventbus.ops import tail as read_tail

    if sum((from_beginning, since is not None, last is not None)) > 1:
        raise fail("give one start: --from-beginning, --since or --last", 2)
    start_time = when("--since", since)
    filters = EventFilter(event_type, tenant, key)
    names = ", ".join(dict.fromkeys(topics))
    shown = 0

    def ready(start: TailStart) -> None:
        parts = len(start.starts)
        if follow:
            err.print(f"following {names} ({parts} partition(s)); Ctrl-C stops", highlight=False)
        else:
            err.print(f"reading {start.backlog} record(s) of {names}", highlight=False)

    async def show(admin: Admin) -> None:
        nonlocal shown
        events = read_tail(
            admin,
            topics,
            from_beginning=from_beginning,
            since=start_time,
            last=last,
            follow=follow,
            filters=filters,
            limit=limit,
            ready=ready,
            timeout_s=timeout,
        )
        async with contextlib.aclosing(events):
            async for view in events:
                shown += 1
                if as_json:
                    typer.echo(json.dumps(view.to_dict(), ensure_ascii=False, default=str))
                else:
                    console.print(_event_line(view, width), soft_wrap=True, highlight=False)
                sys.stdout.flush()

    stopped = _with_admin(bootstrap_servers, broker_profile, lambda a: _until_signal(show(a)))
    err.print(f"{'stopped: ' if stopped else ''}{shown} event(s)", highlight=False)


async def _until_signal(work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` until it ends (False) or SIGINT/SIGTERM stops it cleanly (True).

    The handlers are installed explicitly: a process started in the background by a
    shell inherits SIGINT ignored, and the reader must be stopped, not abandoned.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    signalled = False

    def stop() -> None:
        nonlocal signalled
        signalled = True
        task.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not signalled:
            raise
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return signalled


# -- publish ------------------------------------------------------------------------------


def _read_input(source: str | None) -> tuple[str, str]:
    if source is None or source == "-":
        if source is None and sys.stdin.isatty():
            raise fail("give a FILE, or pipe JSON to stdin ('-')", 2)
        return sys.stdin.read(), "stdin"
    try:
        return Path(source).read_text(encoding="utf-8"), source
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {source}: {exc}", 2) from exc


def publish(
    topic: Annotated[str, typer.Argument(help="The topic to publish to.")],
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE|-]",
            help="JSON: one event, a list, or JSON lines (default: stdin).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Record key (default: each event's own).")
    ] = None,
    registry: Annotated[
        list[str] | None,
        typer.Option(
            "--registry",
            metavar="MODULE[:ATTR]",
            help="Where the event models are registered (default: hrms.events if installed).",
        ),
    ] = None,
    validate: Annotated[
        bool,
        typer.Option("--validate/--no-validate", help="Check each event against its model."),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the events; send nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Publish JSON events, each validated against the event registry and acknowledged.

    Any envelope shape eventbus reads is accepted; event_id and timestamp are filled in
    when missing. Every event is validated before the first is sent; each is then sent
    in order and waits for the broker's acknowledgement.
    """
    from eventbus.ops import (
        InvalidEventError,
        Published,
        build_events,
        parse_events,
        publish_events,
    )
    from eventbus.ops import load_registry as registry_from

    text, name = _read_input(source)
    try:
        models = registry_from(registry or ())
        events = build_events(parse_events(text, name), models, topic, validate=validate)
    except InvalidEventError as exc:
        err.print(f"[bold red]error:[/] {len(exc.problems)} problem(s), nothing published:")
        for problem in exc.problems[:20]:
            err.print(f"  {problem}", highlight=False, markup=False)
        raise typer.Exit(1) from exc
    except ConfigurationError as exc:
        raise fail(str(exc), 2) from exc
    if dry_run:
        for event in events:
            typer.echo(event.model_dump_json())
        err.print(f"dry run: {len(events)} valid event(s), nothing published", highlight=False)
        return

    def report(done: Published) -> None:
        if not as_json:
            md, event = done.metadata, done.event
            console.print(
                f"published {event.event_type} {event.event_id} to {md.topic} "
                f"partition {md.partition} offset {md.offset}",
                highlight=False,
            )

    sent = _with_admin(
        bootstrap_servers,
        broker_profile,
        lambda admin: publish_events(admin, topic, events, key=key, on_published=report),
    )
    if as_json:
        rows = [
            {
                "event_id": str(p.event.event_id),
                "event_type": p.event.event_type,
                "topic": p.metadata.topic,
                "partition": p.metadata.partition,
                "offset": p.metadata.offset,
            }
            for p in sent
        ]
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(f"published {len(sent)} event(s) to {topic}", highlight=False)


# -- lag ----------------------------------------------------------------------------------


def lag(
    groups: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Only this group; repeatable.")
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Only this topic.")] = None,
    as_json: JsonOpt = False,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Show each consumer group's lag per partition: committed offset, end offset, lag.

    Without --group every group the cluster lists is shown, except those that never
    committed an offset (tools' throwaway groups, groups still starting).
    """
    from eventbus.ops import consumer_lag

    found = _with_admin(
        bootstrap_servers, broker_profile, lambda a: consumer_lag(a, groups or None, topic)
    )
    shown = found if groups else [g for g in found if g.partitions]
    if as_json:
        typer.echo(json.dumps([g.to_dict() for g in shown], indent=2))
        return
    if not shown:
        console.print("no consumer group has committed offsets" + (f" on {topic}" if topic else ""))
        return
    table = Table("group", "state", "members", "topic", "partition", "committed", "end", "lag")
    for column in table.columns[4:]:
        column.justify = "right"
    for group in shown:
        first = True
        for p in group.partitions:
            table.add_row(
                group.group_id if first else "",
                group.state if first else "",
                str(group.members) if first else "",
                p.topic,
                str(p.partition),
                str(p.committed),
                str(p.end),
                str(p.lag),
            )
            first = False
        if first:
            table.add_row(group.group_id, group.state, str(group.members), "-", "", "", "", "")
        table.add_row("", "", "", "", "", "", "total", f"[bold]{group.total}[/]", end_section=True)
    console.print(table)
    hidden = len(found) - len(shown)
    if hidden:
        console.print(f"{hidden} group(s) without committed offsets not shown (name one: --group)")


# -- groups reset-offsets -----------------------------------------------------------------


def _print_reset(plan: ResetPlan) -> None:
    console.print(f"reset {plan.group_id} on {plan.topic} to {plan.to}", highlight=False)
    table = Table("partition", "current", "new", "change", "note")
    for column in table.columns[:4]:
        column.justify = "right"
    for m in plan.moves:
        delta = m.delta
        change = "-" if delta is None else f"{delta:+d}"
        table.add_row(str(m.partition), _offset(m.current), str(m.target), change, m.note or "")
    console.print(table)


def reset_offsets(
    group: Annotated[str, typer.Option("--group", "-g", help="The consumer group.")],
    topic: Annotated[str, typer.Option("--topic", help="The topic.")],
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="To each partition's first record.")
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="To each partition's end (skip everything).")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option("--to-datetime", help="To the first record at or after this time."),
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", min=0, help="To this offset (clamped).")
    ] = None,
    partitions: PartitionsOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Move a consumer group's committed offsets on a topic; prints the plan first.

    Refused while the group has active members: stop its consumers first. An offset
    outside a partition's log is clamped to its start or end.
    """
    from eventbus.ops import apply_reset, plan_reset

    chosen = [to_earliest, to_latest, to_datetime is not None, to_offset is not None]
    if sum(chosen) != 1:
        raise fail("give one of --to-earliest, --to-latest, --to-datetime, --to-offset", 2)
    target: ResetTo
    if to_earliest:
        target = "earliest"
    elif to_latest:
        target = "latest"
    elif to_datetime is not None:
        moment = when("--to-datetime", to_datetime)
        assert moment is not None
        target = moment
    else:
        assert to_offset is not None
        target = to_offset
    settings_args = (bootstrap_servers, broker_profile)
    plan = _with_admin(*settings_args, lambda a: plan_reset(a, group, topic, target, partitions))
    if as_json:
        typer.echo(json.dumps({**plan.to_dict(), "dry_run": dry_run}, indent=2))
    else:
        _print_reset(plan)
    if dry_run:
        err.print("dry run: nothing changed")
        return
    _confirm(f"Reset {group} on {len(plan.moves)} partition(s)?", yes, "offsets not reset")
    _with_admin(*settings_args, lambda a: apply_reset(a, plan))
    err.print(f"reset {group} on {len(plan.moves)} partition(s) of {topic}", highlight=False)


# -- replay -------------------------------------------------------------------------------


def _print_replay(plan: ReplayPlan) -> None:
    if plan.mode == "rewind":
        console.print(
            f"rewind {plan.group_id} on {plan.topic}: its consumers re-read {plan.records} "
            "record(s), from the start to the end of the topic",
            highlight=False,
        )
    else:
        create = "" if plan.target_exists else " (a new topic)"
        console.print(
            f"copy {plan.records} record(s) of {plan.topic} to {plan.target}{create} "
            f"for {plan.group_id}",
            highlight=False,
        )
    table = Table("partition", "committed", "from", "until", "records")
    for column in table.columns:
        column.justify = "right"
    for r in plan.ranges:
        table.add_row(
            str(r.partition), _offset(r.committed), str(r.start), str(r.end), str(r.records)
        )
    console.print(table)


def replay(
    topic: Annotated[str, typer.Argument(help="The topic to replay.")],
    group: Annotated[str, typer.Option("--group", "-g", help="The consumer group to re-run it.")],
    from_offset: Annotated[
        int | None, typer.Option("--from-offset", min=0, help="Start at this offset.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start at the first record at or after this time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End before this time (needs --to).")
    ] = None,
    until_offset: Annotated[
        int | None,
        typer.Option("--until-offset", min=0, help="End before this offset (needs --to)."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Copy the range to this replay topic instead of rewinding."),
    ] = None,
    partitions: PartitionsOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Re-run a time or offset range of a topic through a consumer group.

    Without --to the group is rewound: its committed offsets move back to the start of
    the range and its consumers, once started again, re-read everything from there, the
    records after the range included (a group cannot be told where to stop, so --until
    needs --to). With --to the records of the range are copied to that replay topic
    (with replay.* headers) and the group's offsets there are set to its end, so a
    consumer of the group that also reads the replay topic gets exactly the copies; its
    offsets on TOPIC are untouched. Either way the group must have no active members.
    Event ids are kept: consumers with an inbox skip events they already applied.
    """
    from eventbus.ops import plan_replay, run_replay

    if (from_offset is None) == (since is None):
        raise fail("give where the replay starts: --from-offset N or --since TIME", 2)
    if until is not None and until_offset is not None:
        raise fail("give one end: --until TIME or --until-offset N", 2)
    if (until is not None or until_offset is not None) and to is None:
        raise fail(
            "--until needs --to REPLAY_TOPIC: a consumer group cannot be stopped at an offset, "
            "so rewinding it re-reads everything after the start; copy the range to a replay "
            "topic the group also reads (--to), or drop --until to rewind the group",
            2,
        )
    start, end = when("--since", since), when("--until", until)
    settings_args = (bootstrap_servers, broker_profile)
    plan = _with_admin(
        *settings_args,
        lambda a: plan_replay(
            a,
            topic,
            group,
            from_offset=from_offset,
            since=start,
            until=end,
            until_offset=until_offset,
            to=to,
            partitions=partitions,
        ),
    )
    if as_json:
        typer.echo(json.dumps({**plan.to_dict(), "dry_run": dry_run}, indent=2))
    else:
        _print_replay(plan)
    if dry_run:
        err.print("dry run: nothing changed")
        return
    if plan.records == 0:
        err.print("nothing to replay")
        return
    what = f"Rewind {group} on {topic}" if to is None else f"Copy to {to} for {group}"
    _confirm(f"{what} ({plan.records} record(s))?", yes, "not replayed")
    result = _with_admin(*settings_args, lambda a: run_replay(a, plan))
    if plan.mode == "rewind":
        err.print(
            f"rewound {group} on {len(plan.ranges)} partition(s) of {topic}: its consumers "
            f"re-read {plan.records} record(s) when they start",
            highlight=False,
        )
    else:
        err.print(
            f"copied {result.copied} record(s) to {to}"
            f"{' (created)' if result.created else ''}; {group} reads them from there",
            highlight=False,
        )


def register_commands(app: typer.Typer, topics_app: typer.Typer) -> None:
    """Add these commands to the ``eventbus`` app and its ``topics`` group."""
    topics_app.command("describe")(topics_describe)
    app.command("tail")(tail)
    app.command("publish")(publish)
    app.command("lag")(lag)
    groups_app = typer.Typer(help="Consumer groups: reset their offsets.", no_args_is_help=True)
    groups_app.command("reset-offsets")(reset_offsets)
    app.add_typer(groups_app, name="groups")
    app.command("replay")(replay)
