"""On a real PostgreSQL server: no change journal is written, and establishing a
failover pair is refused with the reason, before any peer is contacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bastion.entrypoints import compose
from bastion.failover import journal
from bastion.failover import service as failover
from bastion.failover.rules import PeerAddress
from bastion.platform.db.engine import migrate
from bastion.platform.errors import InvalidInputError
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.settings import ApplianceSettings
from tests.conftest import skip_or_fail
from tests.support.postgres import PostgresServer, find_binaries, postgres_server

pytestmark = pytest.mark.postgres
ACTOR = Actor(Principal("test", Role.ADMINISTRATOR), "127.0.0.1")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    bindir = find_binaries()
    if bindir is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with postgres_server(bindir) as running:  # type: ignore[arg-type]
        yield running


def test_a_postgresql_site_has_no_journal_and_refuses_a_pair(
    server: PostgresServer, tmp_path: Path
) -> None:
    settings = ApplianceSettings(data_dir=tmp_path, database_url=SecretStr(server.url()))
    runtime = compose.build(settings)
    migrate(runtime.engine)
    try:
        assert journal.ensure_triggers(runtime.engine, compose.METADATA) == 0
        with runtime.engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('a', '1')")
            count = connection.exec_driver_sql("SELECT COUNT(*) FROM failover_journal")
            assert count.scalar_one() == 0
        request = failover.EstablishRequest(
            PeerAddress("127.0.0.9", 1), PeerAddress("127.0.0.8", 1)
        )
        setup = runtime.part(failover.FailoverSetup)
        with runtime.uow() as uow, pytest.raises(InvalidInputError, match="embedded SQLite"):
            failover.establish(uow, setup, ACTOR, request)
        assert setup.pair().role.value == "none"
    finally:
        runtime.engine.dispose()
