"""Drive the appliance's HTML forms the way a browser does: cookies and CSRF tokens."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, f"no CSRF token in {page.url}"
    return match.group(1)


def submit(client: httpx.Client, page_url: str, action: str, **fields: str) -> httpx.Response:
    """Open `page_url`, take its CSRF token and post `fields` to `action`."""
    token = csrf_of(client.get(page_url))
    return client.post(action, data={"csrf_token": token, **fields})


def sign_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return submit(client, "/login", "/login", username=username, password=password)


def change_password(client: httpx.Client, current: str, new: str) -> httpx.Response:
    return submit(
        client,
        "/login/change-password",
        "/login/change-password",
        current_password=current,
        new_password=new,
        confirm_password=new,
    )
