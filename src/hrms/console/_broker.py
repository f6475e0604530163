"""The console's view of the cluster: one shared admin connection, every call bounded.

Every page and every 2-second poll goes through :meth:`Broker.run`, which reuses one
started :class:`eventbus.ops.Admin` (opened on first use, closed when the hub stops) and
gives each call a deadline. A broker that is down or slow turns into a
:class:`ConsoleError` with a one-line message for the page, never a hung request; after a
failure the admin connection is dropped and opened again on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from eventbus.errors import ConfigurationError
from eventbus.ops import Admin
from eventbus.settings import KafkaSettings

logger = logging.getLogger("hrms.console")

_T = TypeVar("_T")

DEFAULT_TIMEOUT_S = 10.0
"""How long one console call may take before the page says the broker is not answering."""


class ConsoleError(Exception):
    """A console call failed; the message is fit to show to the operator."""


class Broker:
    """A shared, lazily started admin connection with bounded calls.

    Args:
        settings: where the cluster is.
        timeout_s: the deadline of one call (connecting included).
    """

    def __init__(self, settings: KafkaSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._admin: Admin | None = None
        self._lock = asyncio.Lock()

    async def run(
        self, work: Callable[[Admin], Awaitable[_T]], *, timeout_s: float | None = None
    ) -> _T:
        """Run ``work`` with the started admin connection, within the deadline.

        The topic list is refreshed first, so topics created since the last call are seen.

        Raises:
            ConsoleError: the broker could not be reached, did not answer in time, or
                refused; or the request names something that does not exist.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = asyncio.get_running_loop().time() + limit
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError as exc:
            raise ConsoleError(f"the console is busy: no answer within {limit:g} s") from exc
        try:
            async with asyncio.timeout_at(deadline):
                admin = await self._started()
                await admin.topics(refresh=True)
                return await work(admin)
        except ConfigurationError as exc:  # an unknown topic or group: the connection is fine
            raise ConsoleError(str(exc)) from exc
        except TimeoutError as exc:
            await self._drop()
            raise ConsoleError(
                f"the broker at {self.settings.servers} did not answer within {limit:g} s"
            ) from exc
        except Exception as exc:  # any client failure becomes the page's message
            await self._drop()
            logger.warning("console: broker call failed: %s: %s", type(exc).__name__, exc)
            raise ConsoleError(
                f"broker {self.settings.servers}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._lock.release()

    async def call(
        self, work: Callable[[], Awaitable[_T]], *, timeout_s: float | None = None
    ) -> _T:
        """Run ``work`` (which opens its own clients, e.g. :mod:`eventbus.redrive`) within
        the deadline.

        Raises:
            ConsoleError: as :meth:`run`.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                return await work()
        except ConfigurationError as exc:
            raise ConsoleError(str(exc)) from exc
        except TimeoutError as exc:
            raise ConsoleError(
                f"the broker at {self.settings.servers} did not answer within {limit:g} s"
            ) from exc
        except Exception as exc:  # any client failure becomes the page's message
            logger.warning("console: broker call failed: %s: %s", type(exc).__name__, exc)
            raise ConsoleError(
                f"broker {self.settings.servers}: {type(exc).__name__}: {exc}"
            ) from exc

    async def _started(self) -> Admin:
        if self._admin is None:
            admin = Admin(self.settings)
            try:
                await admin.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await admin.stop()
                raise
            self._admin = admin
        return self._admin

    async def _drop(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await admin.stop()

    async def close(self) -> None:
        """Close the admin connection (the hub is stopping)."""
        async with self._lock:
            await self._drop()
