"""The supervisor as workers and console commands reach it: its control socket."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from bastion.platform.errors import ConflictError, UnavailableError
from bastion.supervisor import control_socket as control
from bastion.supervisor.sockets import ListenAddress, ListenError


class SupervisorClient:
    """Implements `bastion.platform.ports.Supervisor` for one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.name = control.socket_name(data_dir)

    def _call(self, message: dict[str, Any], timeout: float = 30) -> control.Reply:
        try:
            return control.call(self.name, message, timeout)
        except control.SupervisorUnavailable as error:
            raise UnavailableError(str(error)) from None
        except control.SupervisorRefused as error:
            raise ConflictError(str(error)) from None

    # For the worker: the sockets it serves on.

    def listen(self, address: ListenAddress) -> socket.socket:
        try:
            _reply, fds = control.call(self.name, {"op": "listen", "address": str(address)})
        except control.SupervisorRefused as error:
            raise ListenError(str(error)) from None
        except control.SupervisorUnavailable as error:
            raise ListenError(f"Cannot listen on {address}: {error}") from None
        if len(fds) != 1:
            raise ListenError(f"The supervisor gave no socket for {address}.")
        return socket.socket(fileno=fds[0])

    def unlisten(self, address: ListenAddress) -> None:
        self._call({"op": "unlisten", "address": str(address)})

    def shutdown(self) -> None:
        self._call({"op": "shutdown"})

    # For the services: installs.

    def install(self, request: dict[str, Any]) -> dict[str, Any]:
        reply, _ = self._call({**request, "op": "install"})
        return reply

    def cancel(self) -> bool:
        reply, _ = self._call({"op": "cancel"})
        return bool(reply.get("cancelled"))

    def status(self) -> dict[str, Any]:
        reply, _ = self._call({"op": "status"}, timeout=10)
        return reply
