"""Retry policy as a value: how often, how long to wait, and which errors are fatal."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from eventbus.errors import (
    ConfigurationError,
    DeadLetterNow,
    DecodeError,
    EventBusError,
    RetryLater,
    SerializationError,
    UnknownEventTypeError,
)

FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,  # a subclass of ValueError, but never fixed by retrying
    DecodeError,
    UnknownEventTypeError,
    SerializationError,
    ConfigurationError,
    DeadLetterNow,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened when a unit of work ran under a policy."""

    ok: bool
    attempts: int
    error: BaseException | None = None
    first_failure_at: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Blocking in-place retry with exponential backoff and jitter.

    Attributes:
        attempts: tries in all, the first included (1 = no retry).
        initial_backoff_s: wait before the second try.
        max_backoff_s: the longest wait between tries.
        jitter_s: random extra wait, up to this, added to each wait.
        fatal: exception types never retried (validation and decode errors by default).
        sleep: the sleep function; inject a fake one in tests.
    """

    attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    jitter_s: float = 0.05
    fatal: tuple[type[BaseException], ...] = FATAL_ERRORS
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError("RetryPolicy.attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.jitter_s < 0:
            raise ConfigurationError("RetryPolicy waits must not be negative")

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` may go away if the work is tried again."""
        if isinstance(exc, RetryLater):
            return True
        if isinstance(exc, self.fatal):
            return False
        if isinstance(exc, EventBusError):
            return exc.retryable
        return isinstance(exc, Exception)

    async def run(self, work: Callable[[], Awaitable[object]]) -> Outcome:
        """Run ``work`` until it succeeds, fails fatally, or the attempts run out."""
        try:  # the common case, kept cheap: one try, no retry machinery
            await work()
        except Exception as exc:  # noqa: BLE001 - every handler failure is an outcome
            failed_at = time.time()
            if self.attempts == 1 or not self.is_retryable(exc):
                return Outcome(False, 1, exc, failed_at)
            await self.sleep(self._first_wait())
            outcome = await self._retry(work, self.attempts - 1)
            return Outcome(outcome.ok, outcome.attempts + 1, outcome.error, failed_at)
        return Outcome(True, 1)

    def _first_wait(self) -> float:
        return min(self.initial_backoff_s, self.max_backoff_s) + random.uniform(0, self.jitter_s)

    async def _retry(self, work: Callable[[], Awaitable[object]], attempts_left: int) -> Outcome:
        attempts = 0
        first_failure: float | None = None
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts_left),
            wait=wait_exponential_jitter(
                multiplier=self.initial_backoff_s * 2, max=self.max_backoff_s, jitter=self.jitter_s
            ),
            retry=retry_if_exception(self.is_retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    try:
                        await work()
                    except Exception:
                        if first_failure is None:
                            first_failure = time.time()
                        raise
        except RetryError as exc:  # pragma: no cover - reraise=True re-raises the cause
            return Outcome(False, attempts, exc.last_attempt.exception(), first_failure)
        except Exception as exc:  # noqa: BLE001 - every handler failure is an outcome
            return Outcome(False, attempts, exc, first_failure)
        return Outcome(True, attempts)


NO_RETRY = RetryPolicy(attempts=1)
"""Try once; any failure goes straight to the dead-letter step."""
