"""The ``eventbus`` command line: ``broker``, ``topics``, ``dlq``, and the operator's
commands of :mod:`eventbus._cli_ops` (``tail``, ``publish``, ``lag``, ``groups``,
``replay``), and ``docs`` (:mod:`eventbus._cli_docs`)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from eventbus._cli_common import Bootstrap, Profile, console, err
from eventbus._cli_common import fail as _fail
from eventbus._cli_common import kafka_settings as _dlq_settings
from eventbus._cli_common import run as _run
from eventbus._cli_common import when as _time
from eventbus._cli_docs import register_docs
from eventbus._cli_ops import register_commands
from eventbus._embedded import EmbeddedBroker, default_data_dir, read_state, stop_from_state
from eventbus._runtime import embedded_kind
from eventbus.errors import EventBusError

if TYPE_CHECKING:
    from eventbus.redrive import DeadLetter, DeadLetterFilter
    from eventbus.settings import KafkaSettings

app = typer.Typer(
    help="eventbus: safe Kafka events for business microservices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="Run the embedded Kafka-protocol broker.", no_args_is_help=True)
topics_app = typer.Typer(help="Inspect topics and apply a topic catalog.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="List, inspect and replay dead-letter records (redrive).", no_args_is_help=True
)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(dlq_app, name="dlq")
register_commands(app, topics_app)
register_docs(app)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Broker data directory (default: $EVENTBUS_DATA_DIR or ./.eventbus)."
    ),
]
Kind = Annotated[
    str | None,
    typer.Option("--kind", help="noida (durable, default) or tansu (memory only)."),
]


def _kind(kind: str | None) -> str:
    value = (kind or embedded_kind()).lower()
    if value not in ("noida", "tansu"):
        raise _fail(f"--kind must be noida or tansu, not {kind!r}", 2)
    return value


@broker_app.command("start")
def broker_start(kind: Kind = None, data_dir: DataDir = None, port: int = 0) -> None:
    """Start the embedded broker in the background (reused if already running)."""
    from eventbus._embedded import start_detached

    path = data_dir or default_data_dir()
    state = read_state(path)
    if state is not None:
        console.print(f"already running: {state.kind} pid {state.pid} at {state.bootstrap_servers}")
        return
    try:
        state = start_detached("noida" if _kind(kind) == "noida" else "tansu", path, port=port)
    except EventBusError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"started {state.kind} (pid {state.pid})")
    console.print(
        f"export KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers} "
        f"KAFKA_BROKER_PROFILE={state.kind}"
    )


@broker_app.command("stop")
def broker_stop(data_dir: DataDir = None) -> None:
    """Stop the background broker gracefully (its data is saved)."""
    path = data_dir or default_data_dir()
    if not stop_from_state(path):
        raise _fail(f"no broker is running for {path}")
    console.print("stopped")


@broker_app.command("status")
def broker_status(data_dir: DataDir = None) -> None:
    """Show whether the background broker runs, and where."""
    path = data_dir or default_data_dir()
    state = read_state(path)
    if state is None:
        console.print(f"not running ({path})")
        raise typer.Exit(3)
    table = Table(show_header=False)
    for key, value in (
        ("kind", state.kind),
        ("pid", str(state.pid)),
        ("bootstrap", state.bootstrap_servers),
        ("since", state.started_at),
        ("data dir", str(path)),
    ):
        table.add_row(key, value)
    console.print(table)


@broker_app.command("run")
def broker_run(kind: Kind = None, data_dir: DataDir = None, port: int = 0) -> None:
    """Run the embedded broker in the foreground until Ctrl-C."""
    try:
        broker = EmbeddedBroker(
            "noida" if _kind(kind) == "noida" else "tansu", data_dir=data_dir, port=port
        ).start()
    except EventBusError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"{broker.kind} listening on {broker.bootstrap_servers} (pid {broker.pid}); Ctrl-C stops it"
    )
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        signal.sigwait(signals)
    finally:
        broker.stop()


@topics_app.command("list")
def topics_list(
    bootstrap_servers: Annotated[
        str | None, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka address.")
    ] = None,
) -> None:
    """List topics and their partition counts."""
    from eventbus._clients import make_transport
    from eventbus.settings import load_settings

    async def run() -> dict[str, int]:
        admin = make_transport(load_settings(bootstrap_servers=bootstrap_servers)).admin()
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.stop()

    try:
        found = asyncio.run(run())
    except EventBusError as exc:
        raise _fail(str(exc)) from exc
    table = Table("topic", "partitions")
    for name in sorted(found):
        table.add_row(name, str(found[name]))
    console.print(table)


@topics_app.command("apply")
def topics_apply(
    catalog_file: Annotated[
        Path, typer.Argument(help="The catalog file (TOML; see eventbus.catalog).")
    ],
    layout: Annotated[
        str | None,
        typer.Option(
            "--layout",
            envvar="KAFKA_TOPIC_LAYOUT",
            help="domain (one topic per domain, the default) or event-type (also one per type).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff; change nothing.")
    ] = False,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            "--replication-factor",
            min=1,
            help="The most replicas any topic gets (1 for a single broker).",
        ),
    ] = None,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka address."
        ),
    ] = None,
) -> None:
    """Make the cluster's topics match a catalog file; idempotent.

    Creates missing topics, adds partitions and sets configs (retention...). It never
    removes partitions, deletes topics or changes a replication factor: those show as
    '!' lines. --dry-run prints the same diff without changing anything.
    """
    from eventbus.catalog import apply_catalog, as_layout, load_catalog

    try:
        specs = load_catalog(catalog_file).specs(as_layout(layout), replication_factor)
    except EventBusError as exc:
        raise _fail(str(exc), 2) from exc
    settings = _dlq_settings(bootstrap_servers, None)
    plan = _run(apply_catalog(specs, settings=settings, dry_run=dry_run))
    for line in plan.lines():
        style = {"+": "green", "~": "yellow", "!": "red"}.get(line[:1])
        console.print(f"[{style}]{line}[/]" if style else line, highlight=False)
    if dry_run:
        console.print("dry run: nothing changed")
    elif plan.changes:
        console.print(f"applied {plan.changes} change(s)")
    else:
        console.print("nothing to change")


# -- dlq: redrive ---------------------------------------------------------------------

DlqTopic = Annotated[str, typer.Argument(help="The dead-letter topic, e.g. leave-dlq.")]
TopicOpt = Annotated[
    str | None,
    typer.Option("--topic", help="Original topic (wildcards allowed: 'leave-*')."),
]
TypeOpt = Annotated[
    str | None, typer.Option("--type", help="Event type (wildcards allowed: 'leave.*').")
]
ExceptionOpt = Annotated[
    str | None, typer.Option("--exception", help="Exception class name, e.g. RuntimeError.")
]
KeyOpt = Annotated[str | None, typer.Option("--key", help="Original record key (exact).")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Tenant id (exact).")]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Failed at or after: ISO 8601 (2025-11-25T18:00Z) or 2h, 7d."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option("--until", help="Failed before: ISO 8601 or a duration ago (30m)."),
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=0, help="At most this many (in topic order).")
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Seconds allowed to read the topic to its end."),
]


def _dlq_filter(
    topic: str | None,
    event_type: str | None,
    exception: str | None,
    key: str | None,
    tenant: str | None,
    since: str | None,
    until: str | None,
) -> DeadLetterFilter:
    from eventbus.redrive import DeadLetterFilter

    try:
        return DeadLetterFilter(
            original_topic=topic,
            event_type=event_type,
            exception_type=exception,
            key=key,
            tenant_id=tenant,
            since=_time("--since", since),
            until=_time("--until", until),
        )
    except EventBusError as exc:
        raise _fail(f"--since/--until: {exc}", 2) from exc


def _read(
    dlq_topic: str,
    settings: KafkaSettings,
    filters: DeadLetterFilter | None,
    limit: int | None,
    timeout: float,
) -> list[DeadLetter]:
    from eventbus.redrive import read_dead_letters

    with err.status(f"reading {dlq_topic} ..."):
        return _run(
            read_dead_letters(
                dlq_topic, settings=settings, filters=filters, limit=limit, timeout_s=timeout
            )
        )


def _offset_label(letter: DeadLetter, partitioned: bool) -> str:
    if partitioned:
        return f"{letter.dlq_partition}:{letter.dlq_offset}"
    return str(letter.dlq_offset)


def _when(letter: DeadLetter) -> str:
    return letter.failed_at.strftime("%Y-%m-%d %H:%M:%S")


def _letters_table(letters: list[DeadLetter], title: str) -> Table:
    partitioned = any(d.dlq_partition != 0 for d in letters)
    table = Table(title=title, title_justify="left")
    table.add_column("offset", justify="right", no_wrap=True)
    table.add_column("original", overflow="fold")
    table.add_column("event type", overflow="fold")
    table.add_column("exception", overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("failed at (UTC)", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("tenant", overflow="fold")
    for d in letters:
        table.add_row(
            _offset_label(d, partitioned),
            d.original,
            d.event_type or "",
            d.exception_type or "",
            str(d.attempts),
            _when(d),
            d.key_text or "",
            d.tenant_id or "",
        )
    return table


@dlq_app.command("list")
def dlq_list(
    dlq_topic: DlqTopic,
    topic: TopicOpt = None,
    event_type: TypeOpt = None,
    exception: ExceptionOpt = None,
    key: KeyOpt = None,
    tenant: TenantOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array, every field and header.")
    ] = False,
    timeout: TimeoutOpt = 60.0,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """List the dead letters of a topic, oldest first, optionally filtered."""
    settings = _dlq_settings(bootstrap_servers, broker_profile)
    filters = _dlq_filter(topic, event_type, exception, key, tenant, since, until)
    letters = _read(dlq_topic, settings, filters, limit, timeout)
    if as_json:
        typer.echo(json.dumps([d.to_dict() for d in letters], indent=2, ensure_ascii=False))
        return
    if not letters:
        console.print(f"no dead letters in {dlq_topic} match")
        return
    console.print(_letters_table(letters, f"{dlq_topic}: {len(letters)} dead letter(s)"))


@dlq_app.command("show")
def dlq_show(
    dlq_topic: DlqTopic,
    offset: Annotated[str, typer.Argument(help="The offset, or PARTITION:OFFSET.")],
    partition: Annotated[
        int | None, typer.Option("--partition", min=0, help="The partition of the offset.")
    ] = None,
    timeout: TimeoutOpt = 60.0,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Show one dead letter: the failure, every header, and the value (JSON pretty)."""
    from rich.json import JSON

    from eventbus.redrive import select_offsets

    settings = _dlq_settings(bootstrap_servers, broker_profile)
    letters = _read(dlq_topic, settings, None, None, timeout)
    try:
        (d,) = select_offsets(letters, [offset], partition=partition)
    except EventBusError as exc:
        raise _fail(f"{dlq_topic}: {exc}") from exc
    summary = Table(show_header=False, title=d.ref, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    for name, value in (
        ("original", d.original),
        ("key", d.key_text),
        ("event type", d.event_type),
        ("event id", d.event_id),
        ("tenant", d.tenant_id),
        ("exception", d.exception_type),
        ("message", d.exception_message),
        ("reason", d.reason),
        ("attempts", str(d.attempts)),
        ("first failed at", d.first_failed_at.isoformat() if d.first_failed_at else None),
        ("failed at", d.failed_at.isoformat()),
        ("consumer group", d.consumer_group),
        ("replayed before", str(d.replay_count) if d.replay_count else None),
    ):
        if value is not None:
            summary.add_row(name, value)
    console.print(summary)
    headers = Table("header", "value", title="headers", title_justify="left")
    headers.columns[1].overflow = "fold"
    for name, raw in d.to_dict()["headers"].items():
        headers.add_row(name, raw or "")
    console.print(headers)
    console.print("[bold]value[/]")
    if not d.value:
        console.print("(empty)")
        return
    try:
        console.print(JSON(json.dumps(json.loads(d.value), ensure_ascii=False)))
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
        console.print(d.value.decode("utf-8", "replace"), markup=False, highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    dlq_topic: DlqTopic,
    topic: TopicOpt = None,
    event_type: TypeOpt = None,
    exception: ExceptionOpt = None,
    key: KeyOpt = None,
    tenant: TenantOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = None,
    offsets: Annotated[
        list[str] | None,
        typer.Option(
            "--offset", help="Only this dead letter (OFFSET or PARTITION:OFFSET); repeatable."
        ),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Send to this topic instead of the original.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    timeout: TimeoutOpt = 60.0,
    bootstrap_servers: Bootstrap = None,
    broker_profile: Profile = None,
) -> None:
    """Send dead letters back to their original topic, with replay markers.

    Value, key and headers are the original ones (dlq.* removed) plus replay.count,
    replay.at, replay.from and replay.previous_attempts. The event_id header is unchanged,
    so a consumer with an inbox skips an event it already applied: replaying twice
    applies an event at most once.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from eventbus.redrive import replay, select_offsets

    settings = _dlq_settings(bootstrap_servers, broker_profile)
    filters = _dlq_filter(topic, event_type, exception, key, tenant, since, until)
    letters = _read(dlq_topic, settings, filters, None if offsets else limit, timeout)
    if offsets:
        try:
            letters = select_offsets(letters, offsets)[:limit]
        except EventBusError as exc:
            raise _fail(
                f"{dlq_topic}: {exc} (among the dead letters matching the filters)"
            ) from exc
    if not letters:
        console.print(f"no dead letters in {dlq_topic} match: nothing to replay")
        return
    targets = sorted({to or d.original_topic or "?" for d in letters})
    where = ", ".join(targets)
    if dry_run:
        plan = _run(replay(letters, settings=settings, target_topic=to, dry_run=True))
        console.print(_letters_table(letters, f"dry run: would replay {plan.total} to {where}"))
        return
    console.print(_letters_table(letters, f"{dlq_topic}: {len(letters)} dead letter(s)"))
    if not yes:
        try:
            confirmed = typer.confirm(f"Replay {len(letters)} dead letter(s) to {where}?")
        except typer.Abort:  # end of input
            console.print()
            confirmed = False
        if not confirmed:
            raise _fail("not replayed (answer y, or pass --yes)")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("replaying", total=len(letters))

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = _run(replay(letters, settings=settings, target_topic=to, progress=advance))
    for outcome in result.outcomes:
        if outcome.error is not None:
            err.print(f"failed: {outcome.dead_letter.ref} -> {outcome.topic}: {outcome.error}")
    console.print(
        f"replayed {result.replayed} of {result.total} dead letter(s) to {where}"
        f" ({result.failed} failed)"
    )
    if result.failed:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - thin entry point
    """Entry point of the ``eventbus`` command."""
    try:
        app()
    except EventBusError as exc:  # a user-facing error, never a traceback
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
