"""A Jumpoint's session: an SSH connection to a server with no agent, its PTY channel
relayed like a Jump Client's shell.

The server's host key must be the one pinned on the Jump Item: asyncssh checks it during
the key exchange, before any credential is sent, and a different key ends the attempt
with a refusal that names the key presented. The credential (a password or a private
key from the site's vault) is used for this connection only and never written down. A
password answers the server's password authentication or, on a server that turned that
off, its keyboard-interactive password prompt (PAM's "Password:"); no other prompt is
answered.

The relay side sees a `Pty`: one end of a socket pair (`master`) whose other end is
pumped to and from the SSH channel, so the session's flow control (read the terminal
only while the site takes more, write input only while the terminal takes it) works as
it does for a shell: the socket buffers are the bound, and a full one stops the pump.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import asyncssh

from bastion.agents.protocol import SshTarget
from bastion.agents.session import CHUNK, CannotStartError, Opener, Pty
from bastion.agents.shell import TERM

CONNECT_TIMEOUT = 15.0
"""Seconds to reach the server, agree keys and authenticate."""
CLOSE_TIMEOUT = 2.0
UNREACHED = 255
"""The exit code of a session whose server could not be reached or refused (as ssh's)."""


class _PinnedHostKey(asyncssh.SSHClient):
    """Accepts no host key but the pinned one (asyncssh checks that first) and remembers
    what the server presented instead."""

    def __init__(self) -> None:
        self.presented = ""

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.presented = f"{key.get_algorithm()} {key.get_fingerprint()}"
        return False


def pinned_key(text: str) -> asyncssh.SSHKey:
    """The public key in an OpenSSH line ("ssh-ed25519 AAAA... comment")."""
    try:
        return asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as error:
        raise CannotStartError(
            f"the Jump Item's pinned host key is not an OpenSSH public key ({error}); "
            "an administrator pastes the server's key again",
            UNREACHED,
        ) from None


def ssh_opener(target: SshTarget) -> Opener:
    """A Jumpoint's sessions: a PTY channel on `target`, checked against its pinned key."""

    async def start(cols: int, rows: int) -> Pty:
        return await SshTerminal.open(target, cols, rows)

    return start


class SshTerminal:
    """An SSH PTY channel behind a socket pair; `master` is the relay's end."""

    def __init__(
        self, connection: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess[bytes]
    ) -> None:
        self.connection = connection
        self.process = process
        self._relay_end, self._pump_end = socket.socketpair()
        for end in (self._relay_end, self._pump_end):
            end.setblocking(False)
        self.master = self._relay_end.fileno()
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pumps = [
            asyncio.create_task(self._outward(process.stdout)),
            asyncio.create_task(self._outward(process.stderr)),
            asyncio.create_task(self._inward()),
        ]
        self._waiter = asyncio.create_task(self._wait())

    @classmethod
    async def open(cls, target: SshTarget, cols: int, rows: int) -> SshTerminal:
        where = f"{target.username}@{target.host}:{target.port}"
        pinned = pinned_key(target.host_key)
        checker = _PinnedHostKey()
        try:
            connection = await asyncio.wait_for(
                asyncssh.connect(
                    target.host,
                    target.port,
                    username=target.username,
                    password=target.password,
                    client_keys=_keys(target),
                    known_hosts=([pinned], [], []),
                    client_factory=lambda: checker,
                    agent_path=None,
                    config=None,
                    gss_auth=False,
                    kbdint_auth=bool(target.password),  # a server asking "Password:" by PAM
                    preferred_auth=(
                        "publickey" if target.private_key else "password,keyboard-interactive"
                    ),
                ),
                CONNECT_TIMEOUT,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise CannotStartError(
                f"{target.host}:{target.port} presented the host key {checker.presented or '?'}, "
                "not the one pinned for this Jump Item; nothing was sent to it. If the server's "
                "key was changed on purpose, an administrator pins the new one on the Jump Item",
                UNREACHED,
            ) from None
        except asyncssh.PermissionDenied:
            raise CannotStartError(
                f"{where} refused the vaulted credential; an administrator updates it in the "
                "site's vault",
                UNREACHED,
            ) from None
        except (OSError, TimeoutError, ValueError, asyncssh.Error) as error:
            raise CannotStartError(f"cannot reach {where}: {_reason(error)}", UNREACHED) from None
        try:
            process = await asyncio.wait_for(
                connection.create_process(term_type=TERM, term_size=(cols, rows), encoding=None),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, asyncssh.Error) as error:
            connection.abort()
            raise CannotStartError(
                f"{where} opened no terminal: {_reason(error)}", UNREACHED
            ) from None
        return cls(connection, process)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            self.process.change_terminal_size(cols, rows)

    async def hang_up(self) -> None:
        """Close the channel and the connection."""
        if self.exited.done():
            return
        self.process.close()
        self.connection.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), CLOSE_TIMEOUT)

    def close(self) -> None:
        for task in (*self._pumps, self._waiter):
            task.cancel()
        self.connection.abort()
        self._relay_end.close()
        self._pump_end.close()
        if not self.exited.done():
            self.exited.set_result(UNREACHED)

    async def _outward(self, stream: asyncssh.SSHReader[bytes]) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, asyncssh.Error):
            while data := await stream.read(CHUNK):
                await loop.sock_sendall(self._pump_end, data)

    async def _inward(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, asyncssh.Error):
            while data := await loop.sock_recv(self._pump_end, CHUNK):
                self.process.stdin.write(data)
                await self.process.stdin.drain()

    async def _wait(self) -> None:
        """The exit status, once the channel closed and its output is in the socket."""
        with contextlib.suppress(OSError, asyncssh.Error):
            await self.process.wait_closed()
        await asyncio.gather(*self._pumps[:2], return_exceptions=True)
        with contextlib.suppress(OSError):  # the relay reads the end, as a PTY's EIO
            self._pump_end.shutdown(socket.SHUT_WR)
        if not self.exited.done():
            self.exited.set_result(_exit_code(self.process.returncode))


def _keys(target: SshTarget) -> list[asyncssh.SSHKey]:
    if not target.private_key:
        return []
    try:
        return [asyncssh.import_private_key(target.private_key)]
    except (asyncssh.KeyImportError, ValueError) as error:
        raise CannotStartError(
            f"the vaulted private key cannot be read ({error}); an administrator stores it "
            "again, unencrypted, in OpenSSH or PEM form",
            UNREACHED,
        ) from None


def _exit_code(returncode: int | None) -> int:
    """The status of the remote command (128 + n after signal n; 255 if none came)."""
    if returncode is None:
        return UNREACHED
    if returncode < 0:
        return min(255, 128 - returncode)
    return min(255, returncode)


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer in {CONNECT_TIMEOUT:.0f} s"
    if isinstance(error, asyncssh.Error):
        return error.reason or type(error).__name__
    return str(error) or type(error).__name__
