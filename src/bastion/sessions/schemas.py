"""Request and response bodies of the sessions' part of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from bastion.platform.web.schemas import PRINTABLE, Strict
from bastion.sessions import rules

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class SessionOut(BaseModel):
    id: str
    account_id: int | None
    username: str
    jump_client_id: int | None
    jump_client_name: str
    jump_client_hostname: str
    started_at: datetime
    joined_at: datetime | None
    ended_at: datetime | None
    end_reason: str
    duration_seconds: float | None
    bytes_from_console: int
    bytes_from_endpoint: int
    recording_sha256: str | None
    recording_size: int | None
    input_recorded: bool
    live: bool


class SessionPage(BaseModel):
    total: int
    sessions: list[SessionOut]


GroupName = Annotated[str, Field(min_length=1, max_length=rules.MAX_GROUP, pattern=PRINTABLE)]


class JumpGroups(Strict):
    jump_groups: list[GroupName] = Field(
        default_factory=list,
        max_length=rules.MAX_GROUPS,
        description="The Jump Groups a representative may use (administrators use all).",
    )


class SessionSettingsBody(Strict):
    record_input: bool = False
