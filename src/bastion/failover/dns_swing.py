"""DNS swing (R30): the appliance that takes the primary role points the site's DNS name
at itself, with an RFC 2136 dynamic update signed with TSIG, sent to the site's primary
DNS server.

Each appliance is given the server, the zone, the name, its own addresses and the TSIG
key (`BASTION_FAILOVER_DNS_*`, per appliance): one address, or several (a dual-stack
appliance's IPv4 and IPv6 ones). One update message replaces the name's A and AAAA
records with this appliance's addresses (A or AAAA by family), without prerequisites.
Taking over never fails because of DNS: the outcome is recorded in
`state/failover-dns.json` and logged, and the periodic peer check asks the server for the
name and sends the update again while it does not hold exactly this appliance's
addresses. A backup leaves DNS alone. The key's secret is never logged nor shown.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update

from bastion.failover.rules import FailoverError, Role
from bastion.platform.clock import utc_now
from bastion.platform.files import write_atomically

log = logging.getLogger("bastion.failover")

DEFAULT_TTL = 30
"""Seconds resolvers may keep the answer: how long a client that honours it may still
reach the old primary after a swap."""
TIMEOUT_SECONDS = 3.0
"""How long one query or update waits for the server's answer."""
STATUS_FILE = "failover-dns.json"
ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
KEY_CLAUSE = re.compile(
    r'key\s+"?(?P<name>[A-Za-z0-9._-]+)"?\s*\{(?P<body>[^}]*)\}\s*;', re.IGNORECASE
)
KEY_FIELD = re.compile(r'(?P<field>algorithm|secret)\s+"?(?P<value>[^";\s]+)"?\s*;', re.IGNORECASE)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ADDRESSES = 8


class DnsSwingError(FailoverError):
    """The site's DNS name could not be pointed at this appliance; the message says why."""


class DnsRefusedError(DnsSwingError):
    """The DNS server answered, and refused."""


class DnsUnreachableError(DnsSwingError):
    """The DNS server did not answer."""


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str = field(repr=False)
    """Base64, as in a BIND key file."""


@dataclass(frozen=True)
class DnsSwing:
    """Where and how this appliance points the site's name at itself."""

    server: str
    port: int
    zone: dns.name.Name
    name: dns.name.Name
    addresses: tuple[Address, ...]
    """This appliance's addresses, at least one, each once."""
    key: TsigKey
    ttl: int = DEFAULT_TTL
    timeout: float = TIMEOUT_SECONDS

    @property
    def shown(self) -> str:
        """The addresses as the page and the log say them: "10.0.0.11, fd00::11"."""
        return ", ".join(str(a) for a in self.addresses)

    @property
    def held_when_here(self) -> set[str]:
        """What the server holds for the name once it points here."""
        return {str(a) for a in self.addresses}

    def __str__(self) -> str:
        return f"{self.name.to_text()} -> {self.shown} at {self.server}:{self.port}"


def record_type(address: Address) -> str:
    return "A" if address.version == 4 else "AAAA"


def parse_addresses(text: str) -> tuple[Address, ...]:
    """One address or several, separated by commas or spaces."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        raise ValueError("give this appliance's address (or several, separated by commas).")
    found: list[Address] = []
    for part in parts:
        try:
            address = ipaddress.ip_address(part)
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address.") from None
        if address in found:
            raise ValueError(f"the address {address} is given twice.")
        found.append(address)
    if len(found) > MAX_ADDRESSES:
        raise ValueError(f"at most {MAX_ADDRESSES} addresses, not {len(found)}.")
    return tuple(found)


# -- the settings ------------------------------------------------------------------------------


def parse_server(text: str) -> tuple[str, int]:
    """`ADDRESS:PORT`, `[IPv6]:PORT`, or an address alone (port 53)."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{text!r}: give the DNS server's IP address (and port), e.g. 10.0.0.53:53; a "
            "hostname is not resolved."
        ) from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535.")
    return host, int(port)


