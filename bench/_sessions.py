"""Shared parts of the sessions benchmark: a site with a representative and Jump Clients
(real processes, as `tests/e2e/test_sessions_end_to_end.py` runs them), programs on PTYs
of their own, a private OpenSSH server, and /proc figures of the processes measured."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.test_sessions_end_to_end import Site, representative  # noqa: E402
from tests.integration.test_api import bearer, create_client, get_token  # noqa: E402
from tests.support.appliance import free_port, start_appliance  # noqa: E402

SITE = "sessions.bench.test"
REPRESENTATIVE, PASSWORD = "bench-rep", "a long pass phrase 1"
GROUP = "Bench"
SSHD = "/usr/sbin/sshd"
READ_SIZE = 256 * 1024


# -- /proc --------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Every descendant of `pid`."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            found += [int(kid) for kid in kids]
            todo += [int(kid) for kid in kids]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pid(appliance_pid: int) -> int:
    """The appliance's serving worker (where the sessions are relayed)."""
    for pid in children(appliance_pid):
        if "bastion.entrypoints.worker" in command_line(pid):
            return pid
    raise RuntimeError("the appliance has no serving worker")


@dataclass
class CpuWatch:
    """CPU used by some processes between two readings, in cores."""

    pids: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    before: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def cores(self) -> dict[str, float]:
        seconds = max(time.monotonic() - self.started, 1e-9)
        return {
            name: (cpu_seconds(pid) - self.before[name]) / seconds
            for name, pid in self.pids.items()
        }


class OthersWatch:
    """Cores used by processes that are not this benchmark's (it and its descendants)
    since this was made: the other load on a shared machine."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.machine = machine_cpu_seconds()
        self.ours = self._ours()

    @staticmethod
    def _ours() -> dict[int, float]:
        me = os.getpid()
        return {pid: cpu_seconds(pid) for pid in [me, *children(me)]}

    def cores(self) -> float:
        now = self._ours()
        own = sum(used - self.ours.get(pid, 0.0) for pid, used in now.items())
        others = machine_cpu_seconds() - self.machine - own
        return max(0.0, others) / max(time.monotonic() - self.started, 1e-9)


def run_queue_seconds(pid: int) -> float:
    """Seconds the threads of `pid` have waited, runnable, for a CPU (/proc schedstat)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


@dataclass
class WaitWatch:
    """How long some processes waited for a CPU while runnable, in ms per second."""

    pids: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    before: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.before = {name: run_queue_seconds(pid) for name, pid in self.pids.items()}

    def ms_per_second(self) -> dict[str, float]:
        seconds = max(time.monotonic() - self.started, 1e-9)
        return {
            name: (run_queue_seconds(pid) - self.before[name]) * 1000 / seconds
            for name, pid in self.pids.items()
        }


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- programs on a PTY --------------------------------------------------------------------


class Pty:
    """A program on a PTY of its own, as a terminal runs it; its output is read here and
    dropped once looked at (the terminal's end of a session)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.tail = b""
        self.received = 0
        self.name = argv[0]

    def type(self, keys: str | bytes) -> None:
        os.write(self.master, keys.encode() if isinstance(keys, str) else keys)

    def expect(self, text: str, timeout: float = 60.0) -> None:
        """Read until `text` has been shown (output before it is dropped)."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while True:
            at = self.tail.find(wanted)
            if at >= 0:
                self.tail = self.tail[at + len(wanted) :]
                return
            self.tail = self.tail[-len(wanted) :]
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and not self._readable(0)):
                raise RuntimeError(f"{text!r} not shown within {timeout:.0f} s")
            if self._readable(left):
                self.tail += self._read()

    def echo_round_trip(self, key: bytes) -> float:
        """Seconds from writing `key` to reading it back (a raw `cat` at the far end)."""
        started = time.perf_counter()
        os.write(self.master, key)
        got = b""
        while key not in got:
            if not self._readable(10.0):
                raise RuntimeError(f"{key!r} was not echoed within 10 s")
            got += self._read()
        return time.perf_counter() - started

    def drain(self) -> None:
        while self._readable(0.2):
            self._read()
        self.tail = b""

    def _readable(self, timeout: float) -> bool:
        return bool(select.select([self.master], [], [], timeout)[0])

    def _read(self) -> bytes:
        try:
            data = os.read(self.master, READ_SIZE)
        except OSError:  # EIO: the program ended
            data = b""
        if not data:
            raise RuntimeError(f"{self.name} ended (status {self.process.poll()})")
        self.received += len(data)
        return data

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)


