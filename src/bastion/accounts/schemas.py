"""Request and response bodies of the accounts' part of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bastion.platform.web.schemas import Strict


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: str
    disabled: bool
    must_change_password: bool
    created_at: datetime


class AccountCreate(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: str
    display_name: str = ""


class AccountUpdate(Strict):
    display_name: str | None = None
    role: str | None = None
    disabled: bool | None = None
    new_password: str | None = None


class ApiClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    client_id: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class ApiClientCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class ApiClientCreated(ApiClientOut):
    client_secret: str
