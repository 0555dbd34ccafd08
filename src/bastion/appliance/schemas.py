"""Response bodies of the appliance's status in the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ClockOut(BaseModel):
    level: str
    message: str
    offset_seconds: float | None
    measured_at: datetime | None


class StatusOut(BaseModel):
    product_version: str
    build: str
    base_version: str
    started_at: datetime
    uptime_seconds: float
    clock_utc: datetime
    clock: ClockOut
