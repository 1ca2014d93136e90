"""A TLS terminator for Kafka tests: accepts TLS on a loopback port and forwards the decrypted
bytes to a plaintext broker.

Tansu (the stack's broker) cannot serve TLS itself: its `--cert` and `--key` options are
mutually exclusive in its command line, and either alone leaves the listener in plaintext. So a
TLS broker is Tansu advertising this terminator's address (tcp://localhost:<port>), with the
terminator in front. The handshake, certificate checks and SNI that librdkafka does are real.

    with TlsTerminator(listen_port, broker_port, cert, key) as terminator: ...
    terminator.restart(cert, key)  # present another certificate from now on
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path


class TlsTerminator:
    def __init__(self, listen_port: int, target_port: int, cert: Path, key: Path):
        self.listen_port = listen_port
        self.target_port = target_port
        self._cert, self._key = cert, key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def start(self) -> "TlsTerminator":
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="tls-terminator", daemon=True)
        self._thread.start()
        assert ready.wait(10), "TLS terminator did not start"
        return self

    def restart(self, cert: Path, key: Path) -> None:
        """Closes every connection and listens again presenting `cert`."""
        self._call(self._close())
        self._cert, self._key = cert, key
        self._call(self._listen())

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._close())
        self._call(self._cancel_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "TlsTerminator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _call(self, coroutine) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self._cert), str(self._key))
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port, ssl=context,
                                                  reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._connections):
            writer.close()

    @staticmethod
    async def _cancel_tasks() -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._connections.add(client_writer)
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            self._connections.discard(client_writer)
            return
        self._connections.add(broker_writer)
        await asyncio.gather(self._pipe(client_reader, broker_writer), self._pipe(broker_reader, client_writer))
        self._connections.discard(client_writer)
        self._connections.discard(broker_writer)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - closing a broken stream
                pass
