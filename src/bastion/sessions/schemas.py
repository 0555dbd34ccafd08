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


class RepresentativesInSessions(BaseModel):
    in_sessions: int = Field(description="Distinct accounts with a session in progress.")
    licensed: int | None = Field(description="The licence's count; null: no limit.")
    names: list[str] = Field(description="Who they are, by name.")


class EndpointInSessions(BaseModel):
    name: str = Field(description="The Jump Client's name.")
    representatives: list[str] = Field(description="Who is in sessions on it.")


class EndpointsInSessions(BaseModel):
    in_sessions: int = Field(description="Distinct Jump Clients with a session in progress.")
    licensed: int | None = Field(description="The licence's count; null: no limit.")
    endpoints: list[EndpointInSessions]


class LicenceOut(BaseModel):
    """Sessions in progress against the licence add-on's counts (R41)."""

    license_version: str | None = Field(
        description="The licence add-on installed; null: none, so there is no limit."
    )
    representatives: RepresentativesInSessions
    endpoints: EndpointsInSessions