def parse_key(text: str, where: str = "the key file") -> TsigKey:
    """A BIND key statement: `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`."""
    found = KEY_CLAUSE.search(text)
    if found is None:
        raise ValueError(
            f'{where} holds no key statement like key "NAME" {{ algorithm hmac-sha256; '
            'secret "BASE64"; };'
        )
    fields = {m["field"].lower(): m["value"] for m in KEY_FIELD.finditer(found["body"])}
    algorithm = fields.get("algorithm", "").lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{where}: the key's algorithm must be one of {', '.join(ALGORITHMS)}.")
    secret = fields.get("secret", "")
    try:
        if not base64.b64decode(secret, validate=True):
            raise ValueError
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: the key's secret is missing or not base64.") from None
    return TsigKey(found["name"], algorithm, secret)


SETTINGS = (
    "BASTION_FAILOVER_DNS_SERVER",
    "BASTION_FAILOVER_DNS_ZONE",
    "BASTION_FAILOVER_DNS_NAME",
    "BASTION_FAILOVER_DNS_ADDRESS",
    "BASTION_FAILOVER_DNS_TSIG_KEY_FILE",
)


def from_settings(
    server: str, zone: str, name: str, address: str, key_file: Path | None, ttl: int = DEFAULT_TTL
) -> DnsSwing | None:
    """The DNS swing as configured; None when none of its settings is given. A ValueError
    names what is missing or wrong."""
    given = [server.strip(), zone.strip(), name.strip(), address.strip(), str(key_file or "")]
    if not any(given):
        return None
    missing = [setting for setting, value in zip(SETTINGS, given, strict=True) if not value]
    if missing:
        raise ValueError(f"the DNS swing needs {', '.join(missing)} too.")
    assert key_file is not None
    host, port = parse_server(server)
    zone_name = dns.name.from_text(zone.strip())
    record = dns.name.from_text(name.strip())
    if not record.is_subdomain(zone_name):
        raise ValueError(f"the name {name.strip()!r} is not in the zone {zone.strip()!r}.")
    own = parse_addresses(address)
    if not 1 <= ttl <= 86400:
        raise ValueError(f"the TTL must be from 1 to 86400 seconds, not {ttl}.")
    try:
        text = key_file.read_text()
    except OSError as error:
        raise ValueError(f"cannot read the TSIG key file {key_file}: {error.strerror}.") from None
    return DnsSwing(host, port, zone_name, record, own, parse_key(text, str(key_file)), ttl)


# -- the messages ------------------------------------------------------------------------------


def update_message(swing: DnsSwing) -> dns.update.UpdateMessage:
    """One signed update: the name's A and AAAA records deleted, this appliance's added."""
    key = dns.tsig.Key(swing.key.name, swing.key.secret, swing.key.algorithm)
    update = dns.update.UpdateMessage(swing.zone, keyring=key)
    relative = swing.name.relativize(swing.zone)
    update.delete(relative, "A")
    update.delete(relative, "AAAA")
    for address in swing.addresses:
        update.add(relative, swing.ttl, record_type(address), str(address))
    return update


def refusal(swing: DnsSwing, rcode: dns.rcode.Rcode) -> str:
    """What a refused update means, and what to check."""
    key, zone = swing.key.name, swing.zone.to_text()
    said = f"The DNS server {swing.server}:{swing.port} refused the update ({rcode.name})"
    if rcode is dns.rcode.REFUSED:
        return (
            f"{said}: the TSIG key {key} may not update {swing.name.to_text()}; check the "
            f"zone's allow-update or update-policy on the server."
        )
    if rcode is dns.rcode.NOTAUTH:
        return (
            f"{said}: it is not the primary server of the zone {zone}, or did not accept the "
            f"TSIG key {key}; check BASTION_FAILOVER_DNS_SERVER, BASTION_FAILOVER_DNS_ZONE "
            "and the key."
        )
    if rcode is dns.rcode.NOTZONE:
        return f"{said}: the name is not in the zone {zone}; check BASTION_FAILOVER_DNS_NAME."
    return f"{said}."


def _tsig_refusal(swing: DnsSwing, error: dns.tsig.PeerError) -> str:
    key = swing.key.name
    said = f"The DNS server {swing.server}:{swing.port} refused the update"
    if isinstance(error, dns.tsig.PeerBadKey):
        return (
            f"{said}: it does not know the TSIG key {key} (BADKEY); check the key's name in "
            "BASTION_FAILOVER_DNS_TSIG_KEY_FILE against the server's key statement."
        )
    if isinstance(error, dns.tsig.PeerBadTime):
        return (
            f"{said}: the TSIG key {key}'s signature is out of time (BADTIME); check this "
            "appliance's clock and the server's."
        )
    return (
        f"{said}: the TSIG key {key}'s signature did not verify (BADSIG); check that its "
        "secret and algorithm are the server's."
    )


