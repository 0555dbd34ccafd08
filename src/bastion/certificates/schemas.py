"""Request and response bodies of the certificates' part of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bastion.platform.web.schemas import Strict, WholeNumber

KeyKindName = Literal["ec-p256", "rsa-3072"]
HostName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=300,
        description="A DNS name (Unicode names become IDNA A-labels; a wildcard only as the "
        "whole left-most label, e.g. *.example.com) or an IP address",
        examples=["support.example.com"],
    ),
]
Base64File = Annotated[
    str | None, Field(default=None, max_length=1_400_000, description="The file, base64")
]
Passphrase = Annotated[str, Field(max_length=1024)]


class WarningOut(BaseModel):
    kind: str
    message: str


class CertificateOut(BaseModel):
    id: int
    fingerprint: str
    subject: str
    names: list[str]
    issuer: str
    not_before: datetime | None
    not_after: datetime | None
    key_type: str
    key_size: int
    has_private_key: bool
    pending_request: bool
    is_default: bool
    source: str
    created_at: datetime
    request_pem: str | None
    warnings: list[WarningOut]
    issued_by_internal_ca: bool = Field(
        description="Issued by this appliance's internal CA (certs/internal-ca.pem): clients"
        " trust it once they trust that CA certificate"
    )


class SelfSignedCreate(Strict):
    names: list[HostName] = Field(min_length=1, max_length=100)
    key_kind: KeyKindName = "ec-p256"
    validity_days: WholeNumber = Field(default=365, ge=1, le=3650)


class RequestCreate(Strict):
    names: list[HostName] = Field(min_length=1, max_length=100)
    key_kind: KeyKindName = "ec-p256"


class CertificateImport(Strict):
    """File contents in base64: a PKCS#12 file, or a certificate (PEM/DER), key and chain."""

    pkcs12: Base64File = None
    passphrase: Passphrase = ""
    certificate: Base64File = None
    private_key: Base64File = None
    key_passphrase: Passphrase | None = None
    chain: Base64File = None


class CertificateExport(Strict):
    certificate: bool = True
    private_key: bool = False
    chain: bool = False
    format: Literal["pkcs12", "pem"] = "pkcs12"
    passphrase: Passphrase | None = None
    allow_unprotected_key: bool = False


class DefaultChoice(Strict):
    accept_expired: bool = False
