"""Shared IP addresses: enabled on the primary of a pair only, so that the site address
moves with the primary role (R30).

Each appliance lists its shared addresses in `BASTION_FAILOVER_SHARED_IPS` as
`ADDRESS/PREFIX@INTERFACE` (the interface is this machine's own, so the setting is
per appliance, not per site). They are added and removed with iproute2 (`ip addr`),
and a newly enabled address is announced with unsolicited ARP (`arping -U` from
iputils), so that the hosts of the segment send to the new primary at once instead of
waiting for their neighbour entries to expire. Both need CAP_NET_ADMIN and
CAP_NET_RAW: run the appliance as root or grant it those capabilities.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bastion.failover.rules import FailoverError

log = logging.getLogger("bastion.failover")

INTERFACE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
COMMAND_SECONDS = 10.0
ANNOUNCEMENTS = 3
"""Unsolicited ARP replies sent for a newly enabled address, one a second."""


class SharedIpError(FailoverError):
    """A shared address could not be enabled or disabled; the message says what to do."""


@dataclass(frozen=True)
class SharedIp:
    interface: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface

    @property
    def ip(self) -> str:
        return str(self.address.ip)

    def __str__(self) -> str:
        return f"{self.address.with_prefixlen}@{self.interface}"


def parse(text: str) -> SharedIp:
    """`ADDRESS/PREFIX@INTERFACE`, e.g. `10.0.0.10/24@eth0`."""
    address, at, interface = text.strip().partition("@")
    if not at or not INTERFACE.fullmatch(interface):
        raise ValueError(
            f"{text!r} is not ADDRESS/PREFIX@INTERFACE (e.g. 10.0.0.10/24@eth0): name the "
            "interface the address goes on."
        )
    if "/" not in address:
        raise ValueError(f"{text!r} has no prefix length; write e.g. {address}/24@{interface}.")
    try:
        parsed = ipaddress.ip_interface(address)
    except ValueError:
        raise ValueError(f"{address!r} in {text!r} is not an IP address with a prefix.") from None
    return SharedIp(interface, parsed)


def parse_all(texts: Iterable[str]) -> list[SharedIp]:
    return [parse(text) for text in texts if text.strip()]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        raise SharedIpError(
            f"`{command[0]}` is not installed; shared IP addresses need iproute2 and "
            "iputils-arping on the appliance."
        )
    try:
        return subprocess.run(
            list(command), capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        took = f"{COMMAND_SECONDS:.0f} s"
        raise SharedIpError(f"`{' '.join(command)}` did not finish in {took}.") from None


def _held(interface: str) -> set[str]:
    """The addresses (with prefix) on `interface`; empty when it does not exist."""
    done = _run(["ip", "-j", "addr", "show", "dev", interface])
    if done.returncode != 0:
        return set()
    held: set[str] = set()
    for link in json.loads(done.stdout or "[]"):
        for info in link.get("addr_info", []):
            held.add(f"{info['local']}/{info['prefixlen']}")
    return held


_seen: dict[tuple[SharedIp, ...], tuple[float, list[str]]] = {}
SEEN_SECONDS = 0.5


def enabled_recently(shared: Sequence[SharedIp]) -> list[str]:
    """`enabled`, read at most every half second (`/check_health` may be polled often)."""
    if not shared:
        return []
    key = tuple(shared)
    at, found = _seen.get(key, (0.0, []))
    if time.monotonic() - at > SEEN_SECONDS:
        found = enabled(shared)
        _seen[key] = (time.monotonic(), found)
    return found


def enabled(shared: Sequence[SharedIp]) -> list[str]:
    """Which of `shared` this machine holds now (for `/check_health`)."""
    found: list[str] = []
    by_interface: dict[str, set[str]] = {}
    for item in shared:
        held = by_interface.setdefault(item.interface, _held_quietly(item.interface))
        if item.address.with_prefixlen in held:
            found.append(item.ip)
    return found


def _held_quietly(interface: str) -> set[str]:
    try:
        return _held(interface)
    except (SharedIpError, ValueError, KeyError):
        return set()


def _failed(action: str, item: SharedIp, done: subprocess.CompletedProcess[str]) -> SharedIpError:
    reason = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
    advice = (
        " The appliance needs CAP_NET_ADMIN (run it as root or grant the capability)."
        if "not permitted" in reason.lower()
        else ""
    )
    return SharedIpError(f"Could not {action} shared IP {item}: {reason}.{advice}")


def place(shared: Sequence[SharedIp], holds: bool) -> None:
    """Enable (`holds`) or disable the addresses as a new role says, at once; a failure
    is logged, and the periodic peer check tries again."""
    try:
        enable(shared) if holds else disable(shared)
    except SharedIpError as error:
        log.error("shared addresses: %s", error)


def enable(shared: Sequence[SharedIp]) -> list[str]:
    """Add what is missing and announce it; the addresses added."""
    _seen.clear()
    added: list[str] = []
    for item in shared:
        if item.address.with_prefixlen in _held(item.interface):
            continue
        command = ["ip", "addr", "add", item.address.with_prefixlen, "dev", item.interface]
        done = _run(command)
        if done.returncode != 0:
            raise _failed("enable", item, done)
        added.append(item.ip)
        _announce(item)
    if added:
        log.info("shared IP addresses enabled: %s", ", ".join(added))
    return added


def disable(shared: Sequence[SharedIp]) -> list[str]:
    """Remove those this machine holds; the addresses removed."""
    _seen.clear()
    removed: list[str] = []
    for item in shared:
        if item.address.with_prefixlen not in _held(item.interface):
            continue
        command = ["ip", "addr", "del", item.address.with_prefixlen, "dev", item.interface]
        done = _run(command)
        if done.returncode != 0:
            raise _failed("disable", item, done)
        removed.append(item.ip)
    if removed:
        log.info("shared IP addresses disabled: %s", ", ".join(removed))
    return removed


def _announce(item: SharedIp) -> None:
    """Unsolicited ARP for an IPv4 address (IPv6 announces itself through DAD), sent in
    the background: the first goes out at once, the call does not wait for the rest."""
    if item.address.version != 4:
        return
    if shutil.which("arping") is None:
        log.warning("arping is not installed: %s was enabled without an announcement", item)
        return
    command = ["arping", "-U", "-c", str(ANNOUNCEMENTS), "-I", item.interface, item.ip]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def reap() -> None:
        _out, errors = process.communicate()
        if process.returncode not in (0, 1):  # 1: no reply, as expected for unsolicited ARP
            log.warning("announcing %s failed: %s", item, errors.decode(errors="replace"))

    threading.Thread(target=reap, name=f"arping {item.ip}", daemon=True).start()
