"""Request and response bodies of the backups' part of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bastion.platform.web.schemas import Strict


class BackupRequest(Strict):
    passphrase: str = Field(description="At least 12 characters; needed to restore the backup")


class RestoreOut(BaseModel):
    site: str
    software_version: str
    migrated_from: str | None
    rows: dict[str, int]
    automatic_backup: str
    sessions_ended: int


class ScheduleIn(Strict):
    interval_hours: int = Field(ge=1, le=744)
    directory: str = Field(min_length=1, max_length=4096, description="Absolute path")
    keep: int = Field(ge=1, le=1000)
    passphrase: str = Field(description="At least 12 characters; sealed at rest")


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
