"""The credential vault in backups: a secret leaves the appliance only inside the
encrypted backup, and is sealed again with the key vault of the appliance that restores
it (each appliance has its own master key)."""

from __future__ import annotations

import io
import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.backups import service as backups
from bastion.certificates.key_vault import KeyVault, KeyVaultError
from bastion.jumpoints import service as jumpoints
from bastion.jumpoints.service import JumpointsSetup, SshItemView
from bastion.platform.db.engine import make_engine, migrate, session_factory
from bastion.platform.db.models import Base
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.unit_of_work import UnitOfWork

ACTOR = Actor(Principal("tester", Role.ADMINISTRATOR), "127.0.0.1")
PASSPHRASE = "correct horse battery staple"
SECRET = "pass phrase of the db server " + secrets.token_hex(8)


def appliance(root: Path) -> tuple[backups.BackupSite, JumpointsSetup]:
    (root / "db").mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{root / 'db' / 'bastion.sqlite'}")
    migrate(engine)
    vault = KeyVault(secrets.token_bytes(32))
    site = backups.BackupSite(
        engine, Base.metadata, root, "site.example", "1.0.0", vault.unseal, vault.seal
    )
    return site, JumpointsSetup(vault.seal, vault.unseal)


def item_using(credential_id: int) -> SshItemView:
    now = datetime.now(UTC)
    return SshItemView(
        1, "db", 1, "jp", "db.internal", 22, "ops", credential_id, "", "ssh-ed25519 AAAA",
        "", "", "", now, "tester",
    )  # fmt: skip


def test_a_restored_secret_opens_with_the_new_appliances_key_vault_only(tmp_path: Path) -> None:
    source, source_vault = appliance(tmp_path / "a")
    with UnitOfWork(session_factory(source.engine)) as uow:
        added = jumpoints.add_credential(uow, source_vault, ACTOR, "db", "password", SECRET)
        uow.commit()
    stored = sqlite3.connect(tmp_path / "a" / "db" / "bastion.sqlite").execute(
        "SELECT secret FROM vault_credentials"
    )
    assert SECRET.encode() not in stored.fetchone()[0]  # sealed at rest

    out = io.BytesIO()
    backups.write(source, out, PASSPHRASE)
    assert SECRET.encode() not in out.getvalue()  # the backup is encrypted too
    target, target_vault = appliance(tmp_path / "b")
    backups.restore(target, ACTOR, io.BytesIO(out.getvalue()), PASSPHRASE)

    with UnitOfWork(session_factory(target.engine)) as uow:
        assert [c.name for c in jumpoints.list_credentials(uow)] == ["db"]
        reached = jumpoints.ssh_target(uow, target_vault, item_using(added.id))
        assert reached.password == SECRET and reached.private_key is None
        with pytest.raises(KeyVaultError):  # sealed again: the old master key opens nothing
            jumpoints.ssh_target(uow, source_vault, item_using(added.id))
