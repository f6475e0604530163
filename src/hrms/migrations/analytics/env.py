"""Alembic environment."""

from hrms.migrations._env import run

run()
