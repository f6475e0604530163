"""outbox: the transactional-outbox relay draining a backlog, versus unawaited send_event.

* ``eventbus-aiokafka-enqueue``: the library's unawaited ``send_event`` (as in ``publish``):
  ``await producer.enqueue(topic, event)`` for all N, then ``gather`` the acknowledgements.
* ``outbox-relay-sqlite`` / ``outbox-relay-postgresql``: N undelivered rows are put in a
  fresh outbox table before the clock starts (the first 1000 by ``Outbox.add``, the rest
  copied by ``INSERT ... SELECT``); then an ``OutboxRelay`` with its defaults (500 rows per
  cycle) is started on an already-connected producer, and the run is timed from
  ``relay.start()`` to the moment the relay reports all N rows acknowledged **and marked
  delivered** (its stats count a cycle after the database commit; the run then checks that
  the backlog is 0). SQLite: a file in a temp dir (aiosqlite, WAL). PostgreSQL: a server of
  the scenario's own (``initdb`` + ``pg_ctl`` in a temp dir, fsync off), a fresh database
  per run; skipped with a printed reason where PostgreSQL is not installed.

All contenders use the same eventbus producer defaults on the aiokafka transport, the same
~460-byte envelope and keys (1000 aggregate ids), and a fresh 3-partition topic per run.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench.brokers import BrokerSession
from bench.clients import eventbus_producer
from bench.db import create_pg_database, drop_pg_database, fill_outbox, pg_engine, sqlite_engine
from bench.envelope import EnvelopePool
from bench.harness import (
    BenchError,
    Comparison,
    Contender,
    Measurement,
    RunContext,
    Scenario,
    SkipContender,
)
from bench.pg import MISSING, PgServer, find_bindir
from bench.scenarios.publish import _eventbus_enqueue
from eventbus.outbox import Outbox, OutboxRelay

N_QUICK, N_FULL = 3000, 50_000
WAIT_STEP_S = 0.005


async def setup(
    broker: BrokerSession, pool: EnvelopePool, contenders: Sequence[Contender], quick: bool
) -> dict[str, Any]:
    """Start a PostgreSQL server when a PostgreSQL contender runs and PostgreSQL is here."""
    state: dict[str, Any] = {"postgresql": "not needed"}
    if not any(c.key.endswith("postgresql") for c in contenders):
        return state
    bindir = find_bindir()
    if bindir is None:
        state["postgresql"] = "missing"
        state["pg_skip"] = MISSING
        print(f"  note: {MISSING}; the PostgreSQL contender is skipped")
        return state
    server = PgServer(bindir)
    try:
        await asyncio.to_thread(server.start)
    except Exception as exc:
        await asyncio.to_thread(server.stop)
        state["postgresql"] = "failed to start"
        state["pg_skip"] = f"PostgreSQL did not start: {exc}"
        print(f"  note: {state['pg_skip']}")
        return state
    state["pg"] = server
    state["postgresql"] = f"{bindir} on port {server.port}"
    print(f"  PostgreSQL from {bindir} on port {server.port}")
    return state


async def teardown(state: dict[str, Any]) -> None:
    """Stop the PostgreSQL server, if one was started."""
    server = state.pop("pg", None)
    if server is not None:
        await asyncio.to_thread(server.stop)


DbCpu = Callable[[], float] | None


async def _sqlite(stack: AsyncExitStack, ctx: RunContext) -> tuple[Any, DbCpu]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    stack.callback(shutil.rmtree, tmp, True)
    engine = sqlite_engine(tmp / "outbox.sqlite3")
    stack.push_async_callback(engine.dispose)
    return engine, None  # in-process: its CPU is the client's


async def _postgresql(stack: AsyncExitStack, ctx: RunContext) -> tuple[Any, DbCpu]:
    server: PgServer | None = ctx.state.get("pg")
    if server is None:
        raise SkipContender(ctx.state.get("pg_skip", MISSING))
    name = f"bench_{uuid.uuid4().hex[:12]}"
    url = await create_pg_database(server, name)
    stack.push_async_callback(drop_pg_database, server, name)
    engine = pg_engine(url)
    stack.push_async_callback(engine.dispose)
    return engine, server.cpu_seconds


def _relay(database: str, **relay_options: Any) -> Callable[[RunContext], Any]:
    open_db = _sqlite if database == "sqlite" else _postgresql

    async def run(ctx: RunContext) -> Measurement:
        async with AsyncExitStack() as stack:
            engine, db_cpu = await open_db(stack, ctx)
            outbox = Outbox()
            await outbox.create_tables(engine)
            t0 = time.perf_counter()
            await fill_outbox(engine, outbox, ctx.topic, list(ctx.pool.events), ctx.n)
            fill_s = time.perf_counter() - t0
            backlog = await outbox.backlog(engine)
            if backlog.count != ctx.n:
                raise BenchError(f"the outbox holds {backlog.count} rows, not {ctx.n}")
            producer = await stack.enter_async_context(eventbus_producer(ctx, "aiokafka"))
            await producer.publish(ctx.topic, ctx.pool.events[0])  # connected and warm
            relay = OutboxRelay(outbox, engine, producer, **relay_options)
            ctx.resolved.update(
                batch_size=relay.batch_size,
                poll_interval_s=relay.poll_interval_s,
                database=engine.dialect.name,
            )
            cpu0 = db_cpu() if db_cpu else 0.0
            ctx.timer.start()
            await relay.start()
            stack.push_async_callback(relay.stop)
            deadline = time.perf_counter() + (60.0 if ctx.quick else 240.0)
            while relay.stats.delivered < ctx.n:  # counted after the "delivered" commit
                if not relay.is_running or time.perf_counter() > deadline:
                    raise BenchError(
                        f"the relay delivered {relay.stats.delivered} of {ctx.n}: "
                        f"{relay.stats.last_error}"
                    )
                await asyncio.sleep(WAIT_STEP_S)
            ctx.timer.stop()
            extra = {"db_cpu_s": db_cpu() - cpu0} if db_cpu else {}
            await relay.stop()
            left = await outbox.backlog(engine)
            if left.count or relay.stats.delivered != ctx.n or relay.stats.failed:
                raise BenchError(f"backlog {left.count} after the run; stats {relay.stats}")
            return ctx.timer.measurement(
                ctx.n,
                cycles=float(relay.stats.batches),
                fill_s=fill_s,
                batch_size=float(relay.batch_size),
                **extra,
            )

    return run


_RELAY_SETTINGS = {"batch_size": 500, "poll_interval_s": 0.2, "cleanup_interval_s": 60.0}

SCENARIO = Scenario(
    name="outbox",
    title="outbox: relay draining N rows vs unawaited send_event (msgs/s, higher is better)",
    description=(
        "N envelopes to a fresh 3-partition topic. eventbus-aiokafka-enqueue: enqueue() all "
        "N, then gather the acknowledgements. outbox-relay-*: N undelivered rows pre-inserted "
        "into a fresh outbox table; timed from OutboxRelay.start() until the relay has "
        "marked all N delivered (defaults: 500 rows per cycle). SQLite (aiosqlite, WAL) and "
        "PostgreSQL (own server, fsync off; skipped when not installed)."
    ),
    metric="throughput",
    order=50,
    setup=setup,
    teardown=teardown,
    columns=[("cycles", "cycles"), ("db_cpu_s", "db CPU s")],
    contenders=[
        Contender(
            "eventbus-aiokafka-enqueue",
            "eventbus[aiokafka] enqueue() + gather",
            "eventbus",
            "aiokafka",
            _eventbus_enqueue("aiokafka"),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings={"transport": "aiokafka"},
            notes="the unawaited send_event, as in the publish scenario",
        ),
        Contender(
            "outbox-relay-sqlite",
            "OutboxRelay on SQLite",
            "eventbus",
            "aiokafka",
            _relay("sqlite"),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings={"transport": "aiokafka", "database": "sqlite+aiosqlite (WAL)"},
            effective=_RELAY_SETTINGS,
            notes="single relay (claim_single): read 500 rows, publish, mark in a second "
            "transaction",
        ),
        Contender(
            "outbox-relay-postgresql",
            "OutboxRelay on PostgreSQL",
            "eventbus",
            "aiokafka",
            _relay("postgresql"),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings={"transport": "aiokafka", "database": "postgresql+asyncpg"},
            effective=_RELAY_SETTINGS,
            notes="shared-relay claim (advisory locks per key + FOR UPDATE SKIP LOCKED), "
            "publish and mark in one READ COMMITTED transaction",
        ),
        Contender(
            "outbox-relay-sqlite-b2000",
            "OutboxRelay on SQLite, batch_size=2000",
            "eventbus",
            "aiokafka",
            _relay("sqlite", batch_size=2000),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings={"transport": "aiokafka", "database": "sqlite+aiosqlite (WAL)"},
            effective={**_RELAY_SETTINGS, "batch_size": 2000},
            notes="the one relay setting that matters here: 4x fewer cycles, so 4x fewer "
            "acknowledgement waits and database round trips",
        ),
        Contender(
            "outbox-relay-postgresql-b2000",
            "OutboxRelay on PostgreSQL, batch_size=2000",
            "eventbus",
            "aiokafka",
            _relay("postgresql", batch_size=2000),
            n_quick=N_QUICK,
            n_full=N_FULL,
            settings={"transport": "aiokafka", "database": "postgresql+asyncpg"},
            effective={**_RELAY_SETTINGS, "batch_size": 2000},
            notes="as outbox-relay-postgresql with 2000 rows (and advisory locks) per cycle",
        ),
    ],
    comparisons=[
        Comparison(
            "relay on SQLite / unawaited send_event (target >= 0.5x)",
            "outbox-relay-sqlite",
            "eventbus-aiokafka-enqueue",
        ),
        Comparison(
            "relay on PostgreSQL / unawaited send_event (target >= 0.5x)",
            "outbox-relay-postgresql",
            "eventbus-aiokafka-enqueue",
        ),
        Comparison(
            "relay on SQLite, batch 2000 / unawaited send_event",
            "outbox-relay-sqlite-b2000",
            "eventbus-aiokafka-enqueue",
        ),
        Comparison(
            "relay on PostgreSQL, batch 2000 / unawaited send_event",
            "outbox-relay-postgresql-b2000",
            "eventbus-aiokafka-enqueue",
        ),
    ],
)
