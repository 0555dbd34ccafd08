"""Settings of the update service, read once from ``BASTION_UPDATE_SERVICE_*``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class UpdateServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_UPDATE_SERVICE_")

    data_dir: Path = Path("/var/lib/bastion-update-service")
    keys_dir: Path | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "updates@bastion.invalid"
    public_url: str = ""
    clock_tolerance_seconds: int = 300
    maintenance_interval_seconds: float = 60.0

    @property
    def keys(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def clock_tolerance(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.clock_tolerance_seconds)
