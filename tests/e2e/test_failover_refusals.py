"""Refusals to establish a failover pair with real appliances over real TLS, where the
other appliance proves the key but must not be paired: it runs another site version (a
release of this source at another version, installed by its own supervisor). The
refusal names what differs, both ways round, and neither appliance takes a role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_failover_pair import establish, health, message, set_key
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel
from tests.support.sessions import Site, session_site

SITE = "site.refusals.test"
KEY = "a shared inter-appliance key for refusals"
OTHER_VERSION = "1.1.0"


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refusals")


@pytest.fixture(scope="module")
def primary(tmp: Path) -> Iterator[Site]:
    with session_site(tmp, "127.0.0.181", SITE) as site:
        set_key(site, KEY)
        yield site


@pytest.fixture(scope="module")
def other_version(tmp: Path) -> Iterator[Site]:
    """An appliance that installed a site release of this source at another version."""
    wheel = project_wheel(OTHER_VERSION, tmp / "wheels")
    soon = {"BASTION_INSTALL_PROBATION_SECONDS": "1"}
    with session_site(tmp, "127.0.0.182", SITE, soon) as site:
        set_key(site, KEY)
        data = site.appliance.data_dir
        request_install(data, store_release(data, "site", OTHER_VERSION, wheel, site=SITE))
        last = wait_idle(data)["history"][-1]
        assert last["outcome"] == "installed", last
        assert health(site)["version"] == OTHER_VERSION
        yield site


def assert_unpaired(*sites: Site) -> None:
    for site in sites:
        assert health(site)["failover_role"] == "none"
        assert not (site.appliance.data_dir / "state" / "failover.json").exists()


def test_a_peer_of_another_version_is_refused_naming_both(
    primary: Site, other_version: Site
) -> None:
    mine = str(health(primary)["version"])
    assert mine != OTHER_VERSION

    status, body = establish(primary, other_version)
    assert status == 409, body
    said = message(body)
    assert f"runs site version {OTHER_VERSION}, this appliance {mine}" in said, said
    assert "a pair must run the same version" in said and "Update one of them" in said
    assert_unpaired(primary, other_version)

    status, body = establish(other_version, primary)  # the other way round
    assert status == 409, body
    said = message(body)
    assert f"runs site version {mine}, this appliance {OTHER_VERSION}" in said, said
    assert_unpaired(primary, other_version)
