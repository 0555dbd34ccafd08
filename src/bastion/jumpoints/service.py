"""The credential vault and SSH Jump Items: use cases over a unit of work (never commits).

A credential's secret is sealed by the appliance's key vault as it is stored and unsealed
only in `ssh_target`, when a session through a Jumpoint opens: it then travels to the
Jumpoint inside `start_ssh_session`, over the Jumpoint's TLS connection. No view here
carries it, so no page, API answer or report can show it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from bastion.agents.protocol import SshTarget
from bastion.jump_clients import service as jump_clients
from bastion.jump_clients.service import JumpClientsSetup, JumpClientView
from bastion.jumpoints import rules
from bastion.jumpoints.models import SshJumpItemRow, VaultCredentialRow
from bastion.jumpoints.repository import CredentialRepository, SshItemRepository
from bastion.jumpoints.rules import JumpointRuleError
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError, InvalidInputError, NotFoundError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class JumpointsSetup:
    """The key vault's seal, bound to a value of the row (the composition root's)."""

    seal: Callable[[bytes, str], bytes]
    unseal: Callable[[bytes, str], bytes]

    def __repr__(self) -> str:
        return "JumpointsSetup(<key vault>)"


def _invalid(error: JumpointRuleError) -> InvalidInputError:
    return InvalidInputError(str(error))


# -- the vault ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialView:
    """A credential as anyone may see it: never its secret."""

    id: int
    name: str
    kind: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    used_by: list[str]
    """The SSH Jump Items that use it, by name."""


def _credential_view(uow: UnitOfWork, row: VaultCredentialRow) -> CredentialView:
    used = [item.name for item in uow.repository(SshItemRepository).using(row.id)]
    return CredentialView(
        row.id, row.name, row.kind, row.created_at, row.created_by, row.updated_at, used
    )


def _checked_secret(kind: str, secret: str, passphrase: str = "") -> str:
    """The secret as the vault keeps it. A private key protected by a passphrase is opened
    with it and kept without it: sealed in the vault, it needs no second lock, and the
    Jumpoint that uses it never learns the passphrase."""
    try:
        cleaned = rules.check_secret(kind, secret)
    except JumpointRuleError as error:
        raise _invalid(error) from None
    if kind != "private_key":
        if passphrase:
            raise InvalidInputError(
                "A passphrase goes with a private key only; leave it empty for a password."
            )
        return cleaned
    return _opened_private_key(cleaned, passphrase)


def _opened_private_key(text: str, passphrase: str) -> str:
    """`text` if it is readable as it is, else the key opened with `passphrase`, in
    OpenSSH form and unencrypted."""
    data = text.encode()
    password = passphrase.encode() if passphrase else None
    key: PrivateKeyTypes
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=password)
        else:
            key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        if passphrase:
            raise InvalidInputError(
                "This private key has no passphrase; leave the passphrase empty."
            ) from None
        raise InvalidInputError(
            "This private key is protected by a passphrase; give the passphrase too (it "
            "opens the key once, and the vault keeps the key sealed without it)."
        ) from None
    except ValueError as error:
        if passphrase:
            raise InvalidInputError(
                "The passphrase does not open this private key (or the key is damaged); "
                "nothing was stored. Check the passphrase, e.g. with ssh-keygen -y -f KEY."
            ) from None
        raise InvalidInputError(
            f"The private key cannot be read ({error}). Store an OpenSSH or PEM private key."
        ) from None
    except UnsupportedAlgorithm as error:
        raise InvalidInputError(
            f"The private key cannot be read ({error}). Store an OpenSSH or PEM private key."
        ) from None
    if password is None:
        return text
    try:
        opened = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"A {type(key).__name__.removesuffix('PrivateKey')} key cannot sign in over SSH; "
            "store an Ed25519, ECDSA or RSA key."
        ) from None
    return opened.decode()


def list_credentials(uow: UnitOfWork) -> list[CredentialView]:
    return [_credential_view(uow, r) for r in uow.repository(CredentialRepository).all()]


def get_credential(uow: UnitOfWork, row_id: int) -> CredentialView:
    return _credential_view(uow, _credential(uow, row_id))


def _credential(uow: UnitOfWork, row_id: int) -> VaultCredentialRow:
    row = uow.repository(CredentialRepository).get(row_id)
    if row is None:
        raise NotFoundError(f"There is no credential with id {row_id} in the vault; list them.")
    return row


def add_credential(
    uow: UnitOfWork,
    setup: JumpointsSetup,
    actor: Actor,
    name: str,
    kind: str,
    secret: str,
    passphrase: str = "",
) -> CredentialView:
    """Store a password or a private key (opened with `passphrase` if it has one), sealed."""
    try:
        name = rules.clean_name("credential", name, rules.MAX_NAME)
    except JumpointRuleError as error:
        raise _invalid(error) from None
    cleaned = _checked_secret(kind, secret, passphrase)
    repo = uow.repository(CredentialRepository)
    if repo.by_name(name) is not None:
        raise ConflictError(
            f"The vault holds a credential named {name!r} already; choose another name."
        )
    seal_id, now = secrets.token_hex(16), utc_now()
    row = repo.add(
        VaultCredentialRow(
            seal_id=seal_id,
            name=name,
            kind=kind,
            secret=setup.seal(cleaned.encode(), seal_id),
            created_at=now,
            created_by=actor.name[:100],
            updated_at=now,
        )
    )
    audit.record(uow, actor, "vault.credential.add", name, kind=kind)
    return _credential_view(uow, row)


def replace_secret(
    uow: UnitOfWork,
    setup: JumpointsSetup,
    actor: Actor,
    row_id: int,
    kind: str,
    secret: str,
    passphrase: str = "",
) -> CredentialView:
    """Give a credential a new secret (a changed password, a new key)."""
    row = _credential(uow, row_id)
    cleaned = _checked_secret(kind, secret, passphrase)
    row.kind = kind
    row.secret = setup.seal(cleaned.encode(), row.seal_id)
    row.updated_at = utc_now()
    audit.record(uow, actor, "vault.credential.replace", row.name, kind=kind)
    return _credential_view(uow, row)


def delete_credential(uow: UnitOfWork, actor: Actor, row_id: int) -> None:
    row = _credential(uow, row_id)
    used = [item.name for item in uow.repository(SshItemRepository).using(row.id)]
    if used:
        raise ConflictError(
            f"The credential {row.name!r} is used by {', '.join(used)}; give those Jump Items "
            "another credential or delete them first."
        )
    uow.repository(CredentialRepository).delete(row)
    audit.record(uow, actor, "vault.credential.delete", row.name)


# -- SSH Jump Items ------------------------------------------------------------------------


@dataclass(frozen=True)
class SshItemRequest:
    name: str
    jumpoint_id: int
    host: str
    username: str
    credential_id: int
    host_key: str
    port: int = 22
    jump_group: str = ""
    tag: str = ""
    comments: str = ""


@dataclass(frozen=True)
class SshItemView:
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


def _item_view(uow: UnitOfWork, row: SshJumpItemRow, jumpoint_name: str) -> SshItemView:
    credential = uow.repository(CredentialRepository).get(row.credential_id)
    return SshItemView(
        row.id,
        row.name,
        row.jumpoint_id,
        jumpoint_name,
        row.host,
        row.port,
        row.username,
        row.credential_id,
        credential.name if credential else "",
        row.host_key,
        row.jump_group,
        row.tag,
        row.comments,
        row.created_at,
        row.created_by,
    )


def _jumpoint(uow: UnitOfWork, setup: JumpClientsSetup, row_id: int) -> JumpClientView:
    try:
        if row_id > rules.MAX_ROW_ID:
            raise NotFoundError("past the largest id")
        client = jump_clients.get_client(uow, setup, row_id)
    except NotFoundError:
        raise NotFoundError(
            f"There is no Jumpoint with id {row_id}; list the Jump Clients."
        ) from None
    if client.kind != "jumpoint":
        raise InvalidInputError(
            f"{client.name} (id {row_id}) is a Jump Client, not a Jumpoint; install a Jumpoint "
            "in that network from a Jumpoint installer."
        )
    return client


def jumpoints(uow: UnitOfWork, setup: JumpClientsSetup) -> list[JumpClientView]:
    """The Jumpoints installed, by name."""
    return [c for c in jump_clients.clients_in_groups(uow, setup, None) if c.kind == "jumpoint"]


def _item(uow: UnitOfWork, row_id: int) -> SshJumpItemRow:
    row = uow.repository(SshItemRepository).get(row_id)
    if row is None:
        raise NotFoundError(f"There is no SSH Jump Item with id {row_id}; list them.")
    return row


def _checked(
    uow: UnitOfWork, setup: JumpClientsSetup, request: SshItemRequest
) -> dict[str, object]:
    try:
        fields: dict[str, object] = {
            "name": rules.clean_name("Jump Item", request.name, rules.MAX_ITEM_NAME),
            "host": rules.check_host(request.host),
            "port": rules.check_port(request.port),
            "username": rules.check_username(request.username),
            "host_key": rules.parse_host_key(request.host_key).line,
            "jump_group": rules.clean_label("Jump Group", request.jump_group),
            "tag": rules.clean_label("tag", request.tag),
            "comments": rules.clean_label("comments", request.comments, rules.MAX_COMMENTS),
        }
    except JumpointRuleError as error:
        raise _invalid(error) from None
    _jumpoint(uow, setup, request.jumpoint_id)
    credential = request.credential_id
    if (
        credential > rules.MAX_ROW_ID
        or uow.repository(CredentialRepository).get(credential) is None
    ):
        raise InvalidInputError(
            f"There is no credential with id {request.credential_id} in the vault; add it first."
        )
    return fields | {"jumpoint_id": request.jumpoint_id, "credential_id": request.credential_id}


def list_items(
    uow: UnitOfWork, setup: JumpClientsSetup, groups: set[str] | None = None
) -> list[SshItemView]:
    """Every SSH Jump Item (`groups` None), or those in one of `groups`."""
    names = {c.id: c.name for c in jump_clients.clients_in_groups(uow, setup, None)}
    rows = uow.repository(SshItemRepository).all()
    wanted = [r for r in rows if groups is None or r.jump_group in groups]
    return [_item_view(uow, r, names.get(r.jumpoint_id, "")) for r in wanted]


def get_item(uow: UnitOfWork, setup: JumpClientsSetup, row_id: int) -> SshItemView:
    row = _item(uow, row_id)
    return _item_view(uow, row, _jumpoint(uow, setup, row.jumpoint_id).name)


def add_item(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, request: SshItemRequest
) -> SshItemView:
    fields = _checked(uow, setup, request)
    repo = uow.repository(SshItemRepository)
    if repo.by_name(str(fields["name"])) is not None:
        raise ConflictError(f"An SSH Jump Item named {fields['name']!r} exists already.")
    row = repo.add(SshJumpItemRow(**fields, created_at=utc_now(), created_by=actor.name[:100]))
    audit.record(uow, actor, "jumpoints.ssh_item.add", row.name, host=row.host, port=row.port)
    return get_item(uow, setup, row.id)


def replace_item(
    uow: UnitOfWork, setup: JumpClientsSetup, actor: Actor, row_id: int, request: SshItemRequest
) -> SshItemView:
    """Change an SSH Jump Item (a new host key pinned on purpose, another credential...)."""
    row = _item(uow, row_id)
    fields = _checked(uow, setup, request)
    same = uow.repository(SshItemRepository).by_name(str(fields["name"]))
    if same is not None and same.id != row.id:
        raise ConflictError(f"An SSH Jump Item named {fields['name']!r} exists already.")
    for name, value in fields.items():
        setattr(row, name, value)
    audit.record(uow, actor, "jumpoints.ssh_item.replace", row.name, host=row.host, port=row.port)
    return get_item(uow, setup, row.id)


def delete_item(uow: UnitOfWork, actor: Actor, row_id: int) -> None:
    row = _item(uow, row_id)
    uow.repository(SshItemRepository).delete(row)
    audit.record(uow, actor, "jumpoints.ssh_item.delete", row.name)


def ssh_target(uow: UnitOfWork, setup: JumpointsSetup, item: SshItemView) -> SshTarget:
    """Where the Jumpoint connects and with what: the only place a secret is unsealed."""
    credential = _credential(uow, item.credential_id)
    secret = setup.unseal(credential.secret, credential.seal_id).decode()
    chosen = {"password": secret} if credential.kind == "password" else {"private_key": secret}
    return SshTarget(
        host=item.host, port=item.port, username=item.username, host_key=item.host_key, **chosen
    )
