"""Jinja2 rendering with what every page needs: the signed-in user, CSRF token, version,
and the banner announcing a scheduled install (R5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from bastion import release
from bastion.adapters.web.deps import CSRF_COOKIE, new_csrf_token
from bastion.adapters.web.errors import status_of
from bastion.adapters.web.install_views import banner, when
from bastion.services import installs
from bastion.services.auth import CurrentSession
from bastion.services.errors import ServiceError, ThrottledError

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["utc"] = when


def render_form(
    request: Request,
    template: str,
    current: CurrentSession | None,
    error: ServiceError | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page, or the same page again with the service's message and status (nothing was
    committed); a throttled attempt says when to retry."""
    if error is None:
        return render(request, template, current, **context)
    response = render(request, template, current, status_of(error), error=str(error), **context)
    if isinstance(error, ThrottledError):
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return response


def render(
    request: Request,
    template: str,
    current: CurrentSession | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page; without a session, a pre-session CSRF cookie protects its forms."""
    csrf = current.csrf_token if current else request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    response = templates.TemplateResponse(
        request,
        template,
        {
            "current": current,
            "principal": current.principal if current else None,
            "csrf_token": csrf,
            "product_version": release.site_version(),
            "install_banner": _install_banner(request) if current else None,
            **context,
        },
        status_code=status_code,
    )
    if current is None:
        response.set_cookie(
            CSRF_COOKIE, csrf, secure=True, httponly=True, samesite="strict", path="/"
        )
    response.headers["Cache-Control"] = "no-store"
    return response


def _install_banner(request: Request) -> str | None:
    """A small file read per page: what the supervisor has scheduled, if anything."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return None
    return banner(installs.pending(runtime.settings.data_dir))
