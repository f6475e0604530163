"""Alembic migrations, one history per service (``hrms/migrations/<service>/versions``).

Services run :func:`upgrade` at start. ``hrms db-revision <service> -m "..."`` writes a
new revision by comparing the service's models with a scratch database at head.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent


def config(service: str, connection: Connection | None, metadata: MetaData) -> Config:
    """The Alembic config of ``service``'s migration history."""
    cfg = Config()
    cfg.set_main_option("path_separator", "os")  # a path may hold spaces; one location
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

    A service without a history yet (a model being written) gets ``create_all``. On
    PostgreSQL an advisory lock keeps replicas that start together from racing.
    """

    def run(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            # Replicas starting together migrate one after the other (the lock is held
            # until this transaction commits; PostgreSQL's DDL is transactional).
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"hrms-migrate-{service}"},
            )
        if has_history(service):
            command.upgrade(config(service, conn, metadata), "head")
        else:
            metadata.create_all(conn)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def revision(
    service: str, engine: AsyncEngine, metadata: MetaData, message: str
) -> list[Path]:
    """Autogenerate a revision of ``service`` against ``engine`` (a scratch database).

    The scratch database is first upgraded to head, so the revision holds what the models
    have that the history lacks. The new file is then tidied with ruff (``check --fix``,
    ``format``) when ruff is installed. Returns the files written.
    """
    home = HERE / service
    (home / "versions").mkdir(parents=True, exist_ok=True)
    env = home / "env.py"
    if not env.exists():
        env.write_text(
            '"""Alembic environment."""\n\nfrom hrms.migrations._env import run\n\nrun()\n'
        )
    # Alembic reads the template from the service's directory: keep it the shared one.
    template = (HERE / "script.py.mako").read_text()
    copy = home / "script.py.mako"
    if not copy.exists() or copy.read_text() != template:
        copy.write_text(template)

    written: list[Path] = []

    def run(conn: Connection) -> None:
        cfg = config(service, conn, metadata)
        command.upgrade(cfg, "head")
        cfg.attributes["skip_empty"] = True
        scripts = command.revision(cfg, message=message, autogenerate=True)
        for script in scripts if isinstance(scripts, list) else [scripts]:
            if script is not None:
                written.append(Path(script.path))

    async with engine.begin() as conn:
        await conn.run_sync(run)
    tidy(written)
    return written


def tidy(paths: list[Path]) -> bool:
    """Lint-fix and format ``paths`` with ruff; ``False`` when ruff is not installed."""
    if not paths or importlib.util.find_spec("ruff") is None:
        return False
    files = [str(p) for p in paths]
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "--quiet", *files], check=False)
    subprocess.run([*ruff, "format", "--quiet", *files], check=True)
    return True
