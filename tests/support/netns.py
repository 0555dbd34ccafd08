"""A small network of Linux network namespaces for failover tests: a switch (a bridge in
a namespace of its own) and hosts, each with one veth `eth0` on the switch and an
address from 198.18.0.0/15 (set aside for benchmarking networks).

Appliances run inside a host namespace (`ip netns exec`). The test's own requests go
from a host namespace too: `Host.run` calls a function on a thread that has joined the
namespace, and sockets keep the namespace they were made in.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
PREFIX = 24


def _ip(*args: str, namespace: str = "") -> None:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def unavailable() -> str:
    """Why namespaces cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"bst-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, FileNotFoundError) as error:
        return f"network namespaces cannot be made here: {error}"
    _ip("netns", "del", probe)
    return ""


def _join(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(descriptor, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
    finally:
        os.close(descriptor)


@dataclass
class Host:
    namespace: str
    address: str
    _thread: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._thread = ThreadPoolExecutor(
            1, thread_name_prefix=self.namespace, initializer=_join, initargs=(self.namespace,)
        )

    def run(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` from this host's network namespace."""
        return self._thread.submit(function, *args).result()

    def submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        """`function(*args)` started from this host's network namespace."""
        return self._thread.submit(function, *args)

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


@contextmanager
def network(*names: str, first: int = 1) -> Iterator[dict[str, Host]]:
    """Hosts `names` on one switch, at 198.18.0.<first>, <first+1>, …"""
    tag = f"bst{os.getpid() % 100000}"
    switch = f"{tag}-sw"
    made: list[str] = []
    hosts: dict[str, Host] = {}
    try:
        _ip("netns", "add", switch)
        made.append(switch)
        _ip("link", "add", "br0", "type", "bridge", namespace=switch)
        _ip("link", "set", "br0", "up", namespace=switch)
        for number, name in enumerate(names, start=first):
            namespace = f"{tag}-{name}"
            _ip("netns", "add", namespace)
            made.append(namespace)
            port = f"p{number}"
            _ip(
                "link", "add", "eth0", "netns", namespace, "type", "veth",
                "peer", "name", port, "netns", switch,
            )  # fmt: skip
            _ip("link", "set", port, "master", "br0", "up", namespace=switch)
            address = f"198.18.0.{number}"
            _ip("addr", "add", f"{address}/{PREFIX}", "dev", "eth0", namespace=namespace)
            _ip("link", "set", "eth0", "up", namespace=namespace)
            _ip("link", "set", "lo", "up", namespace=namespace)
            hosts[name] = Host(namespace, address)
        yield hosts
    finally:
        for host in hosts.values():
            host.close()
        for namespace in reversed(made):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
