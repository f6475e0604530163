"""Every service's Alembic history builds exactly the schema its models describe.

For each service, on a fresh SQLite file and a fresh PostgreSQL database (one per
service and test): upgrading to head leaves nothing for Alembic's autogenerate to find
(``compare_metadata`` against ``Service.metadata``, types and server defaults included),
so models and migrations cannot drift apart unnoticed; a second upgrade changes nothing;
downgrading to base and upgrading again gives the same schema. ``revision`` (what
``hrms db-revision`` runs) is checked on a scratch history: a custom column type's
module is imported by the revision, and models in step with their history give no
revision at all.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    event,
    inspect,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import hrms.migrations
from eventbus._sql import UTCDateTime
from eventbus.testing import MemoryBroker
from hrms.migrations import config, has_history, revision, upgrade
from hrms.service import HrmsSettings, Service
from hrms.services import PORTS, build
from tests.pg import PgServer, fresh_database

SERVICES = list(PORTS)
MIGRATIONS = Path(hrms.migrations.__file__).parent
SECRET = "test-secret-" + "x" * 40
WRITES = re.compile(r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | None]:
    """``None`` (the service's SQLite file in the temp dir), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    server: PgServer = request.getfixturevalue("pg_server")
    async with fresh_database(server, prefix="migrations") as url:
        yield url


@pytest.fixture
async def service(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str | None
) -> AsyncIterator[Service]:
    """The service named by the test's ``name`` parameter, on the test's database."""
    name: str = request.getfixturevalue("name")
    settings = HrmsSettings(
        HRMS_DATA_DIR=tmp_path, HRMS_JWT_SECRET=SECRET, DATABASE_URL=database_url
    )
    svc = build(name, settings=settings, transport=MemoryBroker())
    try:
        yield svc
    finally:
        await svc.engine.dispose()


def differences(conn: Connection, metadata: MetaData) -> list[Any]:
    """What autogenerate would put in a new revision (empty: models and schema agree)."""
    ctx = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(ctx, metadata))


def _normal(where: Any, conn: Connection) -> str:
    if not isinstance(where, str):
        where = str(
            where.compile(conn, compile_kwargs={"literal_binds": True, "include_table": False})
        )
    return re.sub(r"[\s()]", "", where).lower()


def where_differences(conn: Connection, metadata: MetaData) -> list[str]:
    """Partial indexes whose ``WHERE`` differs from the model's (autogenerate ignores it)."""
    key = f"{conn.dialect.name}_where"
    insp = inspect(conn)
    found: list[str] = []
    for table in metadata.tables.values():
        reflected = {i["name"]: i.get("dialect_options", {}) for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            wanted = index.kwargs.get(key)
            got = reflected.get(index.name, {}).get(key)
            if wanted is None and got is None:
                continue
            if wanted is None or got is None or _normal(wanted, conn) != _normal(got, conn):
                found.append(f"{index.name}: model {wanted!s}, database {got!s}")
    return found


async def current(engine: AsyncEngine) -> set[str]:
    """The revisions the database is at."""
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads()))


def history_heads(service: Service) -> set[str]:
    script = ScriptDirectory.from_config(config(service.name, None, service.metadata))
    return set(script.get_heads())


async def schema(engine: AsyncEngine) -> dict[str, Any]:
    """Tables with their columns, indexes, unique constraints and primary keys."""

    def read(conn: Connection) -> dict[str, Any]:
        insp = inspect(conn)
        return {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
                ],
                "indexes": sorted(
                    (
                        i["name"] or "",
                        tuple(i["column_names"]),
                        bool(i["unique"]),
                        str(sorted((k, str(v)) for k, v in i.get("dialect_options", {}).items())),
                    )
                    for i in insp.get_indexes(table)
                ),
                "unique": sorted(
                    (u["name"] or "", tuple(u["column_names"]))
                    for u in insp.get_unique_constraints(table)
                ),
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
            }
            for table in sorted(insp.get_table_names())
        }

    async with engine.connect() as conn:
        return await conn.run_sync(read)


