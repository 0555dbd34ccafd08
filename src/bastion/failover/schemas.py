"""Request and response bodies of the failover part of the JSON API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from bastion.failover import rules
from bastion.platform.web.schemas import PRINTABLE, Strict, WholeNumber

HOST = Field(
    max_length=253,
    pattern=PRINTABLE,
    description="The appliance's own hostname or IP address (never the shared site hostname)",
    examples=["10.0.0.12"],
)
PORT = Field(ge=1, le=65535, description="Its TLS port", examples=[443])


class KeyIn(Strict):
    key: str = Field(
        min_length=rules.KEY_MIN_LENGTH,
        max_length=rules.KEY_MAX_LENGTH,
        pattern=PRINTABLE,
        description="The inter-appliance pre-shared key; the same on both appliances",
    )


class EstablishIn(Strict):
    backup_host: str = HOST
    backup_port: int = PORT
    reverse_host: str = HOST
    reverse_port: int = PORT


class PeerOut(BaseModel):
    host: str
    port: int
    fingerprint: str = Field(description="SHA-256 of the peer's TLS certificate, as pinned")


class PeerStatusEntry(BaseModel):
    since: str
    status: str
    peer_role: str
    message: str


class PeerStatusOut(BaseModel):
    checked_at: str = Field(description="When the peer was last checked (every few seconds)")
    status: str = Field(description="ok, unreachable, refused, left or split brain")
    peer_role: str
    message: str
    history: list[PeerStatusEntry] = Field(description="Changes of status, newest first")


class DnsSwingOut(BaseModel):
    name: str = Field(description="The site's DNS name this appliance points at itself")
    address: str = Field(description="This appliance's (first) address, held while it is primary")
    addresses: list[str] = Field(
        description="All of this appliance's addresses the name holds while it is primary"
    )
    server: str = Field(description="The DNS server sent the dynamic updates")
    ttl: int = Field(description="The record's TTL in seconds")
    last_update_at: str = Field(description="When the name was last updated or checked")
    last_update_ok: bool | None = Field(description="None: not updated yet")
    message: str = Field(description="What happened, or why it failed and what to check")


class FailoverOut(BaseModel):
    failover_role: str = Field(description="none, primary or backup")
    key_set: bool
    peer: PeerOut | None
    established_at: str
    role_since: str = Field(description="When this appliance last swapped roles, if it did")
    last_data_sync_time: str
    last_data_sync_status: str
    split_brain: bool = Field(description="Both appliances claim the same role")
    peer_status: PeerStatusOut | None
    shared_ips: list[str] = Field(description="The shared addresses this appliance is given")
    dns_swing: DnsSwingOut | None = Field(
        default=None, description="The DNS swing this appliance is given, and its last update"
    )


class SwapIn(Strict):
    sync_first: bool = Field(
        default=True, description="Bring the backup up to date before the roles change"
    )
    force: bool = Field(
        default=False,
        description="Change this appliance's role even though the peer cannot be reached",
    )


class MergedOut(BaseModel):
    merged: int = Field(description="Ended sessions of the backup that this appliance lacked")
    already_present: int = Field(description="Ended sessions of the backup held here already")
    blobs_fetched: int = Field(description="Recordings fetched from the backup")


class EstablishedOut(FailoverOut):
    merged: MergedOut = Field(
        description="The sessions completed on the backup while it stood alone, merged "
        "here before it joined (they reach it back with the sync)"
    )


# -- between the appliances of a pair (not in the public API) ------------------------------


class BrokenOut(BaseModel):
    failover_role: str = Field(description="none: this appliance is standalone again")
    peer_told: bool = Field(description="Whether the peer left the pair too")
    message: str = Field(description="What to do on the peer when it could not be told")


class ProveIn(BaseModel):
    challenge: str = Field(max_length=200)
    nonce: str = Field(max_length=200)
    proof: str = Field(max_length=200)
    binding: str = Field("", max_length=40, description="empty from earlier builds")
    certificate: str = Field(
        "", pattern=r"^([0-9a-f]{64})?$", description="SHA-256 (hex) of the one it was served"
    )


class JoinIn(BaseModel):
    host: str = Field(max_length=253)
    port: int = Field(ge=1, le=65535)


class ChangesIn(BaseModel):
    epoch: str = Field(max_length=64)
    since: int = Field(ge=0, le=2**62)


class SyncSettingsBody(Strict):
    sync_interval_seconds: WholeNumber = Field(
        ge=60, le=86_400, description="How often the backup pulls (60 to 86,400 seconds)"
    )


class SiteCheckOut(BaseModel):
    url: str = Field(description="The site's public address, as this appliance knows it")
    reached: bool
    failover_role: str | None = Field(description="The role of the appliance that answered")
    leads_to_primary: bool
    certificate_sha256: str = Field(description="The certificate served there (not checked)")
    message: str


# -- the pair's upgrade runbook ----------------------------------------------------------------

Release = Annotated[str, Field(min_length=1, max_length=100, pattern=PRINTABLE)]
Releases = Field(
    min_length=1,
    max_length=20,
    description='Releases as the Updates page lists them, e.g. ["site 1.2.0"]',
)


class UpgradeIn(Strict):
    releases: list[Release] = Releases
    mode: Literal["sync", "async"] = Field(
        description="sync: this appliance (the primary) first, the site down while it "
        "installs; async: the backup first, tried, then it takes the site"
    )
    backup_passphrase: str = Field(
        min_length=12,
        max_length=1024,
        description="Encrypts the fresh backup taken before anything changes (not kept)",
    )
    accept_licence: bool = Field(
        default=False, description="Accept the licence agreement of a new major version"
    )
    accept_offline_clients: bool = Field(
        default=False,
        description="Install even though some Jump Clients lack the release's trust anchors",
    )


class UpgradeStepOut(BaseModel):
    name: str
    title: str
    state: str = Field(description="pending, running, done or failed")
    started_at: str = ""
    ended_at: str = ""
    seconds: float | None = None
    detail: str = ""
    error: str = ""


class UpgradeOut(BaseModel):
    id: str
    mode: str
    releases: list[str]
    state: str = Field(description="running, stopped, failed or done")
    message: str
    requested_by: str
    started_at: str
    ended_at: str
    total_seconds: float
    from_version: str
    to_version: str
    from_base: str = Field(description="The base before the upgrade")
    to_base: str = Field(description="The base after it (a base-only upgrade changes it alone)")
    backup_file: str = Field(description="The backup taken before the upgrade")
    stop_requested: bool
    steps: list[UpgradeStepOut]

    @classmethod
    def of(cls, report: dict[str, Any]) -> UpgradeOut:
        return cls.model_validate({k: v for k, v in report.items() if k in cls.model_fields})


class UpgradePrepareIn(BaseModel):
    releases: list[Release] = Releases


class UpgradeInstallIn(BaseModel):
    releases: list[Release] = Releases
    accept_licence: bool = False
    accept_offline_clients: bool = False


class UpgradeEstablishIn(BaseModel):
    backup: JoinIn
    reverse: JoinIn
