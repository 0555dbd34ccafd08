"""Refusals to establish a failover pair with real appliances over real TLS, where the
other appliance proves the key but must not be paired: it runs another site version (a
release of this source at another version, installed by its own supervisor), or its
clock is off (libfaketime, as the `faketime` command runs a program). Either way the
refusal names what differs, both ways round, and neither appliance takes a role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.test_failover_pair import establish, health, message, set_key
from tests.support.clock import clock_off_env
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.releases import project_wheel
from tests.support.sessions import Site, session_site

SITE = "site.refusals.test"
KEY = "a shared inter-appliance key for refusals"
OTHER_VERSION = "1.1.0"
CLOCK_OFF = "+120s"


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
        # the site's client pooled its connection before the install: not the old version's
        assert site.api.get("/check_health").json()["version"] == OTHER_VERSION
        yield site


@pytest.fixture(scope="module")
def clock_ahead(tmp: Path) -> Iterator[Site]:
    """An appliance whose processes see the time CLOCK_OFF ahead."""
    env = clock_off_env(CLOCK_OFF)
    if env is None:
        skip_or_fail("faketime (libfaketime) is not installed")
        raise AssertionError("unreachable")
    with session_site(tmp, "127.0.0.183", SITE, env) as site:
        set_key(site, KEY)
        yield site


def assert_unpaired(*sites: Site) -> None:
    for site in sites:
        assert health(site)["failover_role"] == "none"
        assert not (site.appliance.data_dir / "state" / "failover.json").exists()


def served_time(site: Site) -> float:
    """The time in the appliance's own `Date` header (its worker's clock, to the second)."""
    with site.appliance.client() as client:
        return parsedate_to_datetime(client.get("/check_health").headers["date"]).timestamp()


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


def test_a_peer_whose_clock_is_off_is_refused_naming_the_difference(
    primary: Site, clock_ahead: Site
) -> None:
    shown = served_time(clock_ahead) - served_time(primary)
    assert 110 <= shown <= 130, f"the faked clock is {shown:.0f} s ahead, not about 120 s"

    status, body = establish(primary, clock_ahead)
    assert status == 409, body
    said = message(body)
    off = re.search(r"clock is (\d+) s ahead of this appliance's", said)
    assert off and 115 <= int(off.group(1)) <= 125, said
    assert "at most 30 s is allowed" in said and "same NTP server" in said
    assert_unpaired(primary, clock_ahead)

    status, body = establish(clock_ahead, primary)  # from the appliance that is ahead
    assert status == 409, body
    said = message(body)
    off = re.search(r"clock is (\d+) s behind this appliance's", said)
    assert off and 115 <= int(off.group(1)) <= 125, said
    assert_unpaired(primary, clock_ahead)
