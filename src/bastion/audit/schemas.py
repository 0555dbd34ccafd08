"""Response bodies of the audit log's part of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    source: str


class AuditPage(BaseModel):
    total: int
    entries: list[AuditOut]
