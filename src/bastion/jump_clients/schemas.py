"""Request and response bodies of the Jump Clients' part of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from bastion.jump_clients import rules
from bastion.platform.web.schemas import PRINTABLE, Strict, WholeNumber, whole

ModeName = Literal["active", "passive"]
KindName = Literal["jump_client", "jumpoint"]
Port = Annotated[int, Field(ge=1, le=65535), BeforeValidator(whole)]
"""A port number; 1318.0 is 1318, as JSON Schema has it."""
Label = Field(default="", max_length=rules.MAX_LABEL, pattern=PRINTABLE)


class InstallerCreate(Strict):
    mode: ModeName = "active"
    kind: KindName = "jump_client"
    """What it installs: a Jump Client, or a Jumpoint (SSH to servers in its network)."""
    jump_group: str = Label
    tag: str = Label
    comments: str = Field(default="", max_length=rules.MAX_COMMENTS)
    valid_minutes: WholeNumber = Field(
        default=rules.DEFAULT_VALIDITY_MINUTES,
        ge=rules.MIN_VALIDITY_MINUTES,
        le=rules.MAX_VALIDITY_MINUTES,
    )
    site_version: str = Field(default="", max_length=64)
    """The site version its clients run: empty for the one the site runs now, or a later
    one whose release the appliance holds (its clients wait until the site runs it)."""


class InstallerOut(BaseModel):
    id: int
    mode: str
    kind: str
    jump_group: str
    tag: str
    comments: str
    site_version: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked: bool
    installed: int
    usable: bool
    waiting: bool
    """Made for a later site version: its clients register once the site runs it."""


class InstallerCreated(InstallerOut):
    installer: str
    """The installer file (JSON). Its token is shown only in this answer."""


class EndpointIn(Strict):
    machine: str = Field(min_length=16, max_length=128)
    hostname: str = Field(min_length=1, max_length=255)
    fqdn: str = Field(default="", max_length=255)
    os: str = Field(default="", max_length=255)
    console_user: str = Field(default="", max_length=255)


class RegistrationIn(Strict):
    """What an endpoint sends, once, with its installer (no bearer token: the installer's
    token is the credential)."""

    token: str = Field(min_length=16, max_length=200)
    site: str = Field(max_length=253)
    site_version: str = Field(max_length=64)
    mode: ModeName
    kind: KindName = "jump_client"
    jump_group: str = Label
    tag: str = Label
    public_key: str = Field(
        pattern=r"^[A-Za-z0-9+/]{43}=$", description="base64 of the 32-byte Ed25519 key"
    )
    endpoint: EndpointIn
    agent_version: str = Field(max_length=64)
    anchors: list[str] = Field(default_factory=list, max_length=16)
    wake_port: Port | None = None
    proof: str = Field(default="", max_length=200)
    """Base64 of the endpoint key's signature of the site and the token: needed to replace
    an installation registered with this key."""


class JumpClientOut(BaseModel):
    id: int
    client_id: str
    name: str
    mode: str
    kind: str
    jump_group: str
    tag: str
    comments: str
    hostname: str
    fqdn: str
    os: str
    console_user: str
    version: str
    revision: str
    status: str
    online: bool
    installed_at: datetime
    last_seen_at: datetime | None
    last_check_in_at: datetime | None
    statistics: dict[str, object]
    address: str


class JumpClientPage(BaseModel):
    total: int
    clients: list[JumpClientOut]


class JumpClientEdit(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=rules.MAX_NAME)
    jump_group: str | None = Field(default=None, max_length=rules.MAX_LABEL)
    tag: str | None = Field(default=None, max_length=rules.MAX_LABEL)
    comments: str | None = Field(default=None, max_length=rules.MAX_COMMENTS)


class FleetSettingsBody(Strict):
    statistics_interval_seconds: WholeNumber = Field(ge=10, le=86_400)
    lost_after_days: WholeNumber = Field(ge=1, le=3_650)
    connection_rate: WholeNumber = Field(ge=1, le=300)
    max_concurrent_upgrades: WholeNumber = Field(ge=1, le=500)
    upgrade_bandwidth_mib: WholeNumber = Field(ge=1, le=100)
    canary_percent: WholeNumber = Field(ge=0, le=100)
    halt_failure_percent: WholeNumber = Field(ge=1, le=100)


class WakeOut(BaseModel):
    answer: str
    """What the client said: ``ok``, or why it refused the wake."""


class FleetProgressOut(BaseModel):
    site_version: str
    total: int
    upgraded: int
    pending: int
    upgrading: int
    failed: int
    offline: int
    halted: str | None


class ResumeIn(Strict):
    retry_failed: bool = False
