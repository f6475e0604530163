"""A TCP proxy between Kafka clients and a broker that cuts, refuses and pauses connections.

It runs its own asyncio loop on a thread, so it keeps forwarding (or holding) bytes
whatever the test's own loop is doing, and its fault methods may be called from any
thread. Faults are deterministic; bytes are never dropped:

* :meth:`FaultProxy.cut` closes every open connection at once (both sides see a reset);
* :meth:`FaultProxy.refuse` cuts every connection and closes the listening socket for
  a while, so reconnects get ECONNREFUSED, then listens again on the same port;
* :meth:`FaultProxy.pause` stops forwarding in both directions for a while: the
  connections stay open and the bytes in flight wait (at most one read per direction
  is held), then flow again in order.

The broker must advertise the proxy's address (Tansu: ``--advertised-listener-url``),
or clients would connect to the broker directly after their first metadata request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")
_CHUNK = 65_536


def _linger_reset(writer: asyncio.StreamWriter) -> None:
    """Make close() send a RST, as a crashed peer or a cut cable would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )


class FaultProxy:
    """Forwards ``listen_port`` on 127.0.0.1 to ``upstream`` until :meth:`stop`."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = listen_port
        self.faults: Counter[str] = Counter()
        """Faults injected, by kind (``cut``, ``refuse``, ``pause``)."""
        self.connections = 0
        """Connections accepted so far."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy")
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing: asyncio.Event | None = None
        self._faulted_until = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._init())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._shutdown(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- faults -----------------------------------------------------------------------------
    def cut(self) -> int:
        """Close every open connection now; returns how many were cut."""
        self.faults["cut"] += 1
        return self._call(self._cut())

    def refuse(self, seconds: float) -> None:
        """Cut everything and refuse new connections for ``seconds``, then listen again."""
        self.faults["refuse"] += 1
        self._call(self._refuse(seconds))

    def pause(self, seconds: float) -> None:
        """Hold every byte in both directions for ``seconds`` (connections stay open)."""
        self.faults["pause"] += 1
        self._call(self._pause(seconds))

    @property
    def faulted(self) -> bool:
        """Whether a timed fault (refuse, pause) is still in effect."""
        return self._loop.time() < self._faulted_until

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    # -- inside the proxy's loop ------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _init(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _cut(self) -> int:
        pairs = list(self._pairs)
        self._pairs.clear()
        for client, upstream in pairs:
            for writer in (client, upstream):
                _linger_reset(writer)
                writer.close()
        return len(pairs)

    async def _refuse(self, seconds: float) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        await self._cut()
        self._faulted_until = max(self._faulted_until, self._loop.time() + seconds)
        self._spawn(self._listen_after(seconds))

    async def _listen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the fault's duration, not synchronisation
        for _ in range(50):  # the port is ours; a rare transient bind error is retried
            try:
                await self._listen()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"proxy could not listen on {self.port} again")

    async def _pause(self, seconds: float) -> None:
        assert self._flowing is not None
        self._flowing.clear()
        self._faulted_until = max(self._faulted_until, self._loop.time() + seconds)
        self._loop.call_later(seconds, self._flowing.set)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _linger_reset(writer)
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self._spawn(self._pump(reader, up_writer, pair))
        self._spawn(self._pump(up_reader, writer, pair))

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # a pause holds this chunk, and stops reading
                if pair not in self._pairs:
                    break  # cut while held: the bytes go nowhere, as on a real cut
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if pair in self._pairs:
                self._pairs.discard(pair)
                for w in pair:
                    w.close()
