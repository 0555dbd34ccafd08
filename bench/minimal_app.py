"""The peer of `bench_api.py`: one async route returning a small JSON object, served the way
the appliance serves its site.

Same listener code (`UvicornListeners` with the appliance's uvicorn options), same event
loop (`platform.event_loop`: uvloop), same TLS context built from the appliance's own
`certs/` directory. `bench_api.py` binds the listening socket and starts one process on
it, as the appliance serves its site from one worker process.

    python bench/minimal_app.py --certs DATA/certs --fd N --listen HOST:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.certificates import tls
from bastion.network.listeners import UvicornListeners
from bastion.platform.event_loop import run_event_loop
from bastion.supervisor.sockets import parse_listen_address


async def hello(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


APP = Starlette(routes=[Route("/", hello)])


async def serve(certs: Path, fd: int, listen: str) -> None:
    listening = socket.socket(fileno=fd)
    listeners = UvicornListeners(tls.server_context(certs), lambda _address: listening)
    listeners.attach(APP)
    await listeners.open(parse_listen_address(listen))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await listeners.close_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--listen", required=True)
    args = parser.parse_args()
    run_event_loop(serve(args.certs, args.fd, args.listen))  # as the appliance's worker runs


if __name__ == "__main__":
    main()
