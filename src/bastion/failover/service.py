"""Failover use cases: the inter-appliance key, answering a peer's challenge, and
establishing a pair from the intended primary (checked in both directions)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bastion.failover import merge as merging
from bastion.failover import rules, shared_ips, state
from bastion.failover import sync as pulling
from bastion.failover.dns_swing import DnsSwing
from bastion.failover.peer import CONNECT_SECONDS, PeerClient
from bastion.failover.rules import FailoverError, PeerAddress, Role
from bastion.failover.shared_ips import SharedIp
from bastion.failover.state import KeyStore, Pair, Peer
from bastion.failover.sync import SyncOutcome, SyncSite
from bastion.platform import audit, identity
from bastion.platform.clock import utc_now
from bastion.platform.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
)
from bastion.platform.principals import Actor
from bastion.platform.unit_of_work import UnitOfWork

log = logging.getLogger("bastion.failover")


@dataclass
class FailoverSetup:
    """This appliance's side of a pair: its key, its state and what it runs."""

    keys: KeyStore
    state_dir: Path
    site_hostname: str
    version: str
    dialect: str
    sync: SyncSite | None = None
    first_sync_seconds: float = pulling.FIRST_SYNC_SECONDS
    shared_ips: list[SharedIp] = field(default_factory=list)
    """Enabled only while this appliance is the primary."""
    auto_takeover_seconds: float = 0.0
    """Automatic failover: a backup takes over once the primary has not answered for this
    long (0: never by itself)."""
    test_addresses: list[PeerAddress] = field(default_factory=list)
    """The site's test addresses: while one answers, a backup does not take over."""
    site_url: str = ""
    """The site's public address (`BASTION_PUBLIC_URL`, else the site hostname): where
    clients reach the primary, through a shared address, DNS or NAT."""
    dns_swing: DnsSwing | None = None
    """Points the site's DNS name here when this appliance takes the primary role."""
    served_fingerprints: Callable[[], set[str]] = set
    """SHA-256 of the certificates this appliance serves now: what a peer's proof of the
    key must be bound to (`rules.BINDING`)."""
    serve_site_certificate: Callable[[], None] = lambda: None
    """Serve the default certificate of the site tables from now on (on taking the
    primary role: the one the syncs brought, which the site's clients trust)."""

    def appliance_id(self) -> str:
        """This appliance's own id (`state/appliance.json`), to know itself as a peer."""
        return str((identity.read(self.state_dir) or {}).get("appliance_id", ""))

    def pair(self) -> Pair:
        return state.read_pair(self.state_dir)

    def peer_certificates(self, peer: Peer) -> frozenset[str]:
        """What the peer may show: the certificate pinned when the pair was made, or one
        this appliance serves itself. An appliance that restarts serves the default
        certificate of its site tables, which a sync made the other's (or, once the roles
        swapped, this one's own): a certificate whose key only the pair holds, so an
        appliance in between cannot show it."""
        return frozenset({peer.fingerprint, *self.served_fingerprints()})

    def reach(self, peer: Peer, connect_seconds: float = CONNECT_SECONDS) -> PeerClient:
        """The peer over HTTPS, its certificate held to `peer_certificates`."""
        return PeerClient(peer.address, self.key(), self.peer_certificates(peer), connect_seconds)

    def key(self) -> bytes:
        found = self.keys.read()
        if found is None:
            raise ConflictError(
                "This appliance has no inter-appliance key; set one under Management > "
                "Security (the same on both appliances of the pair)."
            )
        return found


# -- the key -------------------------------------------------------------------------------


def set_key(uow: UnitOfWork, setup: FailoverSetup, actor: Actor, key: str) -> None:
    problems = rules.key_problems(key)
    if problems:
        raise InvalidInputError(" ".join(problems))
    setup.keys.store(key)
    audit.record(uow, actor, "failover.key", setup.site_hostname)


# -- answering a peer ----------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def challenge(setup: FailoverSetup) -> str:
    return rules.stamp(setup.key(), "challenge", _now(), secrets.token_hex(16))


@dataclass(frozen=True)
class Proof:
    """A caller's proof of the key, bound (`rules.BINDING`) to the certificate it was served."""

    challenge: str
    nonce: str
    proof: str
    binding: str
    certificate: str
    """The SHA-256 of the certificate the caller says it was served."""


