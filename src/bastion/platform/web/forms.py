"""What every page's forms share: a form field, the redirect after a post, safe targets,
and an answer to a reload of a form's address."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse

FormText = Annotated[str, Form()]


def redirect(url: str) -> RedirectResponse:
    """See Other: the browser fetches `url` with GET, so a reload never posts again."""
    return RedirectResponse(url, status_code=303)


def local_path(target: str | None) -> str | None:
    """`target` when it is a path on this site; never another host (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ch.isspace() or ord(ch) < 0x20 for ch in target):
        return None
    return target


def reloads_go_to(router: APIRouter, page: str, *actions: str) -> None:
    """Let each form action in `actions` answer GET with a 303 to `page`.

    A form refused and shown again leaves its action's address in the browser's bar;
    opening that address again is a GET, which would otherwise read "Method Not Allowed".
    The answer reads and changes nothing: it only leads back to the page with the form.
    """

    def back_to_page() -> RedirectResponse:
        return redirect(page)

    for action in actions:
        router.add_api_route(
            action, back_to_page, methods=["GET"], include_in_schema=False, name=f"reload {action}"
        )
