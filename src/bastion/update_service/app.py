"""The update service's ASGI app: TUF repositories per site, and the download-key page.

Routes::

    GET  /sites/<site>/metadata/<file>    signed TUF metadata of one site
    GET  /sites/<site>/targets/<path>     release packages open to that site
    GET  /                                 page: paste an appliance download key
    POST /download-key                     form post: answers with the offline bundle
    POST /api/v1/offers                    JSON: what a download key may have, by state
    POST /api/v1/bundles                   JSON in, offline bundle (tar) out
    GET  /healthz
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.background import BackgroundTask

from bastion.releases.download_key import peek
from bastion.update_service import exchange
from bastion.update_service.errors import VENDOR_ERRORS
from bastion.update_service.mail import send_due_notices
from bastion.update_service.settings import UpdateServiceSettings
from bastion.update_service.tuf_repo import utcnow
from bastion.update_service.vendor import Vendor

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bastion update service</title></head>
<body><h1>Download updates for an appliance</h1>
<p>Copy the <strong>Appliance Download Key</strong> from <em>/appliance &gt; Updates</em>
and paste it here. You get one file to upload on the appliance's Updates page
(Manual Installation &gt; Update Software).</p>
{message}
<form method="post" action="/download-key">
<textarea name="download_key" rows="6" cols="80" required></textarea><br>
<button type="submit">Get update files</button></form></body></html>"""


class KeyRequest(BaseModel):
    download_key: str


def maintain(vendor: Vendor) -> None:
    """Open scheduled waves whose date came and re-sign expiring metadata."""
    vendor.sync_sites()
    vendor.refresh_metadata()


async def maintenance_loop(vendor: Vendor, settings: UpdateServiceSettings) -> None:
    while True:
        try:
            await asyncio.to_thread(maintain, vendor)
            await send_due_notices(vendor, settings)
        except Exception:  # keep serving; the next round retries
            log.exception("update service maintenance failed")
        await asyncio.sleep(settings.maintenance_interval_seconds)


def open_vendor(settings: UpdateServiceSettings) -> Vendor:
    """Open the repository; MissingKeyError names any online key that is absent."""
    vendor = Vendor(settings.data_dir, settings.keys)
    vendor.keyring()
    (settings.data_dir / "sites").mkdir(exist_ok=True)
    maintain(vendor)
    return vendor


def create_app(settings: UpdateServiceSettings) -> FastAPI:
    vendor = open_vendor(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(maintenance_loop(vendor, settings))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        vendor.close()

    app = FastAPI(title="Bastion update service", lifespan=lifespan)
    app.state.vendor = vendor
    for kind in VENDOR_ERRORS:
        app.exception_handler(kind)(_error_json)
    _add_routes(app, vendor, settings)
    app.mount("/sites", StaticFiles(directory=settings.data_dir / "sites"), name="sites")
    return app


async def _error_json(_request: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, VENDOR_ERRORS) else 500
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)


def _bundle_response(
    vendor: Vendor, key: str, request: Request, now: dt.datetime, tolerance: dt.timedelta
) -> FileResponse:
    path = exchange.hand_out(
        vendor, key, request.client.host if request.client else "", now, tolerance
    )
    name = exchange.bundle_name(peek(key), now)
    return FileResponse(
        path,
        media_type="application/x-tar",
        filename=name,
        background=BackgroundTask(Path(path).unlink, missing_ok=True),
    )


def _add_routes(app: FastAPI, vendor: Vendor, settings: UpdateServiceSettings) -> None:
    tolerance = settings.clock_tolerance

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.format(message="")

    @app.post("/download-key", response_model=None)
    def download_page(
        request: Request, download_key: str = Form(...)
    ) -> FileResponse | HTMLResponse:
        try:
            return _bundle_response(vendor, download_key, request, utcnow(), tolerance)
        except VENDOR_ERRORS as exc:
            message = f'<p role="alert"><strong>Refused:</strong> {html.escape(str(exc))}</p>'
            return HTMLResponse(PAGE.format(message=message), status_code=exc.status)

    @app.get("/download-key")
    def download_page_again() -> RedirectResponse:
        """A refused key leaves this address in the browser's bar: opened again, it is the
        page with the form, not "Method Not Allowed"."""
        return RedirectResponse("/", status_code=303)

    @app.post("/api/v1/bundles", response_model=None)
    def bundles(body: KeyRequest, request: Request) -> FileResponse:
        return _bundle_response(vendor, body.download_key, request, utcnow(), tolerance)

    @app.post("/api/v1/offers")
    def offers(body: KeyRequest) -> dict[str, object]:
        found = exchange.offer(vendor, body.download_key, utcnow(), tolerance)
        releases = [
            {
                "release": a.release.name,
                "kind": a.release.kind.value,
                "version": str(a.release.version),
                "state": a.state.value,
                "reason": a.reason,
            }
            for a in found.assessments
        ]
        return {"site": found.key.site, "appliance": found.key.appliance, "releases": releases}