class Statements:
    """Records the SQL an engine runs while active."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.seen: list[str] = []

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def writes(self) -> list[str]:
        return [s for s in self.seen if WRITES.match(s)]


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_one_linear_history(name: str) -> None:
    assert has_history(name), f"{name} has no migrations: run hrms db-revision {name}"
    home = MIGRATIONS / name
    assert (home / "script.py.mako").read_text() == (MIGRATIONS / "script.py.mako").read_text()
    script = ScriptDirectory.from_config(config(name, None, MetaData()))
    assert len(script.get_heads()) == 1, f"{name} has several heads: merge them"
    assert len(script.get_bases()) == 1


@pytest.mark.parametrize("name", SERVICES)
async def test_upgrade_builds_exactly_the_models(name: str, service: Service) -> None:
    await service.migrate()

    assert await current(service.engine) == history_heads(service)
    async with service.engine.connect() as conn:
        diff = await conn.run_sync(differences, service.metadata)
    assert diff == [], f"{name}: the models and the migrations differ; db-revision it"
    async with service.engine.connect() as conn:
        assert await conn.run_sync(where_differences, service.metadata) == []
    tables = set((await schema(service.engine)).keys())
    assert tables == set(service.metadata.tables) | {"alembic_version"}


@pytest.mark.parametrize("name", SERVICES)
async def test_upgrading_twice_is_a_no_op(name: str, service: Service) -> None:
    await service.migrate()
    before = await schema(service.engine)
    at = await current(service.engine)

    with Statements(service.engine) as sql:
        await service.migrate()

    assert sql.writes() == []
    assert await current(service.engine) == at
    assert await schema(service.engine) == before


@pytest.mark.parametrize("name", SERVICES)
async def test_downgrade_to_base_and_back(name: str, service: Service) -> None:
    await service.migrate()
    before = await schema(service.engine)

    def down(conn: Connection) -> None:
        command.downgrade(config(name, conn, service.metadata), "base")

    async with service.engine.begin() as conn:
        await conn.run_sync(down)
    assert set((await schema(service.engine)).keys()) <= {"alembic_version"}
    assert await current(service.engine) == set()

    await service.migrate()
    assert await schema(service.engine) == before


# --------------------------------------------------------------------------- db-revision


@pytest.fixture
def scratch_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty migrations directory standing in for ``hrms/migrations``."""
    home = tmp_path / "migrations"
    home.mkdir()
    shutil.copy(MIGRATIONS / "script.py.mako", home / "script.py.mako")
    monkeypatch.setattr(hrms.migrations, "HERE", home)
    return home


def widgets(extra: bool = False) -> MetaData:
    metadata = MetaData()
    columns: list[Any] = [
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
        Column("made_at", UTCDateTime(), nullable=False),
        Index("ix_widgets_unmade", "id", sqlite_where=text("made_at IS NULL")),
    ]
    if extra:
        columns.append(Column("colour", String(20)))
    Table("widgets", metadata, *columns)
    return metadata


async def test_revision_imports_custom_types_and_skips_when_in_step(
    scratch_history: Path, tmp_path: Path
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'scratch.sqlite3'}")
    try:
        first = await revision("widgets", engine, widgets(), "initial schema")
        assert len(first) == 1
        source = first[0].read_text()
        imports = {
            alias.name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert "eventbus._sql" in imports  # UTCDateTime's module, which the revision names
        assert "eventbus._sql.UTCDateTime(" in source
        assert "sqlite_where=sa.text(" in source
        compile(source, str(first[0]), "exec")

        assert await revision("widgets", engine, widgets(), "nothing") == []

        second = await revision("widgets", engine, widgets(extra=True), "add colour")
        assert len(second) == 1
        assert "add_column" in second[0].read_text()
        assert "eventbus._sql" not in second[0].read_text()  # no unused import
    finally:
        await engine.dispose()

    fresh = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}")
    try:
        await upgrade("widgets", fresh, widgets(extra=True))
        async with fresh.connect() as conn:
            assert await conn.run_sync(differences, widgets(extra=True)) == []
    finally:
        await fresh.dispose()
