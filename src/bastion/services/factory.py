"""Reset to factory defaults: no site data; the first login is `admin`/`password` again (R40)."""

from __future__ import annotations

from sqlalchemy import Engine, MetaData, delete
from sqlalchemy.orm import Session

from bastion.adapters.db.models import Account
from bastion.domain.accounts import FIRST_LOGIN_PASSWORD, FIRST_LOGIN_USERNAME, Role
from bastion.services import audit
from bastion.services.audit import Actor
from bastion.services.errors import InvalidInputError
from bastion.services.ports import Hasher, utc_now

CONFIRMATION = "RESET"
# The machine keeps how it is reached, so that an administrator can sign in again.
KEPT_TABLES = frozenset({"alembic_version", "listen_addresses"})


def check_confirmation(typed: str) -> None:
    if typed.strip() != CONFIRMATION:
        raise InvalidInputError(f"Type {CONFIRMATION} in capitals to confirm. Nothing was changed.")


def first_login_account(hasher: Hasher) -> Account:
    return Account(
        username=FIRST_LOGIN_USERNAME,
        display_name="Administrator",
        role=Role.ADMINISTRATOR.value,
        password_hash=hasher.hash(FIRST_LOGIN_PASSWORD),
        must_change_password=True,
        disabled=False,
        created_at=utc_now(),
    )


def erase_site(engine: Engine, metadata: MetaData, hasher: Hasher, actor: Actor) -> None:
    """Delete every row of site data and sessions, in one transaction, and add the first login."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table.name not in KEPT_TABLES:
                connection.execute(delete(table))
        with Session(bind=connection) as session:
            session.add(first_login_account(hasher))
            session.add(audit.new_entry(actor, "appliance.factory_reset", "appliance"))
            session.flush()
