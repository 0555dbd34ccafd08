"""The appliance as a machine: Status > Basics, Reset to Factory Defaults, Shut Down.

Status says what runs, since when, and whether its clock can be trusted. A factory
reset leaves no site data: the first login is `admin`/`password` again (R40), and
the machine keeps how it is reached (its listen addresses) so that an administrator
can sign in again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, Engine, MetaData, delete

from bastion.accounts.rules import Hasher
from bastion.accounts.service import add_first_login_on
from bastion.certificates.site import SiteCertificates
from bastion.network.rules import ClockReading, ClockStatus, assess_offset
from bastion.platform import audit
from bastion.platform.errors import InvalidInputError
from bastion.platform.principals import Actor

log = logging.getLogger("bastion.appliance")
CONFIRMATION = "RESET"


@dataclass(frozen=True)
class Basics:
    product_version: str
    build: str
    base_version: str
    started_at: datetime
    now: datetime
    clock: ClockStatus
    clock_measured_at: datetime | None

    @property
    def uptime(self) -> timedelta:
        return self.now - self.started_at

    @property
    def uptime_text(self) -> str:
        seconds = int(self.uptime.total_seconds())
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{days}d {hours:02d}h {minutes:02d}m {seconds:02d}s"


def basics(
    product_version: str,
    build: str,
    base_version: str,
    started_at: datetime,
    now: datetime,
    reading: ClockReading,
) -> Basics:
    clock = assess_offset(reading.server, reading.offset, reading.failure)
    return Basics(product_version, build, base_version, started_at, now, clock, reading.measured_at)


def check_confirmation(typed: str) -> None:
    if typed.strip() != CONFIRMATION:
        raise InvalidInputError(f"Type {CONFIRMATION} in capitals to confirm. Nothing was changed.")


def erase_site(
    engine: Engine, metadata: MetaData, first_login: Callable[[Connection], None], actor: Actor
) -> None:
    """Delete every row of site data and sessions in one transaction, and add the first
    login; tables that survive a reset (how the machine is reached) are kept."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if not table.info.get("survives_reset"):
                connection.execute(delete(table))
        first_login(connection)
        audit.record_on(connection, actor, "appliance.factory_reset", "appliance")


def reset_to_factory(
    engine: Engine,
    metadata: MetaData,
    hasher: Hasher,
    certificates: SiteCertificates,
    listen_hosts: list[str],
    actor: Actor,
) -> None:
    """Erase the site and serve a new internal certificate, as on the first start (R40)."""
    erase_site(engine, metadata, partial(add_first_login_on, hasher=hasher), actor)
    certificates.prepare(listen_hosts)
    certificates.serve_default()
    log.warning("reset to factory defaults by %s from %s", actor.name, actor.source)


@dataclass(frozen=True)
class ApplianceControl:
    """What the machine's own buttons do, as the composition root wired them."""

    factory_reset: Callable[[Actor], None]
    shut_down: Callable[[], None] | None
    """None where nothing can be shut down (a test's app, a console command)."""
