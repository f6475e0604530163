"""The ``eventbus`` command line: ``eventbus broker start|stop|status|run``, ``topics``."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from eventbus._embedded import EmbeddedBroker, default_data_dir, read_state, stop_from_state
from eventbus._runtime import embedded_kind
from eventbus.errors import EventBusError

app = typer.Typer(
    help="eventbus: safe Kafka events for business microservices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="Run the embedded Kafka-protocol broker.", no_args_is_help=True)
topics_app = typer.Typer(help="Inspect and create topics.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
console = Console()
err = Console(stderr=True)

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


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


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


def main() -> None:  # pragma: no cover - thin entry point
    """Entry point of the ``eventbus`` command."""
    try:
        app()
    except EventBusError as exc:  # a user-facing error, never a traceback
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
