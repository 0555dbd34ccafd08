"""The upgrade of a pair as one checked, resumable operation (R6, R8, R35).

Run from the primary (A) with its backup (B) established. Starting it checks both
appliances (the preflight) and writes a fresh encrypted backup of the site; the
runbook then goes on by itself, step by step, each step recorded in
`state/failover-upgrade.json` before and after it runs:

- **sync** (synchronous) mode: sync, break, install on A, verify A, install on B,
  verify B, establish again with A primary. The site is down while A installs; no
  failover happens.
- **async** mode: sync, break, install on B, verify B, swing the site to B (the shared
  addresses and the DNS name), install on A, verify A, establish again with B primary
  and A its backup. The site is down only for the swing; the new version is tried on
  B before it serves (R6).

The appliance that runs the runbook installs itself on the way, so its worker is
replaced: the new worker finds the file and goes on (the failover loop picks up a
runbook that is running and that no process holds: `state/failover-upgrade.lock`). A
crash does the same. Each step finds out first whether it was already done (the
site and base versions an appliance runs, the install it asked for, the pair's role), so
running it again is safe. A base-only upgrade goes through the same steps: the site
version stays and the base is what changes.

When a step fails the runbook stops with the site served: if neither appliance runs
the new version yet, the pair is established again as it was; otherwise the one that
runs it keeps (or takes) the site and the report says what is left. A stopped or
failed runbook is resumed from the step it stopped at.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from bastion.backups import service as backups
from bastion.failover import dns_swing, rules, service, shared_ips
from bastion.failover.peer import PeerClient
from bastion.failover.rules import FailoverError, PeerAddress, Role
from bastion.failover.service import EstablishRequest, FailoverSetup
from bastion.failover.state import Peer
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError, InvalidInputError, ServiceError
from bastion.platform.files import write_atomically
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

log = logging.getLogger("bastion.failover.upgrade")

RUNBOOK_FILE = "failover-upgrade.json"
LOCK_FILE = "failover-upgrade.lock"
START_LOCK_FILE = "failover-upgrade-start.lock"
MAX_SYNC_AGE_SECONDS = 24 * 3600
"""The preflight refuses a pair whose backup has not synced well for this long."""
INSTALL_WAIT_SECONDS = 3 * 3600.0
"""How long an install may take before its step counts as failed."""
POLL_SECONDS = 1.0
DISK_MARGIN = 2
"""Free space asked for on each appliance: this many times the packages and the database."""


class Mode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class Step(StrEnum):
    PREFLIGHT = "preflight"
    BACKUP = "backup"
    SYNC = "sync"
    BREAK = "break"
    INSTALL_HERE = "install_here"
    VERIFY_HERE = "verify_here"
    INSTALL_PEER = "install_peer"
    VERIFY_PEER = "verify_peer"
    SWING = "swing"
    ESTABLISH = "establish"


STEPS: dict[Mode, tuple[Step, ...]] = {
    Mode.SYNC: (
        Step.PREFLIGHT, Step.BACKUP, Step.SYNC, Step.BREAK, Step.INSTALL_HERE,
        Step.VERIFY_HERE, Step.INSTALL_PEER, Step.VERIFY_PEER, Step.ESTABLISH,
    ),
    Mode.ASYNC: (
        Step.PREFLIGHT, Step.BACKUP, Step.SYNC, Step.BREAK, Step.INSTALL_PEER,
        Step.VERIFY_PEER, Step.SWING, Step.INSTALL_HERE, Step.VERIFY_HERE, Step.ESTABLISH,
    ),
}  # fmt: skip

TITLES = {
    Step.PREFLIGHT: "Preflight: both appliances, versions, clocks, last sync, disk, releases",
    Step.BACKUP: "A fresh encrypted backup of the site",
    Step.SYNC: "Sync the backup with the primary",
    Step.BREAK: "Break the failover relationship",
    Step.INSTALL_HERE: "Install on this appliance",
    Step.VERIFY_HERE: "Verify this appliance",
    Step.INSTALL_PEER: "Install on the other appliance",
    Step.VERIFY_PEER: "Verify the other appliance",
    Step.SWING: "Move the site to the other appliance",
    Step.ESTABLISH: "Establish the failover relationship again",
}

RUNNING, STOPPED, FAILED, DONE = "running", "stopped", "failed", "done"


# -- what each appliance does for the runbook ---------------------------------------------


@dataclass(frozen=True)
class Runs:
    """What an appliance runs: its site version and its base's. A base-only release
    changes the second alone, so each step compares both."""

    site: str
    base: str

    def __str__(self) -> str:
        return f"{self.site} on base {self.base}" if self.base else self.site

    def reaches(self, wanted: Runs) -> bool:
        """Whether this is what is wanted (a base not recorded is not compared)."""
        return self.site == wanted.site and (not wanted.base or self.base == wanted.base)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Runs:
        """From a peer's answer (`version`, `base_version`)."""
        return cls(str(data.get("version", "")), str(data.get("base_version", "")))


