"""Updates through the API: check, list, download, offline bundles, download key, license,
the update channel's settings.

Installing base and site releases is in `bastion.installs.api`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from bastion.accounts.deps import ApiActorDep
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import RuntimeDep, UowDep
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import PRINTABLE, Strict, errors
from bastion.updates import channel
from bastion.updates import service as updates
from bastion.updates.schemas import ChannelIn, ChannelOut
from bastion.updates.uploads import bundle_file, check_bundle_length, copy_stream

router = Router(prefix="/api/v1/updates", tags=["updates"])
BINARY: dict[str, Any] = {
    "required": True,
    "description": "The bundle the update service gave for this appliance's download key",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
VERIFY = "a signature or hash does not verify (nothing was kept)."
NO_SETUP = "this site build has no update service, site name or trusted root configured."
CLOCK = (
    "the update metadata expired or the appliance clock is wrong, a required release is "
    "missing, or " + NO_SETUP
)
UNREACHABLE = "the update service cannot be reached."
NOT_LISTED = "no such release is listed; check for updates first."
NOT_DOWNLOADABLE = "the release cannot be downloaded (installed, blocked or taken)."
BUNDLE = "the bundle is damaged, cut off, too large, or made for another appliance."


class ReleaseIn(Strict):
    release: str = Field(
        min_length=1,
        max_length=100,
        pattern=PRINTABLE,
        description='As listed, e.g. "base 1.1" or "license 2"',
        examples=["base 1.1"],
    )


class ReleaseOut(BaseModel):
    name: str
    kind: str
    version: str
    state: str
    reason: str
    bytes: int
    downloaded: bool
    licensed: dict[str, int]


class LicenseOut(BaseModel):
    version: str
    representatives: int
    endpoints: int
    installed_at: str


class UpdatesOut(BaseModel):
    installed: dict[str, str]
    license: LicenseOut | None
    releases: list[ReleaseOut]


class BundleOut(UpdatesOut):
    stored: list[str]
    """Releases stored from this bundle now."""
    already_stored: list[str]
    """Releases this appliance held already; the bundle's copies verified all the same."""
    imported_before: datetime | None
    """When this same bundle was imported before, if it was."""
    message: str


class DownloadOut(BaseModel):
    release: ReleaseOut
    sha256: str
    seconds: float


class DownloadKeyOut(BaseModel):
    download_key: str
    made_at: datetime
    installed: dict[str, str]


class EnrollmentOut(BaseModel):
    site: str
    appliance_id: str
    public_key: str


def _setup(runtime: Runtime) -> updates.UpdateSetup:
    return runtime.part(updates.UpdateSetup)


def _release(row: updates.ReleaseRow) -> ReleaseOut:
    return ReleaseOut(
        name=row.name,
        kind=row.kind,
        version=row.version,
        state=row.state,
        reason=row.reason,
        bytes=row.length,
        downloaded=row.downloaded,
        licensed=dict(row.licensed),
    )


def _license(lic: updates.License | None) -> LicenseOut | None:
    return LicenseOut(**lic.__dict__) if lic else None


def _updates(uow: UnitOfWork, rows: list[updates.ReleaseRow], data_dir: Path) -> UpdatesOut:
    versions = updates.installed_versions(uow, data_dir)
    installed = {k.value: str(v) for k, v in versions.items()}
    return UpdatesOut(
        installed=installed,
        license=_license(updates.license_of(uow)),
        releases=[_release(r) for r in rows],
    )


