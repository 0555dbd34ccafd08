"""Request and response bodies of the backups' part of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bastion.backups.rules import (
    MAX_INTERVAL_HOURS,
    MAX_KEEP,
    MIN_INTERVAL_HOURS,
    MIN_PASSPHRASE_LENGTH,
)
from bastion.platform.web.schemas import Strict, WholeNumber

Passphrase = Annotated[
    str,
    Field(
        min_length=MIN_PASSPHRASE_LENGTH,
        max_length=1024,
        description=f"At least {MIN_PASSPHRASE_LENGTH} characters; needed to restore the backup",
    ),
]


class BackupRequest(Strict):
    passphrase: Passphrase


class RestoreOut(BaseModel):
    site: str
    software_version: str
    migrated_from: str | None
    rows: dict[str, int]
    automatic_backup: str
    sessions_ended: int


class ScheduleIn(Strict):
    interval_hours: WholeNumber = Field(ge=MIN_INTERVAL_HOURS, le=MAX_INTERVAL_HOURS)
    directory: str = Field(
        min_length=1,
        max_length=4096,
        pattern=r"^/[^\x00]*$",
        description="An absolute path on the appliance",
    )
    keep: WholeNumber = Field(ge=1, le=MAX_KEEP, description="How many backups to keep")
    passphrase: Passphrase


class LastRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    ok: bool
    message: str


class ScheduleOut(BaseModel):
    interval_hours: int | None
    directory: str | None
    keep: int | None
    last_run: LastRunOut | None
