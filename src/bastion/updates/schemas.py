"""The update channel's settings as the API reads and changes them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bastion.updates import rules
from bastion.updates.channel import Channel, ChannelChange


class ChannelIn(BaseModel):
    """A field left out stays as it is; null (or "") returns it to its default."""

    model_config = ConfigDict(extra="forbid")
    service_url: str | None = Field(None, max_length=rules.MAX_URL_CHARACTERS)
    """e.g. https://updates.vendor.example"""
    service_ca_pem: str | None = Field(None, max_length=rules.MAX_CA_BYTES)
    """The CA certificate(s) the update service's TLS certificate chains to, in PEM."""
    trusted_root_json: str | None = Field(None, max_length=rules.MAX_ROOT_BYTES)
    """The root.json the vendor shipped with this site, as its text."""

    def change(self) -> ChannelChange:
        return ChannelChange(
            self._given("service_url"),
            self._given("service_ca_pem"),
            self._given("trusted_root_json"),
        )

    def _given(self, name: str) -> str | None:
        if name not in self.model_fields_set:
            return None
        value = getattr(self, name)
        return "" if value is None else str(value)


class CaOut(BaseModel):
    subject: str
    sha256: str
    expires: datetime


class RootOut(BaseModel):
    version: int
    threshold: int
    keys: int
    expires: datetime
    sha256: str


class ChannelOut(BaseModel):
    site: str
    service_url: str
    service_url_source: str
    service_ca: list[CaOut]
    """Empty: no CA set; the operating system's trust store (and BASTION_TRUST_ANCHORS_FILE)."""
    service_ca_source: str
    trusted_root: RootOut | None
    trusted_root_source: str
    problems: list[str]
    """Environment files that cannot be used; the update steps that need them refuse."""

    @classmethod
    def of(cls, found: Channel) -> ChannelOut:
        root = found.root
        return cls(
            site=found.site,
            service_url=found.service_url,
            service_url_source=found.url_source.value,
            service_ca=[CaOut(**c.__dict__) for c in found.ca_certificates],
            service_ca_source=found.ca_source.value,
            trusted_root=RootOut(**root.__dict__) if root else None,
            trusted_root_source=found.root_source.value,
            problems=found.problems,
        )
