"""Record ids as the HTTP APIs accept them.

Ids live in ``Integer`` columns: past 2**31 - 1 PostgreSQL's ``integer`` cannot hold one
and past 2**63 - 1 SQLite's driver raises ``OverflowError``. Such an id names no record,
so the APIs refuse it as a validation error (422) instead of failing with a 500.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field

MAX_ID: Final = 2**31 - 1
"""The largest id an ``Integer`` column holds on every supported database."""

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A record id in a path, a query or a body: 1 to :data:`MAX_ID`."""
