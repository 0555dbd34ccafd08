"""Request and response bodies of the accounts' part of the JSON API.

The constraints here are those the services enforce, so that a body the schema accepts
is refused only for what a schema cannot say (the password policy, a name in use).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.accounts.rules import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, USERNAME_PATTERN
from bastion.platform.principals import Role
from bastion.platform.text import NAME_PATTERN
from bastion.platform.web.schemas import Strict

RoleName = Annotated[Role, Field(strict=False)]
"""A role by its name (JSON has no enum type, so the name is taken as text)."""
PASSWORD_POLICY = (
    f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, at least 5 different ones, "
    "not a common password and not containing the username"
)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: RoleName
    disabled: bool
    must_change_password: bool
    created_at: datetime


class AccountCreate(Strict):
    username: str = Field(
        pattern=USERNAME_PATTERN.replace("a-z", "A-Za-z"),
        description="2 to 64 characters: letters, digits, '.', '_' or '-', starting with a "
        "letter or digit; kept in lower case",
    )
    password: str = Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"Chosen again by its owner at the first sign-in; {PASSWORD_POLICY}",
    )
    role: RoleName
    display_name: str = Field(default="", max_length=200, pattern=f"^$|{NAME_PATTERN}")


class AccountUpdate(Strict):
    display_name: str | None = Field(default=None, max_length=200, pattern=f"^$|{NAME_PATTERN}")
    role: RoleName | None = None
    disabled: bool | None = None
    new_password: str | None = Field(
        default=None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"Resets the password, which its owner changes at the next sign-in; "
        f"{PASSWORD_POLICY}",
    )


class ApiClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    client_id: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class ApiClientCreate(Strict):
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        description="Unique; no control characters, not only spaces",
    )


class ApiClientCreated(ApiClientOut):
    client_secret: str = Field(description="Shown once; only its hash is kept")
