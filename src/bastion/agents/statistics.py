"""What a Jump Client reports about its machine, read from the standard library and /proc.

Every reading is best effort: a value the platform does not offer is left empty rather
than failing the check-in. `collect` may block (the FQDN can need a name lookup), so the
connection loop runs it in a thread.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import struct
from pathlib import Path

from bastion.agents.protocol import Cpu, Disk, Statistics

LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "ntfs"})
UTMP = Path("/var/run/utmp")
_UTMP_RECORD = struct.Struct("<hxxi32s4s32s256s")  # type, pid, line, id, user, host (glibc)
_UTMP_SIZE = 384
_USER_PROCESS = 7


def collect() -> Statistics:
    total, available = _memory()
    return Statistics(
        hostname=socket.gethostname()[:255],
        fqdn=socket.getfqdn()[:255],
        os=_os_name()[:255],
        console_user=_console_user(),
        uptime_seconds=_uptime(),
        cpu=Cpu(count=os.cpu_count() or 0, model=_cpu_model()[:255], load=_load()),
        memory_total=total,
        memory_available=available,
        disks=tuple(_disks()),
    )


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
        return f"{release.get('PRETTY_NAME', release.get('NAME', ''))} ({platform.release()})"
    except OSError:
        return f"{platform.system()} {platform.release()}"


def _uptime() -> float:
    try:
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return 0.0


def _load() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return ()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory() -> tuple[int, int]:
    """Total and available memory in bytes, from /proc/meminfo."""
    fields: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return fields.get("MemTotal", 0), fields.get("MemAvailable", 0)


def _mounts() -> list[str]:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ["/"]
    found = [
        f[1] for f in (line.split() for line in lines) if len(f) > 2 and f[2] in LOCAL_FILESYSTEMS
    ]
    return list(dict.fromkeys(["/", *found]))[:32]


def _disks() -> list[Disk]:
    disks = []
    for path in _mounts():
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        disks.append(Disk(path=path[:1024], total=usage.total, free=usage.free))
    return disks


def _console_user() -> str | None:
    """The user logged in on a local console or display (utmp), if any."""
    try:
        data = UTMP.read_bytes()
    except OSError:
        return None
    for offset in range(0, len(data) - _UTMP_SIZE + 1, _UTMP_SIZE):
        kind, _pid, line, _id, user, _host = _UTMP_RECORD.unpack_from(data, offset)
        terminal = line.split(b"\0", 1)[0].decode(errors="replace")
        if kind == _USER_PROCESS and (terminal.startswith("tty") or terminal.startswith(":")):
            return user.split(b"\0", 1)[0].decode(errors="replace")[:255] or None
    return None
