"""The fault suite's workload: a known set of events, poison among them, and their effects.

Shared by the scenario tests and by the consumer worker process (``tests.faults.worker``),
so it imports nothing from pytest.

* Every record carries an identity: the ``event_id`` header of an event, or the
  ``fault-id`` header of a raw (non-JSON) poison record.
* A good event's side effect is one row in ``effects``, written by the handler in the
  inbox's transaction (:class:`eventbus.inbox.Inbox` as consumer middleware), so a
  redelivered event is skipped and counted, never applied twice. ``effects`` has no
  unique constraint on purpose: a second application would show up as a second row
  instead of being hidden by an integrity error.
* Poison: values that are not JSON, not a JSON object or empty (dead-lettered as
  ``decode`` failures before the handler runs), and events whose handler writes its
  effect and then raises a non-retryable error (``DeadLetterNow`` or a Pydantic
  ``ValidationError``), which must roll the effect back and dead-letter the record once.
* ``flaky`` events fail their first attempt after writing the effect (a transient error):
  the retry must apply them exactly once and they must not be dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, event, insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from eventbus import BaseEvent, DeadLetterNow, KafkaProducer, MessageContext, Record
from eventbus._codec import header_value
from eventbus.inbox import SESSION, Inbox

FAULT_ID = "fault-id"
"""Header naming a raw poison record (events are named by their ``event_id`` header)."""

EVENT_TYPE = "order.placed"

effects_md = MetaData()
effects = Table(
    "effects",
    effects_md,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("n", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_effects_event_id", effects.c.event_id)  # not unique: duplicates must be visible


class Amount(BaseModel):
    """What the handler validates ``data`` against (a ``bad-amount`` poison fails it)."""

    n: int
    amount: int


# -- the planned items -----------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One record to publish: a good event, a poison event, or a raw poison value."""

    kind: str  # "good", "flaky", "dead-letter-now", "bad-amount", or "raw"
    ident: str  # the event id, or the raw record's fault id
    n: int
    event: BaseEvent | None = None
    raw: bytes | None = None
    key: str = ""

    @property
    def poison(self) -> bool:
        return self.kind not in ("good", "flaky")

    def headers(self) -> list[tuple[str, bytes]]:
        return [(FAULT_ID, self.ident.encode())]


RAW_POISON: tuple[bytes, ...] = (
    b"\xff\xfe not json at all",
    b'{"event_id": "truncated", "data": {',
    b"[1, 2, 3]",
    b'"just a string"',
    b"",
)


@dataclass
class Plan:
    """The known set of events a scenario publishes."""

    items: list[Item]

    @property
    def good(self) -> set[str]:
        return {i.ident for i in self.items if not i.poison}

    @property
    def poison(self) -> Counter[str]:
        return Counter(i.ident for i in self.items if i.poison)

    @property
    def events(self) -> int:
        return len(self.items)

    def count(self, kind: str) -> int:
        return sum(1 for i in self.items if i.kind == kind)


def make_plan(
    total: int,
    *,
    raw: int,
    dead_letter_now: int,
    bad_amount: int = 0,
    flaky: int = 0,
    seed: int = 7,
    keys: int = 64,
    raw_kinds: Sequence[bytes] = RAW_POISON,
) -> Plan:
    """``total`` items in a shuffled (but seeded) order, poison spread through the stream."""
    rng = random.Random(seed)
    kinds = (
        ["raw"] * raw
        + ["dead-letter-now"] * dead_letter_now
        + ["bad-amount"] * bad_amount
        + ["flaky"] * flaky
    )
    kinds += ["good"] * (total - len(kinds))
    rng.shuffle(kinds)
    items: list[Item] = []
    for n, kind in enumerate(kinds):
        key = f"k{rng.randrange(keys)}"
        if kind == "raw":
            value = raw_kinds[n % len(raw_kinds)]
            items.append(Item(kind, f"raw-{n}-{uuid.uuid4().hex[:8]}", n, raw=value, key=key))
            continue
        data: dict[str, Any] = {"n": n, "amount": n * 10}
        if kind == "dead-letter-now":
            data["poison"] = True
        elif kind == "bad-amount":
            data["amount"] = "not a number"
        elif kind == "flaky":
            data["flaky"] = True
        ev = BaseEvent(event_type=EVENT_TYPE, source_service="fault-suite", data=data)
        items.append(Item(kind, str(ev.event_id), n, event=ev, key=key))
    return Plan(items)


