"""Role swap (R30): Become Primary on the backup, Become Backup on the primary, each with
or without a data sync first, forced when the peer cannot be reached; the periodic check
of the peer, and a split brain (both primary, or both backup) found and fixed.

The appliance that gives up the primary role always does so first, so that two
primaries exist only when an administrator forced it. A swap moves the shared IP
addresses with the role: disabled on the appliance that steps down, enabled (and
announced) on the one that takes over.

An appliance that becomes the backup forgets its position in the other's journal: its
next sync loads a snapshot of the new primary, and what it changed since the last sync
in the other direction is replaced (which is why a swap syncs first by default).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
from dataclasses import dataclass, replace
from datetime import datetime

import httpx
from sqlalchemy import delete

from bastion.failover import dns_swing, journal, service, shared_ips, state
from bastion.failover.peer import PeerClient
from bastion.failover.rules import FailoverError, PeerAddress, PeerRefusedError, Role
from bastion.failover.service import FailoverSetup
from bastion.failover.state import Pair, PeerStatus
from bastion.platform import audit
from bastion.platform.clock import utc_now
from bastion.platform.errors import ConflictError
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

log = logging.getLogger("bastion.failover")

SPLIT_BRAIN = "split brain"
UNREACHABLE = "unreachable"


def _peer_of(pair: Pair, role: Role) -> Pair:
    if pair.role is Role.NONE or pair.peer is None:
        raise ConflictError("This appliance is not in a failover pair.")
    if pair.role is role:
        raise ConflictError(f"This appliance is already the {role.value}.")
    return pair


def _take_role(setup: FailoverSetup, role: Role, forced: bool = False) -> Pair:
    """Record `role` here and move the shared addresses with it. Stepping down fails,
    changing nothing, when the addresses cannot be removed; taking over does not (the
    role is recorded, the problem logged, and the periodic check tries again)."""
    pair = setup.pair()
    now = utc_now().isoformat()
    details = {**pair.details, "forced": forced}
    if role is Role.BACKUP:
        try:
            shared_ips.disable(setup.shared_ips)
        except shared_ips.SharedIpError as error:
            raise ConflictError(f"{error} Nothing changed: still the primary.") from None
        _forget_position(setup)
        taken = replace(
            pair, role=role, role_since=now, last_sync_time="", last_sync_status="",
            details=details,
        )  # fmt: skip
        state.write_pair(setup.state_dir, taken)
    else:
        taken = replace(pair, role=role, role_since=now, details=details)
        state.write_pair(setup.state_dir, taken)
        try:  # before the site's traffic comes: the certificate its clients trust
            setup.serve_site_certificate()
        except Exception:
            log.exception("now primary, but the site's certificate is not served")
        try:
            shared_ips.enable(setup.shared_ips)
        except shared_ips.SharedIpError as error:
            log.error("now primary, but the shared addresses are not enabled: %s", error)
        dns_swing.swing_here(setup.dns_swing, setup.state_dir)  # never raises
    return taken


def _forget_position(setup: FailoverSetup) -> None:
    """The next sync starts from a snapshot of the (new) primary."""
    if setup.sync is None:
        return
    with setup.sync.site.engine.begin() as connection:
        connection.execute(
            delete(journal.MARKS).where(journal.MARKS.c.name.in_(["primary_epoch", "position"]))
        )


def become_primary(
    uow: UnitOfWork, setup: FailoverSetup, actor: Actor, sync_first: bool, force: bool
) -> Pair:
    """On the backup. `sync_first`: pull the primary's last changes before taking over;
    `force`: take over even though the primary cannot be told to step down."""
    pair = _peer_of(setup.pair(), Role.PRIMARY)
    assert pair.peer is not None
    skipped = ""
    if sync_first:
        try:
            service.run_sync(setup)
        except ConflictError as error:
            if not force:
                raise ConflictError(
                    f"{error} Nothing changed: this appliance is still the backup. Become "
                    "primary without a sync first, or with force if the primary is gone."
                ) from None
            skipped = str(error)
    try:
        with setup.reach(pair.peer) as client:
            client.call("POST", "/demote", json={})
        told = True
    except FailoverError as error:
        if not force:
            raise ConflictError(
                f"The primary could not be told to step down: {error} Nothing changed. If "
                "it is gone, become primary with force; when it comes back, both appliances "
                "are primary until that split brain is fixed on the Failover page."
            ) from None
        told = False
    taken = _take_role(setup, Role.PRIMARY, forced=not told)
    audit.record(
        uow, actor, "failover.become_primary", str(pair.peer.address),
        synced=sync_first and not skipped, forced=not told,
    )  # fmt: skip
    return taken


def become_backup(
    uow: UnitOfWork, setup: FailoverSetup, actor: Actor, sync_first: bool, force: bool
) -> Pair:
    """On the primary. `sync_first`: the backup pulls the last changes before it takes
    over; `force`: step down even though the peer cannot be told to take over."""
    pair = _peer_of(setup.pair(), Role.BACKUP)
    assert pair.peer is not None
    try:
        with setup.reach(pair.peer) as client:
            if sync_first:
                client.call("POST", "/sync", json={})
            _take_role(setup, Role.BACKUP)
            try:
                client.call("POST", "/promote", json={})
            except FailoverError:
                _take_role(setup, Role.PRIMARY)
                raise
        told = True
    except FailoverError as error:
        if not force:
            raise ConflictError(
                f"The peer could not take over: {error} Nothing changed: this appliance is "
                "still the primary."
            ) from None
        if setup.pair().role is not Role.BACKUP:
            _take_role(setup, Role.BACKUP, forced=True)
        told = False
    audit.record(
        uow, actor, "failover.become_backup", str(pair.peer.address),
        synced=sync_first and told, forced=not told,
    )  # fmt: skip
    return setup.pair()


# -- asked by the peer -----------------------------------------------------------------------


def demote(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> Pair:
    """The peer takes over: step down (already the backup: nothing to do)."""
    pair = setup.pair()
    if pair.role is Role.NONE:
        raise ConflictError("This appliance is not in a failover pair.")
    if pair.role is Role.BACKUP:
        return pair
    taken = _take_role(setup, Role.BACKUP)
    audit.record(uow, actor, "failover.demoted", str(pair.peer.address) if pair.peer else "")
    return taken


def promote(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> Pair:
    """The peer stepped down: take over (already the primary: nothing to do)."""
    pair = setup.pair()
    if pair.role is Role.NONE:
        raise ConflictError("This appliance is not in a failover pair.")
    if pair.role is Role.PRIMARY:
        return pair
    taken = _take_role(setup, Role.PRIMARY)
    audit.record(uow, actor, "failover.promoted", str(pair.peer.address) if pair.peer else "")
    return taken


# -- the periodic check of the peer, and a split brain --------------------------------------


CHECK_CONNECT_SECONDS = 3.0
"""A peer check gives up connecting after this long (a peer that is gone may not even
refuse the connection)."""
TEST_ADDRESS_SECONDS = 2.0


def check_peer(setup: FailoverSetup) -> PeerStatus | None:
    """Reach the peer, learn its role, record what was found (None: not in a pair). Also
    keeps the shared addresses where the role says they belong."""
    pair = setup.pair()
    if pair.role is Role.NONE or pair.peer is None:
        return None
    keep_addresses(setup, pair)
    now = utc_now().isoformat()
    try:
        key = setup.key()
        with PeerClient(
            pair.peer.address, key, setup.peer_certificates(pair.peer), CHECK_CONNECT_SECONDS
        ) as client:
            met = client.introduce()
    except (PeerRefusedError, ConflictError) as error:
        return state.record_status(setup.state_dir, now, "refused", "", str(error))
    except FailoverError as error:
        return state.record_status(setup.state_dir, now, UNREACHABLE, "", str(error))
    if met.role == pair.role.value:
        message = split_brain_message(pair.role)
        return state.record_status(setup.state_dir, now, SPLIT_BRAIN, met.role, message)
    if met.role == Role.NONE.value:
        message = "The peer is standalone: it left the pair (break the pair here too)."
        return state.record_status(setup.state_dir, now, "left", met.role, message)
    return state.record_status(setup.state_dir, now, "ok", met.role, "")


# -- automatic failover ----------------------------------------------------------------------


def unreachable_for(checked: PeerStatus, now: datetime) -> float:
    """How long the peer has not answered, without a break, as the checks saw it."""
    if checked.status != UNREACHABLE or not checked.history:
        return 0.0
    since = datetime.fromisoformat(checked.history[0]["since"])
    return max(0.0, (now - since).total_seconds())


def answering(addresses: list[PeerAddress], timeout: float = TEST_ADDRESS_SECONDS) -> str:
    """The first of the site's test addresses that accepts a connection ("" if none)."""
    for address in addresses:
        try:
            socket.create_connection((address.host, address.port), timeout).close()
        except OSError:
            continue
        return str(address)
    return ""


