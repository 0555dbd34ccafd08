"""An installer that names the address to dial for its site (`site_address`), as an
appliance's check of itself makes one: registration goes to that address over real
TLS, and the certificate is still checked as the site URL's host, against the
installer's anchors only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.agents.installation import Installation, InstallError, SiteUnreachableError
from bastion.agents.installation import install as install_from
from bastion.platform import build
from tests.integration.test_sessions import HOST, SITE, Site, site

__all__ = ["site"]
pytestmark = pytest.mark.anyio


async def test_registration_dials_the_named_address_and_checks_the_site_name(
    site: Site, tmp_path: Path
) -> None:
    made = await site.admin.post("/api/v1/jump-clients/installers", json={"mode": "active"})
    assert made.status_code == 201, made.text
    body = json.loads(made.json()["installer"])
    body["anchors"] = site.anchors  # the CA of this listener's certificate
    body["site_url"] = f"https://{SITE}:{site.port}"  # a name that leads nowhere here

    def install(state: str, **changed: Any) -> Installation:
        path = tmp_path / f"{state}.json"
        path.write_text(json.dumps({**body, **changed}))
        installed = install_from(path, tmp_path / state, build.site_version())
        assert isinstance(installed, Installation)
        return installed

    with pytest.raises(
        SiteUnreachableError, match=f"Cannot register with the site at https://{SITE}"
    ):
        await asyncio.to_thread(install, "by-name")
    other = f"https://other.example.test:{site.port}"
    with pytest.raises(InstallError, match="does not present a certificate the installer's"):
        await asyncio.to_thread(install, "misnamed", site_address=HOST, site_url=other)
    assert (await site.admin.get("/api/v1/jump-clients")).json()["total"] == 0

    installed = await asyncio.to_thread(install, "dialled", site_address=HOST)
    listed = (await site.admin.get("/api/v1/jump-clients")).json()
    assert [c["client_id"] for c in listed["clients"]] == [installed.client_id]
    assert installed.site == SITE