async def publish(
    producer: KafkaProducer,
    topic: str,
    items: Iterable[Item],
    *,
    attempts: int = 20,
    in_flight: Callable[[], object] | None = None,
) -> int:
    """Publish ``items`` pipelined; re-send what was not acknowledged (same identity).

    ``in_flight`` is called once, after the records were handed to the client and before
    their acknowledgements are awaited: the moment to inject a fault mid-produce.

    Returns how many sends had to be repeated (an unacknowledged send may still have
    reached the broker, so the topic may hold a few records twice: deliveries repeat,
    effects must not).
    """
    todo = list(items)
    resent = 0
    for _ in range(attempts):
        futures: list[tuple[Item, asyncio.Future[Any]]] = []
        failed: list[Item] = []
        for item in todo:
            if item.event is not None:
                futures.append((item, await producer.enqueue(topic, item.event, key=item.key)))
            elif not await producer.send_raw(topic, item.raw, key=item.key, headers=item.headers()):
                failed.append(item)
        if in_flight is not None:
            in_flight()
            in_flight = None
        results = await asyncio.gather(
            *(asyncio.wait_for(f, producer.delivery_timeout_s) for _, f in futures),
            return_exceptions=True,
        )
        failed += [
            item
            for (item, _), r in zip(futures, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if not failed:
            return resent
        resent += len(failed)
        todo = failed
    raise AssertionError(f"{len(todo)} records still not acknowledged after {attempts} rounds")


# -- the consumer's side ---------------------------------------------------------------------
class Effects:
    """The handler and its database: effects and the inbox in one SQLite file (WAL)."""

    def __init__(self, path: Path, worker: str = "main") -> None:
        self.path = path
        self.worker = worker
        self.engine: AsyncEngine = create_async_engine(
            f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 60}
        )
        event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.inbox = Inbox()
        self.calls = 0
        self.failed_once: set[str] = set()

    async def create(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(effects_md.create_all)
        await self.inbox.create_tables(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def middleware(self) -> Any:
        return self.inbox.middleware(self.sessions)

    async def handle(self, payload: dict[str, Any], ctx: MessageContext) -> None:
        """Apply the event's effect in the inbox's transaction, or fail as planned."""
        self.calls += 1
        session: AsyncSession = ctx.state[SESSION]
        data = payload.get("data") or {}
        await session.execute(
            insert(effects).values(
                event_id=str(payload["event_id"]), n=int(data.get("n", -1)), worker=self.worker
            )
        )
        if data.get("poison"):
            raise DeadLetterNow("poison event: the handler refuses it")
        Amount.model_validate(data)  # a ValidationError is never retried
        if data.get("flaky") and payload["event_id"] not in self.failed_once:
            self.failed_once.add(str(payload["event_id"]))
            raise RuntimeError("transient failure on the first attempt")


class TxnGate:
    """Tracks this process's Kafka transactions (the consumer's atomic dead letters) and
    can hold new ones back, by patching aiokafka's ``AIOKafkaProducer``.

    Test instrumentation: while ``hold()`` is true no transaction begins (the call waits),
    and ``in_txn`` says whether one is open, so a fault can be injected at an instant
    when no dead-letter transaction is in flight. With ``hang``, the first transaction
    writes its record, then writes that file and never commits.
    """

    def __init__(self, hold: Callable[[], bool] = lambda: False, hang: Path | None = None):
        self.hold = hold
        self.hang = hang
        self.in_txn = False
        self.txns = 0

    def install(self, patch: Callable[[Any, str, Any], None] = setattr) -> None:
        from aiokafka import AIOKafkaProducer

        gate = self
        begin, commit, abort = (
            AIOKafkaProducer.begin_transaction,
            AIOKafkaProducer.commit_transaction,
            AIOKafkaProducer.abort_transaction,
        )

        async def gated_begin(producer: Any) -> None:
            while gate.hold():  # noqa: ASYNC110 - hold is a plain predicate set by the test
                await asyncio.sleep(0.01)
            gate.in_txn = True  # no await since the check: no instant looks idle wrongly
            try:
                await begin(producer)
            except BaseException:
                gate.in_txn = False
                raise

        async def gated_commit(producer: Any) -> None:
            try:
                if gate.hang is not None and gate.txns == 0:
                    await producer.flush()  # the dead-letter record is written...
                    gate.hang.write_text("in a dead-letter transaction")
                    await asyncio.Event().wait()  # ...and never committed
                await commit(producer)
            finally:
                gate.in_txn = False
                gate.txns += 1

        async def gated_abort(producer: Any) -> None:
            try:
                await abort(producer)
            finally:
                gate.in_txn = False

        patch(AIOKafkaProducer, "begin_transaction", gated_begin)
        patch(AIOKafkaProducer, "commit_transaction", gated_commit)
        patch(AIOKafkaProducer, "abort_transaction", gated_abort)


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def effect_counts(path: Path) -> Counter[str]:
    """Applied effects per event id (read with a plain connection: WAL lets us read)."""
    with sqlite3.connect(path, timeout=60) as conn:
        return Counter(eid for (eid,) in conn.execute("SELECT event_id FROM effects"))


def effect_total(path: Path) -> int:
    """How many effects are applied (fast: polled while a scenario runs)."""
    try:
        with sqlite3.connect(path, timeout=60) as conn:
            (n,) = conn.execute("SELECT count(*) FROM effects").fetchone()
            return int(n)
    except sqlite3.OperationalError:  # the worker has not created the table yet
        return 0


def identity(record: Record) -> str:
    """The identity of a dead-letter record: its ``fault-id`` or ``event_id`` header."""
    return header_value(record.headers, FAULT_ID) or header_value(record.headers, "event_id") or ""


def position(record: Record) -> tuple[int, int]:
    """Where a dead-letter record came from: its original (partition, offset)."""
    return (
        int(header_value(record.headers, "dlq.original_partition") or -1),
        int(header_value(record.headers, "dlq.original_offset") or -1),
    )


def poison_records(plan: Plan, source: Sequence[Record]) -> Counter[tuple[int, int]]:
    """The (partition, offset) of every poison record in the source topic.

    A producer that publishes at least once (the outbox relay) may have written a poison
    event twice: each copy is a record of its own, to be dead-lettered once.
    """
    poison = plan.poison
    return Counter((r.partition, r.offset) for r in source if identity(r) in poison)


@dataclass
class Verdict:
    """What a scenario's checks found."""

    lost: set[str] = field(default_factory=set)
    duplicated: dict[str, int] = field(default_factory=dict)
    unexpected: set[str] = field(default_factory=set)
    dead_letters: Counter[str] = field(default_factory=Counter)
    dead_letter_surplus: Counter[str] = field(default_factory=Counter)
    dead_letter_missing: Counter[str] = field(default_factory=Counter)
    surplus_details: list[dict[str, str]] = field(default_factory=list)

    @property
    def duplicated_effects(self) -> int:
        return sum(c - 1 for c in self.duplicated.values())

    def describe(self) -> str:
        return json.dumps(
            {
                "lost": sorted(self.lost)[:10],
                "duplicated": dict(list(self.duplicated.items())[:10]),
                "unexpected": sorted(self.unexpected)[:10],
                "dead_letter_surplus": dict(self.dead_letter_surplus.most_common(10)),
                "dead_letter_missing": dict(self.dead_letter_missing.most_common(10)),
                "surplus_details": self.surplus_details[:30],
            }
        )


def judge(plan: Plan, applied: Counter[str], dead: Sequence[Record]) -> Verdict:
    """Compare the effects and the dead-letter topic with the plan."""
    good = plan.good
    dl = Counter(identity(r) for r in dead)
    surplus = dl - plan.poison
    details = [
        {"dlq_offset": str(r.offset)}
        | {k: v.decode("utf-8", "replace") for k, v in r.headers if k.startswith("dlq.")}
        for r in dead
        if identity(r) in surplus
    ]
    return Verdict(
        lost=good - set(applied),
        duplicated={k: c for k, c in applied.items() if c > 1},
        unexpected=set(applied) - good,
        dead_letters=dl,
        dead_letter_surplus=surplus,
        dead_letter_missing=plan.poison - dl,
        surplus_details=details,
    )
