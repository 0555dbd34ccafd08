"""The Jump Client build a site release carries, and its download by the clients.

A Jump Client runs the same `bastion` package as the site: the build for the site's
version is the `bastion` wheel inside the site release's package, taken out once into
`blobs/jump-clients/`. A client told to upgrade receives it over its own connection from
the gateway process that holds it (`send_over`, protocol 2); a client of protocol 1
fetches it from the site over HTTPS with a download token made for it (valid for an
hour, bound to the client and the build). Either way it checks the build's SHA-256
against the digest the site sent over its authenticated connection. Every download, in
whichever process, shares the site's upgrade bandwidth cap (`Bandwidth`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import heapq
import hmac
import itertools
import mmap
import os
import struct
import tarfile
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.agents.wire import Link
from bastion.platform.files import write_atomically
from bastion.supervisor.slots import CURRENT, Releases

CHUNK = 256 * 1024
TOKEN_SECONDS = 3600
MIB = 1024 * 1024


class BuildError(Exception):
    """The site's Jump Client build cannot be found or served; the message says why."""


@dataclass(frozen=True)
class Build:
    version: str
    sha256: str
    size: int
    path: Path


def current_build(data_dir: Path) -> Build | None:
    """The Jump Client build of the site release the appliance runs; None for the code
    installed with the appliance (its clients are built from the same code)."""
    releases = Releases(data_dir)
    slot = releases.target(CURRENT)
    manifest = releases.manifest(slot) if slot else {}
    package = manifest.get("package")
    if manifest.get("factory", True) or not package:
        return None
    return build_of(data_dir, str(manifest["version"]), Path(str(package)))


def build_of(data_dir: Path, version: str, package: Path) -> Build:
    """The Jump Client build a site release package carries, taken out once; for the
    running release, or for one held ahead of its install (its installers, R11)."""
    wheel = data_dir / "blobs" / "jump-clients" / f"bastion-{version}.whl"
    if not wheel.exists():
        write_atomically(wheel, _wheel_of(package), 0o644)
    data = wheel.read_bytes()
    return Build(version, hashlib.sha256(data).hexdigest(), len(data), wheel)


def _wheel_of(package: Path) -> bytes:
    try:
        with tarfile.open(package, "r:*") as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name.startswith("bastion-") and name.endswith(".whl"):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read()
    except (OSError, tarfile.TarError) as error:
        raise BuildError(f"The site release package {package} cannot be read: {error}") from None
    raise BuildError(f"The site release package {package} carries no bastion wheel.")


# -- download tokens --------------------------------------------------------------------


def _token_key(site_secret: bytes) -> bytes:
    info = b"bastion jump client build download v1"
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(site_secret)


def download_token(site_secret: bytes, client_id: str, sha256: str, now: float) -> str:
    expires = int(now) + TOKEN_SECONDS
    mac = hmac.new(_token_key(site_secret), f"{client_id}:{sha256}:{expires}".encode(), "sha256")
    return f"{client_id}.{expires}.{mac.hexdigest()}"


def check_token(site_secret: bytes, token: str, sha256: str, now: float) -> str | None:
    """The client the token was made for, if it is valid for this build now."""
    try:
        client_id, expires_text, mac = token.split(".")
        expires = int(expires_text)
    except ValueError:
        return None
    expected = hmac.new(
        _token_key(site_secret), f"{client_id}:{sha256}:{expires}".encode(), "sha256"
    ).hexdigest()
    if not hmac.compare_digest(expected, mac) or now > expires:
        return None
    return client_id


# -- the bandwidth cap ---------------------------------------------------------------------

LEDGER = struct.Struct("<dd")
"""A shared bandwidth file: <free_at: f64 (CLOCK_MONOTONIC seconds, the same in every
process)> <rate: f64 (bytes a second; 0 until the site's cap is set)>."""


def create_bandwidth_file(path: Path) -> None:
    """The ledger every process serving builds paces from, with nothing sent yet."""
    write_atomically(path, LEDGER.pack(0.0, 0.0), mode=0o600)


class _Ledger:
    """When the next chunk may go, and the cap: in this process only, or in a file shared
    by every process that serves builds (the worker and its gateway processes), under an
    advisory lock held for a few microseconds per grant."""

    def __init__(self, path: Path | None) -> None:
        self.free_at, self.rate = 0.0, 0.0
        self._fd = -1 if path is None else os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._map = None if path is None else mmap.mmap(self._fd, LEDGER.size)

    @contextmanager
    def held(self) -> Iterator[_Ledger]:
        if self._map is None:
            yield self
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self.free_at, self.rate = LEDGER.unpack_from(self._map)
            yield self
            LEDGER.pack_into(self._map, 0, self.free_at, self.rate)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map = None


