"""The gateway processes of a serving worker: started on go-live, watched, restarted if
one dies, stopped when the worker stops; and the worker's way to reach the clients they
hold (revoke, uninstall, wake)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bastion.agents.protocol import Command, Uninstall, Upgrade
from bastion.agents.wake import make_wake, send_wake, wake_key
from bastion.jump_clients import service, upgrades
from bastion.jump_clients.builds import (
    Bandwidth,
    Build,
    create_bandwidth_file,
    current_build,
    download_token,
)
from bastion.jump_clients.port import SocketMessagePort, gateway_socket
from bastion.jump_clients.routing import Deliver, Disconnect, GatewayMessage
from bastion.jump_clients.shared_rate import create_rate_file
from bastion.jump_clients.store import UNINSTALL
from bastion.jump_clients.upgrades import BuildInfo, Order
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork

log = logging.getLogger("bastion.gateway")
RESTART_DELAY = 2.0
STOP_GRACE = 10.0
REVOKED_RETRY = 86_400.0


class GatewayFleet:
    """The worker's gateway processes, sharing one listening socket it was given."""

    def __init__(
        self, listening: socket.socket, data_dir: Path, processes: int, wake_secret: bytes
    ) -> None:
        self.listening = listening
        self.data_dir = data_dir
        self.processes = max(1, processes)
        self.wake_secret = wake_secret
        self.port = SocketMessagePort([gateway_socket(data_dir, i) for i in range(self.processes)])
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._watching: asyncio.Task[None] | None = None
        self._rate_file = data_dir / "state" / "gateway-rate"
        self.bandwidth_file: Path | None = None
        """The bandwidth ledger the worker shares with its gateway processes, once started."""

    def start(self) -> None:
        self.listening.set_inheritable(True)
        create_rate_file(self._rate_file, time.monotonic())  # one clock for every process
        self.bandwidth_file = self.data_dir / "state" / "gateway-bandwidth"
        create_bandwidth_file(self.bandwidth_file)
        for index in range(self.processes):
            self._children[index] = self._spawn(index)
        self._watching = asyncio.create_task(self._watch(), name="gateway processes")

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "BASTION_GATEWAY_FD": str(self.listening.fileno()),
            "BASTION_GATEWAY_INDEX": str(index),
            "BASTION_GATEWAY_PROCESSES": str(self.processes),
            "BASTION_GATEWAY_RATE_FILE": str(self._rate_file),
            "BASTION_GATEWAY_BANDWIDTH_FILE": str(self.bandwidth_file),
            "BASTION_GATEWAY_PARENT_PID": str(os.getpid()),
        }
        command = [sys.executable, "-m", "bastion.entrypoints.gateway"]
        child = subprocess.Popen(command, env=env, pass_fds=(self.listening.fileno(),))
        log.info("started gateway process %s (pid %s)", index, child.pid)
        return child

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RESTART_DELAY)
            for index, child in list(self._children.items()):
                if child.poll() is not None:
                    log.error(
                        "gateway process %s exited with %s; restarting", index, child.returncode
                    )
                    self._children[index] = self._spawn(index)

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        for child in self._children.values():
            child.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for child in self._children.values():
            while child.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if child.poll() is None:
                child.kill()

    # -- reaching clients ---------------------------------------------------------------

    async def publish(self, message: GatewayMessage) -> bool:
        return await self.port.publish(message)

    async def revoked(self, client_id: str) -> bool:
        """Drop the client now; it is refused whenever it comes back."""
        detail = "this Jump Client was revoked by an administrator"
        return await self.publish(Disconnect(client_id, "revoked", REVOKED_RETRY, detail))

    async def uninstall(self, client_id: str) -> bool:
        """Tell a connected client to uninstall itself (others are told at their next contact)."""
        command = Command(command_id=UNINSTALL + os.urandom(8).hex(), body=Uninstall())
        return await self.publish(Deliver(client_id, command))

    async def wake(self, client_id: str, address: str, port: int) -> str:
        """Ask a passive client to check in now, on its wake port; its answer."""
        call = make_wake(wake_key(self.wake_secret, client_id), client_id, time.time())
        return await send_wake(address, port, call)


