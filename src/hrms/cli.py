"""The ``hrms`` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

from eventbus import EventBusError
from eventbus._embedded import stop_from_state
from eventbus._runtime import resolve_cluster, settings_for

app = typer.Typer(
    help="The HRMS/ERP system on eventbus.", no_args_is_help=True, pretty_exceptions_enable=False
)
console = Console()


@app.callback()
def _root() -> None:
    """The HRMS/ERP system on eventbus."""


@app.command()
def up(
    keep_broker: Annotated[
        bool, typer.Option(help="Leave the embedded broker running afterwards.")
    ] = False,
) -> None:
    """Start the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and run the demo flow."""
    from hrms.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cluster = resolve_cluster()
    where = "embedded " + cluster.profile if cluster.embedded else "configured cluster"
    console.print(
        f"[bold]kafka[/]: {where} at {cluster.bootstrap_servers}"
        + (f" (pid {cluster.pid})" if cluster.pid else "")
    )
    try:
        result = asyncio.run(run_demo(settings_for(cluster), console))
    finally:
        if cluster.started_now and not keep_broker:
            stop_from_state_default()
            console.print("[bold]kafka[/]: embedded broker stopped (data kept)")
    console.print(
        f"[bold]{len(result.published)} published, {len(result.handled)} handled, "
        f"{len(result.dead_letters)} dead-lettered, audit batches {result.audit_batches}[/]"
    )
    if not result.ok:
        raise typer.Exit(1)


def stop_from_state_default() -> None:
    """Stop the embedded broker recorded in the default data directory."""
    from eventbus._embedded import default_data_dir

    stop_from_state(default_data_dir())


def main() -> None:  # pragma: no cover - thin entry point
    """Entry point of the ``hrms`` command."""
    try:
        app()
    except EventBusError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
