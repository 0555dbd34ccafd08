"""The same appliance code against a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.accounts import service as accounts
from bastion.accounts.passwords import Argon2Hasher
from bastion.platform.db.engine import make_engine, migrate, schema_revision, session_factory
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.unit_of_work import UnitOfWork
from tests.integration.test_api import bearer, create_client, get_token
from tests.support.appliance import start_appliance
from tests.support.postgres import PostgresServer, available_server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with available_server() as running:
        yield running


def test_migrations_and_services_run_on_postgresql(server: PostgresServer) -> None:
    engine = make_engine(server.url())
    migrate(engine)
    assert schema_revision(engine) is not None
    actor = Actor(Principal("test", Role.ADMINISTRATOR), "127.0.0.1")
    with UnitOfWork(session_factory(engine)) as uow:
        created = accounts.create_account(
            uow, Argon2Hasher(fast=True), actor, "pg.user", "a long pass phrase", "representative"
        )
        uow.commit()
    with UnitOfWork(session_factory(engine)) as uow:
        assert accounts.get_account(uow, created.id).username == "pg.user"
        assert uow.audit.count("account.create") == 1
        assert not uow.leaves_at_once()  # its rollback is a round trip: on a worker thread
    engine.dispose()


def test_an_appliance_serves_from_postgresql(server: PostgresServer, tmp_path: Path) -> None:
    url = server.url()
    with start_appliance(tmp_path, host="127.0.0.44", extra_args=["--database-url", url]) as app:
        creds = create_client(app, "pg-reader", "--database-url", url)
        token = get_token(app, creds).json()["access_token"]
        with app.client(headers=bearer(token)) as client:
            users = client.get("/api/v1/accounts").json()
    assert [u["username"] for u in users] == ["admin", "pg.user"]
    assert not (app.data_dir / "db" / "bastion.sqlite").exists()


def test_a_postgresql_site_backs_up_and_restores(server: PostgresServer, tmp_path: Path) -> None:
    import io

    from bastion.backups import service as backups
    from bastion.platform.db.models import Base

    engine = make_engine(server.url())
    migrate(engine)
    site = backups.BackupSite(engine, Base.metadata, tmp_path, "pg.example", "1.0.0")
    actor = Actor(Principal("test", Role.ADMINISTRATOR), "127.0.0.1")
    out = io.BytesIO()
    backups.write(site, out, "postgres passphrase")
    with UnitOfWork(session_factory(engine)) as uow:
        accounts.create_account(
            uow,
            Argon2Hasher(fast=True),
            actor,
            "after.backup",
            "a long pass phrase",
            "representative",
        )
        uow.commit()
    report = backups.restore(site, actor, io.BytesIO(out.getvalue()), "postgres passphrase")
    assert report.rows["accounts"] >= 1
    with UnitOfWork(session_factory(engine)) as uow:
        names = [a.username for a in accounts.list_accounts(uow)]
        assert "after.backup" not in names
        # A new row gets a fresh id: the serial counter was moved past the restored ids.
        accounts.create_account(
            uow, Argon2Hasher(fast=True), actor, "next.one", "a long pass phrase", "representative"
        )
        uow.commit()
    engine.dispose()
