"""The ``hrms`` command line: run the system, one service, the demo, admin tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from eventbus import EventBusError
from eventbus._embedded import stop_from_state
from eventbus._runtime import Cluster, resolve_cluster, settings_for
from hrms.service.context import configure_logging
from hrms.service.settings import HrmsSettings

app = typer.Typer(
    help="The HRMS/ERP system on eventbus.", no_args_is_help=True, pretty_exceptions_enable=False
)
admin_app = typer.Typer(help="Tenants and administrators.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
console = Console()

DEV_TENANT = "acme"
DEV_ADMIN = "admin@acme.example"


@app.callback()
def _root() -> None:
    """The HRMS/ERP system on eventbus."""


def _cluster() -> Cluster:
    cluster = resolve_cluster()
    where = "embedded " + cluster.profile if cluster.embedded else "configured cluster"
    console.print(
        f"[bold]kafka[/]: {where} at {cluster.bootstrap_servers}"
        + (f" (pid {cluster.pid})" if cluster.pid else "")
    )
    return cluster


def _stop_broker(cluster: Cluster, keep: bool) -> None:
    if cluster.started_now and not keep:
        from eventbus._embedded import default_data_dir

        stop_from_state(default_data_dir())
        console.print("[bold]kafka[/]: embedded broker stopped (data kept)")


async def _until_signalled(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option(help="Run the demo walkthrough once everything is up.")
    ] = False,
    once: Annotated[
        bool, typer.Option(help="Stop after start-up (and the demo), don't wait.")
    ] = False,
    keep_broker: Annotated[
        bool, typer.Option(help="Leave the embedded broker running afterwards.")
    ] = False,
) -> None:
    """Run the whole system: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), every
    service on its own port, an SMTP sink and the hub; Ctrl-C stops it all."""
    configure_logging(logging.WARNING)
    settings = HrmsSettings()
    cluster = _cluster()
    ok = True
    try:
        ok = asyncio.run(_up(settings, settings_for(cluster), demo=demo, once=once))
    finally:
        _stop_broker(cluster, keep_broker)
    if not ok:
        raise typer.Exit(1)


async def _up(settings: HrmsSettings, kafka: Any, *, demo: bool, once: bool) -> bool:
    from hrms.services.users import bootstrap_admin
    from hrms.system import System

    system = System(settings, kafka)
    await system.start()
    ok = True
    try:
        password = settings.kept_secret("admin-password", 12)
        await bootstrap_admin(system.running["users"], DEV_TENANT, DEV_ADMIN, password)
        console.print(f"[bold]hub[/]: {system.hub_url}  web console: {system.hub_url}/console")
        for name in system.running:
            console.print(f"  {name:<14} {system.url(name)}   docs: {system.url(name)}/docs")
        console.print(
            f"[bold]admin[/]: tenant {DEV_TENANT!r}, {DEV_ADMIN} / {password} "
            f"(POST {system.url('users')}/auth/login)"
        )
        if demo:
            from hrms.walkthrough import run_walkthrough

            ok = await run_walkthrough(
                system.hub_url,
                console,
                tenant=DEV_TENANT,
                admin_email=DEV_ADMIN,
                admin_password=password,
            )
        if not once:
            console.print("running; Ctrl-C stops everything")
            await _until_signalled(asyncio.Event())
    finally:
        await system.stop()
        console.print("all services stopped")
    return ok


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="users, employees, leaves, attendance, ...")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (the service's default when unset).")
    ] = None,
) -> None:
    """Run one service alone, against KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (production)."""
    import uvicorn

    from hrms.services import PORTS, build

    if service not in PORTS:
        console.print(f"[bold red]error:[/] no service {service!r}; one of: {', '.join(PORTS)}")
        raise typer.Exit(2)
    configure_logging(logging.INFO)
    cluster = _cluster()
    svc = build(service, kafka=settings_for(cluster))
    uvicorn.run(svc.app(), host=host, port=port or PORTS[service], log_config=None)


@app.command()
def demo(
    hub: Annotated[
        str, typer.Option(help="The hub URL of a running system.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Drive the demo scenario through the public HTTP APIs of a running system."""
    from hrms.walkthrough import run_walkthrough

    if not asyncio.run(run_walkthrough(hub, console)):
        raise typer.Exit(1)


@app.command()
def flow(
    keep_broker: Annotated[
        bool, typer.Option(help="Leave the embedded broker running afterwards.")
    ] = False,
) -> None:
    """The library-level event flow (no services): publish, consume, dead-letter, low stock."""
    from hrms.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cluster = _cluster()
    try:
        result = asyncio.run(run_demo(settings_for(cluster), console))
    finally:
        _stop_broker(cluster, keep_broker)
    console.print(
        f"[bold]{len(result.published)} published, {len(result.handled)} handled, "
        f"{len(result.dead_letters)} dead-lettered, audit batches {result.audit_batches}[/]"
    )
    if not result.ok:
        raise typer.Exit(1)


def _with_service(name: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(service)`` on service ``name``'s database (no Kafka clients started)."""
    from hrms.services import build

    async def run() -> Any:
        service = build(name)
        try:
            await service.migrate()
            return await work(service)
        finally:
            await service.engine.dispose()

    return asyncio.run(run())


@admin_app.command("create")
def admin_create(
    tenant: Annotated[str, typer.Option(help="The tenant id.")],
    email: Annotated[str, typer.Option(help="The administrator's e-mail (login).")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Password.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "Administrator",
) -> None:
    """Create a tenant's first administrator (idempotent by e-mail)."""
    from hrms.services.users import bootstrap_admin

    user_id = _with_service("users", lambda s: bootstrap_admin(s, tenant, email, password, name))
    console.print(f"administrator {email} of tenant {tenant!r}: user id {user_id}")


@audit_app.command("verify")
def audit_verify(
    tenant: Annotated[str, typer.Option(help="The tenant whose chain to check.")],
) -> None:
    """Check the tenant's audit hash chain: a changed, deleted or truncated record fails."""
    from hrms.services.audit import verify_chain

    result = _with_service("audit", lambda s: verify_chain(s, tenant))
    console.print(result)
    if not result.ok:
        raise typer.Exit(1)


@app.command("db-revision")
def db_revision(
    service: Annotated[str, typer.Argument(help="The service whose models changed.")],
    message: Annotated[str, typer.Option("-m", help="What changed.")],
) -> None:
    """Autogenerate an Alembic revision for a service (against a scratch SQLite database)."""
    import tempfile

    from sqlalchemy.ext.asyncio import create_async_engine

    from hrms.migrations import revision
    from hrms.services import build

    with tempfile.TemporaryDirectory() as tmp:
        svc = build(service, settings=HrmsSettings(HRMS_DATA_DIR=Path(tmp)))
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp}/scratch.sqlite3")

        async def run() -> list[Path]:
            try:
                return await revision(service, engine, svc.metadata, message)
            finally:
                await engine.dispose()
                await svc.engine.dispose()

        written = asyncio.run(run())
    if not written:
        console.print(f"no changes: the {service} models match their migrations")
    for path in written:
        console.print(f"new revision: {path}", soft_wrap=True)


def main() -> None:  # pragma: no cover - thin entry point
    """Entry point of the ``hrms`` command."""
    from pydantic import ValidationError

    try:
        app()
    except (EventBusError, ValidationError) as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
