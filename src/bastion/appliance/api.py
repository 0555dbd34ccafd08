"""The appliance's status in the JSON API."""

from __future__ import annotations

from bastion.accounts.deps import ApiActorDep
from bastion.appliance import schemas as s
from bastion.appliance import service as status
from bastion.network.api import NetworkDep
from bastion.platform import build
from bastion.platform.clock import utc_now
from bastion.platform.web.deps import RuntimeDep
from bastion.platform.web.routing import Router
from bastion.supervisor import slots

router = Router(prefix="/api/v1", tags=["appliance"])


@router.get("/status", response_model=s.StatusOut)
def get_status(runtime: RuntimeDep, network: NetworkDep, actor: ApiActorDep) -> s.StatusOut:
    now = utc_now()
    b = status.basics(
        build.site_version(),
        build.build_id(),
        build.base_description(slots.base_version(runtime.settings.data_dir)),
        runtime.started_at,
        now,
        network.clock.reading,
    )
    clock = s.ClockOut(
        level=b.clock.level.value,
        message=b.clock.message,
        offset_seconds=b.clock.offset_seconds,
        measured_at=b.clock_measured_at,
    )
    return s.StatusOut(
        product_version=b.product_version,
        build=b.build,
        base_version=b.base_version,
        started_at=b.started_at,
        uptime_seconds=b.uptime.total_seconds(),
        clock_utc=now,
        clock=clock,
    )
