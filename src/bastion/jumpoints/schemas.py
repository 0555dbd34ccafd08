"""Request and response bodies of the vault's and the SSH Jump Items' JSON API. No answer
carries a secret: a credential's password or key goes in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from bastion.jumpoints import rules
from bastion.platform.web.schemas import MAX_ID, PRINTABLE, Strict, whole

CredentialKind = Literal["password", "private_key"]
Port = Annotated[int, Field(ge=1, le=65535), BeforeValidator(whole)]
Id = Annotated[int, Field(ge=1, json_schema_extra={"maximum": MAX_ID}), BeforeValidator(whole)]
"""A row id in a body. 9223372036854775807.0 is a JSON Schema integer whose float is 2^63,
one past the largest id: the service answers "no such row" for ids past it (never a 500)."""
Label = Field(default="", max_length=rules.MAX_LABEL, pattern=PRINTABLE)


Passphrase = Field(default="", max_length=rules.MAX_PASSWORD, repr=False)
"""A private key's passphrase, if it has one: the key is opened with it and the vault
keeps the key, sealed, without it (the passphrase is not kept)."""


class CredentialIn(Strict):
    name: str = Field(min_length=1, max_length=rules.MAX_NAME, pattern=PRINTABLE)
    kind: CredentialKind
    secret: str = Field(min_length=1, max_length=rules.MAX_PRIVATE_KEY, repr=False)
    """The password, or the text of an OpenSSH or PEM private key."""
    passphrase: str = Passphrase


class SecretIn(Strict):
    kind: CredentialKind
    secret: str = Field(min_length=1, max_length=rules.MAX_PRIVATE_KEY, repr=False)
    passphrase: str = Passphrase


class CredentialOut(BaseModel):
    id: int
    name: str
    kind: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    used_by: list[str]


class SshItemIn(Strict):
    name: str = Field(min_length=1, max_length=rules.MAX_ITEM_NAME, pattern=PRINTABLE)
    jumpoint_id: Id
    """The Jumpoint (a Jump Client of kind jumpoint) that reaches the server."""
    host: str = Field(min_length=1, max_length=253)
    port: Port = 22
    username: str = Field(min_length=1, max_length=rules.MAX_USERNAME)
    credential_id: Id
    """The vaulted credential the Jumpoint signs in with."""
    host_key: str = Field(min_length=1, max_length=rules.MAX_HOST_KEY)
    """The server's public host key as OpenSSH writes it ("ssh-ed25519 AAAA..."): pinned,
    the only one accepted."""
    jump_group: str = Label
    tag: str = Label
    comments: str = Field(default="", max_length=rules.MAX_COMMENTS, pattern=PRINTABLE)


class SshItemOut(BaseModel):
    id: int
    name: str
    jumpoint_id: int
    jumpoint_name: str
    host: str
    port: int
    username: str
    credential_id: int
    credential_name: str
    host_key: str
    jump_group: str
    tag: str
    comments: str
    created_at: datetime
    created_by: str
