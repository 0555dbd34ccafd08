"""The vendor side: signed releases, per-site TUF repositories, rollout, download keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.update_service.errors import UpdateServiceError
from bastion.update_service.settings import UpdateServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["UpdateServiceError", "UpdateServiceSettings", "create_app"]


def create_app(settings: UpdateServiceSettings) -> FastAPI:
    """The update service's ASGI app (imported lazily: appliances only need the key format)."""
    from bastion.update_service.app import create_app as build

    return build(settings)