@dataclass(frozen=True)
class Prepared:
    """One appliance ready to install: the releases are there and plan."""

    order: list[str]
    licences: list[str]
    target_version: str
    """The site version it will run afterwards (its own when no site release is chosen)."""
    needed_bytes: int
    free_bytes: int
    offline: list[str] = field(default_factory=list)
    """Releases that would take Jump Clients offline (they lack its trust anchors)."""
    base_version: str = ""
    """The base it runs now."""
    target_base: str = ""
    """The base it will run afterwards (its own when no base release is chosen)."""

    @property
    def target(self) -> Runs:
        return Runs(self.target_version, self.target_base)

    def to_wire(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "licences": self.licences,
            "target_version": self.target_version,
            "needed_bytes": self.needed_bytes,
            "free_bytes": self.free_bytes,
            "offline": self.offline,
            "base_version": self.base_version,
            "target_base": self.target_base,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Prepared:
        return cls(
            [str(n) for n in data.get("order", [])],
            [str(n) for n in data.get("licences", [])],
            str(data.get("target_version", "")),
            int(data.get("needed_bytes", 0)),
            int(data.get("free_bytes", 0)),
            [str(n) for n in data.get("offline", [])],
            str(data.get("base_version", "")),
            str(data.get("target_base", "")),
        )


@dataclass(frozen=True)
class Accepted:
    """What the administrator accepted for the install: a new licence, Jump Clients
    offline."""

    licence: bool = False
    offline_clients: bool = False


class Installer(Protocol):
    """Installing on this appliance, as the Updates page does (the composition root wires
    the installs and updates capabilities in)."""

    def prepare(self, releases: list[str], actor: Actor) -> Prepared:
        """Download what is missing, plan the install; refuse with what is wrong."""
        ...

    def install(self, releases: list[str], accepted: Accepted, actor: Actor) -> str:
        """Hand the install to the supervisor now; its install id."""
        ...

    def outcome(self, install_id: str) -> tuple[str, list[dict[str, str]]]:
        """The supervisor's state, and the finished releases of that install."""
        ...

    def base_version(self) -> str:
        """The version of the base this appliance runs."""
        ...

    def verify(self) -> str:
        """The console's `about` on this appliance (a new process), its first line."""
        ...


@dataclass(frozen=True)
class UpgradeSetup:
    """What the runbook needs besides the pair: installing here, and units of work for
    the steps it runs in the background."""

    installer: Installer
    uow: Callable[[], AbstractContextManager[UnitOfWork]]


# -- the runbook's record -------------------------------------------------------------------


@dataclass
class Runbook:
    id: str
    mode: Mode
    releases: list[str]
    accept_licence: bool
    accept_offline_clients: bool
    requested_by: str
    started_at: str
    peer: dict[str, Any]
    """The backup as this appliance reaches it: host, port, fingerprint."""
    reverse: dict[str, Any]
    """This appliance as the backup reaches it: host, port."""
    from_version: str
    to_version: str
    state: str = RUNNING
    stop_requested: bool = False
    message: str = ""
    ended_at: str = ""
    backup_file: str = ""
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    from_base: str = ""
    to_base: str = ""
    """The bases before and after ("" in a record of an earlier version: not compared)."""

    @property
    def target(self) -> Runs:
        return Runs(self.to_version, self.to_base)

    @property
    def before(self) -> Runs:
        return Runs(self.from_version, self.from_base)

    @property
    def order(self) -> tuple[Step, ...]:
        return STEPS[self.mode]

    def next_step(self) -> Step | None:
        return next((s for s in self.order if self.steps[s]["state"] != DONE), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode.value,
            "releases": self.releases,
            "accept_licence": self.accept_licence,
            "accept_offline_clients": self.accept_offline_clients,
            "requested_by": self.requested_by,
            "started_at": self.started_at,
            "peer": self.peer,
            "reverse": self.reverse,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "from_base": self.from_base,
            "to_base": self.to_base,
            "state": self.state,
            "stop_requested": self.stop_requested,
            "message": self.message,
            "ended_at": self.ended_at,
            "backup_file": self.backup_file,
            "steps": [{"name": s.value, **self.steps[s]} for s in self.order],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Runbook:
        steps = {str(s["name"]): {k: v for k, v in s.items() if k != "name"} for s in data["steps"]}
        return cls(
            id=str(data["id"]),
            mode=Mode(data["mode"]),
            releases=[str(r) for r in data["releases"]],
            accept_licence=bool(data["accept_licence"]),
            accept_offline_clients=bool(data.get("accept_offline_clients", False)),
            requested_by=str(data["requested_by"]),
            started_at=str(data["started_at"]),
            peer=dict(data["peer"]),
            reverse=dict(data["reverse"]),
            from_version=str(data["from_version"]),
            to_version=str(data["to_version"]),
            state=str(data["state"]),
            stop_requested=bool(data.get("stop_requested", False)),
            message=str(data.get("message", "")),
            ended_at=str(data.get("ended_at", "")),
            backup_file=str(data.get("backup_file", "")),
            steps=steps,
            from_base=str(data.get("from_base", "")),
            to_base=str(data.get("to_base", "")),
        )

    @property
    def accepted(self) -> Accepted:
        return Accepted(self.accept_licence, self.accept_offline_clients)

    @property
    def peer_address(self) -> PeerAddress:
        return PeerAddress(str(self.peer["host"]), int(self.peer["port"]))

    @property
    def reverse_address(self) -> PeerAddress:
        return PeerAddress(str(self.reverse["host"]), int(self.reverse["port"]))


def read(state_dir: Path) -> Runbook | None:
    path = state_dir / RUNBOOK_FILE
    if not path.exists():
        return None
    return Runbook.from_dict(json.loads(path.read_text()))


def write(state_dir: Path, runbook: Runbook) -> None:
    write_atomically(state_dir / RUNBOOK_FILE, json.dumps(runbook.to_dict(), indent=1).encode())


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")


def _seconds_between(start: str, end: str) -> float:
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return 0.0


def report(runbook: Runbook) -> dict[str, Any]:
    """What happened: each step with its time and outcome, the total, and where the site
    is served now."""
    data = runbook.to_dict()
    end = runbook.ended_at or _now()
    data["total_seconds"] = _seconds_between(runbook.started_at, end)
    for step in data["steps"]:
        step["title"] = TITLES[Step(step["name"])]
        if step.get("started_at") and step.get("ended_at"):
            step["seconds"] = _seconds_between(step["started_at"], step["ended_at"])
    return data


# -- starting: the preflight and the backup -----------------------------------------------


@dataclass(frozen=True)
class UpgradeRequest:
    releases: list[str]
    mode: Mode
    backup_passphrase: str
    accept_licence: bool = False
    accept_offline_clients: bool = False


def _clean(releases: list[str]) -> list[str]:
    chosen = [" ".join(r.split()) for r in releases if r.strip()]
    if not chosen:
        raise InvalidInputError("Choose at least one release to install, such as 'site 1.2.0'.")
    return list(dict.fromkeys(chosen))


def _sync_age(last: str) -> float | None:
    try:
        return (utc_now() - datetime.fromisoformat(last)).total_seconds()
    except ValueError:
        return None


def preflight(
    setup: FailoverSetup, installer: Installer, actor: Actor, request: UpgradeRequest
) -> dict[str, Any]:
    """Check both appliances; refuse with every problem found, changing nothing but the
    downloads of the chosen releases."""
    releases = _clean(request.releases)
    backups.check_new_passphrase(request.backup_passphrase)
    current = read(setup.state_dir)
    if current is not None and current.state != DONE:
        raise ConflictError(
            f"An upgrade of the pair is {current.state} (started {current.started_at}); resume "
            "it, or forget it once it is stopped, before starting another."
        )
    pair = setup.pair()
    if pair.role is not Role.PRIMARY or pair.peer is None:
        raise ConflictError(
            "Upgrade the pair from its primary; this appliance is "
            + (
                "standalone: establish the pair first, or install from the Updates page."
                if pair.role is Role.NONE
                else "the backup."
            )
        )
    problems: list[str] = []
    if pair.last_sync_status != "ok":
        problems.append(
            f"The backup's last sync did not succeed ({pair.last_sync_status or 'never synced'}); "
            "fix it and Sync Now first."
        )
    else:
        age = _sync_age(pair.last_sync_time)
        if age is None or age > MAX_SYNC_AGE_SECONDS:
            problems.append("The backup has not synced for more than a day; Sync Now first.")
    here = installer.prepare(releases, actor)
    try:
        with setup.reach(pair.peer) as client:
            met = client.introduce()
            answer = client.call("POST", "/upgrade/prepare", json={"releases": releases})
    except FailoverError as error:
        raise ConflictError(f"{error} Nothing was changed.") from None
    there = Prepared.from_wire(answer)
    reverse = answer.get("reverse") or {}
    clock = rules.clock_problem(time.time(), met.time, f"The backup at {pair.peer.address}")
    if clock:
        problems.append(clock)
    if met.version != setup.version:
        problems.append(
            f"The backup runs {met.version}, this appliance {setup.version}; a pair upgrade "
            "starts from one version."
        )
    if here.target != there.target:
        problems.append(
            f"The releases would leave this appliance at {here.target} and the backup at "
            f"{there.target}; choose the same releases for both."
        )
    if here.target == Runs(setup.version, here.base_version) and there.target == Runs(
        met.version, there.base_version
    ):
        problems.append(
            f"The chosen releases change neither the site version nor the base ({here.target}); "
            "choose a newer site or base release from the Updates page."
        )
    for name, ready in (("this appliance", here), ("the backup", there)):
        if ready.free_bytes < ready.needed_bytes:
            problems.append(
                f"{name} has {ready.free_bytes // 2**20} MiB free; the install and the backup "
                f"need about {ready.needed_bytes // 2**20} MiB. Make room first."
            )
    licences = sorted(set(here.licences) | set(there.licences))
    if licences and not request.accept_licence:
        problems.append(
            f"{', '.join(licences)} comes with a new licence agreement: read it on the Updates "
            "page and accept it."
        )
    offline = sorted(set(here.offline) | set(there.offline))
    if offline and not request.accept_offline_clients:
        problems.append(
            f"{', '.join(offline)} would take Jump Clients offline (they lack its trust "
            "anchors); see the Updates page, then accept that."
        )
    if not reverse.get("host"):
        problems.append(
            "The backup did not say how it reaches this appliance; establish the pair again."
        )
    if problems:
        raise ConflictError(" ".join(problems) + " Nothing was changed.")
    return {
        "releases": releases,
        "peer": {
            "host": pair.peer.host,
            "port": pair.peer.port,
            "fingerprint": pair.peer.fingerprint,
        },
        "reverse": {"host": str(reverse["host"]), "port": int(reverse["port"])},
        "to_version": here.target_version,
        "to_base": here.target_base,
        "order": here.order,
        "last_sync_time": pair.last_sync_time,
    }


def start(
    uow: UnitOfWork,
    setup: FailoverSetup,
    installer: Installer,
    actor: Actor,
    request: UpgradeRequest,
) -> Runbook:
    """The preflight, then a fresh backup (written under `backups/` in the data
    directory, encrypted with the passphrase given, which is not kept); the rest runs in
    the background (`run`)."""
    with _exclusive(setup.state_dir / START_LOCK_FILE) as alone:
        if not alone:
            raise ConflictError("An upgrade of the pair is being started already; wait for it.")
        return _start(uow, setup, installer, actor, request)


def _start(
    uow: UnitOfWork,
    setup: FailoverSetup,
    installer: Installer,
    actor: Actor,
    request: UpgradeRequest,
) -> Runbook:
    checked = preflight(setup, installer, actor, request)
    site = service.sync_site(setup).site
    started = _now()
    path = backups.write_file(
        site, site.data_dir / "backups", request.backup_passphrase, "before-upgrade"
    )
    ended = _now()
    runbook = Runbook(
        id=str(uuid.uuid4()),
        mode=request.mode,
        releases=checked["releases"],
        accept_licence=request.accept_licence,
        accept_offline_clients=request.accept_offline_clients,
        requested_by=actor.name,
        started_at=started,
        peer=checked["peer"],
        reverse=checked["reverse"],
        from_version=setup.version,
        to_version=checked["to_version"],
        backup_file=str(path),
        from_base=installer.base_version(),
        to_base=checked["to_base"],
    )
    for step in runbook.order:
        runbook.steps[step] = {"state": "pending"}
    runbook.steps[Step.PREFLIGHT] = {
        "state": DONE, "started_at": started, "ended_at": started,
        "detail": f"order {', '.join(checked['order'])}; last sync {checked['last_sync_time']}",
    }  # fmt: skip
    runbook.steps[Step.BACKUP] = {
        "state": DONE, "started_at": started, "ended_at": ended, "detail": str(path),
    }  # fmt: skip
    write(setup.state_dir, runbook)
    audit.record(
        uow, actor, "failover.upgrade.started", ", ".join(runbook.releases),
        mode=runbook.mode.value, backup=str(path), to_version=runbook.to_version,
        to_base=runbook.to_base,
    )  # fmt: skip
    return runbook


def stop(setup: FailoverSetup) -> Runbook:
    """Stop before the next step (a step under way finishes first)."""
    runbook = _current(setup)
    if runbook.state != RUNNING:
        raise ConflictError(f"The upgrade is {runbook.state}; there is nothing to stop.")
    runbook.stop_requested = True
    write(setup.state_dir, runbook)
    return runbook


def resume(setup: FailoverSetup) -> Runbook:
    """Go on from the step that stopped or failed."""
    runbook = _current(setup)
    if runbook.state in (RUNNING, DONE):
        raise ConflictError(f"The upgrade is {runbook.state}; there is nothing to resume.")
    runbook.state, runbook.stop_requested, runbook.message = RUNNING, False, ""
    write(setup.state_dir, runbook)
    return runbook


def forget(setup: FailoverSetup) -> None:
    """Drop the record of a finished, stopped or failed runbook."""
    runbook = _current(setup)
    if runbook.state == RUNNING:
        raise ConflictError("The upgrade is running; stop it first.")
    (setup.state_dir / RUNBOOK_FILE).unlink(missing_ok=True)


class NoRunbookError(ConflictError):
    """No upgrade of the pair was started on this appliance."""


def _current(setup: FailoverSetup) -> Runbook:
    runbook = read(setup.state_dir)
    if runbook is None:
        raise NoRunbookError("No upgrade of the pair has been started on this appliance.")
    return runbook


# -- running ----------------------------------------------------------------------------------


class StepFailedError(Exception):
    """A step could not be done; the message says what and what to do."""


@dataclass
class Sides:
    """What the steps act on: this appliance and the other, as the runbook reaches it."""

    setup: FailoverSetup
    installer: Installer
    uow: Callable[[], AbstractContextManager[UnitOfWork]]
    actor: Actor
    runbook: Runbook

    @contextmanager
    def peer(self) -> Iterator[PeerClient]:
        """The other appliance, as the pair was made: the key proved both ways, and its
        certificate the one pinned then or, once it restarted for its install, the site
        certificate its syncs brought (`FailoverSetup.peer_certificates`)."""
        book = self.runbook
        pinned = Peer(book.peer_address.host, book.peer_address.port, str(book.peer["fingerprint"]))
        with self.setup.reach(pinned) as client:
            yield client


@contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """True while this open file alone holds the lock on `path` (freed at a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def runner_lock(state_dir: Path) -> AbstractContextManager[bool]:
    """True while this process alone runs the runbook."""
    return _exclusive(state_dir / LOCK_FILE)


def _save(state_dir: Path, runbook: Runbook) -> None:
    """The runner's write: a stop asked meanwhile (written by another request) is kept."""
    on_disk = read(state_dir)
    if on_disk is not None and on_disk.id == runbook.id and on_disk.stop_requested:
        runbook.stop_requested = True
    write(state_dir, runbook)


def run(
    setup: FailoverSetup,
    installer: Installer,
    uow: Callable[[], AbstractContextManager[UnitOfWork]],
    actor: Actor,
) -> Runbook | None:
    """Take the steps left, one by one, unless another process runs them; the runbook as
    it ended (done, stopped or failed), None when there was nothing to do here."""
    with runner_lock(setup.state_dir) as mine:
        runbook = read(setup.state_dir)
        if not mine or runbook is None or runbook.state != RUNNING:
            return None
        sides = Sides(setup, installer, uow, actor, runbook)
        while (step := runbook.next_step()) is not None:
            runbook = read(setup.state_dir) or runbook  # a stop asked meanwhile
            sides.runbook = runbook
            if runbook.stop_requested:
                runbook.state, runbook.stop_requested = STOPPED, False
                runbook.message = f"Stopped before: {TITLES[step]}. Resume to go on."
                write(setup.state_dir, runbook)
                return runbook
            record = runbook.steps[step]
            record.update(state="running", started_at=record.get("started_at") or _now())
            record.pop("error", None)
            _save(setup.state_dir, runbook)
            try:
                detail = STEP_WORK[step](sides, record)
            except (StepFailedError, ServiceError, FailoverError) as error:
                return _failed(sides, step, str(error))
            record.update(state=DONE, ended_at=_now(), detail=detail)
            _save(setup.state_dir, runbook)
        runbook.state, runbook.ended_at = DONE, _now()
        runbook.message = f"Both appliances run {runbook.target}; the pair is established again."
        runbook.stop_requested = False
        write(setup.state_dir, runbook)
        with uow() as work:
            audit.record(
                work, actor, "failover.upgrade.done", ", ".join(runbook.releases),
                mode=runbook.mode.value, seconds=report(runbook)["total_seconds"],
            )  # fmt: skip
            work.commit()
        return runbook


_threads_lock = threading.Lock()
_thread: threading.Thread | None = None


def run_in_background(
    setup: FailoverSetup,
    installer: Installer,
    uow: Callable[[], AbstractContextManager[UnitOfWork]],
    actor: Actor,
) -> None:
    """Run (or go on with) a running runbook in a thread of this process, unless one runs."""
    global _thread
    runbook = read(setup.state_dir)
    if runbook is None or runbook.state != RUNNING:
        return
    with _threads_lock:
        if _thread is not None and _thread.is_alive():
            return

        def work() -> None:
            try:
                run(setup, installer, uow, actor)
            except Exception:  # recorded as the step's failure where it could be
                log.exception("the pair's upgrade runbook failed")

        _thread = threading.Thread(target=work, name="failover-upgrade", daemon=True)
        _thread.start()


# -- the steps --------------------------------------------------------------------------------


def _sync(sides: Sides, record: dict[str, Any]) -> str:
    """Sync Now, from either appliance of the pair."""
    with sides.uow() as work:
        pair = service.sync_now(work, sides.setup, sides.actor)
        work.commit()
    if pair.last_sync_status != "ok":
        raise StepFailedError(f"The backup's sync did not succeed: {pair.last_sync_status}.")
    return f"synced at {pair.last_sync_time}"


def _break(sides: Sides, record: dict[str, Any]) -> str:
    if sides.setup.pair().role is Role.NONE:
        return "already broken"
    with sides.uow() as work:
        left = service.break_pair(work, sides.setup, sides.actor)
        work.commit()
    if left:
        raise StepFailedError(left)
    return "both appliances are standalone"


def _runs_here(sides: Sides) -> Runs:
    return Runs(sides.setup.version, sides.installer.base_version())


def _install_here(sides: Sides, record: dict[str, Any]) -> str:
    book = sides.runbook
    if _runs_here(sides).reaches(book.target):
        return f"runs {book.target}"
    if not record.get("install_id"):
        record["install_id"] = sides.installer.install(book.releases, book.accepted, sides.actor)
        record["deadline"] = time.time() + INSTALL_WAIT_SECONDS
        _save(sides.setup.state_dir, book)
    _, finished = _wait(lambda: sides.installer.outcome(record["install_id"]), record)
    return _installed(finished, "this appliance", _runs_here(sides), book.target)


def _install_peer(sides: Sides, record: dict[str, Any]) -> str:
    book = sides.runbook
    with sides.peer() as client:
        if Runs.from_wire(client.call("GET", "/upgrade/status")).reaches(book.target):
            return f"runs {book.target}"
        if not record.get("install_id"):
            body = {
                "releases": book.releases,
                "accept_licence": book.accept_licence,
                "accept_offline_clients": book.accept_offline_clients,
            }
            record["install_id"] = str(
                client.call("POST", "/upgrade/install", json=body)["install_id"]
            )
            record["deadline"] = time.time() + INSTALL_WAIT_SECONDS
            _save(sides.setup.state_dir, book)

    def outcome() -> tuple[str, list[dict[str, str]]]:
        with sides.peer() as client:
            answer = client.call(
                "GET", "/upgrade/status", params={"install_id": record["install_id"]}
            )
        record["seen_version"] = str(answer.get("version", ""))
        return str(answer["state"]), list(answer.get("finished", []))

    _, finished = _wait(outcome, record)
    with sides.peer() as client:
        runs = Runs.from_wire(client.call("GET", "/upgrade/status"))
    return _installed(finished, "the other appliance", runs, book.target)


def _wait(
    outcome: Callable[[], tuple[str, list[dict[str, str]]]], record: dict[str, Any]
) -> tuple[str, list[dict[str, str]]]:
    """Until the supervisor is idle again with that install finished (an appliance that
    restarts does not answer for a while: that is waited out too)."""
    last_error = ""
    while time.time() < float(record.get("deadline", 0)):
        try:
            state_now, finished = outcome()
        except (FailoverError, ServiceError, OSError) as error:
            last_error = str(error)
            time.sleep(POLL_SECONDS)
            continue
        if state_now == "idle" and finished:
            return state_now, finished
        time.sleep(POLL_SECONDS)
    raise StepFailedError(
        f"The install did not finish within {INSTALL_WAIT_SECONDS / 3600:.0f} h"
        + (f" (last: {last_error})" if last_error else "")
        + "; see Status > Basics there."
    )


def _installed(finished: list[dict[str, str]], where: str, runs: Runs, wanted: Runs) -> str:
    failed = [f for f in finished if f.get("outcome") != "installed"]
    if failed:
        said = "; ".join(
            f"{f.get('release')} {f.get('outcome')}: {f.get('reason', '')}" for f in failed
        )
        raise StepFailedError(
            f"The install on {where} did not succeed ({said}); it runs {runs} again."
        )
    if runs.site and not runs.reaches(wanted):
        raise StepFailedError(f"{where} runs {runs} after the install, not {wanted}.")
    return ", ".join(f"{f.get('release')} installed" for f in finished)


def _verify_here(sides: Sides, record: dict[str, Any]) -> str:
    runs, wanted = _runs_here(sides), sides.runbook.target
    if not runs.reaches(wanted):
        raise StepFailedError(f"This appliance runs {runs}, not {wanted}.")
    return sides.installer.verify()


def _verify_peer(sides: Sides, record: dict[str, Any]) -> str:
    with sides.peer() as client:
        answer = client.call("POST", "/upgrade/verify", json={})
    runs, wanted = Runs.from_wire(answer), sides.runbook.target
    if not runs.reaches(wanted):
        raise StepFailedError(f"The other appliance runs {runs}, not {wanted}.")
    return str(answer.get("about", ""))


def _swing(sides: Sides, record: dict[str, Any]) -> str:
    """The other appliance takes the site: the shared addresses leave here first, then
    it takes them and points the DNS name at itself."""
    setup = sides.setup
    try:
        shared_ips.disable(setup.shared_ips)
    except shared_ips.SharedIpError as error:
        raise StepFailedError(f"{error} The site stays here.") from None
    with sides.peer() as client:
        answer = client.call("POST", "/upgrade/take-site", json={})
    return str(answer.get("detail", "")) or "the other appliance serves the site"


def _establish(sides: Sides, record: dict[str, Any]) -> str:
    """Establish the pair again (the new primary asks), then sync it at once rather than
    a minute later."""
    book, setup = sides.runbook, sides.setup
    if book.mode is Mode.SYNC:
        said = f"this appliance is the primary, {book.peer_address} its backup"
        if setup.pair().role is not Role.PRIMARY:
            request = EstablishRequest(book.peer_address, book.reverse_address)
            with sides.uow() as work:
                service.establish(work, setup, sides.actor, request)
                work.commit()
    else:
        said = f"{book.peer_address} is the primary, this appliance its backup"
        if setup.pair().role is not Role.BACKUP:
            body = {
                "backup": {"host": book.reverse.get("host"), "port": book.reverse.get("port")},
                "reverse": {"host": book.peer_address.host, "port": book.peer_address.port},
            }
            with sides.peer() as client:
                client.call("POST", "/upgrade/establish", json=body)
        with sides.peer() as client:  # Sync Now from the new primary, which records it too
            synced = client.call("POST", "/sync", json={})
        if synced.get("last_data_sync_status") != "ok":
            raise StepFailedError(
                f"The backup's sync did not succeed: {synced.get('last_data_sync_status')}."
            )
        return f"{said}; synced at {synced.get('last_data_sync_time')}"
    return f"{said}; {_sync(sides, record)}"


def _not_here(sides: Sides, record: dict[str, Any]) -> str:
    raise StepFailedError("This step is done when the runbook starts.")


STEP_WORK: dict[Step, Callable[[Sides, dict[str, Any]], str]] = {
    Step.PREFLIGHT: _not_here,
    Step.BACKUP: _not_here,
    Step.SYNC: _sync,
    Step.BREAK: _break,
    Step.INSTALL_HERE: _install_here,
    Step.VERIFY_HERE: _verify_here,
    Step.INSTALL_PEER: _install_peer,
    Step.VERIFY_PEER: _verify_peer,
    Step.SWING: _swing,
    Step.ESTABLISH: _establish,
}


# -- a failed step: the site stays served -----------------------------------------------------


def _peer_runs(sides: Sides) -> Runs | None:
    try:
        with sides.peer() as client:
            return Runs.from_wire(client.call("GET", "/upgrade/status"))
    except (FailoverError, ServiceError):
        return None


def _failed(sides: Sides, step: Step, error: str) -> Runbook:
    """Record the failure; when both appliances still run the old version and the pair
    is broken, establish it again as it was, so a failover still exists."""
    book, setup = sides.runbook, sides.setup
    record = book.steps[step]
    record.update(state=FAILED, ended_at=_now(), error=error)
    record.pop("install_id", None)  # a resumed install asks again (a rolled-back one with retry)
    after = ""
    broken = setup.pair().role is Role.NONE
    peer = _peer_runs(sides) if broken else None
    if broken and _runs_here(sides).reaches(book.before) and peer and peer.reaches(book.before):
        after = _establish_as_before(sides, record)
        for again in (Step.SYNC, Step.BREAK):
            book.steps[again] = {"state": "pending"}
    elif broken:
        serving = (
            "the other appliance"
            if book.mode is Mode.ASYNC and book.steps[Step.SWING]["state"] == DONE
            else "this appliance"
        )
        after = f" The pair stays broken; {serving} serves the site. Fix the cause, then resume."
    book.state, book.ended_at = FAILED, _now()
    book.message = f"{TITLES[step]} failed: {error}{after}"
    book.stop_requested = False
    write(setup.state_dir, book)
    with sides.uow() as work:
        audit.record(work, sides.actor, "failover.upgrade.failed", step.value, error=error[:500])
        work.commit()
    return book


def _establish_as_before(sides: Sides, record: dict[str, Any]) -> str:
    book = sides.runbook
    try:
        with sides.uow() as work:
            request = EstablishRequest(book.peer_address, book.reverse_address)
            service.establish(work, sides.setup, sides.actor, request)
            work.commit()
    except (ServiceError, FailoverError) as problem:
        return (
            f" Both appliances still run the old version, but the pair could not be "
            f"established again ({problem}); this appliance serves the site."
        )
    said = " Both appliances still run the old version: the pair is established again as it was"
    try:
        _sync(sides, record)
    except (ServiceError, FailoverError, StepFailedError) as problem:
        return f"{said}, but its sync failed ({problem})."
    return f"{said}, and synced."


# -- what the other appliance answers ------------------------------------------------------


def prepare_here(
    setup: FailoverSetup, installer: Installer, actor: Actor, releases: list[str]
) -> dict[str, Any]:
    """On the backup, asked by the primary's preflight: ready to install, and how it
    reaches the primary."""
    ready = installer.prepare(_clean(releases), actor)
    pair = setup.pair()
    reverse = {"host": pair.peer.host, "port": pair.peer.port} if pair.peer else {}
    return {**ready.to_wire(), "reverse": reverse}


def take_site(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> str:
    """On the other appliance, asked by the runbook (async mode): serve the site."""
    if setup.pair().role is not Role.NONE:
        raise ConflictError("This appliance is in a pair; the site moves with a role swap.")
    try:
        shared_ips.enable(setup.shared_ips)
    except shared_ips.SharedIpError as error:
        raise ConflictError(str(error)) from None
    dns = dns_swing.swing_here(setup.dns_swing, setup.state_dir)
    audit.record(uow, actor, "failover.upgrade.take_site", setup.site_hostname)
    held = shared_ips.enabled(setup.shared_ips)
    parts = [f"holds the shared addresses {', '.join(held)}" if held else ""]
    if dns is not None:
        parts.append(f"DNS: {dns.message}")
    return (
        "; ".join(p for p in parts if p)
        or "no shared address or DNS swing is set up: move the site by NAT"
    )


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def needed_bytes(packages: int, database: int) -> int:
    return DISK_MARGIN * (packages + database)