def _ask(swing: DnsSwing, message: dns.message.Message) -> dns.message.Message:
    """Send `message` over TCP and return the answer; DnsSwingError when there is none
    or its signature is refused."""
    where = f"The DNS server {swing.server}:{swing.port}"
    try:
        return dns.query.tcp(message, swing.server, port=swing.port, timeout=swing.timeout)
    except dns.exception.Timeout:
        raise DnsUnreachableError(
            f"{where} did not answer within {swing.timeout:g} s: it is unreachable; check "
            "BASTION_FAILOVER_DNS_SERVER and that this appliance reaches it (TCP)."
        ) from None
    except OSError as error:
        raise DnsUnreachableError(
            f"{where} is unreachable: {error.strerror or error}; check "
            "BASTION_FAILOVER_DNS_SERVER and that it serves DNS over TCP there."
        ) from None
    except dns.tsig.PeerError as error:
        raise DnsRefusedError(_tsig_refusal(swing, error)) from None
    except dns.exception.DNSException as error:
        raise DnsRefusedError(f"{where} sent an answer that could not be used: {error}") from None


# -- on the network ----------------------------------------------------------------------------


def held(swing: DnsSwing) -> set[str]:
    """The A and AAAA addresses the server holds for the name now."""
    found: set[str] = set()
    for rdtype in ("A", "AAAA"):
        answer = _ask(swing, dns.message.make_query(swing.name, rdtype))
        if answer.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsRefusedError(
                f"The DNS server {swing.server}:{swing.port} would not say what "
                f"{swing.name.to_text()} holds ({answer.rcode().name})."
            )
        for rrset in answer.answer:
            if rrset.name == swing.name and rrset.rdtype == dns.rdatatype.from_text(rdtype):
                found.update(item.to_text() for item in rrset)
    return found


def point_here(swing: DnsSwing) -> None:
    """Send the update; DnsSwingError when it was not made."""
    answer = _ask(swing, update_message(swing))
    if answer.rcode() != dns.rcode.NOERROR:
        raise DnsRefusedError(refusal(swing, answer.rcode()))


# -- what the appliance does, and what it remembers ---------------------------------------


@dataclass(frozen=True)
class DnsStatus:
    """The last update (or failed check): when, whether the name now points here, why not."""

    at: str = ""
    ok: bool = False
    message: str = ""


def read_status(state_dir: Path) -> DnsStatus | None:
    path = state_dir / STATUS_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return DnsStatus(str(data.get("at", "")), bool(data.get("ok")), str(data.get("message", "")))


def _record(state_dir: Path, ok: bool, message: str) -> DnsStatus:
    status = DnsStatus(utc_now().isoformat(), ok, message)
    write_atomically(state_dir / STATUS_FILE, json.dumps(asdict(status), indent=2).encode())
    return status


def swing_here(swing: DnsSwing | None, state_dir: Path) -> DnsStatus | None:
    """On taking the primary role: point the name here. Never raises; the outcome is
    recorded and, when it failed, logged (the periodic check tries again)."""
    if swing is None:
        return None
    try:
        point_here(swing)
    except DnsSwingError as error:
        log.error("now primary, but the site's DNS name was not updated: %s", error)
        return _record(state_dir, False, str(error))
    log.info("DNS swing: %s", swing)
    return _record(state_dir, True, f"{swing.name.to_text()} points here ({swing.shown}).")


def keep_here(swing: DnsSwing | None, state_dir: Path, role: Role) -> DnsStatus | None:
    """At the periodic check, on the primary only: update the name again when the server
    does not hold exactly this appliance's addresses (asked first, so that a name already
    right costs one query per record type)."""
    if swing is None or role is not Role.PRIMARY:
        return None
    try:
        holds = held(swing)
    except DnsSwingError as error:
        log.error("DNS swing: could not check the site's DNS name: %s", error)
        return _record(state_dir, False, str(error))
    if holds == swing.held_when_here:
        last = read_status(state_dir)
        if last is None or not last.ok:
            return _record(state_dir, True, f"{swing.name.to_text()} points here.")
        return last
    return swing_here(swing, state_dir)
