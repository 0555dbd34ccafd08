"""The DNS swing's settings as an administrator writes them, with clear refusals; the one
signed update message it sends; what a refusal tells the administrator."""

from __future__ import annotations

import base64
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.failover.dns_swing import (
    DEFAULT_TTL,
    DnsSwing,
    from_settings,
    parse_key,
    parse_server,
    record_type,
    refusal,
    update_message,
)

SECRET = base64.b64encode(b"k" * 32).decode()
KEY_FILE = f'key "bastion-swing" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n'


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "swing.key"
    path.write_text(KEY_FILE)
    return path


def swing(key_file: Path, address: str = "10.0.0.11") -> DnsSwing:
    made = from_settings("10.0.0.53:5353", "example.com", "support.example.com", address, key_file)
    assert made is not None
    return made


def test_the_settings_make_a_swing_with_a_stated_default_ttl(key_file: Path) -> None:
    made = swing(key_file)
    assert (made.server, made.port, made.ttl) == ("10.0.0.53", 5353, 30)
    assert [record_type(a) for a in made.addresses] == ["A"]
    assert made.name == dns.name.from_text("support.example.com")
    assert made.zone == dns.name.from_text("example.com")
    assert DEFAULT_TTL == 30
    assert [record_type(a) for a in swing(key_file, "fd00::11").addresses] == ["AAAA"]
    assert from_settings("", "", "", "", None) is None


def test_the_secret_is_never_in_a_repr_or_str(key_file: Path) -> None:
    made = swing(key_file)
    assert SECRET not in repr(made) and SECRET not in str(made)
    assert str(made) == "support.example.com. -> 10.0.0.11 at 10.0.0.53:5353"


def test_a_setting_given_alone_names_the_others(key_file: Path) -> None:
    with pytest.raises(ValueError, match=r"BASTION_FAILOVER_DNS_ZONE, .*TSIG_KEY_FILE too"):
        from_settings("10.0.0.53", "", "support.example.com", "10.0.0.11", None)


@pytest.mark.parametrize(
    ("server", "zone", "name", "address", "says"),
    [
        ("ns.example.com", "example.com", "a.example.com", "10.0.0.1", "IP address"),
        ("10.0.0.53:99999", "example.com", "a.example.com", "10.0.0.1", "port must be"),
        ("10.0.0.53", "example.com", "a.example.org", "10.0.0.1", "not in the zone"),
        ("10.0.0.53", "example.com", "a.example.com", "10.0.0.300", "not an IP address"),
    ],
)
def test_wrong_settings_are_refused_with_what_is_wrong(
    key_file: Path, server: str, zone: str, name: str, address: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        from_settings(server, zone, name, address, key_file)


def test_a_ttl_out_of_range_and_a_missing_key_file_are_refused(
    key_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="TTL must be"):
        from_settings("10.0.0.53", "example.com", "a.example.com", "10.0.0.1", key_file, 0)
    with pytest.raises(ValueError, match="cannot read the TSIG key file"):
        from_settings("10.0.0.53", "example.com", "a.example.com", "10.0.0.1", tmp_path / "no")


def test_servers_with_and_without_a_port() -> None:
    assert parse_server("10.0.0.53") == ("10.0.0.53", 53)
    assert parse_server("[fd00::53]:5300") == ("fd00::53", 5300)
    assert parse_server("fd00::53") == ("fd00::53", 53)


def test_a_bind_key_file_is_read_and_bad_ones_refused() -> None:
    key = parse_key(KEY_FILE)
    assert (key.name, key.algorithm, key.secret) == ("bastion-swing", "hmac-sha256", SECRET)
    assert parse_key(f"key swing {{ secret {SECRET}; algorithm HMAC-SHA512; }};").name == "swing"
    with pytest.raises(ValueError, match="no key statement"):
        parse_key("secret nothing;")
    with pytest.raises(ValueError, match="algorithm must be"):
        parse_key(KEY_FILE.replace("hmac-sha256", "hmac-md5"))
    with pytest.raises(ValueError, match="not base64"):
        parse_key(KEY_FILE.replace(SECRET, "not*base64"))


@given(st.text(max_size=120))
def test_any_key_text_parses_or_is_refused_with_a_value_error(text: str) -> None:
    try:
        parse_key(text)
    except ValueError:
        return


def test_one_signed_update_replaces_a_and_aaaa_with_this_address(key_file: Path) -> None:
    wire = update_message(swing(key_file)).to_wire()
    key = dns.tsig.Key("bastion-swing", SECRET, "hmac-sha256")
    parsed = dns.message.from_wire(wire, keyring=key)  # the signature verifies
    assert isinstance(parsed, dns.update.UpdateMessage)
    assert parsed.zone[0].name == dns.name.from_text("example.com")
    assert parsed.prerequisite == []
    rows = [(r.name.to_text(), r.deleting, r.rdtype, r.ttl, list(r)) for r in parsed.update]
    site = "support.example.com."
    assert [row[:3] for row in rows] == [
        (site, dns.rdataclass.ANY, dns.rdatatype.A),
        (site, dns.rdataclass.ANY, dns.rdatatype.AAAA),
        (site, None, dns.rdatatype.A),
    ]
    assert rows[2][3] == 30 and [item.to_text() for item in rows[2][4]] == ["10.0.0.11"]


def test_a_refusal_says_what_to_check_and_never_the_secret(key_file: Path) -> None:
    made = swing(key_file)
    assert "allow-update or update-policy" in refusal(made, dns.rcode.REFUSED)
    assert "not the primary server of the zone" in refusal(made, dns.rcode.NOTAUTH)
    assert "(SERVFAIL)" in refusal(made, dns.rcode.SERVFAIL)
    for rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH, dns.rcode.NOTZONE):
        assert SECRET not in refusal(made, rcode)


def test_a_dual_stack_appliance_gives_both_addresses_and_one_update_holds_both(
    key_file: Path,
) -> None:
    made = swing(key_file, " 10.0.0.11, fd00::11 ")
    assert made.shown == "10.0.0.11, fd00::11" and made.held_when_here == {"10.0.0.11", "fd00::11"}
    assert str(made) == "support.example.com. -> 10.0.0.11, fd00::11 at 10.0.0.53:5353"
    parsed = dns.message.from_wire(
        update_message(made).to_wire(), keyring=dns.tsig.Key("bastion-swing", SECRET, "hmac-sha256")
    )
    assert isinstance(parsed, dns.update.UpdateMessage)
    added = [
        (r.rdtype, [item.to_text() for item in r]) for r in parsed.update if r.deleting is None
    ]
    assert added == [(dns.rdatatype.A, ["10.0.0.11"]), (dns.rdatatype.AAAA, ["fd00::11"])]


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("10.0.0.11,10.0.0.11", "given twice"),
        ("10.0.0.11, fd00::0:11, fd00::11", "given twice"),
        ("10.0.0.11, nonsense", "'nonsense' is not an IP address"),
        (", ".join(f"10.0.0.{n}" for n in range(1, 10)), "at most 8 addresses"),
        (" , ", "give this appliance's address"),
    ],
)
def test_addresses_given_twice_too_many_or_wrong_are_refused(
    key_file: Path, address: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        from_settings("10.0.0.53", "example.com", "a.example.com", address, key_file)
