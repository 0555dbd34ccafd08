"""Certificate rules: the warnings an administrator sees, choosing a default, deleting.

Works on a plain description of a certificate (:class:`CertificateInfo`) so that
the rules can be tested without any X.509 library; ``bastion.certificates.x509``
builds that description from real certificates.
"""

from __future__ import annotations

import enum
import ipaddress
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

EXPIRY_WARNING_PERIOD = timedelta(days=30)
MAX_HOST_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256


class CertificateError(Exception):
    """Base of every certificate error; the message says what to do."""


class CertificateInUseError(CertificateError):
    """The certificate is still used and cannot be deleted."""


class DefaultCertificateRefusedError(CertificateError):
    """The certificate cannot become the default certificate of the site."""


class CertificateNameError(CertificateError):
    """A name given for a certificate is not a host name or an IP address."""


class KeyType(enum.StrEnum):
    RSA = "RSA"
    EC = "EC"
    ED25519 = "Ed25519"
    ED448 = "Ed448"
    OTHER = "other"


class WarningKind(enum.StrEnum):
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRING_SOON = "expiring_soon"
    HOSTNAME_NOT_COVERED = "hostname_not_covered"
    CHAIN_INCOMPLETE = "chain_incomplete"
    CHAIN_NOT_TRUSTED = "chain_not_trusted"
    PRIVATE_KEY_MISSING = "private_key_missing"
    PRIVATE_KEY_MISMATCH = "private_key_mismatch"
    WEAK_KEY = "weak_key"


@dataclass(frozen=True)
class CertificateInfo:
    """What the rules need to know about one certificate (times are timezone-aware)."""

    subject: str
    san_names: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    key_type: KeyType
    key_size: int
    fingerprint: str
    has_private_key: bool
    key_matches: bool
    chain_complete: bool
    chain_trusted: bool
    issued_by_internal_ca: bool = False
    """Issued by this appliance's own CA, which counts as trusted for it (see ``x509.describe``)."""


@dataclass(frozen=True)
class CertificateWarning:
    kind: WarningKind
    message: str


