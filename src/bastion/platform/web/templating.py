"""Jinja2 rendering with what every page needs: the signed-in user, the CSRF token, the
version, and whatever the capabilities add to every signed-in page (an install banner).

Each capability keeps its templates in its own `templates/` folder; they are found by
name, so template names are unique across the appliance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from bastion.platform import build
from bastion.platform.errors import ServiceError, ThrottledError
from bastion.platform.principals import Principal
from bastion.platform.web.csrf import CSRF_COOKIE, new_csrf_token
from bastion.platform.web.errors import status_of

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
PageContext = Callable[[Request], dict[str, Any]]
"""Adds values to pages: the composition root lists those for every signed-in page on
`app.state.page_context`, and those for one template on `app.state.template_context`."""


class Viewer(Protocol):
    """The signed-in person a page is rendered for."""

    @property
    def csrf_token(self) -> str: ...

    @property
    def principal(self) -> Principal: ...


def template_folders() -> list[str]:
    """This package's `templates/` folder first, then every capability's."""
    own = Path(__file__).parent / "templates"
    found = sorted(p for p in PACKAGE_ROOT.glob("*/templates") if p.is_dir())
    return [str(own), *(str(p) for p in found)]


def utc_text(iso: str) -> str:
    """ "2025-06-01 22:00:05 UTC" for an ISO time; the text itself if it is not one."""
    try:
        at = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def breakable(text: object) -> Markup:
    """`text`, escaped, with a line-break opportunity after each comma and dot:
    distinguished names and host names wrap at their seams instead of widening the page."""
    escaped = str(escape(str(text)))  # entities hold neither commas nor dots
    return Markup(escaped.replace(",", ",<wbr>").replace(".", ".<wbr>"))


templates = Jinja2Templates(directory=template_folders())
templates.env.filters["utc"] = utc_text
templates.env.filters["breakable"] = breakable


def render_form(
    request: Request,
    template: str,
    current: Viewer | None,
    error: ServiceError | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page, or the same page again with the service's message and status (nothing was
    committed but the refusal's own record); a throttled attempt says when to retry."""
    if error is None:
        return render(request, template, current, **context)
    uow = getattr(request.state, "uow", None)
    if uow is not None:
        uow.keep_record_of(error)
    response = render(request, template, current, status_of(error), error=str(error), **context)
    if isinstance(error, ThrottledError):
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return response


def render(
    request: Request,
    template: str,
    current: Viewer | None = None,
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
            "product_version": build.site_version(),
            **(_added_context(request, template) if current else {}),
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


def _added_context(request: Request, template: str) -> dict[str, Any]:
    state = request.app.state
    providers = [
        *getattr(state, "page_context", ()),
        *getattr(state, "template_context", {}).get(template, ()),
    ]
    added: dict[str, Any] = {}
    for provide in providers:
        added.update(provide(request))
    return added
