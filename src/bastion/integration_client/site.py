"""The site's API as the integration client uses it: about (no sign-in), the OAuth
client-credentials sign-in, the session reports page by page, a recording or a new
backup streamed to a file whose SHA-256 is computed on the way, and the site's check of
a backup file.

TLS is verified against the system's authorities, or against only the CA file given
(`--ca-file`). Errors carry the site's own message (`{"error": {"message"}}`).
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from bastion.integration_client.errors import (
    IntegrationError,
    MisunderstoodError,
    SiteRefusedError,
    SiteTrustError,
    SiteUnreachableError,
    WrongSecretError,
)
from bastion.platform import site_address

TIMEOUT = 60.0
PAGE = 500
CHUNK = 1 << 16
RENEW_AT = 0.8
"""Sign in again once this share of the token's life has passed."""
T = TypeVar("T", bound=BaseModel)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class About(_Answer):
    site: str
    site_version: str


class Token(_Answer):
    access_token: str
    expires_in: int = 3600


class SessionRecord(_Answer):
    """One session report, as the site lists it; kept whole in `raw`."""

    id: str
    started_at: datetime
    ended_at: datetime | None
    live: bool
    recording_sha256: str | None
    recording_size: int | None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None and not self.live


class _Header(RootModel[dict[str, str]]):
    pass


class _Page(_Answer):
    total: int
    sessions: list[dict[str, object]]


def site_url(text: str) -> str:
    """`https://HOST[:PORT]`, checked: the site's address as the user gives it."""
    return site_address.site_url(text, IntegrationError)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Trust the system's authorities, or only those in `ca_file`."""
    return site_address.tls_context(ca_file, SiteTrustError)


class SiteClient:
    """One site's API, signed in (after `sign_in`) as one API client."""

    def __init__(
        self,
        site: str,
        ca_file: Path | None = None,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.site = site_url(site)
        self.ca_file = ca_file
        self._credentials: tuple[str, str] | None = None
        self._renew_at = 0.0
        self._http = httpx.Client(
            base_url=self.site,
            verify=tls_context(ca_file),
            timeout=timeout,
            follow_redirects=False,
            headers={"Accept": "application/json"},
            transport=transport,
        )

    def __enter__(self) -> SiteClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()

    def about(self) -> About:
        return _parse(About, self._call("GET", "/api/v1/console/about"), "about")

    def sign_in(self, client_id: str, secret: str) -> None:
        """Trade the client credentials for a bearer token, renewed (by `_fresh`) before
        it expires, so that a pass longer than the token's life goes on."""
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        answer = self._call("POST", "/api/v1/oauth/token", data=form)
        token = _parse(Token, answer, "the sign-in")
        self._http.headers["Authorization"] = f"Bearer {token.access_token}"
        self._credentials = (client_id, secret)
        self._renew_at = time.monotonic() + token.expires_in * RENEW_AT

    def _fresh(self) -> None:
        if self._credentials is not None and time.monotonic() >= self._renew_at:
            self.sign_in(*self._credentials)

    def sessions(self) -> Iterator[tuple[SessionRecord, dict[str, object]]]:
        """Every session report, newest first, each parsed and as the site wrote it."""
        offset = 0
        while True:
            params = {"limit": PAGE, "offset": offset}
            self._fresh()
            page = _parse(_Page, self._call("GET", "/api/v1/sessions", params=params), "sessions")
            for raw in page.sessions:
                yield _parse_record(raw), raw
            offset += len(page.sessions)
            if not page.sessions or offset >= page.total:
                return

    def download_recording(self, session_id: str, into: Path) -> tuple[int, str]:
        """Stream the recording into `into`; its size and SHA-256."""
        return self._download("GET", f"/api/v1/sessions/{session_id}/recording", into)

    def create_backup(self, passphrase: str, into: Path) -> tuple[int, str]:
        """A new backup of the whole site, encrypted under `passphrase`, into `into`."""
        return self._download("POST", "/api/v1/backups", into, {"passphrase": passphrase})

    def inspect_backup(self, path: Path) -> dict[str, str]:
        """The site's own check of a backup file: its readable header, or a refusal."""
        self._fresh()
        with path.open("rb") as body:
            answer = self._call(
                "POST",
                "/api/v1/backups/inspect",
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        return _parse(_Header, answer, "the backup's inspection").root

    def _download(
        self, method: str, path: str, into: Path, body: dict[str, str] | None = None
    ) -> tuple[int, str]:
        self._fresh()
        digest, size = hashlib.sha256(), 0
        try:
            with self._http.stream(method, path, headers={"Accept": "*/*"}, json=body) as response:
                if not response.is_success:
                    response.read()
                    raise _refused(response)
                with into.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        return size, digest.hexdigest()

    def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        if response.is_success:
            return response
        raise _refused(response)

    def _unreachable(self, error: httpx.HTTPError) -> SiteUnreachableError:
        problem = site_address.untrusted(error, self.site, self.ca_file)
        if problem is not None:
            return SiteTrustError(f"TLS: {problem}")
        return SiteUnreachableError(f"Cannot reach {self.site}: {error or type(error).__name__}.")


def _refused(response: httpx.Response) -> SiteRefusedError:
    status, message = response.status_code, site_address.site_message(response)
    if status == 401 and response.request.url.path.endswith("/oauth/token"):
        return WrongSecretError(
            f"The site refused the sign-in ({message}); check --client-id and the secret "
            "in --client-secret-file (`bastion appliance api-client create` makes a new one).",
            status,
        )
    return SiteRefusedError(f"The site answered {status}: {message}", status)


def _parse_record(raw: dict[str, object]) -> SessionRecord:
    try:
        return SessionRecord.model_validate(raw)
    except ValidationError as error:
        raise _misunderstood("a session report", error) from None


def _parse(model: type[T], response: httpx.Response, what: str) -> T:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise _misunderstood(what, error) from None


def _misunderstood(what: str, error: ValidationError) -> MisunderstoodError:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    return MisunderstoodError(
        f"The site's answer to {what} is not what this client understands ({where}: "
        f"{first['msg']}); is it a Bastion site?"
    )
