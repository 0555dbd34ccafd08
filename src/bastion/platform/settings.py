"""The appliance's typed settings, read once from the command line and `BASTION_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GATEWAY_PORT = 8444


SCRATCH_DIR = "tmp"
"""The data directory's scratch directory, by name."""


class ApplianceSettings(BaseSettings):
    """Everything the appliance process needs to start; passed in, never read globally."""

    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    data_dir: Path = Path("var/appliance")
    listen: list[str] = Field(default_factory=lambda: ["127.0.0.1:8443"])
    hostname: str = "localhost"
    database_url: SecretStr | None = None

    gateway_listen: str = "auto"
    """Where the Jump Client gateway listens (ADDR:PORT); "auto": the first listen
    address's host, port 8444; "off": the site runs no gateway."""
    gateway_address: str = ""
    """HOST:PORT that installers tell Jump Clients to connect to; empty: the site hostname
    and the gateway's port."""
    public_url: str = ""
    """The site's address as agents reach it (https://HOST[:PORT]); empty: the site
    hostname and the first listen address's port."""
    gateway_processes: int = 1
    """Gateway processes holding the fleet (each holds up to about 19,000 clients)."""
    build_stall_seconds: float = 30.0
    """A Jump Client downloading the site's build that reads nothing for this long is cut
    off, and its upgrade counts as failed (the slot goes to the next client)."""

    ntp_server_default: str = "pool.ntp.org"
    ntp_poll_seconds: float = 300.0
    ntp_timeout_seconds: float = 2.0

    session_idle_minutes: int = 30
    session_max_hours: int = 12
    api_token_ttl_seconds: int = 3600

    lockout_free_attempts: int = 3
    lockout_base_delay_seconds: float = 1.0
    lockout_max_delay_seconds: float = 30.0
    lockout_lock_after: int = 10
    lockout_lock_seconds: float = 900.0

    trust_anchors_file: Path | None = None
    """PEM file of private CAs whose certificates the store counts as trusted (beside the OS's)."""

    backup_schedule_poll_seconds: float = 60.0
    backup_upload_limit_bytes: int = 8 * 1024**3
    """Uploads larger than this are refused before they reach the disk."""

    password_checks_at_once: int = 0
    """How many password and API client secret checks run at once; 0: one fewer than the
    number of CPUs (at least 1), leaving a core to answer everything else."""
    password_checks_waiting: int = 32
    """How many more sign-ins and token requests may wait for a check; beyond that they
    are refused at once with 429 and Retry-After."""

    password_hash_fast: bool = False
    """Cheaper argon2 parameters; only for test suites that sign in hundreds of times."""

    update_service_url: str = ""
    """The vendor's update service, unless set on the appliance; empty: not configured
    (Manual Installation only)."""
    update_service_ca_file: Path | None = None
    """PEM file of the CA the update service's TLS certificate chains to, unless set on the
    appliance; None: the system's trust store plus `trust_anchors_file`."""
    update_site: str = ""
    """The site name the vendor built this site for; empty: the site hostname."""
    update_trusted_root: Path | None = None
    """The update repository's root.json shipped with the site build, unless set on the
    appliance; None: the package's own."""
    update_upload_limit_bytes: int = 4 * 1024**3
    """Offline update bundles larger than this are refused before they reach the disk."""

    failover_first_sync_seconds: float = 60.0
    """How long after joining a pair a backup appliance makes its first sync (R34)."""

    failover_shared_ips: list[str] = Field(default_factory=list)
    """Shared IP addresses, `ADDRESS/PREFIX@INTERFACE`, enabled only while this appliance
    is the primary of a failover pair (R30); a JSON list in the environment."""

    failover_check_seconds: float = 10.0
    """How often an appliance of a pair checks its peer (reachable, its role)."""

    failover_auto_takeover_seconds: float = 0.0
    """Automatic failover: the backup takes over once the primary has not answered for
    this long and none of the test addresses answers; 0 turns it off."""

    failover_test_addresses: list[str] = Field(default_factory=list)
    """HOST:PORT addresses that answer while the site is served (e.g. the shared
    address's HTTPS port); a JSON list in the environment."""

    failover_dns_server: str = ""
    """DNS swing (R30): the site's primary DNS server, `ADDRESS[:PORT]` (port 53 if not
    given), sent an RFC 2136 update when this appliance takes the primary role; empty:
    no DNS swing. The five `failover_dns_*` settings without a default go together."""
    failover_dns_zone: str = ""
    """The zone the name is in, e.g. `example.com`."""
    failover_dns_name: str = ""
    """The site's DNS name whose A and AAAA records point at the primary."""
    failover_dns_address: str = ""
    """This appliance's own address, which the name holds while it is the primary (an
    A record for IPv4, AAAA for IPv6); several separated by commas, e.g. a dual-stack
    appliance's "192.0.2.10,2001:db8::10"."""
    failover_dns_tsig_key_file: Path | None = None
    """A BIND key file (`key "NAME" { algorithm hmac-sha256; secret "..."; };`) with the
    TSIG key the server lets update the name."""
    failover_dns_ttl: int = 30
    """The record's TTL in seconds: how long a resolver may keep the old primary's address."""

    install_health_deadline_seconds: float = 60.0
    """A new worker (or base) that is not healthy within this time is rolled back."""
    install_probation_seconds: float = 60.0
    """A new version that exits within this time after the switch is rolled back."""
    install_drain_seconds: float = 15.0
    """How long the old worker may take to finish its requests after the switch."""
    install_session_keep_seconds: float = 3600.0
    """How long the old worker may keep the remote sessions in progress at an install's
    switch (they end with the reason when this passes; 0: they end at the switch)."""
    install_migration_timeout_seconds: float = 3600.0
    install_pause_after: str = ""
    """Fault injection for crash-safety tests: stop an install after this step is recorded
    (or "rolling-back": once a rollback is recorded, before it is carried out)."""

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def scratch_dir(self) -> Path:
        """Files being received, taken or restored; what a crash leaves here is removed
        at the next start (`supervisor.launch`)."""
        return self.data_dir / SCRATCH_DIR

    @property
    def gateway(self) -> str | None:
        """The gateway's ADDR:PORT, or None when it is off."""
        text = self.gateway_listen.strip()
        if text.lower() in ("", "off"):
            return None
        if text.lower() != "auto":
            return text
        host = self.listen[0].rsplit(":", 1)[0] if self.listen else "127.0.0.1"
        return f"{host}:{DEFAULT_GATEWAY_PORT}"

    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.db_dir / 'bastion.sqlite').resolve()}"
