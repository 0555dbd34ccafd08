"""Request and response bodies of the network part of the JSON API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bastion.platform.web.schemas import PRINTABLE, Strict


class ListenAddressOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    address: str
    enabled: bool
    serving: bool


class ListenAddressCreate(Strict):
    address: str = Field(
        max_length=60, description="ADDR:PORT, IPv6 as [ADDR]:PORT", examples=["127.0.0.2:8443"]
    )


class ListenAddressUpdate(Strict):
    enabled: bool


class NtpSettings(Strict):
    server: str = Field(
        max_length=253,
        pattern=PRINTABLE,
        description="Host name or IP address; empty for none",
        examples=["pool.ntp.org"],
    )
