"""Every message between the supervisor and the processes that talk to it, typed once.

- **Requests** on the supervisor's control socket, from workers and console commands:
  listen, unlisten, install, cancel, status, serve the default certificate, shut down,
  list, find, end or watch the sessions the worker an install replaced still keeps.
- **Orders** the supervisor gives a worker on the worker's private socket: go live,
  freeze and thaw changes, audit install outcomes, serve the default certificate,
  retire, list the sessions live there, say whether one is, end one, give a watch
  ticket for one.
- **Answers**: the supervisor's status, a scheduled install, what going live opened.

On the wire each is a JSON object (`to_wire` / `from_wire`); a request names itself
with ``op``, an order with its path. A malformed message is a `MessageError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from bastion.supervisor.journal import HistoryEntry, InstallError, Journal, PlannedRelease


class MessageError(InstallError):
    """A message is not one the supervisor and its workers exchange."""


# -- requests on the control socket ---------------------------------------------------


@dataclass(frozen=True)
class Listen:
    """A worker asks for the listening socket of `address` (it comes back as a file
    descriptor); the supervisor binds it the first time."""

    op: ClassVar[str] = "listen"
    address: str


@dataclass(frozen=True)
class Unlisten:
    op: ClassVar[str] = "unlisten"
    address: str


@dataclass(frozen=True)
class Install:
    """Install these releases, in this order, not before `not_before` (UTC ISO, or now)."""

    op: ClassVar[str] = "install"
    releases: tuple[PlannedRelease, ...]
    not_before: str | None = None
    requested_by: str = ""
    estimate_seconds: float = 0.0


@dataclass(frozen=True)
class Cancel:
    op: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Status:
    op: ClassVar[str] = "status"


@dataclass(frozen=True)
class ServeCertificate:
    """The store's default certificate changed outside the worker (a console restore):
    the live worker serves it to new connections."""

    op: ClassVar[str] = "serve-certificate"


@dataclass(frozen=True)
class Shutdown:
    op: ClassVar[str] = "shutdown"


@dataclass(frozen=True)
class EndKeptSession:
    """An administrator ends a remote session that an install left on the old worker."""

    op: ClassVar[str] = "end-kept-session"
    session_id: str
    reason: str


@dataclass(frozen=True)
class WatchKeptSession:
    """An administrator watches a remote session that an install left on the old worker:
    the supervisor answers with that worker's private socket and a watch ticket of its."""

    op: ClassVar[str] = "watch-kept-session"
    session_id: str


@dataclass(frozen=True)
class FindKeptSession:
    """A session's console or Jump Client connected to the live worker after the switch,
    but the session was opened before it: the supervisor answers with the private socket
    of the worker an install replaced that keeps it, if one does."""

    op: ClassVar[str] = "find-kept-session"
    session_id: str


@dataclass(frozen=True)
class KeptLiveSessions:
    """The remote sessions in progress that workers an install replaced keep, as each
    describes them (for the live worker's list of sessions to watch)."""

    op: ClassVar[str] = "kept-live-sessions"


Request = (
    Listen
    | Unlisten
    | Install
    | Cancel
    | Status
    | ServeCertificate
    | Shutdown
    | EndKeptSession
    | WatchKeptSession
    | KeptLiveSessions
    | FindKeptSession
)
_Plain = Cancel | Status | ServeCertificate | Shutdown | KeptLiveSessions
_PLAIN_REQUESTS: dict[str, type[_Plain]] = {
    kind.op: kind for kind in (Cancel, Status, ServeCertificate, Shutdown, KeptLiveSessions)
}


