"""The change journal and its marks: machine state (each appliance keeps its own)."""

from __future__ import annotations

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.platform.db.models import MACHINE_STATE, Base


class JournalEntry(Base):
    """One changed row of a site table, written by a trigger in the change's transaction.

    Only the table and the row's primary key are kept: the backup is sent the row as it
    is when it asks, so a row changed many times travels once."""

    __tablename__ = "failover_journal"
    __table_args__ = ({"info": MACHINE_STATE, "sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(100))
    row_key: Mapped[str] = mapped_column(Text)
    operation: Mapped[str] = mapped_column(String(1))


class JournalMark(Base):
    """Named positions: the highest entry pruned unread (`floor`), the journal's `epoch`
    (new after a restore: a backup must start again from a snapshot) and, on a backup,
    the primary's epoch and `position` that its data has reached."""

    __tablename__ = "failover_marks"
    __table_args__ = ({"info": MACHINE_STATE},)

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
