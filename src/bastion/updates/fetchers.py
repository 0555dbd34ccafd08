"""The fetchers the TUF ``Updater`` reads through.

``ServiceFetcher`` reads from the update service over HTTP(S), trusting the
TLS context it is given (the channel's CA) and naming a TLS failure as one.
``GuardFetcher`` wraps it (or the bundle fetcher): it refuses metadata signed
for another site. ``BundleFetcher`` serves an unpacked offline bundle as if it
were the update service.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface  # type: ignore[attr-defined]

SITE_FIELD = "x-bastion-site"
METADATA_CAP = 8_000_000


class _ForeignSiteError(Exception):
    def __init__(self, found: object) -> None:
        super().__init__(f"signed for site {found!r}")
        self.found = found


class TlsFailure(tuf_errors.DownloadError):
    """The TLS connection to the update service failed: `untrusted` if its certificate
    did not verify (not signed by a CA this appliance trusts, expired, another name)."""

    def __init__(self, detail: str, untrusted: bool) -> None:
        super().__init__(detail)
        self.detail, self.untrusted = detail, untrusted


class ServiceFetcher(FetcherInterface):
    """HTTP(S) GETs to the update service with the given TLS context, through the proxy
    that the environment names (`https_proxy`, `no_proxy`), as other clients do."""

    def __init__(self, tls: ssl.SSLContext | None, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._tls = tls
        self._pools: dict[str | None, urllib3.PoolManager] = {}

    def close(self) -> None:
        """Close the connections kept open for the next request."""
        for pool in self._pools.values():
            pool.clear()
        self._pools.clear()

    def _pool(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        proxy = None
        if not urllib.request.proxy_bypass(parts.hostname or ""):
            proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy not in self._pools:
            self._pools[proxy] = self._new_pool(proxy)
        return self._pools[proxy]

    def _new_pool(self, proxy: str | None) -> urllib3.PoolManager:
        headers = {"User-Agent": "bastion-appliance"}
        # Connecting is tried again; a TLS failure or a broken answer is not.
        retries = urllib3.Retry(connect=2, read=0, other=0, redirect=False, raise_on_status=False)
        if proxy:
            return urllib3.ProxyManager(
                proxy, headers=headers, retries=retries, ssl_context=self._tls
            )
        return urllib3.PoolManager(headers=headers, retries=retries, ssl_context=self._tls)

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._pool(url).request(
                "GET", url, preload_content=False, timeout=urllib3.Timeout(self.timeout)
            )
        except urllib3.exceptions.MaxRetryError as error:
            raise _transport_error(error.reason) from error
        if response.status >= 400:
            response.drain_conn()  # the body is read, so the connection can serve the next
            response.release_conn()
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status}", response.status)
        return self._chunks(response)

    @staticmethod
    def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        """The body; the connection is kept for the next request only if it was read whole."""
        read = False
        try:
            yield from response.stream(CHUNK_BYTES)
            read = True
        except urllib3.exceptions.HTTPError as error:
            raise _transport_error(error) from error
        finally:
            if read:
                response.release_conn()
            else:
                response.close()


CHUNK_BYTES = 1 << 20


def _transport_error(reason: Exception | None) -> tuf_errors.DownloadError:
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return tuf_errors.SlowRetrievalError(str(reason))
    if isinstance(reason, urllib3.exceptions.SSLError):
        cause = reason.args[0] if reason.args else reason
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = f"certificate verify failed: {cause.verify_message or cause}"
            return TlsFailure(detail, untrusted=True)
        return TlsFailure(str(cause), untrusted=False)
    return tuf_errors.DownloadError(str(reason))


class GuardFetcher(FetcherInterface):
    """Wraps a fetcher: refuses metadata signed for another site."""

    def __init__(self, inner: FetcherInterface, site: str, metadata_prefix: str) -> None:
        self.inner, self.site, self.metadata_prefix = inner, site, metadata_prefix

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(self.metadata_prefix):
            return self.inner.fetch(url)
        data = bytearray()
        for chunk in self.inner.fetch(url):
            data += chunk
            if len(data) > METADATA_CAP:
                break
        self._check_site(bytes(data))
        return iter([bytes(data)])

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
            yield from iter(lambda: data.read(CHUNK_BYTES), b"")