def prove(setup: FailoverSetup, given: Proof) -> tuple[str, str]:
    """The caller's proof checked; this appliance's proof and a ticket in return."""
    key = setup.key()
    now = _now()
    if not rules.stamp_valid(key, "challenge", given.challenge, now, rules.CHALLENGE_SECONDS):
        raise PermissionDeniedError("The challenge is unknown or expired; ask for a new one.")
    if given.binding != rules.BINDING:
        raise PermissionDeniedError(
            "The appliance that asked proves the inter-appliance key without binding it to "
            "the TLS connection, as earlier builds did; this one accepts only a bound proof. "
            "Upgrade that appliance to this version first."
        )
    served = setup.served_fingerprints()
    for certificate in sorted(served):
        expected = rules.caller_proof(key, given.challenge, given.nonce, certificate)
        if rules.proof_matches(expected, given.proof):
            ticket = rules.stamp(key, "ticket", now, secrets.token_hex(16))
            return rules.answer_proof(key, given.challenge, given.nonce, certificate), ticket
    claimed = rules.caller_proof(key, given.challenge, given.nonce, given.certificate)
    if (
        given.certificate
        and given.certificate not in served
        and rules.proof_matches(claimed, given.proof)
    ):
        log.warning(
            "A peer's proof of the key was made for certificate %s…, which this appliance "
            "does not serve: something between the appliances ends TLS",
            given.certificate[:16],
        )
        raise PermissionDeniedError(
            "The appliance that asked holds the same key, but was served another TLS "
            f"certificate (SHA-256 {given.certificate[:16]}…) than this appliance's: "
            "something between the two appliances ends TLS (a proxy or an interception "
            "device). Let them reach each other directly."
        )
    raise PermissionDeniedError(
        "The inter-appliance keys of the two appliances differ; set the same key on "
        "both (Management > Security)."
    )


def check_ticket(setup: FailoverSetup, ticket: str) -> None:
    if not rules.stamp_valid(setup.key(), "ticket", ticket, _now(), rules.TICKET_SECONDS):
        raise PermissionDeniedError(
            "Prove the inter-appliance key first (ticket missing or expired)."
        )


# -- what a backup refuses --------------------------------------------------------------


def refuse_on_backup(state_dir: Path, what: str) -> None:
    """A restore or a reset to factory defaults on a backup: the primary's next sync would
    undo it (and a reset would leave a pair behind that no longer knows its key)."""
    pair = state.read_pair(state_dir)
    if pair.role is Role.BACKUP:
        where = f" ({pair.peer.address})" if pair.peer else ""
        raise ConflictError(
            f"This appliance is the backup of a failover pair{where}: {what} is refused here. "
            "Break the pair first (Management > Failover), or do it on the primary."
        )


# -- establishing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EstablishRequest:
    backup: PeerAddress
    reverse: PeerAddress


def check_request(setup: FailoverSetup, request: EstablishRequest) -> None:
    problem = rules.database_problem(setup.dialect)
    problems = [problem] if problem else []
    for name, address in (("backup", request.backup), ("reverse", request.reverse)):
        problems += rules.address_problems(name, address.host, address.port, setup.site_hostname)
    if problems:
        raise InvalidInputError(" ".join(problems))
    if setup.pair().role is Role.BACKUP:
        raise ConflictError(
            "This appliance is the backup of a pair; establish from the intended primary."
        )


def _meet(setup: FailoverSetup, client: PeerClient) -> str:
    """Introduce both sides; the peer's certificate fingerprint once all checks pass."""
    met = client.introduce()
    if met.appliance and met.appliance == setup.appliance_id():
        raise rules.PeerRefusedError(
            f"{client.name} is this appliance itself; give the other appliance's own address."
        )
    problem = rules.version_problem(setup.version, met.version, client.name) or rules.clock_problem(
        time.time(), met.time, client.name
    )
    if problem:
        raise rules.PeerRefusedError(problem)
    return met.fingerprint


@dataclass(frozen=True)
class Established:
    pair: Pair
    merged: merging.MergeOutcome


def establish(
    uow: UnitOfWork, setup: FailoverSetup, actor: Actor, request: EstablishRequest
) -> Established:
    """From the intended primary: reach the backup, take the sessions it made alone (R32),
    have it reach back, then record both roles (the backup's first, so a failure leaves
    this appliance's role as it was)."""
    check_request(setup, request)
    key = setup.key()
    try:
        with PeerClient(request.backup, key) as client:
            fingerprint = _meet(setup, client)
            merged = merging.merge(sync_site(setup), client, actor)
            body = {"host": request.reverse.host, "port": request.reverse.port}
            client.call("POST", "/join", json=body)
    except FailoverError as error:
        raise ConflictError(str(error)) from None
    peer = Peer(request.backup.host, request.backup.port, fingerprint)
    pair = Pair(Role.PRIMARY, peer, utc_now().isoformat())
    state.write_pair(setup.state_dir, pair)
    state.forget_status(setup.state_dir)
    shared_ips.place(setup.shared_ips, holds=True)
    audit.record(
        uow, actor, "failover.establish", str(request.backup), reverse=str(request.reverse)
    )
    return Established(pair, merged)