def ready_shell(terminal: Pty, timeout: float = 60.0) -> None:
    """Wait until the shell on `terminal` runs commands (its profile read)."""
    terminal.type("echo ready-$((6*7))\r")
    terminal.expect("ready-42", timeout)
    terminal.drain()


RAW_CAT = "stty raw -echo; echo cat-$((6*7)); exec cat\r"
"""Typed into a shell: from then on every byte typed comes straight back (no line
editing, no echo by the terminal, no output processing)."""


def start_raw_cat(terminal: Pty) -> None:
    terminal.type(RAW_CAT)
    terminal.expect("cat-42")
    time.sleep(0.2)
    terminal.drain()


# -- the site -----------------------------------------------------------------------------


@dataclass
class JumpClient:
    client_id: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args], capture_output=True, text=True, timeout=120
    )


def _online_ids(site: Site) -> set[int]:
    found = site.api.get("/api/v1/jump-clients").json()["clients"]
    return {int(c["id"]) for c in found if c["status"] == "online"}


def start_jump_client(site: Site, name: str) -> JumpClient:
    """Install a Jump Client from an installer made through the API and run it as its
    service runs; its id once it is online."""
    answer = site.api.post(
        "/api/v1/jump-clients/installers", json={"mode": "active", "jump_group": GROUP}
    )
    answer.raise_for_status()
    made = site.tmp / f"{name}-installer.json"
    made.write_text(answer.json()["installer"])
    state = site.tmp / name
    done = bastion("jump-client", "install", str(made), "--dir", str(state))
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    before = _online_ids(site)
    with (site.tmp / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bastion", "jump-client", "run", "--dir", str(state)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        new = _online_ids(site) - before
        if new:
            return JumpClient(new.pop(), process)
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the Jump Client {name} did not come online")


@contextmanager
def running_site(tmp: Path, host: str) -> Iterator[Site]:
    """An appliance (supervisor, worker, gateway) with a representative granted GROUP."""
    web_port, gateway = free_port(host), free_port(host)
    env = {
        "BASTION_GATEWAY_LISTEN": f"{host}:{gateway}",
        "BASTION_GATEWAY_ADDRESS": f"{host}:{gateway}",
        "BASTION_PUBLIC_URL": f"https://{host}:{web_port}",
    }
    args = ["--hostname", SITE]
    with start_appliance(tmp, host=host, port=web_port, env=env, extra_args=args) as appliance:
        token = get_token(appliance, create_client(appliance, "bench")).json()["access_token"]
        with appliance.client(headers=bearer(token), timeout=60) as api:
            site = Site(appliance, api, tmp)
            representative(site, REPRESENTATIVE, [GROUP])
            yield site


def console_home(site: Site) -> Path:
    """A console configuration directory signed in as the representative (the CLI's own
    `sign-in`), for `bastion console jump` with XDG_CONFIG_HOME pointing at it."""
    home = site.tmp / "console"
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "console", "sign-in", "--site", site.appliance.url,
         "--ca-file", str(site.appliance.ca_file), "--username", REPRESENTATIVE,
         "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, "XDG_CONFIG_HOME": str(home)},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return home


def console_jump(home: Path, client_id: int) -> Pty:
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    return Pty([sys.executable, "-m", "bastion", "console", "jump", str(client_id)], env)


# -- OpenSSH ------------------------------------------------------------------------------


SSHD_CONFIG = """\
ListenAddress {host}:{port}
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {user}
"""


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@contextmanager
def private_sshd(directory: Path, host: str) -> Iterator[list[str]]:
    """A private OpenSSH server as this user on `host` and a high port, with its own host
    key and one authorized key; yields the `ssh -tt` command that reaches it."""
    if not os.path.exists(SSHD):
        raise SystemExit(f"{SSHD} is missing: apt-get install -y openssh-server")
    directory.mkdir()
    _keygen(directory / "host_key")
    _keygen(directory / "user_key")
    shutil.copy(directory / "user_key.pub", directory / "authorized_keys")
    port = free_port(host)
    user = os.environ.get("USER") or subprocess.check_output(["id", "-un"], text=True).strip()
    config = directory / "sshd_config"
    config.write_text(SSHD_CONFIG.format(host=host, port=port, dir=directory, user=user))
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
    with (directory / "sshd.log").open("wb") as log:
        server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    try:
        _wait_listening(host, port, server)
        yield [
            "ssh", "-tt", "-p", str(port), "-i", str(directory / "user_key"),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", f"{user}@{host}",
        ]  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


def _wait_listening(host: str, port: int, server: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"sshd exited with {server.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("sshd did not listen")
