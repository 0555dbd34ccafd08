"""A real OpenSSH server (Debian `openssh-server`) for Jumpoint tests: started on a
127.x address and a high port with a host key made for the test, taking the running
user's login with one authorized key, and, if asked, with a password.

The password is the running user's in a copy of the shadow file that only this sshd
sees: it runs in a mount namespace of its own (`unshare`), where the copy is bound over
/etc/shadow. The machine's own files are never changed."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.appliance import free_port

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    username: str
    host_key: str
    """The server's public host key line ("ssh-ed25519 AAAA...")."""
    client_key: str
    """The private key its authorized_keys lets in (OpenSSH form)."""
    log: Path


def keypair(path: Path, comment: str) -> tuple[str, str]:
    """A new Ed25519 key pair: (private key text, public key line)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


def password_shadow(tmp: Path, user: str, password: str) -> Path:
    """/etc/shadow with `user`'s password hash replaced by one of `password`."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True
    ).stdout.strip()
    lines = Path("/etc/shadow").read_text().splitlines()
    fields = [line.split(":") for line in lines]
    changed = [":".join([f[0], hashed, *f[2:]] if f[0] == user else f) for f in fields]
    shadow = tmp / "shadow"
    shadow.write_text("\n".join(changed) + "\n")
    shadow.chmod(0o640)
    return shadow


PRIVSEP = Path("/run/sshd")


@contextmanager
def ssh_server(
    tmp: Path,
    host: str = "127.0.0.9",
    password: str | None = None,
    keyboard_interactive: bool = False,
) -> Iterator[SshServer]:
    """sshd in the foreground on `host` and a free high port, until the block ends; with
    `password`, the running user signs in with it too (root only: it needs a namespace),
    and with `keyboard_interactive` only by answering PAM's password prompt (a server
    that turned plain password authentication off)."""
    tmp.mkdir(parents=True, exist_ok=True)
    _, host_public = keypair(tmp / "host_key", "test host")
    client_private, client_public = keypair(tmp / "client_key", "test client")
    authorized = tmp / "authorized_keys"
    authorized.write_text(client_public + "\n")
    authorized.chmod(0o600)
    port = free_port(host)
    config = tmp / "sshd_config"
    config.write_text(
        f"ListenAddress {host}:{port}\n"
        f"HostKey {tmp / 'host_key'}\n"
        f"PidFile {tmp / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PasswordAuthentication {'yes' if password and not keyboard_interactive else 'no'}\n"
        f"KbdInteractiveAuthentication {'yes' if keyboard_interactive else 'no'}\n"
        f"UsePAM {'yes' if keyboard_interactive else 'no'}\n"
        f"PermitRootLogin {'yes' if password else 'prohibit-password'}\n"
        "StrictModes no\nPrintMotd no\nPrintLastLog no\n"
        "LogLevel VERBOSE\n"
    )
    log = tmp / "sshd.log"
    if os.geteuid() == 0:  # sshd's privilege separation directory, made at boot by systemd
        PRIVSEP.mkdir(mode=0o755, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    command = [SSHD, "-D", "-e", "-f", str(config)]
    if password:
        shadow = password_shadow(tmp, user, password)
        mount = f"mount --bind {shadow} /etc/shadow && exec {' '.join(command)}"
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(host, port, process, log)
        yield SshServer(host, port, user, host_public, client_private, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sshd exited: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"sshd did not listen on {host}:{port}")
