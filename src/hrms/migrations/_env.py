"""The Alembic environment every service's history shares (online mode only)."""

from __future__ import annotations

from alembic import context


def run() -> None:
    """Run the migrations on the connection the caller put in the config."""
    cfg = context.config
    connection = cfg.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=cfg.attributes["metadata"],
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
