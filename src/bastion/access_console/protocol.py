"""The access console's conversation with the site, defined once for both ends.

Over HTTPS (JSON, bearer token from sign-in):

    POST /api/v1/console/sign-in        {username, password}      -> SignedIn
    POST /api/v1/console/sign-out
    GET  /api/v1/console/about                                     -> About
    GET  /api/v1/console/build                                     -> ConsoleBuild
    GET  /api/v1/console/build/<sha256>                            -> the build (a wheel)
    GET  /api/v1/console/jump-items                                -> [JumpItem]
    POST /api/v1/console/sessions       {jump_item_id, cols, rows} -> SessionOpened

Then a WebSocket over TLS on `SessionOpened.terminal_path`. The console's first text
message is `ConsoleHello` with the session's single-use token; after that binary frames
carry terminal bytes (console -> site: keystrokes; site -> console: output, at most
`MAX_FRAME_BYTES` each) and text frames carry the messages below.

Administrators may watch a session in progress, read-only:

    GET  /api/v1/console/live-sessions                             -> [LiveSessionInfo]
    POST /api/v1/console/live-sessions/<session_id>/watch          -> WatchOpened

Then a WebSocket on `WatchOpened.watch_path`, opened with a `ConsoleHello` carrying the
watch's own single-use token. The site says `watching`, sends the session's most recent
output (up to `WATCH_TAIL_BYTES`, so the screen can be drawn) and then its output as it
passes, with `resized` when the representative's terminal changes size, and `exited` or
`ended` last. A watcher sends nothing more; one that falls behind is dropped (closed
with 1008) rather than slow the session down.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import MAX_FRAME_BYTES, Key32, TerminalSize

CONSOLE_API = "/api/v1/console"
SessionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Text = Annotated[str, Field(max_length=255)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# -- HTTPS ------------------------------------------------------------------------


class SignIn(Body):
    username: Annotated[str, Field(min_length=1, max_length=256)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class SignedIn(Body):
    token: str
    expires_at: datetime
    username: str
    display_name: str
    role: str


class About(Body):
    site: str
    """The site's hostname."""
    site_version: str
    site_build: str


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ConsoleBuild(Body):
    """The site's build of the console: the site's own `bastion` wheel. A console of
    another version fetches it from `path` (same site, same sign-in), checks its size and
    SHA-256, installs it beside itself and runs it."""

    version: str
    sha256: Sha256
    size: Annotated[int, Field(ge=1)]
    path: str


JumpItemKind = Literal["jump_client", "ssh"]
JumpStatus = Literal[
    "online", "offline", "lost", "upgrade_pending", "upgrading", "failed", "revoked"
]


class JumpItem(Body):
    id: int
    name: str
    hostname: str
    group: str
    tag: str
    mode: Literal["active", "passive"]
    status: str
    version: str
    jumpable: bool
    """Whether a jump can start now; if not, `reason` says why."""
    reason: str = ""
    kind: JumpItemKind = "jump_client"
    """"jump_client": a shell on that machine; "ssh": an SSH server through a Jumpoint."""


class OpenSession(Body):
    jump_item_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    kind: JumpItemKind = "jump_client"
    """Which kind of Jump Item `jump_item_id` names (each kind has its own ids)."""
    cols: TerminalSize = 80
    rows: TerminalSize = 24


class SessionOpened(Body):
    session_id: SessionId
    terminal_path: str
    """`/api/v1/console/sessions/<session_id>/terminal` on the same site."""
    token: Key32
    """Single use, short-lived: the `ConsoleHello` on the terminal connection."""


class LiveSessionInfo(Body):
    """A session in progress on the site."""

    session_id: SessionId
    title: str
    """Who, on which endpoint."""
    representative: str
    endpoint: str
    started_at: datetime | None
    """When the endpoint joined; None while the session waits for it."""
    cols: int
    rows: int
    watchers: int


class WatchOpened(Body):
    session_id: SessionId
    watch_path: str
    """`/api/v1/console/live-sessions/<session_id>/watch` on the same site."""
    token: Key32
    """Single use, short-lived: the `ConsoleHello` on the watch connection."""


WATCH_TAIL_BYTES = 64 * 1024
"""How much of a session's most recent output a new watcher is sent first."""


# -- the terminal WebSocket ---------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ConsoleHello(Message):
    """The console's first message on the terminal connection."""

    type: Literal["console_hello"] = "console_hello"
    token: Key32


class Resize(Message):
    type: Literal["resize"] = "resize"
    cols: TerminalSize
    rows: TerminalSize


class End(Message):
    """Console to site: end the session."""

    type: Literal["end"] = "end"


class Started(Message):
    """Site to console: the Jump Client joined; the shell is live."""

    type: Literal["started"] = "started"


class Exited(Message):
    """Site to console: the remote shell ended with `code`; the connection closes next."""

    type: Literal["exited"] = "exited"
    code: Annotated[int, Field(ge=0, le=255)]


class Ended(Message):
    """Site to console: the session ended for another reason (said in `reason`)."""

    type: Literal["ended"] = "ended"
    reason: Annotated[str, Field(max_length=500)]


class Watching(Message):
    """Site to a watcher: the session it watches and its terminal's size; the most recent
    output follows."""

    type: Literal["watching"] = "watching"
    title: Annotated[str, Field(max_length=500)]
    cols: TerminalSize
    rows: TerminalSize


class Resized(Message):
    """Site to a watcher: the representative's terminal is now this size."""

    type: Literal["resized"] = "resized"
    cols: TerminalSize
    rows: TerminalSize


FromConsole = Annotated[ConsoleHello | Resize | End, Field(discriminator="type")]
FromSite = Annotated[Started | Exited | Ended | Watching | Resized, Field(discriminator="type")]
M = TypeVar("M", FromConsole, FromSite)
_FROM_CONSOLE: TypeAdapter[FromConsole] = TypeAdapter(FromConsole)
_FROM_SITE: TypeAdapter[FromSite] = TypeAdapter(FromSite)


def write(message: Message) -> str:
    return json.dumps(message.model_dump(mode="json"), separators=(",", ":"))


def read_from_console(frame: str | bytes) -> FromConsole:
    return _read(_FROM_CONSOLE, frame)


def read_from_site(frame: str | bytes) -> FromSite:
    return _read(_FROM_SITE, frame)


def _read(adapter: TypeAdapter[M], frame: str | bytes) -> M:
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"a message of {len(frame)} bytes is over the cap")
    try:
        return adapter.validate_json(frame)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        detail = f"not a valid message: {where}: {first['msg']}"[:400]
        raise ProtocolError("malformed", detail) from None
