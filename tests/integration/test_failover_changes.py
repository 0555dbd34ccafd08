"""Batches of changes from one real SQLite site to another: rows as they are now, keys
sealed again by the receiving machine's vault, and a batch applied whole or not at all."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bastion.certificates.key_vault import KeyVault
from bastion.entrypoints.compose import METADATA
from bastion.failover import changes, journal
from bastion.platform.db.engine import make_engine, migrate


def site(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    journal.ensure_triggers(engine, METADATA)
    return engine


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    primary, backup = site(tmp_path / "primary.sqlite"), site(tmp_path / "backup.sqlite")
    yield primary, backup
    primary.dispose()
    backup.dispose()


def add_account(engine: Engine, account_id: int, username: str) -> None:
    """A representative's row as it is stored (on SQLite or PostgreSQL)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, username, display_name, role, password_hash,"
                " must_change_password, disabled, created_at) VALUES (:id, :name, '',"
                " 'representative', 'h', :no, :no, :at)"
            ),
            {"id": account_id, "name": username, "no": False, "at": datetime(2026, 12, 2, 12)},
        )


def as_is(key: bytes, _bound_to: str) -> bytes:
    return key


def pull(
    primary: Engine,
    backup: Engine,
    unseal: changes.KeyTransform = as_is,
    seal: changes.KeyTransform = as_is,
) -> changes.Batch:
    with primary.begin() as connection:
        epoch = journal.epoch(connection)
    _, since = changes.position(backup)
    batch = changes.read(primary, METADATA, epoch, since, unseal)
    changes.apply(backup, METADATA, batch, epoch, seal)
    return batch


def table(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def test_changes_arrive_as_the_rows_are_now_and_deletions_by_absence(
    pair: tuple[Engine, Engine],
) -> None:
    primary, backup = pair
    add_account(primary, 1, "ann")
    add_account(primary, 2, "bob")
    with primary.begin() as connection:
        connection.execute(text("UPDATE accounts SET display_name = 'Ann' WHERE id = 1"))
        connection.execute(text("INSERT INTO account_jump_groups VALUES (1, 'A'), (1, 'B')"))
    batch = pull(primary, backup)
    assert batch.rows == 4  # ann once, though changed twice
    assert table(backup, "SELECT id, username, display_name FROM accounts ORDER BY id") == [
        (1, "ann", "Ann"),
        (2, "bob", ""),
    ]
    with primary.begin() as connection:
        connection.execute(text("DELETE FROM account_jump_groups WHERE jump_group = 'A'"))
        connection.execute(text("UPDATE accounts SET username = 'bobby' WHERE id = 2"))
    pull(primary, backup)
    assert table(backup, "SELECT jump_group FROM account_jump_groups") == [("B",)]
    assert table(backup, "SELECT username FROM accounts ORDER BY id") == [("ann",), ("bobby",)]
    assert table(backup, "SELECT COUNT(*) FROM failover_journal") == [(0,)]
    assert pull(primary, backup).rows == 0  # nothing new


def test_a_sealed_key_is_sealed_again_by_the_receiving_vault(pair: tuple[Engine, Engine]) -> None:
    primary, backup = pair
    theirs, ours = KeyVault(secrets.token_bytes(32)), KeyVault(secrets.token_bytes(32))
    pem = b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n"
    with primary.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO certificates (id, fingerprint, subject, names, issuer, key_type,"
                " key_size, chain_pem, private_key, pending_request, is_default, source,"
                " created_at) VALUES (1, 'ab12', 's', '[]', 'i', 'ec', 256, '', :key, 0, 1,"
                " 'self-signed', '2026-12-02 12:00:00')"
            ),
            {"key": theirs.seal(pem, "ab12")},
        )
    pull(primary, backup, unseal=theirs.unseal, seal=ours.seal)
    ((sealed,),) = table(backup, "SELECT private_key FROM certificates")
    assert isinstance(sealed, bytes) and ours.unseal(sealed, "ab12") == pem


def test_a_vaulted_credential_is_sealed_again_by_the_receiving_vault(
    pair: tuple[Engine, Engine],
) -> None:
    primary, backup = pair
    theirs, ours = KeyVault(secrets.token_bytes(32)), KeyVault(secrets.token_bytes(32))
    with primary.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO vault_credentials (id, seal_id, name, kind, secret, created_at,"
                " created_by, updated_at) VALUES (1, 'c0ffee', 'ünïcødé root', 'password',"
                " :secret, '2026-12-02 12:00:00', 'admin', '2026-12-02 12:00:00')"
            ),
            {"secret": theirs.seal("pässwörd".encode(), "c0ffee")},
        )
    pull(primary, backup, unseal=theirs.unseal, seal=ours.seal)
    ((name, sealed),) = table(backup, "SELECT name, secret FROM vault_credentials")
    assert name == "ünïcødé root" and isinstance(sealed, bytes)
    assert ours.unseal(sealed, "c0ffee") == "pässwörd".encode()


def test_a_batch_that_cannot_be_applied_changes_nothing(pair: tuple[Engine, Engine]) -> None:
    primary, backup = pair
    add_account(primary, 1, "ann")
    pull(primary, backup)
    with primary.begin() as connection:
        epoch = journal.epoch(connection)
        connection.execute(text("UPDATE accounts SET display_name = 'changed' WHERE id = 1"))
    batch = changes.read(primary, METADATA, epoch, changes.position(backup)[1], as_is)
    broken = changes.Batch(
        batch.through,
        batch.head,
        {
            **batch.tables,
            "account_jump_groups": {
                "keys": [[99, "X"]],
                "rows": [{"account_id": 99, "jump_group": "X"}],  # no account 99
            },
        },
    )
    before = changes.position(backup)
    with pytest.raises(ValueError, match="broken references"):
        changes.apply(backup, METADATA, broken, epoch, as_is)
    assert changes.position(backup) == before
    assert table(backup, "SELECT display_name FROM accounts") == [("",)]
    assert table(backup, "SELECT COUNT(*) FROM account_jump_groups") == [(0,)]
    with backup.connect() as connection:  # foreign keys are on again for the next user
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_a_position_the_journal_no_longer_reaches_asks_for_a_snapshot(
    pair: tuple[Engine, Engine],
) -> None:
    primary, _ = pair
    for n in range(5):
        add_account(primary, n + 1, f"user{n}")
    with primary.begin() as connection:
        epoch = journal.epoch(connection)
        journal.bound(connection, keep=2)
    with pytest.raises(changes.SnapshotNeededError):
        changes.read(primary, METADATA, epoch, 0, as_is)
    with pytest.raises(changes.SnapshotNeededError):
        changes.read(primary, METADATA, "another epoch", 3, as_is)