def join(uow: UnitOfWork, setup: FailoverSetup, actor: Actor, reverse: PeerAddress) -> Pair:
    """On the intended backup, asked by the primary: reach it back at `reverse`."""
    problems = rules.address_problems("reverse", reverse.host, reverse.port, setup.site_hostname)
    if problems:
        raise InvalidInputError(" ".join(problems))
    if setup.pair().role is Role.PRIMARY:
        raise ConflictError("This appliance is the primary of a pair; it cannot become a backup.")
    try:
        with PeerClient(reverse, setup.key()) as client:
            fingerprint = _meet(setup, client)
    except FailoverError as error:
        raise ConflictError(f"The backup could not reach the primary back: {error}") from None
    peer = Peer(reverse.host, reverse.port, fingerprint)
    pair = Pair(Role.BACKUP, peer, utc_now().isoformat())
    state.write_pair(setup.state_dir, pair)
    state.forget_status(setup.state_dir)
    shared_ips.place(setup.shared_ips, holds=False)
    audit.record(uow, actor, "failover.join", str(reverse))
    return pair


def break_pair(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> str:
    """Break Failover Relationship (R28): this appliance is standalone again, and so is its
    peer when it can be told; if it cannot, what to do there is the answer (else "")."""
    pair = setup.pair()
    if pair.role is Role.NONE:
        raise ConflictError("This appliance is not in a failover pair.")
    left_as_is = ""
    if pair.peer is not None:
        try:
            with setup.reach(pair.peer) as client:
                client.call("POST", "/leave", json={})
        except (FailoverError, ConflictError) as error:  # unreachable, or no key here
            left_as_is = (
                f"{pair.peer.address} could not be told ({error}); it still counts itself "
                "in the pair until the pair is broken there too."
            )
    state.write_pair(setup.state_dir, Pair())
    state.forget_status(setup.state_dir)
    peer = str(pair.peer.address) if pair.peer else ""
    audit.record(uow, actor, "failover.break", peer, peer_told=not left_as_is)
    return left_as_is


def leave(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> None:
    """Asked by the peer that broke the pair: this appliance is standalone again."""
    pair = setup.pair()
    if pair.role is Role.NONE:
        return
    state.write_pair(setup.state_dir, Pair())
    state.forget_status(setup.state_dir)
    audit.record(uow, actor, "failover.leave", str(pair.peer.address) if pair.peer else "")


# -- syncing -----------------------------------------------------------------------------------


def sync_site(setup: FailoverSetup) -> SyncSite:
    if setup.sync is None:
        raise RuntimeError("the failover setup was built without its sync site")
    return setup.sync


def run_sync(setup: FailoverSetup) -> SyncOutcome:
    """On the backup: pull now and record how it went (in `state/failover.json`)."""
    try:
        pair = setup.pair()
        accepted = setup.peer_certificates(pair.peer) if pair.peer else frozenset()
        outcome = pulling.pull(sync_site(setup), pair, setup.key(), accepted)
    except (FailoverError, ValueError, KeyError, OSError) as error:
        pulling.record(setup.state_dir, f"failed: {error}")
        raise ConflictError(
            f"The sync did not finish: {error} What was applied stays; the next sync goes "
            "on from there."
        ) from None
    pulling.record(setup.state_dir, "ok")
    return outcome


def sync_now(uow: UnitOfWork, setup: FailoverSetup, actor: Actor) -> Pair:
    """Sync Now, on either appliance of the pair; returns once the backup has pulled."""
    pair = setup.pair()
    if pair.role is Role.BACKUP:  # not audited here: the backup's site tables mirror the primary's
        run_sync(setup)
        return setup.pair()
    if pair.role is not Role.PRIMARY or pair.peer is None:
        raise ConflictError("This appliance is not in a failover pair; establish one first.")
    try:
        with setup.reach(pair.peer) as client:
            answer = client.call("POST", "/sync", json={})
    except FailoverError as error:
        raise ConflictError(str(error)) from None
    synced = replace(
        pair,
        last_sync_time=str(answer.get("last_data_sync_time", "")),
        last_sync_status=str(answer.get("last_data_sync_status", "")),
    )
    state.write_pair(setup.state_dir, synced)
    audit.record(uow, actor, "failover.sync", str(pair.peer.address))
    return synced


def set_sync_interval(uow: UnitOfWork, setup: FailoverSetup, actor: Actor, seconds: int) -> int:
    """The site's sync interval: a site setting, so the backup reads the primary's once
    synced (set it on the primary)."""
    problem = pulling.interval_problem(seconds)
    if problem:
        raise InvalidInputError(problem)
    if setup.pair().role is Role.BACKUP:
        raise ConflictError(
            "This appliance is the backup: the sync interval is the site's, set it on the "
            "primary (it reaches the backup with the next sync)."
        )
    uow.settings.set(pulling.INTERVAL_SETTING, seconds)
    audit.record(uow, actor, "failover.sync_interval", setup.site_hostname, seconds=seconds)
    return seconds
