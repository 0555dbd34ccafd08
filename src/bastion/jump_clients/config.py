"""The gateway's settings: one typed object, made once and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.jump_clients.errors import GatewayError

DEFAULT_CONNECTION_RATE = 50.0
MAX_CONNECTION_RATE = 300.0


@dataclass(frozen=True)
class GatewayConfig:
    site: str
    """The site hostname clients connect to and sign their hello for."""
    gateway_id: str = "gateway-0"
    """Names this process in presence records and in the message port."""
    processes: int = 1
    """How many gateway processes share the site's connection rate."""
    connection_rate: float = DEFAULT_CONNECTION_RATE
    """Clients admitted per second across all gateway processes (at most 300)."""
    rate_file: Path | None = None
    """The shared bucket all gateway processes admit from (see `shared_rate.py`); without
    it each process admits `connection_rate / processes` on its own."""
    burst: float = 0.1
    """Admissions allowed ahead of the rate, as a fraction of one second's worth."""
    admission_hold: float = 2.0
    """Seconds a client may wait, connected, for its turn before it is told to come back."""
    retry_jitter: float = 0.1
    """Each retry_after is scaled by a random factor in [1 - j, 1 + j]."""
    max_connections: int = 19_000
    """Connections this process holds before it answers "capacity" (open files are capped)."""
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 95.0
    statistics_interval: float = 600.0
    passive_linger: float = 2.0
    restart_allowance: float = 2.0
    """Seconds added to every reconnect offset: about the time a gateway takes to restart,
    so that clients do not pile up in the listening queue while it starts."""
    hello_timeout: float = 15.0
    handshake_timeout: float = 15.0
    flush_interval: float = 1.0
    sweep_interval: float = 1.0
    unknown_retry: float = 3600.0
    revoked_retry: float = 86400.0
    replaced_retry: float = 60.0
    max_pending: int = 256
    """Connections between accept and welcome at once; more wait in the listening queue."""
    max_write_buffer: int = 256 * 1024
    """Bytes queued for a client that does not read before it is dropped."""
    send_buffer: int | None = 64 * 1024
    """SO_SNDBUF for client sockets: bounds kernel memory per client (None: system default)."""
    wake_secret: bytes = b""
    """The site's wake secret; passive clients' wake keys derive from it (empty: no wakes)."""
    data_dir: Path | None = None
    """Where the site's Jump Client build is found (`builds.current_build`); None: this
    gateway sends no build, and refuses every `build_request`."""
    bandwidth_file: Path | None = None
    """The site's bandwidth ledger, shared with the worker and the other gateway processes
    (`builds.Bandwidth`); the rollout keeps the site's cap in it. Without it this process
    sends builds at `upgrade_bandwidth_mib` on its own."""
    upgrade_bandwidth_mib: float = 100.0
    build_stall_seconds: float = 30.0
    """A client that reads nothing of its build for this long is cut off, and its upgrade fails."""

    def __post_init__(self) -> None:
        if not 0 < self.connection_rate <= MAX_CONNECTION_RATE:
            raise GatewayError(
                f"The Jump Client connection rate must be between 1 and {MAX_CONNECTION_RATE:.0f}"
                f" per second (it is {self.connection_rate}); lower it in the gateway settings."
            )
        if self.processes < 1:
            raise GatewayError("At least one gateway process is needed.")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise GatewayError(
                "The heartbeat timeout must be longer than the heartbeat interval, or every "
                "client would be marked offline between two heartbeats."
            )

    @property
    def rate_share(self) -> float:
        """This process's part of the site's connection rate."""
        return self.connection_rate / self.processes