def _normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _as_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _wildcard_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 section 6.4.3: ``*`` is the whole left-most label and covers exactly one label."""
    pattern_labels = pattern.split(".")
    host_labels = hostname.split(".")
    if len(pattern_labels) < 3 or any("*" in label for label in pattern_labels[1:]):
        return False
    if len(host_labels) != len(pattern_labels) or not host_labels[0]:
        return False
    return host_labels[1:] == pattern_labels[1:]


def name_matches(presented: str, hostname: str) -> bool:
    """Whether one name from a certificate covers ``hostname`` (DNS name or IP address)."""
    host_ip = _as_ip(hostname)
    if host_ip is not None:
        return _as_ip(presented) == host_ip
    pattern, host = _normalise_name(presented), _normalise_name(hostname)
    if not pattern or not host or _as_ip(pattern) is not None:
        return False
    if pattern.startswith("*"):
        return pattern.startswith("*.") and _wildcard_matches(pattern, host)
    return "*" not in pattern and pattern == host


def covers_hostname(cert: CertificateInfo, hostname: str) -> bool:
    """Whether the certificate's subject alternative names cover ``hostname``.

    The common name is not consulted: browsers have ignored it for years.
    """
    return any(name_matches(name, hostname) for name in cert.san_names)


def is_weak_key(key_type: KeyType, key_size: int) -> bool:
    if key_type is KeyType.RSA:
        return key_size < MIN_RSA_BITS
    if key_type is KeyType.EC:
        return key_size < MIN_EC_BITS
    return key_type is KeyType.OTHER


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment.utcoffset() is not None else str(moment)


def _validity_warnings(cert: CertificateInfo, now: datetime) -> list[CertificateWarning]:
    if now > cert.not_after:
        text = f"Expired on {_day(cert.not_after)}; import a renewed certificate."
        return [CertificateWarning(WarningKind.EXPIRED, text)]
    if now < cert.not_before:
        text = f"Not valid before {_day(cert.not_before)}; check the appliance clock."
        return [CertificateWarning(WarningKind.NOT_YET_VALID, text)]
    if cert.not_after - now <= EXPIRY_WARNING_PERIOD:
        days = (cert.not_after - now).days
        text = f"Expires in {days} day(s), on {_day(cert.not_after)}; renew it now."
        return [CertificateWarning(WarningKind.EXPIRING_SOON, text)]
    return []


def _hostname_warnings(cert: CertificateInfo, site_hostname: str) -> list[CertificateWarning]:
    if covers_hostname(cert, site_hostname):
        return []
    names = ", ".join(cert.san_names) or "no names"
    text = f"Does not cover the site hostname {site_hostname} (it covers {names})."
    return [CertificateWarning(WarningKind.HOSTNAME_NOT_COVERED, text)]


def _chain_warnings(cert: CertificateInfo) -> list[CertificateWarning]:
    if not cert.chain_complete:
        text = "The chain is incomplete: import the intermediate certificates from your CA."
        return [CertificateWarning(WarningKind.CHAIN_INCOMPLETE, text)]
    if not cert.chain_trusted:
        text = "The chain does not lead to a trusted root; clients will show a warning."
        return [CertificateWarning(WarningKind.CHAIN_NOT_TRUSTED, text)]
    return []


def _key_warnings(cert: CertificateInfo) -> list[CertificateWarning]:
    found: list[CertificateWarning] = []
    if not cert.has_private_key:
        text = "No private key: import the key that was generated with the request."
        found.append(CertificateWarning(WarningKind.PRIVATE_KEY_MISSING, text))
    elif not cert.key_matches:
        text = "The private key does not match this certificate; import the right key."
        found.append(CertificateWarning(WarningKind.PRIVATE_KEY_MISMATCH, text))
    if is_weak_key(cert.key_type, cert.key_size):
        text = (
            f"Weak key ({cert.key_type} {cert.key_size} bits); use RSA >= {MIN_RSA_BITS}"
            f" or EC >= {MIN_EC_BITS} bits."
        )
        found.append(CertificateWarning(WarningKind.WEAK_KEY, text))
    return found


def certificate_warnings(
    cert: CertificateInfo, *, now: datetime, site_hostname: str
) -> list[CertificateWarning]:
    """Every warning for ``cert`` at ``now`` when serving ``site_hostname``, in a stable order."""
    return [
        *_validity_warnings(cert, now),
        *_hostname_warnings(cert, site_hostname),
        *_chain_warnings(cert),
        *_key_warnings(cert),
    ]


@dataclass(frozen=True)
class DefaultChoice:
    """An accepted choice of default certificate, with the warnings it still carries."""

    fingerprint: str
    warnings: tuple[CertificateWarning, ...]


def choose_default(
    cert: CertificateInfo,
    *,
    now: datetime,
    site_hostname: str,
    accept_expired: bool = False,
) -> DefaultChoice:
    """Check that ``cert`` may become the default certificate.

    A certificate without a matching private key cannot serve TLS and is refused.
    An expired one is refused unless the administrator explicitly accepts it;
    it then stays listed as a warning.
    """
    if not cert.has_private_key or not cert.key_matches:
        raise DefaultCertificateRefusedError(
            "This certificate has no matching private key, so the site cannot serve it."
            " Import the certificate together with its private key first."
        )
    warnings = certificate_warnings(cert, now=now, site_hostname=site_hostname)
    expired = any(w.kind is WarningKind.EXPIRED for w in warnings)
    if expired and not accept_expired:
        raise DefaultCertificateRefusedError(
            f"This certificate expired on {_day(cert.not_after)}. Import a renewed"
            " certificate, or confirm that you want to use the expired one for now."
        )
    return DefaultChoice(cert.fingerprint, tuple(warnings))


def check_deletable(fingerprint: str, uses: Collection[str]) -> None:
    """Refuse to delete a certificate while something uses it.

    ``uses`` names each use in words an administrator knows
    (e.g. "the default certificate", "listener 10.0.0.5:443").
    """
    if uses:
        listed = "; ".join(sorted(uses))
        raise CertificateInUseError(
            f"Certificate {fingerprint[:16]} is in use ({listed})."
            " Choose another certificate for these first, then delete it."
        )


def warning_kinds(warnings: Sequence[CertificateWarning]) -> set[WarningKind]:
    return {w.kind for w in warnings}


# -- host names ------------------------------------------------------------------


def host_name(name: str) -> str:
    """`name` as a certificate holds it: an IP address, or a DNS name in lower case with
    every label in its ASCII form (IDNA A-label: "bücher.example" is
    "xn--bcher-kva.example"); a wildcard only as the whole left-most label of a name of
    three labels or more ("*.example.com"). Anything else is refused, naming the problem.
    """
    text = name.strip()
    address = _as_ip(text)
    if address is not None:
        return str(address)
    dns = text[:-1] if text.endswith(".") else text
    _check_wildcard(name, dns.split("."))
    labels = [_a_label(name, label) for label in dns.split(".")]
    if labels[-1].isdigit():
        _refuse(name, "its last label is only digits, so it looks like a broken IP address")
    ascii_name = ".".join(labels)
    if len(ascii_name) > MAX_HOST_NAME_LENGTH:
        _refuse(name, f"it is longer than {MAX_HOST_NAME_LENGTH} characters")
    return ascii_name


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "…")


def _refuse(name: str, why: str) -> NoReturn:
    raise CertificateNameError(
        f"{_shown(name)} is not a host name: {why}. Use labels of 1 to {MAX_LABEL_LENGTH} letters, "
        "digits and hyphens separated by dots (e.g. support.example.com, *.example.com), "
        "or an IP address."
    )


def _a_label(name: str, label: str) -> str:
    """One label in lower-case ASCII (punycode for a Unicode one), or a refusal."""
    if not label:
        _refuse(name, "it has an empty label (two dots in a row, or a dot at the start)")
    if label == "*":
        return label
    text = unicodedata.normalize("NFC", label).lower()
    if not text.isascii():
        _check_unicode_label(name, text)
        text = "xn--" + text.encode("punycode").decode("ascii")
    bad = sorted(set(text) - _LDH)
    if bad:
        _refuse(name, f"it holds {', '.join(repr(c) for c in bad)}")
    if text.startswith("-") or text.endswith("-"):
        _refuse(name, f"the label {_shown(label)} starts or ends with a hyphen")
    if len(text) > MAX_LABEL_LENGTH:
        _refuse(name, f"the label {_shown(label)} is longer than {MAX_LABEL_LENGTH} characters")
    if text.startswith("xn--"):
        _check_punycode(name, text)
    return text


def _check_unicode_label(name: str, label: str) -> None:
    """Letters, marks, digits and hyphens only (what IDNA allows in a label, near enough)."""
    for char in label:
        if char != "-" and unicodedata.category(char)[0] not in "LMN":
            _refuse(name, f"it holds {char!r}, which no host name may hold")


def _check_punycode(name: str, label: str) -> None:
    try:
        label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        _refuse(name, f"the label {_shown(label)} is not valid punycode")


def _check_wildcard(name: str, labels: list[str]) -> None:
    if any(label == "*" for label in labels[1:]) or any(
        "*" in label and label != "*" for label in labels
    ):
        _refuse(name, "a wildcard may only be the whole left-most label, as in *.example.com")
    if labels[0] == "*" and len(labels) < 3:
        _refuse(name, "a wildcard needs at least two labels after it, as in *.example.com")
