"""API clients: created and revoked by administrators; exchange credentials for bearer tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio.to_thread

from bastion.accounts.models import ApiClient, ApiToken
from bastion.accounts.passwords import PasswordChecks
from bastion.accounts.repository import ApiClientRepository, ApiTokenRepository
from bastion.accounts.rules import Hasher
from bastion.accounts.sign_in import UnitsOfWork, token_digest
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
)
from bastion.platform.principals import Actor, Principal, Role
from bastion.platform.text import clean_name
from bastion.platform.unit_of_work import UnitOfWork

BAD_CLIENT = "Unknown API client or wrong secret."
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class ApiClientView:
    id: int
    name: str
    client_id: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewApiClient:
    client: ApiClientView
    client_secret: str
    """Shown once, at creation; only its hash is kept."""


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


def _view(client: ApiClient) -> ApiClientView:
    return ApiClientView(
        client.id,
        client.name,
        client.client_id,
        client.created_at,
        client.created_by,
        client.revoked_at,
    )


def list_clients(uow: UnitOfWork) -> list[ApiClientView]:
    return [_view(c) for c in uow.repository(ApiClientRepository).all()]


def create_client(uow: UnitOfWork, hasher: Hasher, actor: Actor, name: str) -> NewApiClient:
    """A new client and its secret; the secret is hashed before the database is touched."""
    name = clean_name(name, "the API client a name", MAX_NAME_LENGTH)
    secret = secrets.token_urlsafe(32)
    secret_hash = hasher.hash(secret)
    if uow.repository(ApiClientRepository).by_name(name) is not None:
        raise ConflictError(f"An API client named {name!r} already exists; choose another name.")
    client = uow.repository(ApiClientRepository).add(
        ApiClient(
            name=name,
            client_id=secrets.token_hex(16),
            secret_hash=secret_hash,
            created_at=utc_now(),
            created_by=actor.name,
        )
    )
    audit.record(uow, actor, "api_client.create", name, client_id=client.client_id)
    return NewApiClient(_view(client), secret)


def revoke_client(uow: UnitOfWork, actor: Actor, api_client_id: int) -> ApiClientView:
    client = uow.repository(ApiClientRepository).get(api_client_id)
    if client is None:
        raise NotFoundError(f"There is no API client with id {api_client_id}.")
    if client.revoked_at is None:
        client.revoked_at = utc_now()
        audit.record(uow, actor, "api_client.revoke", client.name, client_id=client.client_id)
    return _view(client)


def revoke_client_named(uow: UnitOfWork, actor: Actor, name: str) -> ApiClientView:
    client = uow.repository(ApiClientRepository).by_name(name)
    if client is None:
        raise NotFoundError(f"There is no API client named {name!r}.")
    return revoke_client(uow, actor, client.id)


async def issue_token(
    units: UnitsOfWork,
    checks: PasswordChecks,
    client_id: str,
    secret: str,
    ttl: timedelta,
) -> IssuedToken:
    """Trade client credentials for a bearer token that expires after `ttl`.

    Commits on its own: the client is read in one unit of work and the token stored in
    another, so that no transaction is open while the secret is checked.
    """
    async with checks.admitted():
        hashed = await anyio.to_thread.run_sync(_secret_hash, units, client_id)
        if not await checks.check(hashed, secret):
            raise AuthenticationError(BAD_CLIENT)
        return await anyio.to_thread.run_sync(_store_token, units, client_id, ttl)


def _secret_hash(units: UnitsOfWork, client_id: str) -> str | None:
    """The stored hash of a client's secret; None for an unknown client. A revoked client
    is refused before its secret is checked."""
    with units() as uow:
        client = uow.repository(ApiClientRepository).by_client_id(client_id)
        if client is not None and client.revoked_at is not None:
            raise AuthenticationError("This API client was revoked.")
        return None if client is None else client.secret_hash


def _store_token(units: UnitsOfWork, client_id: str, ttl: timedelta) -> IssuedToken:
    token, now = secrets.token_urlsafe(32), utc_now()
    with units() as uow:
        client = uow.repository(ApiClientRepository).by_client_id(client_id)
        if client is None or client.revoked_at is not None:
            raise AuthenticationError("This API client was revoked while its token was made.")
        uow.repository(ApiTokenRepository).add(
            ApiToken(
                token_hash=token_digest(token),
                api_client_id=client.id,
                issued_at=now,
                expires_at=now + ttl,
            )
        )
        uow.commit()
    return IssuedToken(token, int(ttl.total_seconds()))


def resolve_token(uow: UnitOfWork, token: str) -> Principal:
    """The API client behind a bearer token; expired and revoked tokens are refused."""
    bearer = uow.repository(ApiTokenRepository).bearer(token_digest(token))
    if bearer is None:
        raise AuthenticationError("The bearer token is not valid; request a new one.")
    if bearer.expires_at <= utc_now():
        raise AuthenticationError("The bearer token has expired; request a new one.")
    if bearer.client_revoked_at is not None:
        raise AuthenticationError("The API client of this token was revoked.")
    return Principal(
        f"api:{bearer.client_name}", Role.ADMINISTRATOR, api_client_id=bearer.client_id
    )