def take_over_if_due(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> bool:
    """Automatic failover, on a backup where it is turned on: take over once the primary
    has not answered for the set time and none of the site's test addresses answers
    either (one that does means the site is still served: the fault is between the
    appliances, and taking over would make two primaries)."""
    wait = setup.auto_takeover_seconds
    pair = setup.pair()
    if wait <= 0 or pair.role is not Role.BACKUP or pair.peer is None:
        return False
    checked = state.read_status(setup.state_dir)
    down = unreachable_for(checked, utc_now())
    if down < wait:
        return False
    served_at = answering(setup.test_addresses)
    if served_at:
        log.warning(
            "the primary has not answered for %.0f s, but the site's test address %s does: "
            "not taking over",
            down,
            served_at,
        )
        return False
    _take_role(setup, Role.PRIMARY, forced=True)
    now = utc_now().isoformat()
    message = f"Took over automatically: the primary did not answer for {down:.0f} s."
    state.record_status(setup.state_dir, now, "taken over", "", message)
    audit.record(
        uow, actor, "failover.automatic_takeover", str(pair.peer.address),
        unreachable_seconds=round(down),
        test_addresses=[str(a) for a in setup.test_addresses],
    )  # fmt: skip
    log.warning("%s", message)
    return True


def split_brain_message(role: Role) -> str:
    both = "primary" if role is Role.PRIMARY else "backup"
    return (
        f"Both appliances are {both}. Fix it on the appliance whose data should win: it "
        "stays (or becomes) the primary, and the other becomes its backup and replaces "
        "its data with the winner's at its next sync (sessions ended there since the "
        "split are lost unless the pair is broken first)."
    )


def keep_addresses(setup: FailoverSetup, pair: Pair) -> None:
    """The shared addresses on the primary, never on the backup (a standalone appliance
    leaves them as they are)."""
    if not setup.shared_ips:
        return
    try:
        if pair.role is Role.PRIMARY:
            shared_ips.enable(setup.shared_ips)
        elif pair.role is Role.BACKUP:
            shared_ips.disable(setup.shared_ips)
    except shared_ips.SharedIpError as error:
        log.error("shared addresses: %s", error)


def fix_split_brain(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> Pair:
    """This appliance's data wins: it is (or becomes) the primary and the peer becomes
    its backup."""
    pair = setup.pair()
    if pair.role is Role.NONE or pair.peer is None:
        raise ConflictError("This appliance is not in a failover pair.")
    try:
        with setup.reach(pair.peer) as client:
            met = client.introduce()
            if met.role != pair.role.value:
                raise ConflictError(
                    f"There is no split brain: this appliance is {pair.role.value} and the "
                    f"peer is {met.role}."
                )
            client.call("POST", "/demote", json={})
    except FailoverError as error:
        raise ConflictError(f"The peer could not be reached to fix it: {error}") from None
    if pair.role is not Role.PRIMARY:
        _take_role(setup, Role.PRIMARY)
    state.record_status(
        setup.state_dir, utc_now().isoformat(), "ok", Role.BACKUP.value, "split brain fixed"
    )
    audit.record(uow, actor, "failover.fix_split_brain", str(pair.peer.address))
    return setup.pair()


# -- where the site address leads (a NAT or DNS swing's check) ------------------------------

SITE_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class SiteCheck:
    """What answered at the site's address: its role (None: nothing answered)."""

    url: str
    role: str | None
    certificate_sha256: str
    message: str

    @property
    def leads_to_primary(self) -> bool:
        return self.role == Role.PRIMARY.value


def check_site_address(setup: FailoverSetup) -> SiteCheck:
    """Ask the site's public address for its health: after a NAT swing (or a DNS swing,
    or a move of a shared address), it must lead to the primary. Nothing is sent; the
    certificate is not checked, only shown: this reads the public health answer."""
    url = setup.site_url.rstrip("/")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            httpx.Client(verify=context, timeout=SITE_CHECK_SECONDS) as client,
            client.stream("GET", f"{url}/check_health") as response,
        ):
            stream = response.extensions.get("network_stream")
            tls = stream.get_extra_info("ssl_object") if stream is not None else None
            der = tls.getpeercert(True) if tls is not None else None
            response.read()
        role = str(response.json().get("failover_role", ""))
    except (httpx.HTTPError, ValueError, AttributeError) as error:
        return SiteCheck(
            url, None, "", f"Nothing answered at {url} ({type(error).__name__}: {error})."
        )
    fingerprint = hashlib.sha256(der).hexdigest() if der else ""
    if role == Role.PRIMARY.value:
        message = f"{url} leads to the primary."
    elif role == Role.BACKUP.value:
        message = (
            f"{url} leads to the backup: point the NAT rule (or DNS record) for the site "
            "address at the primary."
        )
    else:
        message = f"{url} leads to an appliance in no pair ({role or 'no role given'})."
    return SiteCheck(url, role, fingerprint, message)