def request_to_wire(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = {"op": request.op}
    if isinstance(request, Listen | Unlisten):
        body["address"] = request.address
    elif isinstance(request, Install):
        body["releases"] = [r.to_dict() for r in request.releases]
        body["not_before"] = request.not_before
        body["requested_by"] = request.requested_by
        body["estimate_seconds"] = request.estimate_seconds
    elif isinstance(request, EndKeptSession):
        body["session_id"], body["reason"] = request.session_id, request.reason
    elif isinstance(request, WatchKeptSession | FindKeptSession):
        body["session_id"] = request.session_id
    return body


def request_from_wire(body: dict[str, Any]) -> Request:
    op = str(body.get("op"))
    try:
        if op in (Listen.op, Unlisten.op):
            address = str(body["address"])
            return Listen(address) if op == Listen.op else Unlisten(address)
        if op == Install.op:
            return Install(
                tuple(PlannedRelease.from_dict(r) for r in body.get("releases") or []),
                str(body["not_before"]) if body.get("not_before") else None,
                str(body.get("requested_by", "")),
                float(body.get("estimate_seconds") or 0),
            )
        if op == EndKeptSession.op:
            return EndKeptSession(str(body["session_id"]), str(body["reason"]))
        if op == WatchKeptSession.op:
            return WatchKeptSession(str(body["session_id"]))
        if op == FindKeptSession.op:
            return FindKeptSession(str(body["session_id"]))
    except (KeyError, TypeError, ValueError) as error:
        raise MessageError(f"a {op} request is not well formed: {error}") from None
    if op not in _PLAIN_REQUESTS:
        raise MessageError(f"unknown request {body.get('op')!r}")
    plain: Request = _PLAIN_REQUESTS[op]()
    return plain


# -- orders to a worker ------------------------------------------------------------------


@dataclass(frozen=True)
class GoLive:
    """Open the listeners; at an install's switch (`release` named), sign everyone out."""

    path: ClassVar[str] = "/worker/go-live"
    release: str | None = None


@dataclass(frozen=True)
class Freeze:
    """Refuse changes (reads go on) while an install snapshots and migrates."""

    path: ClassVar[str] = "/worker/freeze"
    reason: str = "an update is being installed"


@dataclass(frozen=True)
class Thaw:
    path: ClassVar[str] = "/worker/thaw"


@dataclass(frozen=True)
class AuditOutcomes:
    """Write the install outcomes the supervisor recorded to the audit log."""

    path: ClassVar[str] = "/worker/outcomes"


@dataclass(frozen=True)
class ServeDefaultCertificate:
    path: ClassVar[str] = "/worker/serve-certificate"


@dataclass(frozen=True)
class Retire:
    """An install replaced this worker: stop accepting, and end once the remote sessions
    in progress here end, or after `keep_seconds` at most (R43: sessions survive)."""

    path: ClassVar[str] = "/worker/retire"
    keep_seconds: float = 0.0


@dataclass(frozen=True)
class EndSession:
    """End this remote session if it is live here (a retiring worker's)."""

    path: ClassVar[str] = "/worker/end-session"
    session_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class WatchTicket:
    """A single-use ticket to watch this remote session if it is live here; the watch
    comes on this worker's private socket, relayed by the live worker."""

    path: ClassVar[str] = "/worker/watch-ticket"
    session_id: str = ""


@dataclass(frozen=True)
class HoldsSession:
    """Whether this remote session is live here."""

    path: ClassVar[str] = "/worker/holds-session"
    session_id: str = ""


@dataclass(frozen=True)
class LiveSessions:
    """The remote sessions in progress here, described for a watcher's list."""

    path: ClassVar[str] = "/worker/live-sessions"


Order = (
    GoLive
    | Freeze
    | Thaw
    | AuditOutcomes
    | ServeDefaultCertificate
    | Retire
    | EndSession
    | WatchTicket
    | LiveSessions
    | HoldsSession
)
ORDERS: dict[str, type[Order]] = {
    kind.path: kind
    for kind in (
        GoLive,
        Freeze,
        Thaw,
        AuditOutcomes,
        ServeDefaultCertificate,
        Retire,
        EndSession,
        WatchTicket,
        LiveSessions,
        HoldsSession,
    )
}


def order_to_wire(order: Order) -> dict[str, Any]:
    if isinstance(order, GoLive):
        return {"release": order.release}
    if isinstance(order, Freeze):
        return {"reason": order.reason}
    if isinstance(order, Retire):
        return {"keep_seconds": order.keep_seconds}
    if isinstance(order, EndSession):
        return {"session_id": order.session_id, "reason": order.reason}
    if isinstance(order, WatchTicket | HoldsSession):
        return {"session_id": order.session_id}
    return {}


def order_from_wire(path: str, body: dict[str, Any]) -> Order:
    kind = ORDERS.get(path)
    if kind is None:
        raise MessageError(f"no control path {path}")
    if kind is GoLive:
        return GoLive(str(body["release"]) if body.get("release") else None)
    if kind is Freeze:
        return Freeze(str(body.get("reason") or Freeze.reason))
    if kind is EndSession:
        return EndSession(str(body.get("session_id", "")), str(body.get("reason", "")))
    if kind is WatchTicket:
        return WatchTicket(str(body.get("session_id", "")))
    if kind is HoldsSession:
        return HoldsSession(str(body.get("session_id", "")))
    if kind is Retire:
        try:
            return Retire(max(0.0, float(body.get("keep_seconds") or 0)))
        except (TypeError, ValueError):
            raise MessageError(
                f"keep_seconds {body.get('keep_seconds')!r} is not a number"
            ) from None
    return kind()


# -- answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WentLive:
    opened: tuple[str, ...]
    sessions_ended: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"opened": list(self.opened), "sessions_ended": self.sessions_ended}

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WentLive:
        return cls(
            tuple(str(a) for a in body.get("opened") or ()), int(body.get("sessions_ended", 0))
        )


