"""Request and response bodies of the JSON API (`/api/v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: str
    disabled: bool
    must_change_password: bool
    created_at: datetime


class AccountCreate(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: str
    display_name: str = ""


class AccountUpdate(Strict):
    display_name: str | None = None
    role: str | None = None
    disabled: bool | None = None
    new_password: str | None = None


class ApiClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    client_id: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class ApiClientCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class ApiClientCreated(ApiClientOut):
    client_secret: str


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    source: str


class AuditPage(BaseModel):
    total: int
    entries: list[AuditOut]


class ListenAddressOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    address: str
    enabled: bool
    serving: bool


class ListenAddressCreate(Strict):
    address: str = Field(description="ADDR:PORT, IPv6 as [ADDR]:PORT", examples=["127.0.0.2:8443"])


class ListenAddressUpdate(Strict):
    enabled: bool


class NtpSettings(Strict):
    server: str = Field(max_length=253, description="Host name or IP address; empty for none")


class ClockOut(BaseModel):
    level: str
    message: str
    offset_seconds: float | None
    measured_at: datetime | None


class StatusOut(BaseModel):
    product_version: str
    build: str
    base_version: str
    started_at: datetime
    uptime_seconds: float
    clock_utc: datetime
    clock: ClockOut


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
