"""The endpoint's key: made once, private, and the signatures that name site and client."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from bastion.agents.errors import IdentityError, WakeRefusedError
from bastion.agents.identity import load_or_create, verify_hello
from bastion.agents.protocol import WakeCall
from bastion.agents.wake import WakeGuard, make_wake, wake_key


def test_the_key_is_made_once_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "identity.pem"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create(path)
    assert again.public_key == first.public_key and again.client_id == first.client_id
    assert first.client_id.startswith("jc_") and "PRIVATE" not in repr(first)
    assert list(path.parent.iterdir()) == [path]  # no temporary files left


def test_a_broken_key_file_says_to_reinstall(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    path.write_text("not a key")
    with pytest.raises(IdentityError, match="Reinstall the Jump Client"):
        load_or_create(path)


def test_a_hello_signature_holds_only_for_its_site_client_and_nonce(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "k.pem")
    other = load_or_create(tmp_path / "other.pem")
    nonce = bytes(range(32))
    signature = identity.sign_hello("site.example", nonce)
    key, cid = identity.public_key, identity.client_id
    assert verify_hello(key, "site.example", cid, nonce, signature)
    assert not verify_hello(key, "other.example", cid, nonce, signature)
    assert not verify_hello(key, "site.example", cid, bytes(32), signature)
    assert not verify_hello(key, "site.example", other.client_id, nonce, signature)
    assert not verify_hello(other.public_key, "site.example", cid, nonce, signature)
    assert not verify_hello(b"short", "site.example", cid, nonce, signature)


def _guard(client_id: str = "jc_abc", secret: bytes = b"s" * 32) -> WakeGuard:
    guard = WakeGuard(client_id)
    guard.key = wake_key(secret, client_id)
    return guard


def test_a_fresh_wake_from_the_site_is_accepted_once() -> None:
    guard, now = _guard(), time.time()
    call = make_wake(wake_key(b"s" * 32, "jc_abc"), "jc_abc", now)
    guard.check(call, now + 1)
    with pytest.raises(WakeRefusedError, match="replay"):
        guard.check(call, now + 2)


def test_wakes_that_are_forged_stale_or_for_another_client_are_refused() -> None:
    now = time.time()
    forged = make_wake(wake_key(b"x" * 32, "jc_abc"), "jc_abc", now)
    with pytest.raises(WakeRefusedError, match="not signed"):
        _guard().check(forged, now)
    stale = make_wake(wake_key(b"s" * 32, "jc_abc"), "jc_abc", now - 3600)
    with pytest.raises(WakeRefusedError, match="stale"):
        _guard().check(stale, now)
    other = make_wake(wake_key(b"s" * 32, "jc_def"), "jc_def", now)
    with pytest.raises(WakeRefusedError, match="for jc_def"):
        _guard().check(other, now)
    call = make_wake(wake_key(b"s" * 32, "jc_abc"), "jc_abc", now)
    tampered = WakeCall(
        client_id="jc_abc", issued_at=call.issued_at + 1, nonce=call.nonce, mac=call.mac
    )
    with pytest.raises(WakeRefusedError, match="not signed"):
        _guard().check(tampered, now)


def test_no_wake_is_accepted_before_the_first_check_in() -> None:
    call = make_wake(wake_key(b"s" * 32, "jc_abc"), "jc_abc", time.time())
    with pytest.raises(WakeRefusedError, match="not checked in"):
        WakeGuard("jc_abc").check(call, time.time())
