"""The fetchers the TUF ``Updater`` reads through.

``GuardFetcher`` wraps the network (or bundle) fetcher: it refuses metadata
signed for another site and reports download progress. ``BundleFetcher``
serves an unpacked offline bundle as if it were the update service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface  # type: ignore[attr-defined]

SITE_FIELD = "x-bastion-site"
METADATA_CAP = 8_000_000


class _ForeignSiteError(Exception):
    def __init__(self, found: object) -> None:
        super().__init__(f"signed for site {found!r}")
        self.found = found


class GuardFetcher(FetcherInterface):
    """Wraps a fetcher: refuses metadata signed for another site, reports target progress."""

    def __init__(self, inner: FetcherInterface, site: str, metadata_prefix: str) -> None:
        self.inner, self.site, self.metadata_prefix = inner, site, metadata_prefix
        self.progress: Callable[[int], None] | None = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(self.metadata_prefix):
            return self._counted(self.inner.fetch(url))
        data = bytearray()
        for chunk in self.inner.fetch(url):
            data += chunk
            if len(data) > METADATA_CAP:
                break
        self._check_site(bytes(data))
        return iter([bytes(data)])

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        done = 0
        for chunk in chunks:
            done += len(chunk)
            if self.progress is not None:
                self.progress(done)
            yield chunk

    def _check_site(self, data: bytes) -> None:
        try:
            signed = json.loads(data)["signed"]
        except (ValueError, KeyError, TypeError):
            return  # not metadata at all: TUF refuses it with its own reason
        if not isinstance(signed, dict):
            return
        if signed.get("_type") != "root" and signed.get(SITE_FIELD) != self.site:
            raise _ForeignSiteError(signed.get(SITE_FIELD))


class BundleFetcher(FetcherInterface):
    """Reads ``file://`` URLs from an unpacked offline bundle, never outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = Path(unquote(urlparse(url).path)).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise tuf_errors.DownloadHTTPError(f"{path.name} is not in the bundle", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as data:
            yield from iter(lambda: data.read(1 << 20), b"")