async def revoke_client(
    runtime: Runtime, uow: UnitOfWork, actor: Actor, row_id: int
) -> service.JumpClientView:
    """Revoke a client and drop its connection at once: the page and the API both run this."""
    revoked = await _committed(runtime, uow, service.revoke_client, actor, row_id)
    fleet = runtime.maybe(GatewayFleet)
    if fleet is not None:
        await fleet.revoked(revoked.client_id)
    return revoked


async def delete_client(
    runtime: Runtime, uow: UnitOfWork, actor: Actor, row_id: int
) -> service.JumpClientView:
    """Delete a client: a connected one uninstalls itself at once, others at their next
    contact, and its record goes then. The page and the API both run this."""
    deleted = await _committed(runtime, uow, service.delete_client, actor, row_id)
    fleet = runtime.maybe(GatewayFleet)
    if fleet is not None:
        await fleet.uninstall(deleted.client_id)
    return deleted


async def _committed(
    runtime: Runtime,
    uow: UnitOfWork,
    change: Callable[[UnitOfWork, service.JumpClientsSetup, Actor, int], service.JumpClientView],
    actor: Actor,
    row_id: int,
) -> service.JumpClientView:
    """`change`, committed, on a worker thread (the database is not reached from the loop)."""

    def run() -> service.JumpClientView:
        done = change(uow, runtime.part(service.JumpClientsSetup), actor, row_id)
        uow.commit()
        return done

    return await asyncio.to_thread(run)


class Rollout:
    """Upgrades the fleet to the site's build: every second it starts the next upgrades
    (under the site's caps), sends them after commit, and halts on failures. A place
    freed waits for the next tick, so the tick bounds how long places stand empty."""

    TICK = 1.0

    def __init__(
        self, fleet: GatewayFleet, runtime: Runtime, site_version: str, data_dir: Path
    ) -> None:
        self.fleet, self.runtime, self.site_version = fleet, runtime, site_version
        self.data_dir = data_dir
        self.bandwidth = Bandwidth(100, fleet.bandwidth_file)
        """Shared with the gateway processes: it keeps the site's cap in the ledger."""
        self._build: Build | None = None

    def build(self) -> Build | None:
        if self._build is None or self._build.version != self.site_version:
            self._build = current_build(self.data_dir)
        return self._build

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            try:
                await self.tick()
            except Exception:  # the loop outlives one bad tick; the next one tries again
                log.exception("the Jump Client rollout could not take its next step")

    async def tick(self) -> None:
        build = await asyncio.to_thread(self.build)
        info = None if build is None else BuildInfo(build.version, build.sha256, build.size)
        orders = await asyncio.to_thread(self._plan, info)
        sent = await self.fleet.port.publish_many(
            [Deliver(order.client_id, self._command(order)) for order in orders]
        )
        unsent = [order for order, taken in zip(orders, sent, strict=True) if not taken]
        if unsent:
            await asyncio.to_thread(self._not_sent, unsent)

    def _plan(self, build: BuildInfo | None) -> list[Order]:
        with self.runtime.uow() as uow:
            uow.writing()  # the gateways write presence meanwhile
            upgrades.halt_if_failing(uow, self.site_version)
            self.bandwidth.set_rate(service.settings(uow).upgrade_bandwidth_mib)
            orders = upgrades.plan(uow, self.site_version, build)
            uow.commit()
        return orders

    async def download_stalled(self, client_id: str, stall_seconds: float) -> None:
        """A client stopped reading its download of the build and was cut off."""
        log.warning(
            "Jump Client %s read nothing of the build for %g s; its download was aborted "
            "and its upgrade counts as failed",
            client_id,
            stall_seconds,
        )
        await asyncio.to_thread(self._stalled, client_id, stall_seconds)

    def _stalled(self, client_id: str, stall_seconds: float) -> None:
        with self.runtime.uow() as uow:
            upgrades.download_stalled(uow, client_id, stall_seconds)
            uow.commit()

    def _not_sent(self, orders: list[Order]) -> None:
        with self.runtime.uow() as uow:
            upgrades.not_sent(uow, orders)
            uow.commit()

    def _command(self, order: Order) -> Command:
        token = download_token(
            self.fleet.wake_secret, order.client_id, order.build.sha256, time.time()
        )
        body = Upgrade(
            version=order.build.version,
            sha256=order.build.sha256,
            size=order.build.size,
            path=f"/api/v1/jump-clients/builds/{order.build.sha256}?token={token}",
        )
        return Command(command_id=order.command_id, body=body)
