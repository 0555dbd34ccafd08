"""An ASGI app served over TLS by uvicorn in a thread, on a free port of 127.0.0.1: a
stand-in for a site or a peer that answers as another build did."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette


@contextlib.contextmanager
def served(app: Starlette, chain: Path) -> Iterator[str]:
    """`chain`: the certificate chain and its key in one PEM file. Yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, ssl_certfile=str(chain), ssl_keyfile=str(chain)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
