"""Handing one record (or one batch) to its handler: route, decode, retry, dead-letter."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from eventbus._codec import decode_json, header_value, normalise
from eventbus._deadletter import DeadLetterWriter, Failure
from eventbus._handlers import HandlerSpec, MessageContext
from eventbus._policy import NO_RETRY, Outcome, RetryPolicy
from eventbus._registry import EventRegistry
from eventbus._transport.base import OutgoingRecord, Record
from eventbus.errors import DecodeError, UnknownEventTypeError
from eventbus.headers import EVENT_TYPE
from eventbus.observe import Fanout
from eventbus.observe import Outcome as Seen

logger = logging.getLogger("eventbus.consumer")

DlqHandler = Callable[[dict[str, Any], BaseException], Awaitable[Any]]
CallNext = Callable[[], Awaitable[None]]
Middleware = Callable[[MessageContext, CallNext], Awaitable[None]]
"""A pipeline step: receives the context and the rest of the pipeline to call."""

_UNDECODABLE = (DecodeError, UnknownEventTypeError)


@dataclass
class ConsumerStats:
    """Counters of what the consumer did."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    commit_failures: int = 0
    retried_later: int = 0


class Dispatcher:
    """Routes a record to its handler through the middleware, under the retry policy,
    and dead-letters what cannot be handled. Returns True when the record is finished
    (handled, skipped or dead-lettered) and its offset may be committed."""

    def __init__(
        self,
        registry: EventRegistry,
        retry: RetryPolicy,
        group_id: str,
        max_message_bytes: int,
        stopping: Callable[[], bool],
        observers: Fanout | None = None,
    ) -> None:
        self.registry = registry
        self.retry = retry
        self.group_id = group_id
        self.max_message_bytes = max_message_bytes
        self.stopping = stopping
        self.stats = ConsumerStats()
        self.observers = observers if observers is not None else Fanout([])
        self.routes: dict[str, HandlerSpec] = {}
        self.middlewares: list[Middleware] = []
        self.writer: DeadLetterWriter | None = None
        self.commit_txn: Callable[[Record, list[OutgoingRecord]], Awaitable[None]] | None = None
        self.on_failure: Callable[[Record, Failure], Awaitable[bool]] | None = None
        """Called when a handler keeps failing; True means it took the record (retry tier)."""

    def _note(self, records: Sequence[Record], seen: Seen) -> None:
        """Count ``records`` under ``seen`` in the stats and tell the observers."""
        stats = self.stats
        setattr(stats, seen, getattr(stats, seen) + len(records))
        if self.observers:
            for record in records:
                self.observers.outcome(self.group_id, record, seen)

    def route(self, record: Record, default: HandlerSpec | None) -> HandlerSpec | None:
        if not self.routes:
            return default
        etype = header_value(record.headers, EVENT_TYPE)
        if etype is None:
            try:
                etype = str(normalise(decode_json(record.value), self.registry)["event_type"])
            except DecodeError:
                return default
        return self.routes.get(self.registry.canonical_type(etype), default)

    async def _invoke(self, spec: HandlerSpec, payload: Any, ctx: MessageContext) -> None:
        async def last() -> None:
            await spec.call(payload, ctx)

        call: CallNext = last
        for mw in reversed(self.middlewares):
            call = partial(mw, ctx, call)
        await call()

    async def process(
        self, record: Record, default: HandlerSpec | None, dlq_handler: DlqHandler | None
    ) -> bool:
        with self.observers.handling(self.group_id, (record,)):
            return await self._process(record, default, dlq_handler)

    async def _process(
        self, record: Record, default: HandlerSpec | None, dlq_handler: DlqHandler | None
    ) -> bool:
        prepared = self._prepare(record, default)
        if prepared is None:
            self._note((record,), "skipped")
            return True
        if isinstance(prepared, Failure):
            return await self.dead_letter(record, prepared, dlq_handler)
        spec, payload = prepared
        ctx = MessageContext(record, self.group_id, attempt=0)
        commit_txn = self.commit_txn
        ctx.transactional = commit_txn is not None

        async def attempt() -> None:
            ctx.attempt += 1
            if ctx.attempt > 1:
                self._note((record,), "retried")
                ctx.outputs.clear()  # an aborted attempt's outputs were never visible
            await self._invoke(spec, payload, ctx)
            if commit_txn is not None:
                await commit_txn(record, ctx.outputs)

        outcome = await self.retry.run(attempt)
        if outcome.ok:
            self._note((record,), "processed")
            return True
        self._note((record,), "failed")
        assert outcome.error is not None
        failure = Failure(
            outcome.error, outcome.attempts, "handler", self.group_id, outcome.first_failure_at
        )
        if (
            self.on_failure is not None
            and self.retry.is_retryable(outcome.error)
            and await self.on_failure(record, failure)
        ):
            return True
        return await self.dead_letter(record, failure, dlq_handler, payload)

    def _prepare(
        self, record: Record, default: HandlerSpec | None
    ) -> tuple[HandlerSpec, Any] | Failure | None:
        """The handler and its payload; a Failure to dead-letter; None to skip."""
        size = len(record.value or b"")
        if size > self.max_message_bytes:
            error = DecodeError(
                f"record of {size} bytes exceeds KAFKA_MAX_MESSAGE_BYTES ({self.max_message_bytes})"
            )
            return Failure(error, 1, "oversize", self.group_id)
        spec = self.route(record, default)
        if spec is None:
            if self.routes and default is None and record.value is not None:
                try:
                    normalise(decode_json(record.value), self.registry)
                except DecodeError as exc:
                    return Failure(exc, 1, "decode", self.group_id)
            return None
        try:
            return spec, spec.payload(record, self.registry)
        except _UNDECODABLE as exc:
            return Failure(exc, 1, "decode", self.group_id)

    def _as_dict(self, record: Record, payload: Any = None) -> dict[str, Any]:
        if isinstance(payload, dict):
            return payload
        try:
            obj = decode_json(record.value)
        except DecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
        text = None if record.value is None else record.value.decode("utf-8", "replace")
        return {
            "value": text,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
        }

    async def dead_letter(
        self,
        record: Record,
        failure: Failure,
        dlq_handler: DlqHandler | None,
        payload: Any = None,
    ) -> bool:
        if dlq_handler is not None:
            try:
                await dlq_handler(self._as_dict(record, payload), failure.error)
            except Exception as exc:  # noqa: BLE001 - fall back to the dead-letter topic
                logger.error("dlq_handler failed (%s); writing to the dead-letter topic", exc)
            else:
                self._note((record,), "dead_lettered")
                return True
        assert self.writer is not None
        written = await self.writer.write(record, failure, self.stopping)
        if written:
            self._note((record,), "dead_lettered")
        return written

    async def _call_batch(self, spec: HandlerSpec, items: list[tuple[Record, Any]]) -> None:
        payloads = [p for _, p in items]
        if spec.wants_ctx:
            await spec.func(payloads, [MessageContext(r, self.group_id) for r, _ in items])
        else:
            await spec.func(payloads)

    async def process_batch(
        self, records: list[Record], spec: HandlerSpec, dlq_handler: DlqHandler | None
    ) -> bool:
        with self.observers.handling(self.group_id, records):
            return await self._process_batch(records, spec, dlq_handler)

    async def _process_batch(
        self, records: list[Record], spec: HandlerSpec, dlq_handler: DlqHandler | None
    ) -> bool:
        items: list[tuple[Record, Any]] = []
        for record in records:
            try:
                items.append((record, spec.payload(record, self.registry)))
            except _UNDECODABLE as exc:
                failure = Failure(exc, 1, "decode", self.group_id)
                if not await self.dead_letter(record, failure, dlq_handler):
                    return False
        if not items:
            return True
        outcome = await self.retry.run(partial(self._call_batch, spec, items))
        if outcome.ok:
            self._note([r for r, _ in items], "processed")
            return True
        if len(items) == 1:  # already run alone, with the full policy: no second run
            return await self._give_up(items[0], outcome, dlq_handler)
        logger.warning(
            "batch of %d failed (%s); isolating the failing records", len(items), outcome.error
        )
        return await self._isolate(items, spec, dlq_handler)

    async def _give_up(
        self, item: tuple[Record, Any], outcome: Outcome, dlq_handler: DlqHandler | None
    ) -> bool:
        self._note((item[0],), "failed")
        assert outcome.error is not None
        record, payload = item
        failure = Failure(
            outcome.error, outcome.attempts, "handler", self.group_id, outcome.first_failure_at
        )
        return await self.dead_letter(record, failure, dlq_handler, payload)

    async def _isolate(
        self, items: list[tuple[Record, Any]], spec: HandlerSpec, dlq_handler: DlqHandler | None
    ) -> bool:
        if len(items) == 1:
            outcome = await self.retry.run(partial(self._call_batch, spec, items))
            if outcome.ok:
                self._note((items[0][0],), "processed")
                return True
            return await self._give_up(items[0], outcome, dlq_handler)
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            outcome = await NO_RETRY.run(partial(self._call_batch, spec, half))
            if outcome.ok:
                self._note([r for r, _ in half], "processed")
            elif not await self._isolate(half, spec, dlq_handler):
                return False
        return True
