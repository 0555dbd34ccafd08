"""The gateway's ports on the site's database (real SQLite): who may connect, and a
presence batch written by one statement per set of changed columns."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine, Table, create_engine, insert, select
from sqlalchemy.orm import sessionmaker

from bastion.agents.protocol import CommandResult, Cpu, Statistics
from bastion.jump_clients.directory import ClientRecord
from bastion.jump_clients.models import JumpClientRow
from bastion.jump_clients.presence import PresenceBatch, PresenceUpdate
from bastion.jump_clients.store import DatabaseDirectory, DatabaseSink
from bastion.jump_clients.upgrades import UPGRADE

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def client_row(name: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "client_id": name, "public_key": name.encode().ljust(32, b"k"), "name": name,
        "mode": "active", "jump_group": "", "tag": "", "comments": "", "endpoint": name,
        "hostname": "", "fqdn": "", "os": "", "console_user": "", "version": "1.0.0",
        "revision": "", "anchors": "[]", "statistics": "{}", "address": "",
        "online": False, "installed_at": NOW, "upgrade_state": "", "upgrade_version": "",
        "upgrade_detail": "", "upgrade_first": False, "revoked_at": None,
    }  # fmt: skip
    return {**row, **values}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'site.sqlite'}")
    table = cast(Table, JumpClientRow.__table__)
    JumpClientRow.metadata.create_all(engine, tables=[table])
    with engine.begin() as connection:
        connection.execute(
            insert(table),
            [
                client_row("steady"),
                client_row("passive", mode="passive", revoked_at=NOW),
                client_row("returning", upgrade_state="upgrading", upgrade_version="1.1.0"),
                client_row("reverted", upgrade_state="upgrading", upgrade_version="1.1.0"),
                client_row("still-old", upgrade_state="upgrading", upgrade_version="1.1.0"),
            ],
        )
    return engine


def rows(engine: Engine) -> dict[str, JumpClientRow]:
    with sessionmaker(engine)() as session:
        return {row.client_id: row for row in session.scalars(select(JumpClientRow))}


def test_the_directory_names_the_upgrade_under_way(engine: Engine) -> None:
    directory = DatabaseDirectory(sessionmaker(engine))

    async def lookups() -> list[ClientRecord | None]:
        names = ("steady", "passive", "returning", "never-enrolled")
        return list(await asyncio.gather(*(directory.lookup(name) for name in names)))

    steady, passive, returning, unknown = asyncio.run(asyncio.wait_for(lookups(), 10))
    assert unknown is None
    assert steady is not None and (steady.mode, steady.revoked, steady.upgrading_to) == (
        "active", False, "",
    )  # fmt: skip
    assert steady.public_key == b"steady".ljust(32, b"k")
    assert passive is not None and (passive.mode, passive.revoked) == ("passive", True)
    assert returning is not None and returning.upgrading_to == "1.1.0"


def test_a_batch_of_different_changes_lands_on_each_row(engine: Engine) -> None:
    arrived, beat = NOW.timestamp() + 60, NOW.timestamp() + 90
    statistics = Statistics(
        hostname="poste-é", fqdn="poste-é.example.test", os="Linux", console_user="jörg",
        uptime_seconds=12.5, cpu=Cpu(count=2),
    )  # fmt: skip
    batch = PresenceBatch(
        updates=(
            PresenceUpdate("steady", "g0", last_heartbeat=beat, statistics=statistics),
            PresenceUpdate(
                "returning",
                "g0",
                arrived_at=arrived,
                agent_version="1.1.0",
                anchors=("ab" * 32,),
                address="127.0.0.9",
                check_ins=1,
            ),
            PresenceUpdate("still-old", "g1", arrived_at=arrived, agent_version="1.0.0"),
            PresenceUpdate("passive", "g1", online=False, departed_at=beat, departure="left"),
        ),
        results=(
            (
                "reverted",
                CommandResult(command_id=UPGRADE + "1", outcome="failed", detail="did not start"),
            ),
        ),
    )
    asyncio.run(asyncio.wait_for(DatabaseSink(engine).write(batch), 10))
    after = rows(engine)
    steady = after["steady"]
    assert steady.online and steady.hostname == "poste-é" and steady.console_user == "jörg"
    assert json.loads(steady.statistics)["uptime_seconds"] == 12.5
    assert steady.last_seen_at is not None and steady.last_seen_at.replace(
        tzinfo=UTC
    ).timestamp() == pytest.approx(beat)
    assert steady.last_check_in_at is None and steady.version == "1.0.0"
    returning = after["returning"]
    assert (returning.version, returning.upgrade_state) == ("1.1.0", "done")
    assert json.loads(returning.anchors) == ["ab" * 32] and returning.address == "127.0.0.9"
    assert returning.last_check_in_at is not None and returning.statistics == "{}"
    still_old = after["still-old"]  # back, but not on the build it was sent
    assert (still_old.version, still_old.upgrade_state) == ("1.0.0", "upgrading")
    assert not after["passive"].online
    reverted = after["reverted"]
    assert (reverted.upgrade_state, reverted.upgrade_detail) == ("failed", "did not start")
