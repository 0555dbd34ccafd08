"""The Jump Client build a site release carries, and its download by the clients.

A Jump Client runs the same `bastion` package as the site: the build for the site's
version is the `bastion` wheel inside the site release's package, taken out once into
`blobs/jump-clients/`. A client told to upgrade fetches it from the site over TLS with a
download token made for it (valid for an hour, bound to the client and the build), and
checks its SHA-256 against the digest the site sent over the client's authenticated
connection. Every download shares the site's upgrade bandwidth cap, oldest first.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import itertools
import tarfile
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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


class Bandwidth:
    """One pacer for every build download of this worker: chunks go out no faster than
    the site's cap (bytes a second), each to the download that started first among
    those waiting for one.

    Shared evenly instead, the downloads ordered together end together, restart
    together and come back together, and between such waves the bandwidth stands idle
    (measured: places of the concurrent cap held by clients all restarting at once).
    Served oldest first they end one after another. A download whose client reads
    slowly asks for no chunk while its last one is still being sent, so it leaves the
    bandwidth to the next; none waits longer than the bytes ahead of it take at the cap.
    """

    CATCH_UP = 0.05
    """Seconds of grants a late event loop may make up at once (else lost for good)."""

    def __init__(self, mib_per_second: float) -> None:
        self.rate = mib_per_second * MIB
        self._free_at = 0.0
        """The loop's time at which the next chunk may go."""
        self._waiting: list[tuple[float, int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def set_rate(self, mib_per_second: float) -> None:
        self.rate = mib_per_second * MIB

    async def take(self, size: int, since: float) -> None:
        """Wait for this download's turn to send `size` bytes; `since`: when it began."""
        loop = asyncio.get_running_loop()
        granted = loop.create_future()
        heapq.heappush(self._waiting, (since, next(self._order), size, granted))
        if self._timer is None:
            self._timer = loop.call_at(max(self._free_at, loop.time()), self._grant, loop)
        await granted

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self._waiting and self._free_at <= now:
            _since, _order, size, granted = heapq.heappop(self._waiting)
            if granted.done():  # its download ended while it waited
                continue
            granted.set_result(None)
            self._free_at = max(self._free_at, now - self.CATCH_UP) + size / self.rate
        if self._waiting:
            self._timer = loop.call_at(self._free_at, self._grant, loop)


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
