"""Request and response bodies of the installs' part of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from bastion.platform.web.schemas import Strict


class InstallIn(Strict):
    releases: list[str] = Field(
        min_length=1, description='Downloaded releases as listed, e.g. ["base 1.1", "site 1.1"]'
    )
    accept_licence: bool = Field(
        default=False, description="Accept the licence agreement of a new major version"
    )
    not_before: datetime | None = Field(
        default=None, description="Start at this time (with its zone), for a maintenance window"
    )
    delay_seconds: int = Field(default=0, ge=0, description="Start after this delay instead")
    retry: bool = Field(default=False, description="Install again a release that was rolled back")


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
