"""The Jump Client protocol, defined once for both ends.

JSON text messages over a WebSocket over TLS. Every message names its `type` (the
discriminator) and the protocol version `v` it was written in. The appliance reads
messages of its own version and of the version before (clients one site version
older must be able to check in to be upgraded) and writes to each client in the
version that client spoke. A field added in a later version is listed in the
model's `since` table and is left out when writing to an older peer.

Parsing is strict: unknown fields, wrong types, oversized frames and unknown
versions are refused with a `ProtocolError` naming what was wrong, never another
exception.

The conversation:

    server: challenge(nonce)
    client: hello(client_id, signature, agent_version, mode, anchors, wake_port)
    server: welcome(intervals, wake_key)  |  retry_after(seconds, reason)  |  error
    client: heartbeat / statistics / command_result ...   server: heartbeat_ack / command
    either: bye(reason)

Version 2 adds the build's download over the same connection: told to upgrade, a client
sends `build_request`; the site answers with the build's bytes as binary messages (at
most `MAX_FRAME_BYTES` each, `size` bytes in all, paced by the site's bandwidth cap) or
with `build_refused`. A version-1 client fetches the build over HTTPS at the order's
`path` instead.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bastion.agents.errors import ProtocolError, ProtocolErrorCode

PROTOCOL_VERSION = 2
MAX_FRAME_BYTES = 64 * 1024
"""The largest message either end accepts; larger frames close the connection (1009)."""

Mode = Literal["active", "passive"]
Text = Annotated[str, Field(max_length=255)]
ClientId = Annotated[str, Field(pattern=r"^[a-z0-9_]{3,64}$")]
Key32 = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
"""32 bytes, URL-safe base64 without padding (nonces, wake keys)."""
Signature64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$")]
Fingerprint = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Seconds = Annotated[float, Field(ge=0, le=7 * 86400)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]


def encode_bytes(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    since: ClassVar[Mapping[str, int]] = {}
    """Fields added after version 1, with the version that added them."""

    v: Annotated[int, Field(ge=0, le=1000)] = PROTOCOL_VERSION


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# -- server to client ------------------------------------------------------------


class Challenge(Message):
    type: Literal["challenge"] = "challenge"
    nonce: Key32


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    mode: Mode
    """The mode the site expects this client in; the client follows it."""
    heartbeat_interval: Annotated[float, Field(gt=0, le=86400)]
    heartbeat_timeout: Annotated[float, Field(gt=0, le=86400)]
    statistics_interval: Annotated[float, Field(gt=0, le=86400)]
    reconnect_after: Seconds
    """If this connection is lost, reconnect after this many seconds (the site spreads
    its clients' offsets evenly over the time it needs to admit them all)."""
    passive_linger: Seconds = 0.0
    """How long a passive client stays after its check-in for commands."""
    wake_key: Key32 | None = None
    """The key a wake for this client is authenticated with (passive clients only)."""


RetryReason = Literal[
    "rate_limited",
    "capacity",
    "revoked",
    "unknown_client",
    "upgrade_in_progress",
    "shutting_down",
    "replaced",
    "unavailable",
]


class RetryAfter(Message):
    type: Literal["retry_after"] = "retry_after"
    seconds: Seconds
    reason: RetryReason
    detail: Annotated[str, Field(max_length=500)] = ""


class HeartbeatAck(Message):
    type: Literal["heartbeat_ack"] = "heartbeat_ack"
    seq: Count
    sent_at: float
    reconnect_after: Seconds


class CheckIn(Part):
    kind: Literal["check_in"] = "check_in"


class Wake(Part):
    kind: Literal["wake"] = "wake"


class Upgrade(Part):
    """Fetch the build (over this connection; a version-1 client at `path` on the site,
    with the token in it), check its SHA-256, install it beside the running one and
    restart into it."""

    kind: Literal["upgrade"] = "upgrade"
    version: Annotated[str, Field(max_length=64)]
    sha256: Fingerprint
    size: Count = 0
    path: Annotated[str, Field(max_length=1000, pattern=r"^/api/v1/jump-clients/builds/")] = (
        "/api/v1/jump-clients/builds/"
    )


class Uninstall(Part):
    kind: Literal["uninstall"] = "uninstall"


SessionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TerminalSize = Annotated[int, Field(ge=1, le=1000)]
SESSION_PATH = "/agent/v1/sessions/"
"""A session's own connection: `wss://<rendezvous><SESSION_PATH><session_id>`."""


class SessionOrder(Part):
    """What every order to open a session carries: a fresh connection to `rendezvous`
    (the site's web listener, host:port) and a `SessionHello` with `token`."""

    session_id: SessionId
    rendezvous: Text
    """Where the agent opens the session's own connection (host:port on the site)."""
    token: Key32
    """Single use, short-lived: proves the session connection answers this command."""
    cols: TerminalSize = 80
    rows: TerminalSize = 24


class StartSession(SessionOrder):
    """A Jump Client's session: a shell on a PTY of its machine, relayed."""

    kind: Literal["start_session"] = "start_session"


class SshTarget(Part):
    """Where a Jumpoint opens an SSH session, and with what. The credential comes from
    the site's vault and travels only here, inside the agent's TLS connection."""

    host: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: Annotated[str, Field(min_length=1, max_length=255)]
    host_key: Annotated[str, Field(min_length=1, max_length=16 * 1024)]
    """The server's public key as OpenSSH writes it ("ssh-ed25519 AAAA..."): the only
    one accepted."""
    password: str | None = Field(default=None, max_length=16 * 1024, repr=False)
    private_key: str | None = Field(default=None, max_length=16 * 1024, repr=False)
    """An OpenSSH or PEM private key, unencrypted."""


class StartSshSession(SessionOrder):
    """A Jumpoint's session: an SSH connection from the Jumpoint to `target`, its PTY
    channel relayed like a Jump Client's shell."""

    kind: Literal["start_ssh_session"] = "start_ssh_session"
    target: SshTarget


AnySessionOrder = StartSession | StartSshSession

CommandBody = Annotated[
    CheckIn | Wake | Upgrade | Uninstall | StartSession | StartSshSession,
    Field(discriminator="kind"),
]


CommandId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Command(Message):
    type: Literal["command"] = "command"
    command_id: CommandId
    body: CommandBody


class BuildRefused(Message):
    """The site will not send the build asked for (version 2); `detail` says why."""

    type: Literal["build_refused"] = "build_refused"
    command_id: CommandId
    detail: Annotated[str, Field(max_length=500)]


class Error(Message):
    type: Literal["error"] = "error"
    code: ProtocolErrorCode
    detail: Annotated[str, Field(max_length=500)]


class Bye(Message):
    type: Literal["bye"] = "bye"
    reason: Annotated[str, Field(max_length=200)] = ""


# -- client to server ------------------------------------------------------------


class Hello(Message):
    type: Literal["hello"] = "hello"
    client_id: ClientId
    signature: Signature64
    agent_version: Annotated[str, Field(max_length=64)]
    mode: Mode
    anchors: Annotated[tuple[Fingerprint, ...], Field(max_length=16)] = ()
    """SHA-256 fingerprints of the certificates the client trusts for the site."""
    wake_port: Annotated[int, Field(ge=1, le=65535)] | None = None


class Heartbeat(Message):
    type: Literal["heartbeat"] = "heartbeat"
    seq: Count
    sent_at: float


class Cpu(Part):
    count: Annotated[int, Field(ge=0, le=100_000)]
    model: Text = ""
    load: Annotated[tuple[float, ...], Field(max_length=3)] = ()


class Disk(Part):
    path: Annotated[str, Field(max_length=1024)]
    total: Count
    free: Count


class Statistics(Message):
    type: Literal["statistics"] = "statistics"
    hostname: Text
    fqdn: Text
    os: Text
    console_user: Text | None = None
    uptime_seconds: Annotated[float, Field(ge=0)]
    cpu: Cpu
    memory_total: Count = 0
    memory_available: Count = 0
    disks: Annotated[tuple[Disk, ...], Field(max_length=32)] = ()


Outcome = Literal["done", "failed", "unsupported"]


class CommandResult(Message):
    type: Literal["command_result"] = "command_result"
    command_id: CommandId
    outcome: Outcome
    detail: Annotated[str, Field(max_length=500)] = ""


class BuildRequest(Message):
    """Send the build of upgrade order `command_id` over this connection (version 2)."""

    type: Literal["build_request"] = "build_request"
    command_id: CommandId
    sha256: Fingerprint


class WakeCall(Message):
    """Sent to a passive client's wake port (not over the WebSocket): "check in now"."""

    type: Literal["wake"] = "wake"
    client_id: ClientId
    issued_at: Count
    """Unix time (seconds) when the site made the call; stale calls are refused."""
    nonce: Key32
    mac: Key32
    """HMAC-SHA256 under the client's wake key (see `bastion.agents.wake`)."""


# -- a session's own connection -------------------------------------------------
# Binary frames carry terminal bytes (site -> agent: input; agent -> site: output),
# at most MAX_FRAME_BYTES each. Text frames carry these messages.


class SessionHello(Message):
    """The agent's first message on a session connection."""

    type: Literal["session_hello"] = "session_hello"
    session_id: SessionId
    client_id: ClientId
    token: Key32


class Resize(Message):
    """Site to agent: the representative's terminal changed size."""

    type: Literal["resize"] = "resize"
    cols: TerminalSize
    rows: TerminalSize


class SessionEnd(Message):
    """Site to agent: end the session (the agent hangs up the shell and closes)."""

    type: Literal["session_end"] = "session_end"
    reason: Annotated[str, Field(max_length=200)] = ""


class SessionExit(Message):
    """Agent to site: the shell ended with `code` (128 + n after signal n)."""

    type: Literal["session_exit"] = "session_exit"
    code: Annotated[int, Field(ge=0, le=255)]


ServerMessage = Annotated[
    Challenge | Welcome | RetryAfter | HeartbeatAck | Command | BuildRefused | Error | Bye,
    Field(discriminator="type"),
]
ClientMessage = Annotated[
    Hello | Heartbeat | Statistics | CommandResult | BuildRequest | Bye,
    Field(discriminator="type"),
]

SessionSiteMessage = Annotated[Resize | SessionEnd | Error, Field(discriminator="type")]
SessionAgentMessage = Annotated[SessionHello | SessionExit | Error, Field(discriminator="type")]

M = TypeVar(
    "M", bound=Message | ClientMessage | ServerMessage | SessionSiteMessage | SessionAgentMessage
)
_SERVER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
_CLIENT: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_WAKE: TypeAdapter[WakeCall] = TypeAdapter(WakeCall)
_SESSION_SITE: TypeAdapter[SessionSiteMessage] = TypeAdapter(SessionSiteMessage)
_SESSION_AGENT: TypeAdapter[SessionAgentMessage] = TypeAdapter(SessionAgentMessage)


@dataclass(frozen=True)
class Codec:
    """Reads and writes messages for an end that speaks `version` (and reads `version - 1`)."""

    version: int = PROTOCOL_VERSION
    max_frame: int = MAX_FRAME_BYTES

    @property
    def accepted(self) -> range:
        return range(max(1, self.version - 1), self.version + 1)

    def read_client(self, frame: str | bytes) -> ClientMessage:
        """A message sent by a client (the gateway's side)."""
        return self._read(_CLIENT, frame)

    def read_server(self, frame: str | bytes) -> ServerMessage:
        """A message sent by the appliance (the agent's side)."""
        return self._read(_SERVER, frame)

    def read_wake(self, frame: str | bytes) -> WakeCall:
        return self._read(_WAKE, frame)

    def read_session_site(self, frame: str | bytes) -> SessionSiteMessage:
        """A text message from the site on a session connection (the agent's side)."""
        return self._read(_SESSION_SITE, frame)

    def read_session_agent(self, frame: str | bytes) -> SessionAgentMessage:
        """A text message from the agent on a session connection (the site's side)."""
        return self._read(_SESSION_AGENT, frame)

    def write(self, message: Message, peer_version: int | None = None) -> str:
        """`message` as JSON in `peer_version` (default: ours), without fields it lacks."""
        version = self.version if peer_version is None else peer_version
        newer = {name for name, since in message.since.items() if since > version}
        data = message.model_dump(mode="json", exclude=newer)
        data["v"] = version
        return json.dumps(data, separators=(",", ":"))

    def _read(self, adapter: TypeAdapter[M], frame: str | bytes) -> M:
        if len(frame) > self.max_frame:
            raise ProtocolError(
                "too_large", f"a message of {len(frame)} bytes exceeds the {self.max_frame} cap"
            )
        try:
            message = adapter.validate_json(frame)
        except ValidationError as error:
            raise _explain(frame, error, self.accepted) from None
        if message.v not in self.accepted:
            raise _unsupported(message.v, self.accepted)
        return message


def _unsupported(version: object, accepted: range) -> ProtocolError:
    spoken = ", ".join(str(v) for v in accepted)
    return ProtocolError(
        "unsupported_version",
        f"protocol version {version!r} is not spoken here (only {spoken}); "
        "upgrade the older of the agent and the appliance",
    )


def _explain(frame: str | bytes, error: ValidationError, accepted: range) -> ProtocolError:
    """The most useful reason a frame failed: an unknown version, else the first error."""
    try:
        version = json.loads(frame).get("v")
    except (ValueError, AttributeError, RecursionError):
        version = None
    if isinstance(version, int) and version not in accepted:
        return _unsupported(version, accepted)
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return ProtocolError("malformed", f"not a valid message: {where}: {first['msg']}"[:400])
