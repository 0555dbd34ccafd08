"""`/appliance > Updates`: check, download with progress, license add-ons, Manual Installation,
Update Service Settings.

Installing base and site releases is in `bastion.installs.pages`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from bastion.accounts.deps import AdministratorDep, CsrfDep, csrf_protect, page_actor
from bastion.accounts.service import AccountsSetup
from bastion.accounts.sign_in import CurrentSession
from bastion.platform.errors import InvalidInputError, NotFoundError, ServiceError
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.forms import redirect, reloads_go_to
from bastion.platform.web.routing import Router
from bastion.updates import channel
from bastion.updates import service as updates
from bastion.updates.errors import as_on_updates_page
from bastion.updates.jobs import DownloadJob, DownloadJobs
from bastion.updates.page import UPDATES, update_setup, updates_page
from bastion.updates.uploads import bundle_file, check_bundle_length, copy_file

router = Router(include_in_schema=False)
FormText = Annotated[str, Form()]


def _jobs(request: Request) -> DownloadJobs:
    state = request.app.state
    if not hasattr(state, "update_jobs"):
        state.update_jobs = DownloadJobs()
    jobs: DownloadJobs = state.update_jobs
    return jobs


def _finished_job(job: DownloadJob | None) -> dict[str, Any]:
    if job is None or job.state == "running":
        return {"job": job}
    if job.state == "done":
        return {"notice": job.message}
    return {"job_error": as_on_updates_page(job.message)}


@router.get(UPDATES)
def show_updates(
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep, job: str = ""
) -> Response:
    found = _jobs(request).get(job) if job else None
    return updates_page(request, runtime, uow, current, **_finished_job(found))


@router.post(f"{UPDATES}/check", dependencies=[CsrfDep])
def check_for_updates(
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    actor = page_actor(request, current)
    try:
        rows = updates.check(uow, update_setup(runtime), actor)
    except ServiceError as error:
        return updates_page(request, runtime, uow, current, error)
    uow.commit()
    offered = sum(1 for r in rows if r.can_download)
    notice = f"Checked the update service: {offered} release(s) available."
    return updates_page(request, runtime, uow, current, notice=notice)


@router.post(f"{UPDATES}/download", dependencies=[CsrfDep])
def start_download(
    request: Request, runtime: RuntimeDep, current: AdministratorDep, release: FormText = ""
) -> Response:
    """Start the download in the background; the page shows its progress."""
    job = _jobs(request).start(runtime, page_actor(request, current), release)
    return redirect(f"{UPDATES}?job={job.id}")


@router.get(f"{UPDATES}/jobs/{{job_id}}")
def download_progress(request: Request, job_id: str, current: AdministratorDep) -> JSONResponse:
    job = _jobs(request).get(job_id)
    if job is None:
        raise NotFoundError("There is no such download; it may have finished long ago.")
    return JSONResponse(job.view(), headers={"Cache-Control": "no-store"})


@router.post(f"{UPDATES}/license", dependencies=[CsrfDep])
def install_license(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    current: AdministratorDep,
    release: FormText = "",
) -> Response:
    actor = page_actor(request, current)
    try:
        lic = updates.install_license(uow, update_setup(runtime), actor, release)
    except ServiceError as error:
        return updates_page(request, runtime, uow, current, error)
    uow.commit()
    notice = (
        f"License {lic.version} installed: {lic.representatives} representatives, "
        f"{lic.endpoints} endpoints, in effect now."
    )
    return updates_page(request, runtime, uow, current, notice=notice)


@router.post(f"{UPDATES}/bundle")
async def upload_bundle(
    request: Request, runtime: RuntimeDep, uow: UowDep, current: AdministratorDep
) -> Response:
    """Manual Installation: the declared size is checked before the form is read."""
    limit = runtime.settings.update_upload_limit_bytes
    try:
        check_bundle_length(request, limit)
        await csrf_protect(request, runtime.part(AccountsSetup), uow)
        upload = (await request.form()).get("bundle")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInputError("Choose the update bundle file to upload.")
        done = await run_in_threadpool(_import, runtime, uow, current, request, upload, limit)
    except ServiceError as error:
        return await run_in_threadpool(updates_page, request, runtime, uow, current, error)
    return await run_in_threadpool(
        updates_page, request, runtime, uow, current, notice=done.summary
    )


def _import(
    runtime: Runtime,
    uow: UnitOfWork,
    current: CurrentSession,
    request: Request,
    upload: UploadFile,
    limit: int,
) -> updates.BundleImport:
    setup = update_setup(runtime)
    with bundle_file(runtime.settings.scratch_dir) as (path, out):
        copy_file(upload.file, out, limit)
        label = upload.filename or path.name
        done = updates.import_bundle(uow, setup, page_actor(request, current), path, label)
    uow.commit()
    return done


FormFlag = Annotated[str | None, Form()]


@router.post(f"{UPDATES}/settings", dependencies=[CsrfDep])
def save_channel(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    current: AdministratorDep,
    service_url: FormText = "",
    service_ca: FormText = "",
    service_ca_default: FormFlag = None,
    trusted_root: FormText = "",
    trusted_root_default: FormFlag = None,
) -> Response:
    """Update Service Settings: a CA or root left empty stays; a ticked default resets it."""
    change = channel.ChannelChange(
        service_url=service_url,
        service_ca="" if service_ca_default else service_ca if service_ca.strip() else None,
        trusted_root="" if trusted_root_default else trusted_root if trusted_root.strip() else None,
    )
    try:
        channel.configure(uow, update_setup(runtime), page_actor(request, current), change)
    except ServiceError as error:
        shown = {"service_url": service_url, "service_ca": service_ca, "trusted_root": trusted_root}
        return updates_page(request, runtime, uow, current, error, channel_form=shown)
    uow.commit()
    notice = "Update service settings saved; they apply to the next check, download or bundle."
    return updates_page(request, runtime, uow, current, notice=notice)


# Addresses that only take a form: opened again (a reload, a bookmark), they lead to its page.
reloads_go_to(
    router,
    UPDATES,
    *(f"{UPDATES}/{action}" for action in ("check", "download", "license", "bundle", "settings")),
)
