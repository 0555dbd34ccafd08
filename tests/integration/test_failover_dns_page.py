"""`/login > Management > Failover` shows the DNS swing an appliance is given and its last
update (a refusal with what to check); an appliance given only part of it does not start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app
from bastion.failover import dns_swing
from bastion.failover.service import FailoverSetup
from bastion.platform.settings import ApplianceSettings
from tests.integration.test_pages import Client, RecordingListeners

# The signed-in administrator of the in-process appliance below, as the other pages use it:
from tests.integration.test_pages import admin as admin
from tests.integration.test_pages import anyio_backend as anyio_backend
from tests.integration.test_pages import browser as browser
from tests.support.named import key_clause

pytestmark = pytest.mark.anyio
FAILOVER = "/login/management/failover"
SECRET = "c3dpbmcgc2VjcmV0IG5ldmVyIHNob3du"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    key_file = tmp_path / "swing.key"
    key_file.write_text(key_clause("bastion-swing", SECRET))
    settings = ApplianceSettings(
        data_dir=tmp_path / "appliance",
        listen=["127.0.0.1:8443"],
        password_hash_fast=True,
        ntp_server_default="",
        ntp_timeout_seconds=0.2,
        failover_dns_server="127.0.0.1:1",  # nothing listens there
        failover_dns_zone="example.com",
        failover_dns_name="support.example.com",
        failover_dns_address="10.0.0.11, fd00::11",  # a dual-stack appliance
        failover_dns_tsig_key_file=key_file,
    )
    runtime = compose.build(settings)
    initialise(runtime)
    compose.add_network(runtime, RecordingListeners())
    runtime.serving = True
    yield create_app(runtime)
    runtime.engine.dispose()


async def test_the_page_shows_the_dns_swing_and_its_last_update(
    app: FastAPI, admin: Client
) -> None:
    page = await admin.get(FAILOVER)
    shown = "<code>support.example.com</code> &rarr; <code>10.0.0.11, fd00::11</code>"
    assert shown in page.text
    assert "TTL 30 s" in page.text and "last update: none yet" in page.text

    setup = app.state.runtime.part(FailoverSetup)
    status = dns_swing.swing_here(setup.dns_swing, setup.state_dir)
    assert status is not None and not status.ok
    page = await admin.get(FAILOVER)
    assert "<strong>failed</strong>" in page.text and "is unreachable" in page.text
    assert SECRET not in page.text


def test_an_appliance_given_part_of_the_dns_swing_refuses_to_start(tmp_path: Path) -> None:
    settings = ApplianceSettings(
        data_dir=tmp_path / "appliance", failover_dns_server="10.0.0.53", password_hash_fast=True
    )
    with pytest.raises(SystemExit, match=r"BASTION_FAILOVER_DNS_\*: .*DNS_ZONE, .*too"):
        compose.build(settings)
