"""Installing base and site releases, rolling back, and recovering after a crash.

Every step is recorded in the install journal once done (see
`bastion.supervisor.journal`). A site install:

1. unpack the package and install its wheels into a new slot;
2. start the new worker and its migration tool; both import their code and wait;
3. pause changes on the running worker (writes are refused, reads go on);
4. snapshot the database; 5. run the new release's migrations;
6. let the new worker begin (in standby) and wait for its health check;
7. let it go live on the same sockets, switch `current`; 8. retire the old worker: it
   accepts nothing more and ends once the remote sessions it holds end (at most
   `install_session_keep_seconds`), while the install goes on;
9. watch the new worker for its probation period; a crash rolls back.

A base install unpacks and tries the new base, switches the `base` link and
re-executes the supervisor from it, keeping the sockets and the worker; the
new image confirms it reaches the worker, or switches back and re-executes the
old base.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from bastion.platform.settings import ApplianceSettings
from bastion.releases.versions import ReleaseKind
from bastion.supervisor import install_snapshot as database
from bastion.supervisor.journal import (
    STEP_TEXT,
    HistoryEntry,
    InstallError,
    Journal,
    Outcome,
    PlannedRelease,
    Step,
    recovery,
)
from bastion.supervisor.messages import (
    AuditOutcomes,
    Freeze,
    GoLive,
    Order,
    PendingInstall,
    Thaw,
    WentLive,
)
from bastion.supervisor.process import INHERIT_ENV, exec_supervisor, now, settings_env
from bastion.supervisor.serving import Serving
from bastion.supervisor.slots import BASE, BASE_PREVIOUS, CURRENT, PREVIOUS, Releases, SlotError
from bastion.supervisor.state import InstallState
from bastion.supervisor.workers import (
    Tool,
    Worker,
    WorkerError,
    all_ready,
    run_tool,
    start_tool,
)

log = logging.getLogger("bastion.supervisor.install")


class InstallFailed(Exception):
    """The install cannot go on; the message is the reason recorded for the rollback."""


FAILURES = (InstallFailed, InstallError, SlotError, WorkerError, database.SnapshotError, OSError)


async def record(site: Serving, journal: Journal, step: Step | None = None) -> Journal:
    """Record a step as done; with `install_pause_after` set to it, wait here to be killed."""
    if step is not None:
        journal = journal.done(step)
    site.state.save_journal(journal)
    site.activity = STEP_TEXT[journal.step]
    log.info("install %s: %s done", journal.release.name, journal.step)
    await _pause_if_asked(site, journal.step.value)
    return journal


ROLLING_BACK = "rolling-back"
"""`install_pause_after` value: stop once a rollback is recorded, before it is carried out."""


async def _pause_if_asked(site: Serving, step: str) -> None:
    if site.settings.install_pause_after == step:
        log.warning("install paused after step %s (install_pause_after)", step)
        await asyncio.Event().wait()


async def finish(
    site: Serving, journal: Journal, outcome: Outcome, reason: str, **details: Any
) -> None:
    """Record the outcome, then have the serving worker write it to the audit log."""
    finish_with(site.state, site.releases, journal, outcome, reason, **details)
    site.activity = ""
    worker = site.worker
    if worker is not None and worker.poll() is None:
        try:
            await worker.order(AuditOutcomes())
        except WorkerError as error:  # it audits them when it next starts
            log.warning("the worker did not audit the install outcome: %s", error)


def finish_with(
    state: InstallState,
    releases: Releases,
    journal: Journal,
    outcome: Outcome,
    reason: str,
    **details: Any,
) -> None:
    if journal.queue and outcome is Outcome.ROLLED_BACK:
        skipped = ", ".join(r.name for r in journal.queue)
        reason += f"; not installed either: {skipped}"
    entry = HistoryEntry(journal.install_id, journal.release.name, outcome, reason, now(), details)
    state.record(entry)
    state.clear_journal(journal)
    releases.prune()
    log.warning("install of %s: %s (%s)", journal.release.name, outcome.value, reason)


async def run_pending(site: Serving, pending: PendingInstall) -> None:
    releases = pending.releases
    await install(site, pending.install_id, releases[0], releases[1:])


async def install(
    site: Serving, install_id: str, planned: PlannedRelease, queue: tuple[PlannedRelease, ...]
) -> None:
    install_id = f"{install_id.split('+')[0]}+{planned.slot}"
    if planned.kind is ReleaseKind.BASE:
        await _install_base(site, install_id, planned, queue)
        return
    if planned.kind is not ReleaseKind.SITE:
        raise InstallError(f"{planned.name} is not installed into a slot")
    if await _install_site(site, install_id, planned, queue) and queue:
        await install(site, install_id, queue[0], queue[1:])


# Site releases.


async def _install_site(
    site: Serving, install_id: str, planned: PlannedRelease, queue: tuple[PlannedRelease, ...]
) -> bool:
    started = time.monotonic()
    journal = Journal(
        install_id,
        planned,
        from_slot=site.releases.target(CURRENT) or "",
        previous_before=site.releases.target(PREVIOUS),
        started_at=now(),
        queue=queue,
    )
    journal = await record(site, journal)
    site.state.save_pending(None)
    settings = site.settings
    migrator: Tool | None = None
    try:
        await asyncio.to_thread(site.releases.unpack, planned)
        journal = await record(site, journal, Step.UNPACKED)
        # Both start now and wait, imported, so changes are paused only for the data work.
        lib = site.lib_of(planned.slot)
        migrator = await start_tool(lib, site.child_env(), "migrate", wait_for_begin=True)
        candidate = site.start_candidate(planned.slot)
        deadline = settings.install_health_deadline_seconds
        await all_ready(deadline, migrator, candidate)
        journal = await record(site, journal, Step.STARTED)
        await _ask(site.worker, Freeze(f"{planned.name} is being installed"))
        journal = await record(site, journal, Step.FROZEN)
        work = site.state.work_dir(install_id)
        snapshot = await asyncio.to_thread(database.snapshot, settings, work)
        journal = replace(journal, snapshot=str(snapshot))
        journal = await record(site, journal, Step.SNAPSHOT)
        migrator.begin()
        await migrator.result(settings.install_migration_timeout_seconds)
        journal = await record(site, journal, Step.MIGRATED)
        candidate.begin()
        await wait_healthy(candidate, settings.install_health_deadline_seconds)
        journal = await record(site, journal, Step.HEALTHY)
        live = WentLive.from_wire(await _ask(candidate, GoLive(planned.name)))
        site.releases.point(PREVIOUS, journal.from_slot)
        site.releases.point(CURRENT, planned.slot)
        old = site.promote_candidate()
        journal = await record(site, journal, Step.SWITCHED)
        if old is not None:
            await site.retire(old)
        journal = await record(site, journal, Step.DRAINED)
        probation = settings.install_probation_seconds
        site.activity = f"watching the new version through its first {probation:g} s"
        await _probation(site, probation)
    except Exception as error:  # whatever went wrong, the old version must serve on
        if migrator is not None:
            migrator.kill()
        if not isinstance(error, FAILURES):
            log.exception("unexpected failure while installing %s", planned.name)
        await roll_back(site, journal, str(error) or type(error).__name__)
        return False
    seconds = round(time.monotonic() - started, 1)
    ended = live.sessions_ended
    await finish(
        site, journal, Outcome.INSTALLED, "installed", seconds=seconds, sessions_ended=ended
    )
    return True


async def _ask(worker: Worker | None, order: Order) -> dict[str, Any]:
    if worker is None:
        raise InstallFailed("no worker is running")
    try:
        return await worker.order(order)
    except WorkerError as error:
        raise InstallFailed(str(error)) from None


HEALTH_POLL_SECONDS = 0.02
"""How often a new version's health is asked for; changes stay paused until it answers."""
DEFINITE_FAILURES = 3
"""Error answers in a row from a new version's health check that roll it back at once."""