@dataclass(frozen=True)
class PendingInstall:
    """An install requested and waiting for its time (`state/install/pending.json`)."""

    install_id: str
    releases: tuple[PlannedRelease, ...]
    not_before: str
    requested_by: str = ""
    requested_at: str = ""
    estimate_seconds: float = 0.0

    @property
    def names(self) -> str:
        return ", ".join(r.name for r in self.releases)

    def to_wire(self) -> dict[str, Any]:
        return {
            "install_id": self.install_id,
            "releases": [r.to_dict() for r in self.releases],
            "not_before": self.not_before,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "estimate_seconds": self.estimate_seconds,
        }

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> PendingInstall:
        try:
            return cls(
                str(body["install_id"]),
                tuple(PlannedRelease.from_dict(r) for r in body.get("releases") or []),
                str(body["not_before"]),
                str(body.get("requested_by", "")),
                str(body.get("requested_at", "")),
                float(body.get("estimate_seconds") or 0),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MessageError(f"a pending install is not well formed: {error}") from None


@dataclass(frozen=True)
class InstallProgress:
    """The install under way: its journal, and how many of its steps are done."""

    journal: Journal
    done: int
    total: int

    def to_wire(self) -> dict[str, Any]:
        return {**self.journal.to_dict(), "done": self.done, "total": self.total}

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> InstallProgress:
        return cls(Journal.from_dict(body), int(body["done"]), int(body["total"]))


@dataclass(frozen=True)
class SupervisorStatus:
    """What the supervisor is doing: idle, scheduled, installing or rolling back."""

    state: str
    base_version: str
    activity: str = ""
    pending: PendingInstall | None = None
    progress: InstallProgress | None = None
    history: tuple[HistoryEntry, ...] = ()
    rolled_back: tuple[str, ...] = ()
    links: dict[str, str | None] = field(default_factory=dict)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """"live", "candidate", and "retiring <pid>" for a worker an install replaced that keeps
    remote sessions ("sessions" kept at the switch, "until" the latest they end, UTC)."""

    @property
    def kept_sessions(self) -> list[dict[str, Any]]:
        """The workers an install replaced that still keep remote sessions."""
        return [w for role, w in self.workers.items() if role.startswith("retiring ")]

    @property
    def last(self) -> HistoryEntry | None:
        return self.history[-1] if self.history else None

    def to_wire(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "base_version": self.base_version,
            "activity": self.activity,
            "pending": self.pending.to_wire() if self.pending else None,
            "journal": self.progress.to_wire() if self.progress else None,
            "history": [e.to_dict() for e in self.history],
            "rolled_back": list(self.rolled_back),
            "links": dict(self.links),
            "workers": dict(self.workers),
        }

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> SupervisorStatus:
        pending, journal = body.get("pending"), body.get("journal")
        return cls(
            state=str(body.get("state", "idle")),
            base_version=str(body.get("base_version", "")),
            activity=str(body.get("activity") or ""),
            pending=PendingInstall.from_wire(pending) if pending else None,
            progress=InstallProgress.from_wire(journal) if journal else None,
            history=tuple(HistoryEntry.from_dict(e) for e in body.get("history") or ()),
            rolled_back=tuple(str(r) for r in body.get("rolled_back") or ()),
            links=dict(body.get("links") or {}),
            workers=dict(body.get("workers") or {}),
        )
