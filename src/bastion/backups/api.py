"""Backups through the API: download one, read a header, restore one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from bastion.accounts.deps import ApiActorDep
from bastion.backups import schedule as backup_schedule
from bastion.backups import schemas as s
from bastion.backups import service as backups
from bastion.backups.container import read_header_from
from bastion.backups.rules import BackupError
from bastion.backups.schedule import Sealer
from bastion.backups.service import BackupSite
from bastion.platform.errors import InvalidInputError
from bastion.platform.principals import Actor
from bastion.platform.web.deps import UowDep, part
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import errors
from bastion.platform.web.uploads import file_download, spooled_body, temporary_download

router = Router(prefix="/api/v1/backups", tags=["backups"])
BINARY_DOWNLOAD: dict[str, Any] = {
    "description": "The encrypted backup file; never cached (no-store)",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
BINARY_UPLOAD: dict[str, Any] = {
    "required": True,
    "description": "The backup file, as it was downloaded",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
NOT_A_BACKUP = (
    "the body is not a whole Bastion backup (or is larger than "
    "BASTION_BACKUP_UPLOAD_LIMIT_BYTES, or was sent without Content-Length)."
)


BackupSiteDep = Annotated[BackupSite, Depends(part(BackupSite))]
SealerDep = Annotated[Sealer, Depends(part(Sealer))]


def download_name(site: BackupSite) -> str:
    return f"{site.site_name}-backup.bastion"


def write_to_temp(site: BackupSite, passphrase: str, uow: UowDep, actor: Actor) -> FileResponse:
    """Write the whole backup first, so that a failure is an error, not a cut-off download."""
    path = temporary_download(site.scratch_dir, ".bastion")
    try:
        with path.open("wb") as out:
            header = backups.write(site, out, passphrase)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    backups.record_created(uow, actor, header, "download")
    uow.commit()
    return file_download(path, download_name(site))


@router.post("", responses={200: BINARY_DOWNLOAD}, response_class=FileResponse)
async def create_backup(
    body: s.BackupRequest, site: BackupSiteDep, uow: UowDep, actor: ApiActorDep
) -> FileResponse:
    """The whole site as one encrypted file; keep the passphrase: it is the only way back in."""
    backups.check_new_passphrase(body.passphrase)
    return await run_in_threadpool(write_to_temp, site, body.passphrase, uow, actor)


def schedule_out(uow: UowDep) -> s.ScheduleOut:
    schedule, last = backup_schedule.get(uow), backup_schedule.last_run(uow)
    return s.ScheduleOut(
        interval_hours=schedule.interval_hours if schedule else None,
        directory=schedule.directory if schedule else None,
        keep=schedule.keep if schedule else None,
        last_run=s.LastRunOut.model_validate(last) if last else None,
    )


@router.get("/schedule", response_model=s.ScheduleOut)
def get_schedule(uow: UowDep, actor: ApiActorDep) -> s.ScheduleOut:
    return schedule_out(uow)


@router.put("/schedule", response_model=s.ScheduleOut)
def set_schedule(
    body: s.ScheduleIn, sealer: SealerDep, uow: UowDep, actor: ApiActorDep
) -> s.ScheduleOut:
    """Back up every `interval_hours` into `directory`, keeping the newest `keep` files."""
    chosen = (body.interval_hours, body.directory, body.keep)
    backup_schedule.set_schedule(uow, actor, sealer, chosen, body.passphrase)
    uow.commit()
    return schedule_out(uow)


@router.delete("/schedule", status_code=204)
def clear_schedule(uow: UowDep, actor: ApiActorDep) -> None:
    backup_schedule.clear(uow, actor)
    uow.commit()


@router.post(
    "/inspect",
    response_model=dict[str, str],
    openapi_extra={"requestBody": BINARY_UPLOAD},
    responses=errors(400, e400=NOT_A_BACKUP),
)
async def inspect_backup(
    request: Request, site: BackupSiteDep, actor: ApiActorDep
) -> dict[str, str]:
    """What a backup file is (its readable header); needs no passphrase."""
    async with spooled_body(request, site.scratch_dir, site.upload_limit_bytes) as f:
        try:
            return backups.describe(read_header_from(f))
        except BackupError as error:
            raise InvalidInputError(str(error)) from None


@router.post(
    "/restore",
    response_model=s.RestoreOut,
    openapi_extra={"requestBody": BINARY_UPLOAD},
    responses=errors(
        400,
        e400=NOT_A_BACKUP + " Or the passphrase is wrong, or the backup is from newer software.",
    ),
)
async def restore_backup(
    request: Request,
    site: BackupSiteDep,
    actor: ApiActorDep,
    passphrase: Annotated[str, Header(alias="X-Backup-Passphrase", max_length=1024)],
) -> s.RestoreOut:
    """Replace the site with the uploaded backup (body: the file). Every session ends."""
    async with spooled_body(request, site.scratch_dir, site.upload_limit_bytes) as f:
        report = await run_in_threadpool(backups.restore, site, actor, f, passphrase)
    return s.RestoreOut(
        site=report.header.metadata.site_name,
        software_version=report.header.metadata.software_version,
        migrated_from=report.migrated_from,
        rows=report.rows,
        automatic_backup=str(report.automatic_backup),
        sessions_ended=report.sessions_ended,
    )
