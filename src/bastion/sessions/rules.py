"""Sessions' rules: who may jump to which Jump Client, whether a client can take a session
now, how long the two ends have to arrive, and the site's session settings. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

MAX_GROUPS = 200
MAX_GROUP = 100
TOKEN_LIFETIME = timedelta(seconds=60)
"""A session's two tokens must be used within this long of the session opening."""
AGENT_JOIN_TIMEOUT = timedelta(seconds=30)
"""The Jump Client must open the session's connection within this long."""
SESSIONS_SINCE = (1, 0, 0)
"""The first Jump Client version that runs sessions."""

DID_NOT_ANSWER = "the Jump Client did not answer"
CONSOLE_DID_NOT_CONNECT = "the console did not connect"
ORDER_PREFIX = "session-"
"""A session's order to its Jump Client is the command `session-<session id>`, so that
the client's answer can be told apart and led back to the session."""
SESSIONS_OFF = "sessions are turned off"
"""What a Jump Client that runs no sessions answers (`unsupported`) begins with."""


def order_id(session_id: str) -> str:
    """The command id of the order that opens `session_id` on its Jump Client."""
    return ORDER_PREFIX + session_id


def session_of(command_id: str) -> str | None:
    """The session a command id orders opened, or None if it is no session's order."""
    if not command_id.startswith(ORDER_PREFIX):
        return None
    return command_id.removeprefix(ORDER_PREFIX) or None


def client_refusal(client_name: str, outcome: str, detail: str) -> str:
    """Why the session ended when its Jump Client answered its order with `outcome`
    (not "done"), for the representative: what happened and what to do."""
    if outcome == "unsupported" and detail.startswith(SESSIONS_OFF):
        return (
            f"{client_name} has sessions turned off: its Jump Client runs with "
            "--no-sessions (or BASTION_JUMP_CLIENT_SESSIONS=off). Ask the endpoint's "
            "administrator to run it with sessions on, or jump to another endpoint."
        )
    said = f": {detail}" if detail else ""
    return f"{client_name} would not start the session ({outcome}{said})"


class SessionRuleError(Exception):
    """A sessions request was refused; the message says why and what to do."""


@dataclass(frozen=True)
class SessionSettings:
    """The site's session settings."""

    record_input: bool = False
    """Keystrokes are recorded too ("i" events), not only what the endpoint shows."""


def clean_groups(groups: Iterable[str]) -> list[str]:
    """Jump Group names as granted to a representative: trimmed, printable, unique, sorted."""
    cleaned: set[str] = set()
    for text in groups:
        name = " ".join(text.split())
        if not name:
            raise SessionRuleError("A Jump Group name is empty; leave it out.")
        if len(name) > MAX_GROUP:
            raise SessionRuleError(f"A Jump Group name has at most {MAX_GROUP} characters.")
        if any(not ch.isprintable() for ch in name):
            raise SessionRuleError("A Jump Group name holds a control character.")
        cleaned.add(name)
    if len(cleaned) > MAX_GROUPS:
        raise SessionRuleError(f"An account may be granted at most {MAX_GROUPS} Jump Groups.")
    return sorted(cleaned)


def may_use(is_administrator: bool, granted: Iterable[str], jump_group: str) -> bool:
    """Administrators use every Jump Client; a representative those of the Jump Groups
    granted to them (a client in no Jump Group is for administrators only)."""
    if is_administrator:
        return True
    return bool(jump_group) and jump_group in set(granted)


def version_tuple(text: str) -> tuple[int, ...] | None:
    parts = text.split("+", 1)[0].split(".")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return None


def runs_sessions(agent_version: str) -> bool:
    found = version_tuple(agent_version)
    return found is not None and found >= SESSIONS_SINCE


WAITING_FOR_UPGRADE = frozenset({"upgrade pending", "upgrading", "failed"})


