"""The supervisor as workers and console commands reach it: its control socket."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from bastion.platform.errors import ConflictError, UnavailableError
from bastion.supervisor import control_socket as control
from bastion.supervisor import messages
from bastion.supervisor.sockets import ListenAddress, ListenError


class SupervisorClient:
    """Implements `bastion.installs.service.Supervisor` for one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.name = control.socket_name(data_dir)

    def _call(self, request: messages.Request, timeout: float = 30) -> control.Reply:
        try:
            return control.call(self.name, messages.request_to_wire(request), timeout)
        except control.SupervisorUnavailable as error:
            raise UnavailableError(str(error)) from None
        except control.SupervisorRefused as error:
            raise ConflictError(str(error)) from None

    # For the worker: the sockets it serves on.

    def listen(self, address: ListenAddress) -> socket.socket:
        request = messages.request_to_wire(messages.Listen(str(address)))
        try:
            _reply, fds = control.call(self.name, request)
        except control.SupervisorRefused as error:
            raise ListenError(str(error)) from None
        except control.SupervisorUnavailable as error:
            raise ListenError(f"Cannot listen on {address}: {error}") from None
        if len(fds) != 1:
            raise ListenError(f"The supervisor gave no socket for {address}.")
        return socket.socket(fileno=fds[0])

    def unlisten(self, address: ListenAddress) -> None:
        self._call(messages.Unlisten(str(address)))

    def shutdown(self) -> None:
        self._call(messages.Shutdown())

    # For the services: installs, and the certificate a console command changed.

    def install(self, request: messages.Install) -> messages.PendingInstall:
        reply, _ = self._call(request)
        return messages.PendingInstall.from_wire(reply)

    def cancel(self) -> bool:
        reply, _ = self._call(messages.Cancel())
        return bool(reply.get("cancelled"))

    def status(self) -> messages.SupervisorStatus:
        reply, _ = self._call(messages.Status(), timeout=10)
        return messages.SupervisorStatus.from_wire(reply)

    def end_kept_session(self, session_id: str, reason: str) -> bool:
        """End a remote session an install left on the old worker; False if no worker
        keeps it (or no supervisor runs this appliance)."""
        try:
            reply, _ = self._call(messages.EndKeptSession(session_id, reason))
        except (UnavailableError, ConflictError):
            return False
        return bool(reply.get("ended"))

    def kept_session_socket(self, session_id: str) -> str | None:
        """The private socket of the worker an install left keeping this remote session;
        None if no worker keeps it (or no supervisor runs this appliance, or it is of a
        version that cannot say)."""
        try:
            reply, _ = self._call(messages.FindKeptSession(session_id), timeout=10)
        except (UnavailableError, ConflictError):
            return None
        return str(reply["socket"]) if reply.get("socket") else None

    def kept_live_sessions(self) -> list[dict[str, Any]]:
        """The remote sessions that workers an install replaced keep, as each describes
        them; none if no supervisor runs this appliance or it cannot say."""
        try:
            reply, _ = self._call(messages.KeptLiveSessions(), timeout=10)
        except (UnavailableError, ConflictError):
            return []
        return [s for s in reply.get("sessions") or [] if isinstance(s, dict)]

    def watch_kept_session(self, session_id: str) -> tuple[str, str] | None:
        """The private socket of the worker an install left keeping this remote session,
        and that worker's ticket to watch it; None if no worker keeps it (or no supervisor
        runs this appliance, or it is of a version that cannot say). A `ConflictError`
        if the worker keeps it but may not give a ticket now."""
        try:
            reply, _ = self._call(messages.WatchKeptSession(session_id))
        except (UnavailableError, ConflictError):
            return None
        if reply.get("refused"):
            raise ConflictError(str(reply["refused"]))
        if not reply.get("token"):
            return None
        return str(reply["socket"]), str(reply["token"])

    def serve_certificate(self) -> bool:
        """Have the live worker serve the store's default certificate; False if no
        appliance runs on this data directory (its next start serves it)."""
        try:
            reply, _ = self._call(messages.ServeCertificate())
        except UnavailableError:
            return False
        return bool(reply.get("served"))
