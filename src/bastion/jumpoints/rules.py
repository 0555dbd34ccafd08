"""What a vaulted credential and an SSH Jump Item may be (pure: no I/O)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass

CREDENTIAL_KINDS = ("password", "private_key")
MAX_ROW_ID = 2**63 - 1
"""The largest id the databases hold; a larger one names no row."""
MAX_NAME = 100
MAX_ITEM_NAME = 200
MAX_LABEL = 100
MAX_COMMENTS = 2000
MAX_PASSWORD = 1024
MAX_PRIVATE_KEY = 16 * 1024
MAX_HOST_KEY = 16 * 1024
MAX_USERNAME = 100
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed448",
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_USERNAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._@-]*$")


class JumpointRuleError(ValueError):
    """Input a vaulted credential or an SSH Jump Item cannot take; the message says why."""


def clean_name(what: str, text: str, limit: int) -> str:
    name = text.strip()
    if not name:
        raise JumpointRuleError(f"The {what} needs a name.")
    return clean_label(what + " name", name, limit)


def clean_label(what: str, text: str, limit: int = MAX_LABEL) -> str:
    label = text.strip()
    if len(label) > limit:
        raise JumpointRuleError(f"The {what} is {len(label)} characters; at most {limit} fit.")
    if not label.isprintable():
        raise JumpointRuleError(f"The {what} must be printable text (no control characters).")
    return label


def check_secret(kind: str, secret: str) -> str:
    """The secret as stored: a password as given, a private key without surrounding space."""
    if kind not in CREDENTIAL_KINDS:
        raise JumpointRuleError(
            f"{kind!r} is not a kind of credential; choose password or private_key."
        )
    if kind == "password":
        if not secret or len(secret) > MAX_PASSWORD or "\0" in secret:
            raise JumpointRuleError(f"A password is 1 to {MAX_PASSWORD} characters, without NUL.")
        return secret
    key = secret.strip()
    if (
        len(key) > MAX_PRIVATE_KEY
        or "PRIVATE KEY-----" not in key
        or not key.startswith("-----BEGIN")
    ):
        raise JumpointRuleError(
            "A private key is the text of an OpenSSH or PEM key file "
            f"(-----BEGIN ... PRIVATE KEY-----), at most {MAX_PRIVATE_KEY} characters."
        )
    return key + "\n"


def check_host(text: str) -> str:
    host = text.strip()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise JumpointRuleError(
            f"{text[:100]!r} is not a host name or an IP address (letters, digits, dots and "
            "hyphens, at most 253 characters)."
        )
    return host.rstrip(".")


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise JumpointRuleError(f"The port is {port}; SSH servers listen on 1 to 65535.")
    return port


def check_username(text: str) -> str:
    name = text.strip()
    if not name or len(name) > MAX_USERNAME or not _USERNAME.match(name):
        raise JumpointRuleError(
            f"{text[:100]!r} is not a user name for SSH (1 to {MAX_USERNAME} letters, digits, "
            "'.', '_', '@' or '-', not starting with '-')."
        )
    return name


@dataclass(frozen=True)
class HostKey:
    """A pinned host key: its type and its key blob (as OpenSSH writes them)."""

    type: str
    blob: bytes

    @property
    def line(self) -> str:
        return f"{self.type} {base64.b64encode(self.blob).decode('ascii')}"


def parse_host_key(text: str) -> HostKey:
    """One line of `ssh-keyscan` or a host's `ssh_host_*_key.pub`: "<type> <base64> [comment]"
    (a known_hosts line's leading host names are skipped)."""
    fields = text.strip().split()
    while fields and fields[0] not in HOST_KEY_TYPES:
        fields = fields[1:] if len(fields) > 2 else []
    if len(fields) < 2:
        raise JumpointRuleError(
            "The host key is not an OpenSSH public key line such as 'ssh-ed25519 AAAA...'; "
            "paste the server's /etc/ssh/ssh_host_ed25519_key.pub or a line of ssh-keyscan "
            f"(types: {', '.join(HOST_KEY_TYPES)})."
        )
    kind, encoded = fields[0], fields[1]
    try:
        blob = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise JumpointRuleError("The host key's second field is not base64.") from None
    if _blob_type(blob) != kind:
        raise JumpointRuleError(
            f"The host key's data is not a {kind} key; paste the whole line again."
        )
    return HostKey(kind, blob)


def _blob_type(blob: bytes) -> str:
    """The key type a public key blob names in its first (length-prefixed) string."""
    if len(blob) < 4:
        return ""
    size = int.from_bytes(blob[:4], "big")
    try:
        return blob[4 : 4 + size].decode("ascii") if 0 < size <= 64 else ""
    except UnicodeDecodeError:
        return ""