async def wait_healthy(worker: Worker, deadline: float) -> None:
    """Until the worker's `/check_health` answers 200.

    A worker that exits, or whose health check answers an error (other than "starting")
    several times in a row, has failed for certain: that ends the wait at once, so changes
    are not paused for the whole deadline, which is only for a worker that never answers.
    """
    end = time.monotonic() + deadline
    errors = 0
    while time.monotonic() < end:
        if worker.poll() is not None:
            raise InstallFailed(
                f"the new version exited (code {worker.exit_code}) before it was healthy"
            )
        answer = await worker.health()
        if answer is not None and answer.ok:
            return
        errors = errors + 1 if answer is not None and answer.failed else 0
        if answer is not None and errors >= DEFINITE_FAILURES:
            raise InstallFailed(
                f"the new version's health check answered {answer} "
                f"{DEFINITE_FAILURES} times in a row"
            )
        await asyncio.sleep(HEALTH_POLL_SECONDS)
    raise InstallFailed(f"the new version did not pass its health check within {deadline:.0f} s")


async def _probation(site: Serving, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        worker = site.worker
        if worker is not None and worker.poll() is not None:
            raise InstallFailed(
                f"the new version exited (code {worker.exit_code}) within its first {seconds:.0f} s"
            )
        await asyncio.sleep(0.2)


async def roll_back(site: Serving, journal: Journal, reason: str) -> None:
    """Return to the old slot and the database snapshot; the old worker serves on."""
    log.error("install of %s failed: %s; rolling back", journal.release.name, reason)
    journal = journal.rolling_back(reason)
    site.state.save_journal(journal)
    site.activity = "rolling back"
    await _pause_if_asked(site, ROLLING_BACK)
    await site.drop_candidate()
    new_worker = site.worker is not None and site.worker.slot == journal.release.slot
    if new_worker and site.worker is not None:
        site.worker.kill()
        await site.worker.wait()
    if journal.reached(Step.SNAPSHOT) and journal.snapshot:
        await asyncio.to_thread(database.restore, site.settings, Path(journal.snapshot))
    site.releases.point(PREVIOUS, journal.previous_before)
    site.releases.point(CURRENT, journal.from_slot)
    worker = site.worker
    if worker is None or worker.poll() is not None or worker.slot != journal.from_slot:
        site.serve_from(journal.from_slot)
    else:
        try:
            await worker.order(Thaw())
        except WorkerError as error:
            log.error("the old worker did not resume changes: %s", error)
    await finish(site, journal, Outcome.ROLLED_BACK, reason)


# Base releases.


async def _install_base(
    site: Serving, install_id: str, planned: PlannedRelease, queue: tuple[PlannedRelease, ...]
) -> None:
    journal = Journal(
        install_id,
        planned,
        from_slot=site.base_slot,
        previous_before=site.releases.target(BASE_PREVIOUS),
        started_at=now(),
        queue=queue,
    )
    journal = await record(site, journal)
    site.state.save_pending(None)
    try:
        await asyncio.to_thread(site.releases.unpack, planned)
        journal = await record(site, journal, Step.UNPACKED)
        env = {**os.environ, **settings_env(site.settings)}
        env.pop(INHERIT_ENV, None)
        deadline = site.settings.install_health_deadline_seconds
        lib = site.lib_of(planned.slot)
        await run_tool(lib, env, "--probe", timeout=deadline, module="bastion.supervisor")
        journal = await record(site, journal, Step.PROBED)
    except Exception as error:  # nothing was switched yet: the running base serves on
        if not isinstance(error, FAILURES):
            log.exception("unexpected failure while installing %s", planned.name)
        await finish(site, journal, Outcome.ROLLED_BACK, str(error) or type(error).__name__)
        return
    site.releases.point(BASE_PREVIOUS, journal.from_slot)
    site.releases.point(BASE, planned.slot)
    await record(site, journal, Step.SWITCHED)
    await site.stop_retiring()  # a new supervisor image would not know them
    reexec(site, planned.slot)


def reexec(site: Serving, slot: str) -> NoReturn:
    """Replace this process with the supervisor of `slot`, keeping sockets and worker."""
    for sock in site.sockets.values():
        sock.set_inheritable(True)
    inherit = {
        "sockets": {address: sock.fileno() for address, sock in site.sockets.items()},
        "worker": site.worker.describe() if site.worker is not None else None,
    }
    exec_supervisor(site.settings, site.releases, slot, {INHERIT_ENV: json.dumps(inherit)})


Queued = tuple[str, PlannedRelease, tuple[PlannedRelease, ...]]
"""An install that goes on: its id, the next release, and those after it."""


async def resume_after_exec(site: Serving) -> Queued | None:
    """In a re-executed supervisor: confirm a base install, or finish its rollback; returns
    the releases that were queued behind a confirmed base, to install next."""
    journal = site.state.journal()
    if journal is None or journal.release.kind is not ReleaseKind.BASE:
        return None
    if journal.rollback is not None:
        await finish(site, journal, Outcome.ROLLED_BACK, journal.rollback)
        return None
    try:
        if site.worker is None:
            raise InstallFailed("the new base has no worker to supervise")
        await wait_healthy(site.worker, site.settings.install_health_deadline_seconds)
    except InstallFailed as error:
        reason = f"the new base could not confirm the appliance serves: {error}"
        site.state.save_journal(journal.rolling_back(reason))
        site.releases.point(BASE, journal.from_slot)
        site.releases.point(BASE_PREVIOUS, journal.previous_before)
        reexec(site, journal.from_slot)
    journal = await record(site, journal, Step.CONFIRMED)
    started = datetime.fromisoformat(journal.started_at)
    seconds = round((datetime.now(UTC) - started).total_seconds(), 1)
    await finish(site, journal, Outcome.INSTALLED, "installed", seconds=seconds)
    if not journal.queue:
        return None
    return journal.install_id, journal.queue[0], journal.queue[1:]


# A start after a crash.


def recover(settings: ApplianceSettings) -> str | None:
    """Finish or undo an install the appliance stopped in; no worker runs yet."""
    data_dir = settings.data_dir.resolve()
    state, releases = InstallState(data_dir), Releases(data_dir)
    journal = state.journal()
    if journal is None:
        return None
    pending = state.pending()
    if pending is not None and journal.install_id.startswith(pending.install_id):
        state.save_pending(None)
    decision = recovery(journal)
    site = journal.release.kind is ReleaseKind.SITE
    link, previous = (CURRENT, PREVIOUS) if site else (BASE, BASE_PREVIOUS)
    if decision.rolls_back:
        if decision.restore_database and journal.snapshot:
            database.restore(settings, Path(journal.snapshot))
        releases.point(previous, journal.previous_before)
        releases.point(link, journal.from_slot)
    else:
        releases.point(previous, journal.from_slot)
        releases.point(link, journal.release.slot)
    finish_with(state, releases, journal, decision.outcome, decision.reason)
    return decision.reason
