"""Who acts: roles, the principal behind a request, and the actor the audit log names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    REPRESENTATIVE = "representative"


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in account or an API client."""

    name: str
    role: Role
    account_id: int | None = None
    api_client_id: int | None = None

    @property
    def is_administrator(self) -> bool:
        return self.role is Role.ADMINISTRATOR


@dataclass(frozen=True)
class Actor:
    """The principal behind a request and the address it came from."""

    principal: Principal | None
    source: str

    @property
    def name(self) -> str:
        return self.principal.name if self.principal else "anonymous"


APPLIANCE = Actor(Principal("appliance", Role.ADMINISTRATOR), "appliance")
"""The appliance itself, acting on its own (its first start, a scheduled task)."""