@router.get("", response_model=UpdatesOut)
def list_updates(runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> UpdatesOut:
    """Releases as of the last check, download or bundle (no network)."""
    return _updates(uow, updates.known_releases(uow, _setup(runtime)), runtime.settings.data_dir)


@router.post(
    "/check",
    response_model=UpdatesOut,
    responses=errors(400, 409, 503, e400=VERIFY, e409=CLOCK, e503=UNREACHABLE),
)
def check(runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> UpdatesOut:
    """Ask the update service what this appliance may install (R21, R22)."""
    rows = updates.check(uow, _setup(runtime), actor)
    uow.commit()
    return _updates(uow, rows, runtime.settings.data_dir)


def _download(runtime: Runtime, uow: UnitOfWork, actor: Actor, name: str) -> DownloadOut:
    done = updates.download(uow, _setup(runtime), actor, name)
    uow.commit()
    return DownloadOut(release=_release(done.row), sha256=done.path.name, seconds=done.seconds)


@router.post(
    "/downloads",
    response_model=DownloadOut,
    responses=errors(
        400, 404, 409, 503, e400=VERIFY, e404=NOT_LISTED, e409=NOT_DOWNLOADABLE, e503=UNREACHABLE
    ),
)
async def download(
    body: ReleaseIn, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> DownloadOut:
    """Download and verify one release; it waits in storage until installed."""
    return await run_in_threadpool(_download, runtime, uow, actor, body.release)


@router.post(
    "/bundles",
    response_model=BundleOut,
    openapi_extra={"requestBody": BINARY},
    responses=errors(400, 409, 503, e400=BUNDLE, e409=CLOCK),
)
async def upload_bundle(
    request: Request, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> BundleOut:
    """Manual Installation: the body is the bundle the update service gave for a download key.
    Every package it carries is verified; importing the same bundle again says so."""
    limit = runtime.settings.update_upload_limit_bytes
    check_bundle_length(request, limit)
    with bundle_file(runtime.settings.scratch_dir) as (path, out):
        await copy_stream(request.stream(), out, limit)
        return await run_in_threadpool(_import, runtime, uow, actor, path)


def _import(runtime: Runtime, uow: UnitOfWork, actor: Actor, path: Path) -> BundleOut:
    done = updates.import_bundle(uow, _setup(runtime), actor, path, "uploaded bundle")
    uow.commit()
    listed = _updates(uow, done.rows, runtime.settings.data_dir)
    return BundleOut(
        **listed.model_dump(),
        stored=done.stored,
        already_stored=done.held,
        imported_before=datetime.fromisoformat(done.imported_before)
        if done.imported_before
        else None,
        message=done.summary,
    )


@router.post(
    "/download-key", response_model=DownloadKeyOut, responses=errors(409, 503, e409=NO_SETUP)
)
def download_key(runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> DownloadKeyOut:
    """A new Appliance Download Key, signed by this appliance and stamped with its clock (R24)."""
    key = updates.download_key(uow, _setup(runtime), actor)
    uow.commit()
    return DownloadKeyOut(download_key=key.text, made_at=key.made_at, installed=key.installed)


@router.get("/enrollment", response_model=EnrollmentOut, responses=errors(409, 503, e409=NO_SETUP))
def enrollment(runtime: RuntimeDep, actor: ApiActorDep) -> EnrollmentOut:
    """What the vendor needs to enrol this appliance for download keys."""
    return EnrollmentOut(**channel.enrollment(_setup(runtime)))


@router.post(
    "/license",
    response_model=LicenseOut,
    responses=errors(
        400,
        404,
        409,
        e400="the release is not a license add-on.",
        e404=NOT_LISTED,
        e409="the license is not downloaded, or needs a newer release first.",
    ),
)
def install_license(
    body: ReleaseIn, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> LicenseOut:
    """Install a downloaded license add-on: the licensed counts change at once."""
    lic = updates.install_license(uow, _setup(runtime), actor, body.release)
    uow.commit()
    return LicenseOut(**lic.__dict__)


@router.get("/settings", response_model=ChannelOut)
def channel_settings(runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep) -> ChannelOut:
    """The update channel in effect: the update service URL, its CA, the trusted root, each
    with where it comes from (`appliance`, `environment`, `site build`, `system`, `none`)."""
    return ChannelOut.of(channel.in_effect(uow, _setup(runtime)))


@router.put(
    "/settings",
    response_model=ChannelOut,
    responses=errors(400, e400="a URL, CA or root that cannot be used; nothing was saved."),
)
def configure_channel(
    body: ChannelIn, runtime: RuntimeDep, uow: UowDep, actor: ApiActorDep
) -> ChannelOut:
    """Change the update channel. A field left out stays as it is; null or "" returns it to
    its default (the environment setting). Every value is checked before anything is saved."""
    found = channel.configure(uow, _setup(runtime), actor, body.change())
    uow.commit()
    return ChannelOut.of(found)
