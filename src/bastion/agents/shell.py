"""A shell on a PTY, for a session: the running user's login shell, in a session and
process group of its own whose controlling terminal is the PTY (so Ctrl-C and SIGWINCH
reach the foreground job), hung up with SIGHUP then SIGKILL, always reaped."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import signal
import struct
import subprocess
import termios
from collections.abc import Callable
from dataclasses import dataclass, field

HANG_UP_GRACE = 2.0
"""Seconds between SIGHUP and SIGKILL when a session is ended."""
TERM = "xterm-256color"
FALLBACK_SHELL = "/bin/sh"
_DROPPED_ENV = ("PYTHONPATH", "COLUMNS", "LINES")


@dataclass(frozen=True)
class Shell:
    """What a session runs: a login shell (`argv0` starts with "-") with its environment."""

    path: str
    argv0: str
    cwd: str
    env: dict[str, str] = field(repr=False)


def login_shell(environ: dict[str, str] | None = None) -> Shell:
    """The running user's login shell from the password database (else /bin/sh), in the
    user's home, with TERM set and the Jump Client's own variables left out."""
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
        name, home, path = entry.pw_name, entry.pw_dir, entry.pw_shell
    except KeyError:
        name, home, path = str(uid), "/", ""
    if not path or not os.access(path, os.X_OK):
        path = FALLBACK_SHELL
    source = os.environ if environ is None else environ
    env = {
        k: v for k, v in source.items() if k not in _DROPPED_ENV and not k.startswith("BASTION_")
    }
    env.update(TERM=TERM, HOME=home, SHELL=path, USER=name, LOGNAME=name)
    cwd = home if os.path.isdir(home) else "/"
    return Shell(path, "-" + os.path.basename(path), cwd, env)


def _window(cols: int, rows: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


def _take_terminal() -> None:  # pragma: no cover - runs in the child, before exec
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A shell on a new PTY, in a session and process group of its own."""

    def __init__(self, shell: Shell, cols: int, rows: int) -> None:
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, _window(cols, rows))
            self.process = subprocess.Popen(
                [shell.argv0],
                executable=shell.path,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=shell.cwd,
                env=shell.env,
                start_new_session=True,
                preexec_fn=_take_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._watch = _ExitWatch(self.process.pid, self._reap)

    @property
    def pid(self) -> int:
        return self.process.pid

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, _window(cols, rows))

    def signal(self, signum: int) -> None:
        """`signum` to the shell's process group and to the terminal's foreground job."""
        groups = {self.pid}
        with contextlib.suppress(OSError):
            groups.add(os.tcgetpgrp(self.master))
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signum)

    async def hang_up(self, grace: float = HANG_UP_GRACE) -> None:
        """SIGHUP, then SIGKILL if the shell is still there after `grace` seconds."""
        if self.exited.done():
            return
        self.signal(signal.SIGHUP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), grace)
            return
        self.signal(signal.SIGKILL)
        await asyncio.shield(self.exited)

    def close(self) -> None:
        """Release the PTY; a shell still running is killed and reaped first."""
        if not self.exited.done():
            self.signal(signal.SIGKILL)
            self.process.wait()
            self._reap()
        self._watch.close()
        os.close(self.master)

    def _reap(self) -> None:
        code = self.process.poll()
        if code is None or self.exited.done():
            return
        self._watch.close()
        self.exited.set_result(128 - code if code < 0 else code)


class _ExitWatch:
    """Calls `reaped` when the process may have exited: a pidfd on the event loop, or a
    poll every 0.1 s where pidfds are not available."""

    def __init__(self, pid: int, reaped: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.reaped = reaped
        self.fd: int | None = None
        self.timer: asyncio.TimerHandle | None = None
        try:
            self.fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.timer = self.loop.call_later(0.1, self._poll)
            return
        self.loop.add_reader(self.fd, reaped)

    def _poll(self) -> None:
        self.timer = self.loop.call_later(0.1, self._poll)
        self.reaped()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