class Bandwidth:
    """The pacer of build downloads: chunks go out no faster than the site's cap (bytes
    a second), each to the download that started first among those waiting here.

    With `shared` (the site's bandwidth file), every process that serves builds paces
    from one ledger, so all downloads together keep to the cap whichever gateway process
    holds them; the rate set by any of them (the rollout sets the site's each second)
    holds for all. Within a process the oldest download goes first.

    Shared evenly instead, the downloads ordered together end together, restart
    together and come back together, and between such waves the bandwidth stands idle
    (measured: places of the concurrent cap held by clients all restarting at once).
    Served oldest first they end one after another. A download whose client reads
    slowly asks for no chunk while its last one is still being sent, so it leaves the
    bandwidth to the next; none waits longer than the bytes ahead of it take at the cap.
    """

    CATCH_UP = 0.05
    """Seconds of grants a late event loop may make up at once (else lost for good)."""

    def __init__(self, mib_per_second: float | None, shared: Path | None = None) -> None:
        self._ledger = _Ledger(shared)
        self._waiting: list[tuple[float, int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.Handle | None = None
        if mib_per_second is not None:
            self.set_rate(mib_per_second)

    def set_rate(self, mib_per_second: float) -> None:
        with self._ledger.held() as ledger:
            ledger.rate = mib_per_second * MIB

    @property
    def rate(self) -> float:
        """Bytes a second (0: no cap set yet, and nothing is sent)."""
        with self._ledger.held() as ledger:
            return ledger.rate

    async def take(self, size: int, since: float) -> None:
        """Wait for this download's turn to send `size` bytes; `since`: when it began."""
        loop = asyncio.get_running_loop()
        granted = loop.create_future()
        heapq.heappush(self._waiting, (since, next(self._order), size, granted))
        if self._timer is None:
            self._timer = loop.call_soon(self._grant, loop)
        await granted

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = time.monotonic()
        with self._ledger.held() as ledger:
            while self._waiting and ledger.rate > 0 and ledger.free_at <= now:
                _since, _order, size, granted = heapq.heappop(self._waiting)
                if granted.done():  # its download ended while it waited
                    continue
                granted.set_result(None)
                ledger.free_at = max(ledger.free_at, now - self.CATCH_UP) + size / ledger.rate
            wait = ledger.free_at - now if ledger.rate > 0 else self.UNSET_WAIT
        if self._waiting:
            self._timer = loop.call_later(max(0.0, wait), self._grant, loop)

    UNSET_WAIT = 1.0
    """Seconds between looks at a shared ledger whose cap nobody has set yet."""

    def close(self) -> None:
        self._ledger.close()


async def stream(build: Build, bandwidth: Bandwidth) -> AsyncGenerator[bytes, None]:
    """The build's bytes, no faster than the site's cap allows all downloads together.
    Each chunk is read once its turn came: hundreds of downloads wait for turns at once."""
    since, left = time.monotonic(), build.size
    with build.path.open("rb") as source:
        while left > 0:
            await bandwidth.take(min(CHUNK, left), since)
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class Unsent(Enum):
    """Why a build did not go out whole over a client's connection (as the page says it)."""

    STALLED = (
        "its download of the build stalled: it read nothing for {stall:g} s, and the site cut "
        "it off"
    )
    ENDED = "its connection ended during its download of the build"
    SHORT = "the site's copy of the build is shorter than its recorded size"


def download_failed(why: str) -> str:
    """An upgrade's failure when the site could not send the build, as the page shows it."""
    return f"{why}; resume the rollout with retry to let it try again"


async def send_over(link: Link, build: Build, bandwidth: Bandwidth, stall: float) -> Unsent | None:
    """Send the build's bytes over `link` as binary messages, no faster than the cap allows
    all downloads together; None once all are queued, else why not (`STALLED` when the
    client read nothing for `stall` seconds: the caller cuts it off).

    A chunk is asked of the cap only once the client has read most of the one before
    (the link's queue is under half its limit), so a slow reader holds back no one."""
    since, left = time.monotonic(), build.size
    with build.path.open("rb") as source:
        while left > 0:
            try:
                async with asyncio.timeout(stall):
                    room = await link.writable()
            except TimeoutError:
                return Unsent.STALLED
            if not room:
                return Unsent.ENDED
            size = min(link.codec.max_frame, left)
            await bandwidth.take(size, since)
            chunk = source.read(size)
            if len(chunk) < size:
                return Unsent.SHORT
            if not link.send_binary(chunk):
                return Unsent.ENDED
            left -= size
    return None
