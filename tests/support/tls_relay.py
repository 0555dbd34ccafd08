"""Something between two appliances that ends TLS: it serves a certificate of its own,
opens its own TLS connection to the target and passes the bytes on both ways, as an
interception proxy (or an attacker on the path) does."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.support.appliance import free_port
from tests.support.pki import TestCa

CHUNK = 64 * 1024


class TlsRelay:
    """Listens on `host` (`port` once started) and relays to `target` over TLS."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.host, self.port, self.target = host, free_port(host), target
        self.certificate = TestCa("Interception CA").issue([host])
        self.relayed = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint

    @contextlib.contextmanager
    def running(self) -> Iterator[TlsRelay]:
        with tempfile.TemporaryDirectory(prefix="tls-relay-") as tmp:
            served = Path(tmp) / "relay.pem"
            served.write_bytes(self.certificate.certificate_pem() + self.certificate.key_pem())
            accepting = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            accepting.load_cert_chain(served)
            self._thread.start()
            server = asyncio.run_coroutine_threadsafe(self._serve(accepting), self._loop).result()
            try:
                yield self
            finally:
                asyncio.run_coroutine_threadsafe(self._stop(server), self._loop).result(10)
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
                self._loop.close()

    async def _serve(self, accepting: ssl.SSLContext) -> asyncio.Server:
        return await asyncio.start_server(self._relay, self.host, self.port, ssl=accepting)

    @staticmethod
    async def _stop(server: asyncio.Server) -> None:
        server.close()
        await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        onward = ssl.create_default_context()
        onward.check_hostname = False
        onward.verify_mode = ssl.CERT_NONE
        try:
            far_reader, far_writer = await asyncio.open_connection(*self.target, ssl=onward)
        except OSError:
            writer.close()
            return
        self.relayed += 1
        await asyncio.gather(
            self._pump(reader, far_writer), self._pump(far_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()