def jump_refusal(status: str, mode: str, agent_version: str, name: str) -> str | None:
    """Why a jump to this client cannot start now, or None if it can. Clients waiting for
    an upgrade are refused by `jump_clients.upgrades.jump_refusal`, which also queues them."""
    if status == "revoked":
        return f"{name} was revoked by an administrator; it takes no sessions."
    if status == "uninstalling":
        return f"{name} is being uninstalled; it takes no sessions."
    if status in WAITING_FOR_UPGRADE:
        return f"{name} waits for its upgrade to the site's version; it cannot be jumped to yet."
    if not runs_sessions(agent_version):
        return (
            f"{name} runs Jump Client {agent_version}, which has no sessions; "
            "reinstall it from a new installer."
        )
    if status in ("offline", "lost"):
        if mode == "passive":
            return f"{name} is a passive Jump Client and not connected: a jump wakes it first."
        return f"{name} is {status}: its endpoint is off or cannot reach the site."
    return None


def jump_status(status: str) -> str:
    """A Jump Client's status as the console names it ("upgrade pending" -> upgrade_pending)."""
    return status.replace(" ", "_")


def end_reason_for_exit(code: int) -> str:
    return f"the remote shell exited with code {code}"


# -- the licence: representatives and endpoints in sessions at once (R41) -----------------------

NAMES_SHOWN = 10
"""How many holders a refusal names before it says how many more there are."""


@dataclass(frozen=True)
class LicensedCounts:
    """What the installed licence add-on allows in sessions at once."""

    representatives: int
    endpoints: int


@dataclass(frozen=True)
class Seat:
    """A session in progress as the licence counts it: whose, and on which endpoint."""

    account_id: int | None
    username: str
    client_id: str
    client_name: str

    @property
    def representative(self) -> int | str:
        return self.username if self.account_id is None else self.account_id


@dataclass(frozen=True)
class InSessions:
    """Who is in sessions now: the representatives' names, and each endpoint's name with
    the representatives in sessions on it; each sorted by name."""

    representatives: tuple[str, ...]
    endpoints: tuple[tuple[str, tuple[str, ...]], ...]


def in_sessions(seats: Iterable[Seat]) -> InSessions:
    """Distinct accounts and distinct Jump Clients with at least one session in progress."""
    people: dict[int | str, str] = {}
    places: dict[str, tuple[str, set[str]]] = {}
    for seat in seats:
        people[seat.representative] = seat.username
        places.setdefault(seat.client_id, (seat.client_name, set()))[1].add(seat.username)
    return InSessions(
        tuple(sorted(people.values(), key=_by_name)),
        tuple(
            sorted(
                ((name, tuple(sorted(who, key=_by_name))) for name, who in places.values()),
                key=lambda place: _by_name(place[0]),
            )
        ),
    )


def _by_name(name: str) -> tuple[str, str]:
    return name.casefold(), name


def licence_refusal(
    licensed: LicensedCounts | None, seats: Iterable[Seat], wanted: Seat
) -> str | None:
    """Why the licence refuses this session now, or None if it may open.

    A representative already in a session, or an endpoint already in one, is not counted
    again; beyond the count (also when a smaller licence came while more were in
    sessions) the new one is refused. Without a licence add-on there is no limit."""
    if licensed is None:
        return None
    held = list(seats)
    now = in_sessions(held)
    if (
        wanted.representative not in {s.representative for s in held}
        and len(now.representatives) >= licensed.representatives
    ):
        return _refusal(licensed.representatives, "representative", now.representatives)
    if (
        wanted.client_id not in {s.client_id for s in held}
        and len(now.endpoints) >= licensed.endpoints
    ):
        shown = [f"{name} ({_listed(who)})" for name, who in now.endpoints]
        return _refusal(licensed.endpoints, "endpoint", shown)
    return None


def _refusal(count: int, kind: str, holders: Sequence[str]) -> str:
    return (
        f"The licence allows {count} {kind}{'' if count == 1 else 's'} in sessions at once; "
        f"in sessions now: {_listed(holders) or 'none'}. "
        "Wait for one to end, or install a licence add-on with more."
    )


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")
