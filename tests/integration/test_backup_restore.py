"""Backups of a real SQLite site: round trip, all-or-nothing restore, refusals."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.accounts import service as accounts
from bastion.accounts.passwords import Argon2Hasher
from bastion.accounts.rules import LockoutPolicy
from bastion.backups import service as backups
from bastion.network.repository import ListenAddressRepository
from bastion.platform.db.engine import make_engine, migrate, session_factory
from bastion.platform.db.models import Base
from bastion.platform.errors import InvalidInputError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.unit_of_work import UnitOfWork

ACTOR = Actor(Principal("tester", Role.ADMINISTRATOR), "127.0.0.1")
HASHER = Argon2Hasher(fast=True)
PASSPHRASE = "correct horse battery staple"


def make_site(root: Path, version: str = "1.0.0") -> backups.BackupSite:
    (root / "db").mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{root / 'db' / 'bastion.sqlite'}")
    migrate(engine)
    return backups.BackupSite(engine, Base.metadata, root, "site.example", version)


def add_account(site: backups.BackupSite, name: str) -> None:
    with UnitOfWork(session_factory(site.engine)) as uow:
        accounts.create_account(uow, HASHER, ACTOR, name, "a long pass phrase", "representative")
        uow.commit()


def usernames(site: backups.BackupSite) -> list[str]:
    with UnitOfWork(session_factory(site.engine)) as uow:
        return [a.username for a in accounts.list_accounts(uow)]


def backup_bytes(site: backups.BackupSite, passphrase: str = PASSPHRASE) -> bytes:
    out = io.BytesIO()
    backups.write(site, out, passphrase)
    return out.getvalue()


def test_a_restore_brings_back_the_site_as_it_was(tmp_path: Path) -> None:
    site = make_site(tmp_path / "a")
    add_account(site, "alice")
    data = backup_bytes(site)
    add_account(site, "bob")
    other = make_site(tmp_path / "b")
    report = backups.restore(other, ACTOR, io.BytesIO(data), PASSPHRASE)
    assert usernames(other) == ["alice"]
    assert report.rows["accounts"] == 1 and report.migrated_from is None
    assert report.automatic_backup.exists()
    with UnitOfWork(session_factory(other.engine)) as uow:
        actions = [e.action for e in uow.audit.page(10, 0)]
    assert actions[0] == "backup.restore" and "account.create" in actions


def test_the_automatic_backup_restores_what_was_replaced(tmp_path: Path) -> None:
    site = make_site(tmp_path / "a")
    add_account(site, "alice")
    other = make_site(tmp_path / "b")
    add_account(other, "carol")
    report = backups.restore(other, ACTOR, io.BytesIO(backup_bytes(site)), PASSPHRASE)
    with report.automatic_backup.open("rb") as previous:
        backups.restore(other, ACTOR, previous, PASSPHRASE)
    assert usernames(other) == ["carol"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b, "passphrase is wrong"),
        (lambda b: b[: len(b) // 2], "cut short"),
        (lambda b: b[:300] + bytes([b[300] ^ 1]) + b[301:], "damaged"),
        (lambda b: b"PK\x03\x04 not a backup at all", "not a Bastion backup"),
    ],
)
def test_a_bad_upload_changes_nothing(tmp_path: Path, damage: object, message: str) -> None:
    site = make_site(tmp_path / "a")
    add_account(site, "alice")
    data = damage(backup_bytes(site))  # type: ignore[operator]
    other = make_site(tmp_path / "b")
    add_account(other, "carol")
    passphrase = "wrong passphrase" if message == "passphrase is wrong" else PASSPHRASE
    with pytest.raises(InvalidInputError, match=message) as raised:
        backups.restore(other, ACTOR, io.BytesIO(data), passphrase)
    assert "Nothing was changed" in str(raised.value)
    assert usernames(other) == ["carol"]
    assert not (other.data_dir / backups.AUTOMATIC_DIR).exists()


def test_a_backup_from_newer_software_is_refused_naming_both_versions(tmp_path: Path) -> None:
    newer = make_site(tmp_path / "a", version="2.0.0")
    data = backup_bytes(newer)
    site = make_site(tmp_path / "b")
    with pytest.raises(InvalidInputError, match=r"2\.0\.0.*1\.0\.0|1\.0\.0.*2\.0\.0"):
        backups.restore(site, ACTOR, io.BytesIO(data), PASSPHRASE)


def test_live_sessions_end_and_the_machines_own_addresses_stay(tmp_path: Path) -> None:
    from bastion.accounts import sign_in as auth
    from bastion.accounts.passwords import PasswordChecks
    from bastion.accounts.sign_in import SessionLimits
    from bastion.network import service as network

    site = make_site(tmp_path / "a")
    add_account(site, "alice")
    data = backup_bytes(site)
    other = make_site(tmp_path / "b")
    add_account(other, "carol")
    units = session_factory(other.engine)
    with UnitOfWork(units) as uow:
        network.ensure_startup_addresses(uow, ["127.0.0.12:8443"])
        uow.commit()
    checks = PasswordChecks(HASHER, at_once=1)
    signing_in = auth.sign_in(
        lambda: UnitOfWork(units), checks, LockoutPolicy(), "carol", "a long pass phrase", "::1"
    )
    asyncio.run(signing_in)
    report = backups.restore(other, ACTOR, io.BytesIO(data), PASSPHRASE)
    assert report.sessions_ended == 1
    with UnitOfWork(session_factory(other.engine)) as uow:
        assert [(r.host, r.port) for r in uow.repository(ListenAddressRepository).all()] == [
            ("127.0.0.12", 8443)
        ]
        limits = SessionLimits(timedelta(minutes=5), timedelta(hours=1))
        assert auth.active_session_count(uow, limits) == 0


def test_a_backup_of_an_older_schema_is_migrated_forward(tmp_path: Path) -> None:
    from bastion.platform.db.engine import migrate_to

    (tmp_path / "old" / "db").mkdir(parents=True)
    engine = make_engine(f"sqlite:///{tmp_path / 'old' / 'db' / 'bastion.sqlite'}")
    migrate_to(engine, "0001")
    old = backups.BackupSite(engine, Base.metadata, tmp_path / "old", "site.example", "1.0.0")
    add_account(old, "veteran")
    data = backup_bytes(old)
    site = make_site(tmp_path / "new")
    report = backups.restore(site, ACTOR, io.BytesIO(data), PASSPHRASE)
    assert report.migrated_from == "0001"
    assert usernames(site) == ["veteran"]
