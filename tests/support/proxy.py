"""A TCP proxy in front of RabbitMQ that a test can cut, stall and restore."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from support.settings import free_port


# ======================================================================================
# A TCP proxy in front of RabbitMQ, to cut the broker away and bring it back
# ======================================================================================
class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`. `await cut()` drops every live connection and
    refuses new ones (as a dead broker or a broken network would); `await restore()`
    listens again on the same port. `stall()` keeps connections open but swallows every
    byte (a broker that stopped answering, a silent network); `unstall()` ends that.
    Runs in the test's event loop."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        self.stalled = False  # when True, bytes are swallowed in both directions

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        for task in tasks:
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.stalled:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()  # RST, not a polite close
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        self.stalled = False
        if self._server is None:
            await self.start()

    def stall(self) -> None:
        self.stalled = True

    def unstall(self) -> None:
        self.stalled = False

    @property
    def is_up(self) -> bool:
        return self._server is not None


@dataclass
class BrokerProxy:
    """`url`: the test's vhost reached through `proxy` (use it in `make_settings`)."""

    proxy: TcpProxy
    url: str
    direct_url: str

    async def cut(self) -> None:
        await self.proxy.cut()

    async def restore(self) -> None:
        await self.proxy.restore()

    def stall(self) -> None:
        self.proxy.stall()

    def unstall(self) -> None:
        self.proxy.unstall()
