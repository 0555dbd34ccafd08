"""`/login > Management > Security` in process: the inter-appliance key's field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_pages import Browser, Client, post_form

# The in-process appliance and its signed-in administrator, as the other pages use them:
from tests.integration.test_pages import admin as admin
from tests.integration.test_pages import anyio_backend as anyio_backend
from tests.integration.test_pages import app as app
from tests.integration.test_pages import browser as browser

pytestmark = pytest.mark.anyio
PAGE = "/login/management/security"
KEY = "a shared inter-appliance key"


async def test_the_key_is_set_on_the_security_page_and_stored_sealed(
    admin: Client, tmp_path: Path
) -> None:
    page = await admin.get(PAGE)
    assert page.status_code == 200 and "No key is set." in page.text
    assert 'href="/login/management/security"' in page.text  # in the navigation

    refused = await post_form(admin, PAGE, f"{PAGE}/key", key="short", confirm_key="short")
    assert refused.status_code == 400 and "at least 16 characters" in refused.text
    differ = await post_form(admin, PAGE, f"{PAGE}/key", key=KEY, confirm_key=KEY + "!")
    assert differ.status_code == 400 and "The two keys differ" in differ.text

    saved = await post_form(admin, PAGE, f"{PAGE}/key", key=KEY, confirm_key=KEY)
    assert saved.status_code == 200 and "The inter-appliance key is set." in saved.text
    assert "A key is set." in (await admin.get(PAGE)).text
    sealed = tmp_path / "appliance" / "state" / "inter-appliance-key.sealed"
    assert KEY.encode() not in sealed.read_bytes()


async def test_only_an_administrator_sees_the_page(browser: Browser) -> None:
    answer = await browser().get(PAGE)
    assert answer.status_code in (303, 401, 403)
