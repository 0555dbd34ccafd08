"""Listen addresses (added, enabled and disabled while the appliance runs) and the NTP server."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Protocol

from bastion.network.models import ListenAddressRow
from bastion.network.ntp import ClockMonitor
from bastion.network.repository import ListenAddressRepository
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError, InvalidInputError, NotFoundError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork
from bastion.supervisor.sockets import (
    ListenAddress,
    ListenAddressError,
    ListenError,
    parse_listen_address,
)

NTP_SERVER_KEY = "network.ntp_server"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$"
)


class Listeners(Protocol):
    """Opens and closes the sockets the appliance serves on, while it runs."""

    async def open(self, address: ListenAddress) -> None:
        """Start serving on `address`; raise `ListenError` if it cannot be bound."""

    async def close(self, address: ListenAddress) -> None: ...

    def active(self) -> list[ListenAddress]: ...


@dataclass(frozen=True)
class NetworkSetup:
    """How this appliance is reached and keeps time: its listeners and its NTP monitor."""

    listeners: Listeners
    clock: ClockMonitor
    ntp_server_default: str


@dataclass(frozen=True)
class ListenAddressView:
    id: int
    address: str
    enabled: bool
    serving: bool


def _address(row: ListenAddressRow) -> ListenAddress:
    return ListenAddress(row.host, row.port)


def list_addresses(uow: UnitOfWork, listeners: Listeners) -> list[ListenAddressView]:
    active = set(listeners.active())
    return [
        ListenAddressView(r.id, str(_address(r)), r.enabled, _address(r) in active)
        for r in uow.repository(ListenAddressRepository).all()
    ]


def _parse(text: str) -> ListenAddress:
    try:
        return parse_listen_address(text)
    except ListenAddressError as error:
        raise InvalidInputError(str(error)) from None


async def _open(listeners: Listeners, address: ListenAddress) -> None:
    try:
        await listeners.open(address)
    except ListenError as error:
        raise InvalidInputError(str(error)) from None


async def add_address(
    uow: UnitOfWork, listeners: Listeners, actor: Actor, text: str
) -> ListenAddressView:
    """Bind the address first; only an address that serves is saved (and committed).
    The database is read and written on worker threads, the socket opened on the loop."""
    address = _parse(text)
    await asyncio.to_thread(_refuse_listed, uow, address)
    await _open(listeners, address)
    return await asyncio.to_thread(_save_added, uow, actor, address)


def _refuse_listed(uow: UnitOfWork, address: ListenAddress) -> None:
    if uow.repository(ListenAddressRepository).find(address.host, address.port) is not None:
        raise ConflictError(f"{address} is already in the list; enable it there instead.")


def _save_added(uow: UnitOfWork, actor: Actor, address: ListenAddress) -> ListenAddressView:
    row = uow.repository(ListenAddressRepository).add(
        ListenAddressRow(host=address.host, port=address.port, enabled=True, created_at=utc_now())
    )
    audit.record(uow, actor, "network.listen_address.add", str(address))
    added = ListenAddressView(row.id, str(address), True, True)
    uow.commit()
    return added


async def set_enabled(
    uow: UnitOfWork, listeners: Listeners, actor: Actor, row_id: int, enabled: bool
) -> ListenAddressView:
    """Open or close the address, then save the change (committed); as `add_address`,
    the database off the loop."""
    address, was_enabled = await asyncio.to_thread(_to_change, uow, row_id, enabled)
    if enabled and not was_enabled:
        await _open(listeners, address)
    elif not enabled and was_enabled:
        await listeners.close(address)
    return await asyncio.to_thread(_save_enabled, uow, actor, row_id, enabled)


def _to_change(uow: UnitOfWork, row_id: int, enabled: bool) -> tuple[ListenAddress, bool]:
    row = _row(uow, row_id)
    address = _address(row)
    if not enabled and row.enabled and _enabled_count(uow) <= 1:
        raise ConflictError(
            f"{address} is the only enabled address; enable another before disabling it."
        )
    return address, row.enabled


def _enabled_count(uow: UnitOfWork) -> int:
    return sum(r.enabled for r in uow.repository(ListenAddressRepository).all())


def _save_enabled(uow: UnitOfWork, actor: Actor, row_id: int, enabled: bool) -> ListenAddressView:
    row = _row(uow, row_id)
    address = _address(row)
    if enabled != row.enabled:
        row.enabled = enabled
        action = "enable" if enabled else "disable"
        audit.record(uow, actor, f"network.listen_address.{action}", str(address))
    changed = ListenAddressView(row.id, str(address), row.enabled, enabled)
    uow.commit()
    return changed


def _row(uow: UnitOfWork, row_id: int) -> ListenAddressRow:
    row = uow.repository(ListenAddressRepository).get(row_id)
    if row is None:
        raise NotFoundError(f"There is no listen address with id {row_id}; reload the list.")
    return row


def remove_address(uow: UnitOfWork, actor: Actor, row_id: int) -> None:
    row = _row(uow, row_id)
    if row.enabled:
        raise ConflictError(f"Disable {_address(row)} before removing it.")
    uow.session.delete(row)
    audit.record(uow, actor, "network.listen_address.remove", str(_address(row)))


def ensure_startup_addresses(uow: UnitOfWork, texts: list[str]) -> list[ListenAddress]:
    """The addresses given on the command line are kept and enabled; returns all enabled ones."""
    for text in texts:
        address = _parse(text)
        row = uow.repository(ListenAddressRepository).find(address.host, address.port)
        if row is None:
            uow.repository(ListenAddressRepository).add(
                ListenAddressRow(
                    host=address.host, port=address.port, enabled=True, created_at=utc_now()
                )
            )
        else:
            row.enabled = True
    return [_address(r) for r in uow.repository(ListenAddressRepository).all() if r.enabled]


def ntp_server(uow: UnitOfWork, default: str) -> str:
    return str(uow.settings.get(NTP_SERVER_KEY, default))


def set_ntp_server(uow: UnitOfWork, actor: Actor, server: str) -> str:
    server = server.strip()
    if server and not _HOSTNAME.match(server) and not _is_ip(server):
        raise InvalidInputError(
            f"{server!r} is not a host name or IP address; for example pool.ntp.org or 192.0.2.1."
        )
    uow.settings.set(NTP_SERVER_KEY, server)
    audit.record(uow, actor, "network.ntp_server.set", server or "(none)")
    return server


async def change_ntp_server(uow: UnitOfWork, clock: ClockMonitor, actor: Actor, server: str) -> str:
    """Save the NTP server (committed, on a worker thread), then measure against it so
    that the status page shows the result; the page and the API both run this."""

    def save() -> str:
        saved = set_ntp_server(uow, actor, server)
        uow.commit()
        return saved

    saved = await asyncio.to_thread(save)
    await clock.measure()
    return saved


def _is_ip(text: str) -> bool:
    try:
        parse_listen_address(f"[{text}]:1" if ":" in text else f"{text}:1")
    except ListenAddressError:
        return False
    return True
