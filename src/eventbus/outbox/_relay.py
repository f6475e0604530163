"""The relay: publishes outbox rows to Kafka in order and marks them delivered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import ClassVar, Self

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventbus._producer import KafkaProducer
from eventbus._sql import Clock
from eventbus.errors import BrokerUnavailableError, ConfigurationError
from eventbus.observe import Observer, fanout
from eventbus.outbox._claim import OutboxRow, claim_shared, claim_single
from eventbus.outbox._publish import Batch, Outcome
from eventbus.outbox._table import Outbox

logger = logging.getLogger("eventbus.outbox")

_MAX_ERROR_CHARS = 2_000
_ID_CHUNK = 500


@dataclass
class RelayStats:
    """Counters of what a relay did, for metrics."""

    delivered: int = 0
    """Rows acknowledged by the broker and marked delivered."""
    failed: int = 0
    """Send attempts that failed (the rows stay in the outbox and are retried)."""
    resent: int = 0
    """Rows acknowledged after an earlier row of their key failed; sent again later."""
    batches: int = 0
    """Cycles that found rows to publish."""
    errors: int = 0
    """Cycles that failed as a whole (database unreachable, broker down at start, ...)."""
    last_error: str | None = None
    last_delivery_at: datetime | None = None


class OutboxRelay:
    """Publishes the outbox's rows to Kafka, in order per key, and marks them delivered.

    Every cycle takes a batch of undelivered rows in id (insertion) order, hands them all
    to the producer at once (pipelined: one round trip for the batch, not one per row),
    waits for the acknowledgements and marks delivered the rows that were acknowledged.

    **Order.** Rows with the same key are published in id order. When a row fails, no
    later row of its key is marked delivered in that cycle, and later cycles send the
    key's failed row alone first: the key's rows wait until it goes through, while other
    keys flow. A later row of the key that was already in flight when the failure
    arrived and was acknowledged anyway is sent again after the failed one (counted in
    ``stats.resent``), so the key's log still ends in id order. Rows without a key are
    unordered: each is published on its own, as Kafka spreads keyless records over
    partitions anyway. There is no order across keys. Ids follow inserts, so per-key
    order assumes a key's rows commit in id order, as they do when one transaction at a
    time writes a key (e.g. under a lock on the aggregate's row); two transactions
    writing the same key concurrently have no defined order.

    **Delivery.** At least once: a row is marked delivered only after the broker
    acknowledged it, so a crash between the two publishes it again. Nothing is dropped:
    while the broker is down every cycle fails, the attempt count and last error are
    written on the rows, the relay backs off (doubling from ``backoff_s[0]`` up to
    ``backoff_s[1]``, probing with one row at a time), and the backlog drains when the
    broker returns. Consumers deduplicate with :class:`~eventbus.inbox.Inbox`.

    **Several relays (PostgreSQL).** Each cycle runs in one READ COMMITTED transaction
    that holds ``pg_try_advisory_xact_lock(<table hash>, hashtext(key))`` for every key
    it takes, and ``FOR UPDATE SKIP LOCKED`` row locks on the keyless rows it takes. A
    relay scans the oldest undelivered rows, tries the lock of each key it meets (never
    waiting), skips the keys other relays hold and scans on, so relays share the work
    key by key. It then reads, in one statement after its locks were granted, the
    undelivered rows of its keys from each key's oldest on. No two relays ever hold rows
    of the same key, a key's rows are never published out of order across relays, and
    since locks are released at commit, after the rows were marked delivered, the next
    holder of a key sees them delivered. Hash collisions only make two keys share a
    lock. A relay holds at most about ``2 * batch_size`` advisory locks; keep ``relays *
    2 * batch_size`` well below ``max_locks_per_transaction * max_connections``.
    (Locking only the oldest row of each key, with ``DISTINCT ON``, would also be
    correct, but publishes one row per key per cycle; ``SKIP LOCKED`` alone would let a
    second relay publish a key's newer rows while the first still holds its older ones.)

    **SQLite.** One relay only (SQLite has no row locks; a second relay in the same
    process raises :class:`~eventbus.errors.ConfigurationError`, one in another process
    would publish rows twice). Rows are read in a short transaction, published, then
    marked in another short transaction, so the application's writers are not blocked
    while the relay waits for the broker.

    The relay starts ``producer`` if it is not started (retrying while the broker is
    unreachable) but never stops it.

    Args:
        outbox: the outbox whose table to relay.
        engine: the database.
        producer: the producer to publish with; its ``delivery_timeout_s`` bounds how long
            a cycle waits for acknowledgements.
        batch_size: rows per cycle.
        poll_interval_s: the pause when the outbox was empty (:meth:`notify` cuts it short).
        backoff_s: first and longest pause after a cycle that delivered nothing and failed.
        cleanup_after_s: delivered rows older than this are deleted...
        cleanup_interval_s: ...this often (``None`` disables cleanup by the relay).
        clock: the current aware UTC time, for ``delivered_at`` and cleanup; the outbox's
            clock by default.
        drain_timeout_s: how long :meth:`stop` lets the cycle in hand finish.
        observers: told the outbox's backlog (undelivered rows, oldest age) every
            ``backlog_interval_s`` (metrics); the process-wide observers when omitted.
            What the relay publishes, the producer's observers see.
        backlog_interval_s: how often the backlog is sampled for the observers.
    """

    _sqlite_relays: ClassVar[set[tuple[str, str]]] = set()

    def __init__(
        self,
        outbox: Outbox,
        engine: AsyncEngine,
        producer: KafkaProducer,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.2,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        cleanup_after_s: float = 3600.0,
        cleanup_interval_s: float | None = 60.0,
        clock: Clock | None = None,
        drain_timeout_s: float = 30.0,
        observers: Sequence[Observer] | None = None,
        backlog_interval_s: float = 5.0,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        if not 0 < backoff_s[0] <= backoff_s[1]:
            raise ConfigurationError("backoff_s must be (first, longest) with 0 < first <= longest")
        self.outbox = outbox
        self.engine = engine
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.backoff_s = backoff_s
        self.cleanup_after_s = cleanup_after_s
        self.cleanup_interval_s = cleanup_interval_s
        self.clock = clock or outbox.clock
        self.drain_timeout_s = drain_timeout_s
        self.observers = fanout(observers)
        self.backlog_interval_s = backlog_interval_s
        self.stats = RelayStats()
        self.shared = engine.dialect.name == "postgresql"
        self._degraded = False  # the broker looked down: probe with one row before a batch
        self._last_failed = False  # the last cycle failed without delivering: back off
        self._last_full = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._slot: tuple[str, str] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """Whether the background loop is running."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start relaying in the background. Safe to call twice.

        Raises:
            ConfigurationError: another relay runs on the same SQLite outbox in this process.
        """
        if self.is_running:
            return
        if not self.shared:
            slot = (self.engine.url.render_as_string(hide_password=True), self.outbox.name)
            if slot in self._sqlite_relays:
                raise ConfigurationError(
                    f"another relay already runs on outbox {self.outbox.name} of "
                    f"{slot[0]}: run a single relay on {self.engine.dialect.name}"
                )
            self._sqlite_relays.add(slot)
            self._slot = slot
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.outbox.name}")

    async def stop(self) -> None:
        """Stop the background loop. Safe to call twice.

        The cycle in hand finishes, or is cancelled after ``drain_timeout_s``, leaving its
        rows to be published again.
        """
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is not None:
                done, _ = await asyncio.wait({task}, timeout=self.drain_timeout_s)
                if not done:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            if self._slot is not None:
                self._sqlite_relays.discard(self._slot)
                self._slot = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def notify(self) -> None:
        """Wake the background loop now (e.g. right after committing an outbox row)."""
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.backoff_s[0]
        next_cleanup = loop.time() + (self.cleanup_interval_s or 0.0)
        next_sample = loop.time()
        while not self._stopping:
            if self.observers and loop.time() >= next_sample:
                next_sample = loop.time() + self.backlog_interval_s
                await self._sample_backlog()
            try:
                delivered = await self.run_once()
                failed = self._last_failed
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any failure
                self._note_error(exc, "relay cycle failed")
                delivered, failed = 0, True
            if self._stopping:
                break
            if failed and not delivered:
                await self._pause(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.backoff_s[1])
                continue
            backoff = self.backoff_s[0]
            if self.cleanup_interval_s is not None and loop.time() >= next_cleanup:
                next_cleanup = loop.time() + self.cleanup_interval_s
                try:
                    await self.cleanup()
                except Exception as exc:  # noqa: BLE001 - cleanup must not stop relaying
                    self._note_error(exc, "outbox cleanup failed")
            if self._last_full:
                await asyncio.sleep(0)  # more is waiting: go on, letting others run
            else:
                await self._pause(self.poll_interval_s)

    async def _sample_backlog(self) -> None:
        try:
            backlog = await self.outbox.backlog(self.engine, now=self.clock())
        except Exception as exc:  # noqa: BLE001 - a missed sample must not stop relaying
            self._note_error(exc, "outbox backlog sample failed")
            return
        self.observers.backlog(self.outbox.name, backlog.count, backlog.oldest_age_s)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def _note_error(self, exc: BaseException, what: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        logger.warning("%s (outbox %s): %s", what, self.outbox.name, self.stats.last_error)

    async def cleanup(self) -> int:
        """Delete delivered rows older than ``cleanup_after_s`` (by the relay's clock)."""
        deleted = await self.outbox.cleanup(self.engine, self.cleanup_after_s, now=self.clock())
        if deleted:
            logger.info("outbox %s: deleted %d delivered rows", self.outbox.name, deleted)
        return deleted

    # -- one cycle --------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Relay one batch: publish, wait for acknowledgements, mark delivered.

        Returns:
            How many rows were delivered (0 when the outbox is empty or the broker down).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed (nothing is lost: the
                rows are published again by a later cycle).
        """
        if not self.producer.is_started:
            try:
                await self.producer.start()
            except BrokerUnavailableError as exc:
                self._degraded = self._last_failed = True
                self._last_full = False
                self._note_error(exc, "producer cannot connect")
                return 0
        if self.shared:
            async with self.engine.connect() as conn:
                # The claim relies on each statement seeing what committed before it.
                await conn.execution_options(isolation_level="READ COMMITTED")
                async with conn.begin():
                    rows = await claim_shared(conn, self.outbox.table, self.batch_size)
                    outcome = await self._publish(rows)
                    await self._record(conn, outcome)
        else:
            async with self.engine.connect() as conn:
                rows = await claim_single(conn, self.outbox.table, self.batch_size)
            outcome = await self._publish(rows)
            if outcome.delivered or outcome.failed:
                async with self.engine.begin() as conn:
                    await self._record(conn, outcome)
        self._account(rows, outcome)
        return len(outcome.delivered)

    def _account(self, rows: Sequence[OutboxRow], outcome: Outcome) -> None:
        self._last_full = len(rows) >= self.batch_size
        self._last_failed = bool(outcome.failed) and not outcome.delivered
        if not rows:
            return
        s = self.stats
        s.batches += 1
        s.delivered += len(outcome.delivered)
        s.failed += len(outcome.failed)
        s.resent += outcome.resent
        if outcome.delivered:
            s.last_delivery_at = self.clock()
        if outcome.failed:
            first = next(iter(outcome.failed.values()))
            s.last_error = first
            logger.warning(
                "outbox %s: %d of %d rows not acknowledged, will retry: %s",
                self.outbox.name,
                len(outcome.failed),
                len(rows),
                first,
            )
        if outcome.delivered or outcome.failed:
            self._degraded = self._last_failed

    async def _publish(self, rows: Sequence[OutboxRow]) -> Outcome:
        """Send ``rows`` in id order and collect which ones the broker acknowledged."""
        outcome = Outcome()
        if not rows:
            return outcome
        batch = Batch(self.producer, outcome)
        todo = list(rows)
        if self._degraded:  # the broker looked down: probe with the oldest row alone
            first = todo.pop(0)
            if not await batch.probe(first):
                return outcome
            self._degraded = False
        for row in todo:
            if not batch.admit(row):
                continue
            if batch.expired():
                break  # the client is slow to take records: leave the rest for later
            await batch.send(row)
        await batch.collect()
        return outcome

    async def _record(self, conn: AsyncConnection, outcome: Outcome) -> None:
        """Mark delivered rows and write the attempt and error on failed ones."""
        c = self.outbox.table.c
        now = self.clock()
        ids = outcome.delivered
        for i in range(0, len(ids), _ID_CHUNK):
            await conn.execute(
                update(self.outbox.table)
                .where(c.id.in_(ids[i : i + _ID_CHUNK]))
                .values(delivered_at=now, attempts=c.attempts + 1, last_error=None)
            )
        by_error: dict[str, list[int]] = defaultdict(list)
        for row_id, error in outcome.failed.items():
            by_error[error[:_MAX_ERROR_CHARS]].append(row_id)
        for error, failed_ids in by_error.items():
            for i in range(0, len(failed_ids), _ID_CHUNK):
                await conn.execute(
                    update(self.outbox.table)
                    .where(c.id.in_(failed_ids[i : i + _ID_CHUNK]))
                    .values(attempts=c.attempts + 1, last_error=error)
                )
