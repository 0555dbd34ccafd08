"""What every page's forms share: a form field, the redirect after a post, safe targets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form
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
