"""How many requests with a unit of work the site admits at once, for each database: the
pool's connections less those kept for the appliance's own work; and how many of them
run at once (engines are made without connecting)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from bastion.platform.db.engine import (
    RESERVED_CONNECTIONS,
    UNBOUNDED_REQUESTS,
    make_engine,
    requests_at_once,
    running_at_once,
)


def test_sqlite_admits_its_pool_less_the_reserve(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bastion.sqlite'}")
    assert requests_at_once(engine) == 60 - RESERVED_CONNECTIONS == 50


def test_postgresql_admits_its_smaller_pool_less_the_reserve() -> None:
    engine = make_engine("postgresql+psycopg://bastion:secret@127.0.0.1:1/bastion")
    assert requests_at_once(engine) == 30 - RESERVED_CONNECTIONS == 20


def test_a_pool_that_cannot_run_out_admits_any_number() -> None:
    """An engine handed to the runtime by its maker, one connection per thread."""
    assert requests_at_once(create_engine("sqlite://")) == UNBOUNDED_REQUESTS


def test_two_run_at_once_on_sqlite_and_more_on_postgresql(tmp_path: Path) -> None:
    """SQLite's statements are CPU in this process; PostgreSQL's wait on the network."""
    assert running_at_once(make_engine(f"sqlite:///{tmp_path / 'bastion.sqlite'}")) == 2
    assert running_at_once(make_engine("postgresql+psycopg://b:s@127.0.0.1:1/b")) == 8
