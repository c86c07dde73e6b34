"""A TCP proxy to stand between a server and its database, which a test stops (an outage) and starts again."""

import asyncio
import socket
import threading


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """127.0.0.1:<port> → the database; ``stop`` closes the port and cuts every open connection."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.port = target, free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = None
        self.serving = False
        self.transports: set = set()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    async def _handle(self, client_reader, client_writer):
        # a connection accepted just before stop() may reach here after it: it is cut too
        if not self.serving:
            client_writer.transport.abort()
            return
        self.transports.add(client_writer.transport)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        if not self.serving or client_writer.transport.is_closing():
            client_writer.transport.abort()
            server_writer.transport.abort()
            return
        pair = {client_writer.transport, server_writer.transport}
        self.transports |= pair
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))
        self.transports -= pair

    async def _start(self):
        self.serving = True
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self):
        self.serving = False
        self.server.close()
        for transport in self.transports:
            transport.abort()
        self.transports.clear()
        await self.server.wait_closed()

    def start(self):
        self._run(self._start())

    def stop(self):
        self._run(self._stop())

    def close(self):
        if self.server is not None and self.server.is_serving():
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
