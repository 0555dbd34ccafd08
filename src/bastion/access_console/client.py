"""The access console's HTTPS calls to the site, as `access_console/protocol.py` defines
them, with errors a representative can act on.

TLS is verified against the system's trust store, or against only the CA file the user
gives (`--ca-file`, for a site whose certificate its own authority signed). Errors carry
the site's own message (`{"error": {"message"}}`, or a `detail`).
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from bastion.access_console.errors import (
    ConsoleError,
    ConsoleTransportError,
    ConsoleTrustError,
    JumpRefusedError,
    LockedOutError,
    MisunderstoodError,
    NotPermittedError,
    NotSignedInError,
    RefusedError,
    WrongCredentialsError,
)
from bastion.access_console.protocol import (
    CONSOLE_API,
    About,
    ConsoleBuild,
    JumpItem,
    JumpItemKind,
    LiveSessionInfo,
    OpenSession,
    SessionOpened,
    SignedIn,
    SignIn,
    WatchOpened,
)
from bastion.platform import site_address

TIMEOUT = 30.0
CHUNK = 256 * 1024
T = TypeVar("T")
_JUMP_ITEMS: TypeAdapter[list[JumpItem]] = TypeAdapter(list[JumpItem])
_LIVE: TypeAdapter[list[LiveSessionInfo]] = TypeAdapter(list[LiveSessionInfo])


def site_url(text: str) -> str:
    """`https://HOST[:PORT]`, checked: the site's address as the user gives it."""
    return site_address.site_url(text, ConsoleError)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Trust the system's authorities, or only those in `ca_file`."""
    return site_address.tls_context(ca_file, ConsoleTrustError)


class ConsoleClient:
    """The site's console API, for one site and (once signed in) one bearer token."""

    def __init__(
        self,
        site: str,
        ca_file: Path | None = None,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.site = site_url(site)
        self.ca_file = ca_file
        self.tls = tls_context(ca_file)
        self.token = token
        self._http = httpx.Client(
            base_url=self.site + CONSOLE_API,
            verify=self.tls,
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
        )

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the calls ----------------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> SignedIn:
        try:
            body = SignIn(username=username, password=password)
        except ValidationError:
            raise ConsoleError("Give a username and a password (neither may be empty).") from None
        answer = self._call("POST", "/sign-in", body, signing_in=True)
        signed = _parse(SignedIn, answer, "the sign-in")
        self.token = signed.token
        return signed

    def sign_out(self) -> None:
        self._call("POST", "/sign-out")
        self.token = None

    def about(self) -> About:
        return _parse(About, self._call("GET", "/about"), "about")

    def build(self) -> ConsoleBuild:
        """The site's build of the console (to upgrade to its version)."""
        return _parse(ConsoleBuild, self._call("GET", "/build"), "the console build")

    def download(self, build: ConsoleBuild, sink: BinaryIO) -> str:
        """The build's bytes into `sink`, no more than its announced size; their SHA-256."""
        if not build.path.startswith(f"{CONSOLE_API}/build/"):
            raise MisunderstoodError(
                f"The site gave a build path that is not its own: {build.path}"
            )
        headers = {"Authorization": f"Bearer {self.token}"}
        digest, received = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", self.site + build.path, headers=headers) as response:
                if not response.is_success:
                    response.read()
                    raise _refused(response, False, RefusedError)
                for chunk in response.iter_bytes(CHUNK):
                    received += len(chunk)
                    if received > build.size:
                        raise MisunderstoodError(
                            f"The site sent more than the build's {build.size} bytes."
                        )
                    digest.update(chunk)
                    sink.write(chunk)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        return digest.hexdigest()

    def jump_items(self) -> list[JumpItem]:
        return _parse(_JUMP_ITEMS, self._call("GET", "/jump-items"), "the Jump Items")

    def open_session(
        self, jump_item_id: int, cols: int = 80, rows: int = 24, kind: JumpItemKind = "jump_client"
    ) -> SessionOpened:
        body = OpenSession(jump_item_id=jump_item_id, kind=kind, cols=cols, rows=rows)
        answer = self._call("POST", "/sessions", body, refusal=JumpRefusedError)
        opened = _parse(SessionOpened, answer, "the session")
        self._websocket_url(opened.terminal_path)  # refused here if it is not the site's
        return opened

    def terminal_url(self, opened: SessionOpened) -> str:
        """The WebSocket address of an opened session's terminal, on this same site."""
        return self._websocket_url(opened.terminal_path)

    def live_sessions(self) -> list[LiveSessionInfo]:
        return _parse(_LIVE, self._call("GET", "/live-sessions"), "the sessions in progress")

    def watch(self, session_id: str) -> tuple[WatchOpened, str]:
        """A watch of a session in progress, and the WebSocket address to watch it at."""
        answer = self._call("POST", f"/live-sessions/{session_id}/watch")
        opened = _parse(WatchOpened, answer, "the watch")
        return opened, self._websocket_url(opened.watch_path)

    def _websocket_url(self, path: str) -> str:
        if not path.startswith("/") or path.startswith("//"):
            raise MisunderstoodError(f"The site gave a WebSocket path that is not its own: {path}")
        return "wss://" + self.site.removeprefix("https://") + path

    # -- HTTP ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        *,
        signing_in: bool = False,
        refusal: type[RefusedError] = RefusedError,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token and not signing_in:
            headers["Authorization"] = f"Bearer {self.token}"
        elif not signing_in:
            raise NotSignedInError("Not signed in: run `bastion console sign-in` first.")
        content = body.model_dump_json() if body is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        if response.is_success:
            return response
        raise _refused(response, signing_in, refusal)

    def _unreachable(self, error: httpx.HTTPError) -> ConsoleTransportError:
        problem = site_address.untrusted(error, self.site, self.ca_file)
        if problem is not None:
            return ConsoleTrustError(problem)
        return ConsoleTransportError(f"Cannot reach {self.site}: {error or type(error).__name__}.")


def _refused(
    response: httpx.Response, signing_in: bool, refusal: type[RefusedError]
) -> ConsoleError:
    status, message = response.status_code, site_address.site_message(response)
    if status == 401 and signing_in:
        return WrongCredentialsError(f"Not signed in: {message}", status)
    if status == 401:
        return NotSignedInError(
            f"The site no longer accepts this sign-in ({message}); "
            "run `bastion console sign-in` again."
        )
    if status == 429:
        retry = _retry_after(response)
        return LockedOutError(f"{message} (try again in {retry} s)", status, retry)
    if status == 403:
        return NotPermittedError(f"Not permitted: {message}", status)
    if status in (404, 409, 423, 503):
        return refusal(message, status)
    return RefusedError(f"The site answered {status}: {message}", status)


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(1, int(response.headers.get("Retry-After", "")))
    except ValueError:
        return 60


def _parse(model: type[T] | TypeAdapter[T], response: httpx.Response, what: str) -> T:
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    try:
        return adapter.validate_json(response.content)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise MisunderstoodError(
            f"The site's answer to {what} is not what this console understands ({where}: "
            f"{first['msg']}); the console and the site may be of different versions."
        ) from None
