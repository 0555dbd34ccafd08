"""The credential vault (`/api/v1/vault/credentials`) and SSH Jump Items
(`/api/v1/jumpoints/ssh-items`) in the JSON API, for administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response

from bastion.accounts.deps import ApiActorDep
from bastion.jump_clients.service import JumpClientsSetup
from bastion.jumpoints import schemas as s
from bastion.jumpoints import service
from bastion.jumpoints.service import JumpointsSetup
from bastion.platform.web.deps import UowDep, part
from bastion.platform.web.routing import Router
from bastion.platform.web.schemas import RowId, errors

router = Router(tags=["jumpoints"])
VaultDep = Annotated[JumpointsSetup, Depends(part(JumpointsSetup))]
SetupDep = Annotated[JumpClientsSetup, Depends(part(JumpClientsSetup))]
CREDENTIALS = "/api/v1/vault/credentials"
ITEMS = "/api/v1/jumpoints/ssh-items"
BAD_SECRET = (
    "the name is empty or not printable, the password is empty or too long, the private "
    "key is not an OpenSSH or PEM key, or its passphrase is missing, wrong or not needed."
)
BAD_ITEM = (
    "the name, host, user name or labels are not valid, the host key is not an OpenSSH "
    "public key line, the Jumpoint is not a Jumpoint, or the credential is not in the vault."
)


@router.get(CREDENTIALS, response_model=list[s.CredentialOut])
def list_credentials(uow: UowDep, actor: ApiActorDep) -> list[service.CredentialView]:
    """The vault's credentials: names and kinds, never the secrets."""
    return service.list_credentials(uow)


@router.post(
    CREDENTIALS,
    response_model=s.CredentialOut,
    status_code=201,
    responses=errors(400, 409, e400=BAD_SECRET, e409="a credential has this name already."),
)
def add_credential(
    body: s.CredentialIn, vault: VaultDep, uow: UowDep, actor: ApiActorDep
) -> service.CredentialView:
    """Store a password or a private key, sealed by the appliance's key vault."""
    added = service.add_credential(
        uow, vault, actor, body.name, body.kind, body.secret, body.passphrase
    )
    uow.commit()
    return added


@router.get(f"{CREDENTIALS}/{{row_id:int}}", response_model=s.CredentialOut, responses=errors(404))
def get_credential(row_id: RowId, uow: UowDep, actor: ApiActorDep) -> service.CredentialView:
    return service.get_credential(uow, row_id)


@router.put(
    f"{CREDENTIALS}/{{row_id:int}}",
    response_model=s.CredentialOut,
    responses=errors(400, 404, e400=BAD_SECRET),
)
def replace_secret(
    row_id: RowId, body: s.SecretIn, vault: VaultDep, uow: UowDep, actor: ApiActorDep
) -> service.CredentialView:
    """Give the credential a new secret; the Jump Items using it use the new one."""
    replaced = service.replace_secret(
        uow, vault, actor, row_id, body.kind, body.secret, body.passphrase
    )
    uow.commit()
    return replaced


@router.delete(
    f"{CREDENTIALS}/{{row_id:int}}",
    status_code=204,
    responses=errors(404, 409, e409="SSH Jump Items use the credential."),
)
def delete_credential(row_id: RowId, uow: UowDep, actor: ApiActorDep) -> Response:
    service.delete_credential(uow, actor, row_id)
    uow.commit()
    return Response(status_code=204)


@router.get(ITEMS, response_model=list[s.SshItemOut])
def list_items(setup: SetupDep, uow: UowDep, actor: ApiActorDep) -> list[service.SshItemView]:
    return service.list_items(uow, setup)


def _request(body: s.SshItemIn) -> service.SshItemRequest:
    return service.SshItemRequest(**body.model_dump())


@router.post(
    ITEMS,
    response_model=s.SshItemOut,
    status_code=201,
    responses=errors(
        400, 404, 409, e400=BAD_ITEM, e404="there is no such Jumpoint.", e409="the name is taken."
    ),
)
def add_item(
    body: s.SshItemIn, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> service.SshItemView:
    """An SSH server reached through a Jumpoint, with its vaulted credential and pinned key."""
    added = service.add_item(uow, setup, actor, _request(body))
    uow.commit()
    return added


@router.get(f"{ITEMS}/{{row_id:int}}", response_model=s.SshItemOut, responses=errors(404))
def get_item(
    row_id: RowId, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> service.SshItemView:
    return service.get_item(uow, setup, row_id)


@router.put(
    f"{ITEMS}/{{row_id:int}}",
    response_model=s.SshItemOut,
    responses=errors(400, 404, 409, e400=BAD_ITEM, e409="another item has the name."),
)
def replace_item(
    row_id: RowId, body: s.SshItemIn, setup: SetupDep, uow: UowDep, actor: ApiActorDep
) -> service.SshItemView:
    """Change the item: pin a host key the server changed on purpose, another credential..."""
    replaced = service.replace_item(uow, setup, actor, row_id, _request(body))
    uow.commit()
    return replaced


@router.delete(f"{ITEMS}/{{row_id:int}}", status_code=204, responses=errors(404))
def delete_item(row_id: RowId, uow: UowDep, actor: ApiActorDep) -> Response:
    service.delete_item(uow, actor, row_id)
    uow.commit()
    return Response(status_code=204)
