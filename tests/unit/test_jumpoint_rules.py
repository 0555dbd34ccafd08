"""What a vaulted credential and an SSH Jump Item may be."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.jumpoints.rules import (
    JumpointRuleError,
    check_host,
    check_port,
    check_secret,
    check_username,
    clean_name,
    parse_host_key,
)

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJQxhsf8NMa+pLr4hN0eZ2ZzH8c2vWTm5c5fJ7l2vYtC host"


def blob(kind: str, body: bytes = b"\0" * 36) -> str:
    raw = len(kind).to_bytes(4, "big") + kind.encode() + body
    return base64.b64encode(raw).decode()


def test_a_host_key_line_is_read_with_or_without_comment_and_host_names() -> None:
    key = parse_host_key(ED25519)
    assert key.type == "ssh-ed25519" and key.line == ED25519.rsplit(" ", 1)[0]
    assert parse_host_key("[10.0.0.5]:2222 " + ED25519).line == key.line
    assert parse_host_key("  " + ED25519.rsplit(" ", 1)[0] + "\n").line == key.line


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not an OpenSSH public key line"),
        ("AAAAC3NzaC1lZDI1NTE5", "not an OpenSSH public key line"),
        ("ssh-dss " + blob("ssh-dss"), "not an OpenSSH public key line"),
        ("ssh-ed25519 not*base64", "not base64"),
        ("ssh-ed25519 " + blob("ssh-rsa"), "not a ssh-ed25519 key"),
        ("ssh-ed25519 ", "not an OpenSSH public key line"),
    ],
)
def test_what_is_not_a_host_key_is_refused_saying_what_to_paste(text: str, words: str) -> None:
    with pytest.raises(JumpointRuleError, match=words):
        parse_host_key(text)


@given(st.text(max_size=300))
def test_any_text_is_a_host_key_or_a_refusal(text: str) -> None:
    """Never another exception; a key read is written back as the same key."""
    try:
        key = parse_host_key(text)
    except JumpointRuleError:
        return
    assert parse_host_key(key.line) == key


@given(st.sampled_from(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"]), st.binary(max_size=64))
def test_a_key_blob_naming_its_type_round_trips(kind: str, body: bytes) -> None:
    line = f"{kind} {blob(kind, body)}"
    assert parse_host_key(line + " a comment").line == line


def test_hosts_ports_and_user_names() -> None:
    assert check_host(" db.internal.example. ") == "db.internal.example"
    assert check_host("::1") == "::1" and check_host("10.0.0.5") == "10.0.0.5"
    for bad in ("bad host", "-x.example", "a" * 254, "服务器", "host;rm"):
        with pytest.raises(JumpointRuleError, match="not a host name"):
            check_host(bad)
    assert check_port(22) == 22
    for port in (0, 65536, 2**63):
        with pytest.raises(JumpointRuleError, match="1 to 65535"):
            check_port(port)
    assert check_username("deploy.user") == "deploy.user"
    for bad in ("", "-oProxyCommand=x", "a b", "x" * 101, "ünï"):
        with pytest.raises(JumpointRuleError, match="user name"):
            check_username(bad)


def test_secrets_are_checked_by_kind() -> None:
    assert check_secret("password", " spaces kept ") == " spaces kept "
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAA\n-----END OPENSSH PRIVATE KEY-----"
    assert check_secret("private_key", "\n" + key + "\n\n") == key + "\n"
    with pytest.raises(JumpointRuleError, match="not a kind of credential"):
        check_secret("token", "x")
    for bad in ("", "x" * 1025, "a\0b"):
        with pytest.raises(JumpointRuleError, match="1 to 1024 characters"):
            check_secret("password", bad)
    with pytest.raises(JumpointRuleError, match="OpenSSH or PEM key file"):
        check_secret("private_key", "ssh-ed25519 AAAA")


def test_names_keep_any_printable_text() -> None:
    assert clean_name("credential", " Schlüssel für 服务器 ", 100) == "Schlüssel für 服务器"
    with pytest.raises(JumpointRuleError, match="needs a name"):
        clean_name("credential", "   ", 100)
    with pytest.raises(JumpointRuleError, match="printable"):
        clean_name("credential", "a\x1bb", 100)
    with pytest.raises(JumpointRuleError, match="at most 100"):
        clean_name("credential", "x" * 101, 100)
