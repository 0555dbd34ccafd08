"""Scheduled backups: set by an administrator, run by the appliance, each run audited."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bastion.backups import service as backups
from bastion.backups.rules import Schedule, ScheduleError, is_due, to_delete
from bastion.backups.service import BackupSite
from bastion.backups.site_tables import KeyTransform
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import InvalidInputError, ServiceError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

SCHEDULE_KEY = "backup.schedule"
LAST_RUN_KEY = "backup.schedule.last_run"
SEAL_CONTEXT = "backup-schedule-passphrase"
LABEL = "scheduled"


@dataclass(frozen=True)
class LastRun:
    at: datetime
    ok: bool
    message: str


@dataclass(frozen=True)
class Sealer:
    """Seals the schedule's passphrase at rest (the appliance's key vault)."""

    seal: KeyTransform
    unseal: KeyTransform


class UnreadablePassphraseError(ServiceError):
    pass


def _passphrase(uow: UnitOfWork, sealer: Sealer) -> str:
    stored = uow.settings.get(SCHEDULE_KEY) or {}
    try:
        return sealer.unseal(base64.b64decode(stored["passphrase"]), SEAL_CONTEXT).decode()
    except Exception:  # any failure to open the seal means the same thing here
        raise UnreadablePassphraseError(
            "The schedule's passphrase cannot be read on this appliance (it was set on another "
            "one, or the key vault changed); set the schedule again."
        ) from None


def get(uow: UnitOfWork) -> Schedule | None:
    stored = uow.settings.get(SCHEDULE_KEY)
    if not stored:
        return None
    return Schedule(stored["interval_hours"], stored["directory"], stored["keep"])


def set_schedule(
    uow: UnitOfWork,
    actor: Actor,
    sealer: Sealer,
    schedule: tuple[int, str, int],
    passphrase: str,
) -> Schedule:
    try:
        chosen = Schedule(*schedule)
    except ScheduleError as error:
        raise InvalidInputError(str(error)) from None
    backups.check_new_passphrase(passphrase)
    sealed = base64.b64encode(sealer.seal(passphrase.encode(), SEAL_CONTEXT)).decode()
    stored = {**asdict(chosen), "passphrase": sealed, "changed_at": utc_now().isoformat()}
    uow.settings.set(SCHEDULE_KEY, stored)
    audit.record(uow, actor, "backup.schedule.set", chosen.directory, **asdict(chosen))
    return chosen


def clear(uow: UnitOfWork, actor: Actor) -> None:
    uow.settings.set(SCHEDULE_KEY, None)
    audit.record(uow, actor, "backup.schedule.clear", "")


def last_run(uow: UnitOfWork) -> LastRun | None:
    stored = uow.settings.get(LAST_RUN_KEY)
    if not stored:
        return None
    return LastRun(datetime.fromisoformat(stored["at"]), stored["ok"], stored["message"])


def run_if_due(uow: UnitOfWork, site: BackupSite, sealer: Sealer, actor: Actor) -> LastRun | None:
    """Take the scheduled backup when it is due; record the outcome either way."""
    schedule, previous = get(uow), last_run(uow)
    now = utc_now()
    if schedule is None:
        return None
    changed_at = datetime.fromisoformat(uow.settings.get(SCHEDULE_KEY)["changed_at"])
    if not is_due(schedule, changed_at, previous.at if previous else None, now):
        return None
    try:
        passphrase = sealer.unseal(
            base64.b64decode(uow.settings.get(SCHEDULE_KEY)["passphrase"]), SEAL_CONTEXT
        )
        path = backups.write_file(site, Path(schedule.directory), passphrase.decode(), LABEL)
        removed = _prune(Path(schedule.directory), site.site_name, schedule.keep)
        outcome = LastRun(now, True, f"Wrote {path.name}; removed {removed} older backup(s).")
    except (ServiceError, OSError) as error:
        outcome = LastRun(now, False, _failure(schedule, error))
    uow.settings.set(
        LAST_RUN_KEY, {"at": now.isoformat(), "ok": outcome.ok, "message": outcome.message}
    )
    action = "backup.scheduled" if outcome.ok else "backup.scheduled.failed"
    audit.record(uow, actor, action, schedule.directory, message=outcome.message)
    return outcome


def _failure(schedule: Schedule, error: Exception) -> str:
    if isinstance(error, OSError):
        return (
            f"The scheduled backup could not be written to {schedule.directory}: "
            f"{error.strerror or error}. "
            "Check that the directory exists, is writable and has space."
        )
    return f"The scheduled backup failed: {error}"


def _prune(directory: Path, site_name: str, keep: int) -> int:
    ours = sorted(directory.glob(f"{site_name}-{LABEL}-*.bastion"))
    doomed = to_delete([p.name for p in ours], keep)
    for name in doomed:
        (directory / name).unlink(missing_ok=True)
    return len(doomed)
