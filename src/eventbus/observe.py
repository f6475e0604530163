"""Observers: what metrics and tracing see of publishing, handling and progress.

The core calls these hooks and imports neither prometheus_client nor OpenTelemetry:
:class:`eventbus.metrics.PrometheusMetrics` and :class:`eventbus.tracing.TracingObserver`
are observers, and so is anything else that subclasses :class:`Observer`.

Clients take ``observers=[...]`` (the producer, the consumer, the outbox and its relay,
:class:`~eventbus.fastapi.EventBus`); without it they use the process-wide observers
added with :func:`install` (read at each call, so installing later still counts).

Example::

    from eventbus import observe
    from eventbus.metrics import PrometheusMetrics

    observe.install(PrometheusMetrics())

Hooks run inline on the hot path: keep them cheap and never let them raise (the fan-out
logs and swallows what an observer raises, so a broken exporter never loses an event).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

from eventbus._transport.base import Record, TopicPartition

logger = logging.getLogger("eventbus.observe")

_P = ParamSpec("_P")
_R = TypeVar("_R")

Headers = list[tuple[str, bytes]]
Outcome = Literal["processed", "failed", "retried", "dead_lettered", "skipped"]
"""What became of a consumed record: ``processed`` (the handler succeeded), ``failed``
(the handler kept failing under the retry policy), ``retried`` (one more attempt, in place
or through a retry tier), ``dead_lettered``, ``skipped`` (no handler for its type)."""
SendDone = Callable[[BaseException | None], None]
"""Called once when the broker acknowledged the record (``None``) or refused it."""


@dataclass(frozen=True)
class PartitionProgress:
    """Where a consumer group stands on one partition, as sampled now.

    Attributes:
        committed: the group's committed offset (0 when it never committed).
        high: the partition's high watermark from the last fetch (the end offset).
        lag: ``high - committed``, never below 0.
        stalled: the committed offset has not moved while the lag grew for longer than
            the stall threshold (see :class:`eventbus.StallDetector`).
    """

    committed: int
    high: int
    lag: int
    stalled: bool = False


class Observer:
    """Every hook, as a no-op: subclass and override the ones you need."""

    def outgoing(self, headers: Headers) -> None:
        """An event is being encoded for sending later (the outbox): add headers to it,
        such as the current trace context."""

    def sending(self, topic: str, headers: Headers) -> SendDone | None:
        """A record is handed to the client now; ``headers`` may still be changed.

        Return a callable to be told how the send ended, or None.
        """
        return None

    def handling(
        self, group: str, records: Sequence[Record]
    ) -> contextlib.AbstractContextManager[None]:
        """A context around handling ``records`` (one, or a batch; never empty), retries
        included."""
        return contextlib.nullcontext()

    def outcome(self, group: str, record: Record, outcome: Outcome) -> None:
        """What became of ``record`` (see :data:`Outcome`); may be told more than once
        (``retried`` then ``processed``)."""

    def progress(self, group: str, partitions: dict[TopicPartition, PartitionProgress]) -> None:
        """A sample of the group's progress on every partition it holds now (partitions
        missing from it are no longer held)."""

    def backlog(self, outbox: str, rows: int, oldest_age_s: float) -> None:
        """A sample of an outbox's undelivered rows and the age of the oldest."""


class Fanout(Observer):
    """Calls every observer of a list in turn, logging (never raising) their errors.

    Args:
        observers: the observers; the live process-wide list when omitted.
    """

    def __init__(self, observers: Sequence[Observer] | None = None) -> None:
        self.observers: Sequence[Observer] = _installed if observers is None else observers

    def __bool__(self) -> bool:
        return bool(self.observers)

    def outgoing(self, headers: Headers) -> None:
        for obs in self.observers:
            _guard(obs.outgoing, headers)

    def sending(self, topic: str, headers: Headers) -> SendDone | None:
        done = [d for obs in self.observers if (d := _guard(obs.sending, topic, headers))]
        if not done:
            return None
        if len(done) == 1:
            return done[0]

        def finish(error: BaseException | None) -> None:
            for d in done:
                _guard(d, error)

        return finish

    @contextlib.contextmanager
    def _handling(self, group: str, records: Sequence[Record]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for obs in self.observers:
                try:
                    stack.enter_context(obs.handling(group, records))
                except Exception:  # an observer's failure must not fail the handler
                    logger.exception("observer %r failed", obs)
            yield

    def handling(
        self, group: str, records: Sequence[Record]
    ) -> contextlib.AbstractContextManager[None]:
        if not self.observers or not records:
            return contextlib.nullcontext()
        return self._handling(group, records)

    def outcome(self, group: str, record: Record, outcome: Outcome) -> None:
        for obs in self.observers:
            _guard(obs.outcome, group, record, outcome)

    def progress(self, group: str, partitions: dict[TopicPartition, PartitionProgress]) -> None:
        for obs in self.observers:
            _guard(obs.progress, group, partitions)

    def backlog(self, outbox: str, rows: int, oldest_age_s: float) -> None:
        for obs in self.observers:
            _guard(obs.backlog, outbox, rows, oldest_age_s)


_installed: list[Observer] = []


def install(observer: Observer) -> Observer:
    """Add ``observer`` to the process-wide observers (used by clients given none)."""
    if observer not in _installed:
        _installed.append(observer)
    return observer


def uninstall(observer: Observer) -> None:
    """Remove ``observer`` from the process-wide observers (no error if absent)."""
    if observer in _installed:
        _installed.remove(observer)


def installed() -> list[Observer]:
    """The process-wide observers, in the order they are called (a copy)."""
    return list(_installed)


def fanout(observers: Sequence[Observer] | None) -> Fanout:
    """The fan-out a client uses: over ``observers``, or the process-wide ones if None."""
    return Fanout(None if observers is None else list(observers))


def _guard(func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R | None:
    try:
        return func(*args, **kwargs)
    except Exception:  # an observer's failure must never lose or fail an event
        logger.exception("observer hook %s failed", getattr(func, "__qualname__", func))
        return None
