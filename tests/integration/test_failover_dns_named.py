"""The DNS swing against a real named (Debian bind9): the update points the name here, a
wrong TSIG secret or key name is refused with what to check and changes nothing, a server
that does not answer is named unreachable, and the periodic check repairs a record that
was changed behind the primary's back."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.name
import pytest

from bastion.failover import dns_swing
from bastion.failover.dns_swing import DnsRefusedError, DnsSwing, DnsUnreachableError, TsigKey
from bastion.failover.rules import Role
from tests.conftest import skip_or_fail
from tests.support import named

WRONG_SECRET = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[named.NameServer]:
    if not named.available():
        skip_or_fail("named (Debian bind9) is not installed")
    with named.name_server(tmp_path_factory.mktemp("named"), site="10.0.0.1") as running:
        yield running


def swing(server: named.NameServer, address: str) -> DnsSwing:
    made = dns_swing.from_settings(
        server.address, server.zone, f"site.{server.zone}", address, server.key_file
    )
    assert made is not None
    return made


def test_the_update_points_the_name_here_and_replaces_both_families(
    server: named.NameServer,
) -> None:
    dns_swing.point_here(swing(server, "fd00::2"))
    assert dns_swing.held(swing(server, "10.0.0.2")) == {"fd00::2"}
    dns_swing.point_here(swing(server, "10.0.0.2"))
    assert dns_swing.held(swing(server, "10.0.0.2")) == {"10.0.0.2"}


def test_a_dual_stack_appliance_points_the_name_at_both_its_addresses(
    server: named.NameServer, tmp_path: Path
) -> None:
    both = swing(server, "10.0.0.12,fd00::12")
    status = dns_swing.swing_here(both, tmp_path)
    assert status is not None and status.ok and "(10.0.0.12, fd00::12)" in status.message
    assert dns_swing.held(both) == {"10.0.0.12", "fd00::12"}
    kept = dns_swing.keep_here(both, tmp_path, Role.PRIMARY)
    assert kept == status  # the name already holds both: nothing sent again
    dns_swing.point_here(swing(server, "10.0.0.12"))  # one of them lost behind its back
    repaired = dns_swing.keep_here(both, tmp_path, Role.PRIMARY)
    assert repaired is not None and repaired.ok
    assert dns_swing.held(both) == {"10.0.0.12", "fd00::12"}
    dns_swing.point_here(swing(server, "10.0.0.13"))  # the other appliance takes the name
    assert dns_swing.held(both) == {"10.0.0.13"}


def test_a_wrong_secret_or_key_is_refused_with_what_to_check_and_changes_nothing(
    server: named.NameServer,
) -> None:
    right = swing(server, "10.0.0.3")
    dns_swing.point_here(right)
    wrong = replace(swing(server, "10.0.0.4"), key=replace(right.key, secret=WRONG_SECRET))
    with pytest.raises(DnsRefusedError, match=r"refused the update: the TSIG key .*BADSIG"):
        dns_swing.point_here(wrong)
    unknown = replace(wrong, key=TsigKey("unknown", "hmac-sha256", server.secret))
    with pytest.raises(DnsRefusedError, match=r"does not know the TSIG key unknown \(BADKEY"):
        dns_swing.point_here(unknown)
    assert dns_swing.held(right) == {"10.0.0.3"}


def test_a_zone_the_server_does_not_hold_is_refused_as_not_authoritative(
    server: named.NameServer,
) -> None:
    other = replace(swing(server, "10.0.0.5"), zone=dns.name.from_text("other.test"))
    with pytest.raises(DnsRefusedError, match=r"\(NOTAUTH\): it is not the primary server"):
        dns_swing.point_here(other)


def test_a_server_that_does_not_answer_is_unreachable(server: named.NameServer) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        quiet = replace(swing(server, "10.0.0.6"), port=port, timeout=0.5)
        with pytest.raises(DnsUnreachableError, match=r"did not answer within 0\.5 s"):
            dns_swing.point_here(quiet)
    with pytest.raises(DnsUnreachableError, match="is unreachable"):
        dns_swing.point_here(quiet)  # nothing listens there any more


def test_taking_over_records_the_outcome_and_the_check_repairs_the_name(
    server: named.NameServer, tmp_path: Path
) -> None:
    here = swing(server, "10.0.0.7")
    status = dns_swing.swing_here(here, tmp_path)
    assert status is not None and status.ok and "points here (10.0.0.7)" in status.message
    assert dns_swing.read_status(tmp_path) == status

    dns_swing.point_here(swing(server, "10.0.0.8"))  # changed behind its back
    assert dns_swing.keep_here(here, tmp_path, Role.BACKUP) is None
    assert dns_swing.held(here) == {"10.0.0.8"}
    kept = dns_swing.keep_here(here, tmp_path, Role.PRIMARY)
    assert kept is not None and kept.ok and dns_swing.held(here) == {"10.0.0.7"}

    wrong = replace(here, key=replace(here.key, secret=WRONG_SECRET))
    dns_swing.point_here(swing(server, "10.0.0.8"))
    failed = dns_swing.swing_here(wrong, tmp_path)  # never raises
    assert failed is not None and not failed.ok and "BADSIG" in failed.message
    assert WRONG_SECRET not in failed.message and server.secret not in failed.message
    repaired = dns_swing.keep_here(here, tmp_path, Role.PRIMARY)
    assert repaired is not None and repaired.ok and dns_swing.held(here) == {"10.0.0.7"}
