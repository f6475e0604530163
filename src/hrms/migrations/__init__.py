"""Alembic migrations, one history per service (``hrms/migrations/<service>/versions``).

Services run :func:`upgrade` at start. ``hrms db revision <service> -m "..."`` writes a
new revision by comparing the service's models with a scratch database at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent


def config(service: str, connection: Connection | None, metadata: MetaData) -> Config:
    """The Alembic config of ``service``'s migration history."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / service))
    cfg.set_main_option("version_locations", str(HERE / service / "versions"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    cfg.attributes["metadata"] = metadata
    return cfg


def has_history(service: str) -> bool:
    """Whether ``service`` has a migration history."""
    return (HERE / service / "env.py").exists()


async def upgrade(service: str, engine: AsyncEngine, metadata: MetaData) -> None:
    """Bring ``service``'s database to the newest revision.

    A service without a history yet (a model being written) gets ``create_all``.
    """

    def run(conn: Connection) -> None:
        if has_history(service):
            command.upgrade(config(service, conn, metadata), "head")
        else:
            metadata.create_all(conn)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def revision(service: str, engine: AsyncEngine, metadata: MetaData, message: str) -> None:
    """Autogenerate a revision of ``service`` against ``engine`` (a scratch database)."""
    (HERE / service / "versions").mkdir(parents=True, exist_ok=True)
    env = HERE / service / "env.py"
    if not env.exists():
        env.write_text(
            '"""Alembic environment."""\n\nfrom hrms.migrations._env import run\n\nrun()\n'
        )
        (HERE / service / "script.py.mako").write_text((HERE / "script.py.mako").read_text())
        (HERE / service / "__init__.py").write_text("")
        (HERE / service / "versions" / "__init__.py").write_text("")

    def run(conn: Connection) -> None:
        cfg = config(service, conn, metadata)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)

    async with engine.begin() as conn:
        await conn.run_sync(run)
