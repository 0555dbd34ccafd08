"""Request and response bodies of the installs' part of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from bastion.installs.schedule import MAX_DELAY
from bastion.platform.web.schemas import PRINTABLE, LaxDatetime, Strict, WholeNumber

MAX_DELAY_SECONDS = int(MAX_DELAY.total_seconds())


class InstallIn(Strict):
    releases: list[Annotated[str, Field(min_length=1, max_length=100, pattern=PRINTABLE)]] = Field(
        min_length=1,
        max_length=20,
        description='Downloaded releases as listed, e.g. ["base 1.1", "site 1.1"]',
    )
    accept_licence: bool = Field(
        default=False, description="Accept the licence agreement of a new major version"
    )
    not_before: LaxDatetime | None = Field(
        default=None,
        description="Start at this time (with its zone), within the next 7 days, for a "
        "maintenance window",
    )
    delay_seconds: WholeNumber = Field(
        default=0, ge=0, le=MAX_DELAY_SECONDS, description="Start after this delay instead"
    )
    retry: bool = Field(default=False, description="Install again a release that was rolled back")
    accept_offline_clients: bool = Field(
        default=False,
        description="Install a site release built with other trust anchors although the Jump "
        "Clients that do not trust them would go offline",
    )


class OfflineClientsOut(BaseModel):
    release: str
    offline: int = Field(description="Jump Clients that do not trust the release's anchors")
    total: int


class InstallPlanOut(BaseModel):
    order: list[str]
    estimate_seconds: float
    """Until the install is over: the new version watched through its probation included."""
    paused_seconds: float
    """Of which changes are paused (about)."""
    watched_seconds: float
    """Of which the new version is watched (BASTION_INSTALL_PROBATION_SECONDS per release)."""
    database_bytes: int
    package_bytes: int
    licences: list[str]
    offline_clients: list[OfflineClientsOut] = []


class InstallOut(BaseModel):
    install_id: str
    not_before: datetime
    plan: InstallPlanOut


class LicenceRequiredOut(BaseModel):
    type: str = "LicenceRequiredError"
    message: str
    release: str
    licence: str


class LicenceRequiredBody(BaseModel):
    error: LicenceRequiredOut
