"""Installs on a PostgreSQL site: the snapshot is pg_dump's, a rollback pg_restore's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from bastion.platform.db.engine import make_engine
from tests.support.appliance import start_appliance
from tests.support.installs import request_install, store_release, wait_idle
from tests.support.postgres import PostgresServer, available_server
from tests.support.releases import project_wheel

pytestmark = pytest.mark.postgres
HOST = "127.0.0.95"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with available_server(host=HOST) as running:
        yield running


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_postgresql_site_is_put_back_after_a_failed_install_then_upgraded(
    server: PostgresServer, tmp_path: Path
) -> None:
    url = server.url()
    out = tmp_path / "wheels"
    broken = project_wheel("1.1.0", out, broken_health=True, new_table="install_probe")
    good = project_wheel("1.2.0", out, new_table="install_probe")
    env = {
        "BASTION_INSTALL_HEALTH_DEADLINE_SECONDS": "30",
        "BASTION_INSTALL_PROBATION_SECONDS": "1",
    }
    args = ["--database-url", url]
    with start_appliance(tmp_path, host=HOST, extra_args=args, env=env) as appliance:
        data = appliance.data_dir
        request_install(data, store_release(data, "site", "1.1.0", broken))
        status = wait_idle(data)
        assert status["history"][-1]["outcome"] == "rolled back"
        assert "install_probe" not in tables(url)
        assert "accounts" in tables(url)

        request_install(data, store_release(data, "site", "1.2.0", good))
        status = wait_idle(data)
        assert status["history"][-1]["outcome"] == "installed"
        assert "install_probe" in tables(url)
        with appliance.client() as client:
            assert client.get("/check_health").json()["version"] == "1.2.0"
