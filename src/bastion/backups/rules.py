"""Backup header and compatibility rules.

The header is the plaintext part of a backup file: it says what the backup is
(site, software version, database schema revision, contents, creation time)
and how it is sealed (key-derivation and sealing parameters). It is readable
without the passphrase; the container binds it to the encrypted body, so it
cannot be changed without the change being detected.

Scheduled backups: when the next one is due and which old ones to delete.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

MIN_INTERVAL_HOURS = 1
MAX_INTERVAL_HOURS = 24 * 31
MAX_KEEP = 1000


FORMAT_NAME = "bastion-backup"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
NONCE_PREFIX_BYTES = 4
KEY_CHECK_BYTES = 32


class BackupError(Exception):
    """Base of every backup error; the message says what happened and what to do."""


class NotABackupError(BackupError):
    """The file is not a Bastion backup at all."""


class BackupHeaderError(BackupError):
    """The header is readable but not valid."""


class BackupFormatTooNewError(BackupError):
    """The file uses a container format this software does not know."""


class BackupVersionTooNewError(BackupError):
    """The backup was taken by newer software than the one running."""


@dataclass(frozen=True)
class ScryptParameters:
    salt: bytes
    n: int = 2**15
    r: int = 8
    p: int = 1


@dataclass(frozen=True)
class KdfLimits:
    """Bounds on the key-derivation cost accepted from a header (which anyone may have written)."""

    min_n: int = 2**15
    max_n: int = 2**18
    min_r: int = 8
    max_r: int = 16
    max_p: int = 4
    max_memory_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class SealingParameters:
    """How the body is sealed: chunk size, per-file nonce prefix, passphrase check value."""

    chunk_size: int
    nonce_prefix: bytes
    key_check: bytes
    cipher: str = "AES-256-GCM"


@dataclass(frozen=True)
class BackupMetadata:
    """What a backup is of; chosen by whoever takes the backup."""

    software_version: str
    schema_revision: str
    site_name: str
    created_at: datetime
    contents: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackupHeader:
    metadata: BackupMetadata
    kdf: ScryptParameters
    sealing: SealingParameters
    format_version: int = field(default=FORMAT_VERSION)


# -- version comparison -------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """Parse a numeric dotted version ("1.10.0"); trailing zeros do not matter."""
    parts = text.strip().split(".")
    if not text.strip() or not all(part.isdigit() and part.isascii() for part in parts):
        raise BackupHeaderError(f"'{text}' is not a version number like 1.4.2.")
    numbers = [int(part) for part in parts]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1 as ``left`` is older than, the same as or newer than ``right``."""
    a, b = parse_version(left), parse_version(right)
    return (a > b) - (a < b)


# -- compatibility ------------------------------------------------------------


class Compatibility(enum.Enum):
    SAME_VERSION = "same_version"
    MIGRATE_FORWARD = "migrate_forward"


def check_format_version(format_version: int) -> None:
    if format_version > FORMAT_VERSION:
        raise BackupFormatTooNewError(
            f"This backup uses container format {format_version}; this software reads"
            f" format {FORMAT_VERSION} and older. Upgrade the appliance, then restore."
        )
    if format_version < 1:
        raise BackupHeaderError(f"Backup container format {format_version} is not valid.")


def check_compatibility(header: BackupHeader, running_version: str) -> Compatibility:
    """Whether a backup may be restored on software ``running_version``.

    Newer backups are refused (naming both versions); older ones are accepted and
    must be migrated forward after restore.
    """
    check_format_version(header.format_version)
    backup_version = header.metadata.software_version
    order = compare_versions(backup_version, running_version)
    if order > 0:
        raise BackupVersionTooNewError(
            f"This backup was taken with Bastion {backup_version}; this appliance runs"
            f" {running_version}. Install {backup_version} or newer here, then restore."
        )
    return Compatibility.SAME_VERSION if order == 0 else Compatibility.MIGRATE_FORWARD


def check_kdf_cost(kdf: ScryptParameters, limits: KdfLimits) -> None:
    """Refuse parameters that are too weak or that would exhaust memory or time."""
    power_of_two = kdf.n > 1 and kdf.n & (kdf.n - 1) == 0
    in_range = (
        limits.min_n <= kdf.n <= limits.max_n
        and limits.min_r <= kdf.r <= limits.max_r
        and 1 <= kdf.p <= limits.max_p
        and 128 * kdf.r * kdf.n <= limits.max_memory_bytes
    )
    if not (power_of_two and in_range and len(kdf.salt) >= 16):
        raise BackupHeaderError(
            f"The backup's key-derivation settings (n={kdf.n}, r={kdf.r}, p={kdf.p})"
            " are outside the accepted range; it was not written by Bastion."
        )


# -- (de)serialisation --------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def header_to_json(header: BackupHeader) -> bytes:
    meta, kdf, sealing = header.metadata, header.kdf, header.sealing
    document = {
        "format": FORMAT_NAME,
        "format_version": header.format_version,
        "software_version": meta.software_version,
        "schema_revision": meta.schema_revision,
        "site_name": meta.site_name,
        "created_at": meta.created_at.isoformat(),
        "contents": list(meta.contents),
        "kdf": {"name": "scrypt", "salt": _b64(kdf.salt), "n": kdf.n, "r": kdf.r, "p": kdf.p},
        "sealing": {
            "cipher": sealing.cipher,
            "chunk_size": sealing.chunk_size,
            "nonce_prefix": _b64(sealing.nonce_prefix),
            "key_check": _b64(sealing.key_check),
        },
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _field(document: dict[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BackupHeaderError(f"The backup header field '{name}' is missing or invalid.")
    return value


def _bytes_field(document: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(_field(document, name, str), validate=True)
    except binascii.Error as exc:
        raise BackupHeaderError(f"The backup header field '{name}' is not base64.") from exc


def _metadata_from(document: dict[str, Any]) -> BackupMetadata:
    contents = _field(document, "contents", list)
    if not all(isinstance(item, str) for item in contents):
        raise BackupHeaderError("The backup header field 'contents' is invalid.")
    try:
        created_at = datetime.fromisoformat(_field(document, "created_at", str))
    except ValueError as exc:
        raise BackupHeaderError("The backup header field 'created_at' is not a date.") from exc
    version = _field(document, "software_version", str)
    parse_version(version)
    return BackupMetadata(
        software_version=version,
        schema_revision=_field(document, "schema_revision", str),
        site_name=_field(document, "site_name", str),
        created_at=created_at,
        contents=tuple(contents),
    )


def _kdf_from(document: dict[str, Any]) -> ScryptParameters:
    kdf = _field(document, "kdf", dict)
    if kdf.get("name") != "scrypt":
        raise BackupHeaderError(f"Unknown key-derivation function {kdf.get('name')!r}.")
    return ScryptParameters(
        salt=_bytes_field(kdf, "salt"),
        n=_field(kdf, "n", int),
        r=_field(kdf, "r", int),
        p=_field(kdf, "p", int),
    )


def _sealing_from(document: dict[str, Any]) -> SealingParameters:
    sealing = _field(document, "sealing", dict)
    if sealing.get("cipher") != "AES-256-GCM":
        raise BackupHeaderError(f"Unknown backup cipher {sealing.get('cipher')!r}.")
    parameters = SealingParameters(
        chunk_size=_field(sealing, "chunk_size", int),
        nonce_prefix=_bytes_field(sealing, "nonce_prefix"),
        key_check=_bytes_field(sealing, "key_check"),
    )
    check_sealing(parameters)
    return parameters


def check_sealing(sealing: SealingParameters) -> None:
    valid = (
        1 <= sealing.chunk_size <= MAX_CHUNK_SIZE
        and len(sealing.nonce_prefix) == NONCE_PREFIX_BYTES
        and len(sealing.key_check) == KEY_CHECK_BYTES
    )
    if not valid:
        raise BackupHeaderError("The backup's sealing settings are not valid.")


def _load_document(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupHeaderError("The backup header is not readable JSON.") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise NotABackupError("This file is not a Bastion backup.")
    return document


def header_from_json(data: bytes) -> BackupHeader:
    """Parse a header; a format newer than this software is refused before anything else."""
    if len(data) > MAX_HEADER_BYTES:
        raise BackupHeaderError("The backup header is too large; the file is not valid.")
    document = _load_document(data)
    format_version = _field(document, "format_version", int)
    check_format_version(format_version)
    return BackupHeader(
        metadata=_metadata_from(document),
        kdf=_kdf_from(document),
        sealing=_sealing_from(document),
        format_version=format_version,
    )


MIN_PASSPHRASE_LENGTH = 12


def passphrase_problems(passphrase: str, confirmation: str | None = None) -> list[str]:
    """Why a passphrase chosen for a new backup is refused; empty when it is accepted."""
    problems: list[str] = []
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        problems.append(
            f"Use a passphrase of at least {MIN_PASSPHRASE_LENGTH} characters: "
            "the backup holds passwords and private keys."
        )
    if confirmation is not None and confirmation != passphrase:
        problems.append("The two passphrases differ; type the same passphrase twice.")
    return problems


class ScheduleError(ValueError):
    """A schedule was refused; the message says what is allowed."""


@dataclass(frozen=True)
class Schedule:
    interval_hours: int
    directory: str
    keep: int

    def __post_init__(self) -> None:
        if not MIN_INTERVAL_HOURS <= self.interval_hours <= MAX_INTERVAL_HOURS:
            raise ScheduleError(
                f"Choose an interval between {MIN_INTERVAL_HOURS} and {MAX_INTERVAL_HOURS} hours."
            )
        if not 1 <= self.keep <= MAX_KEEP:
            raise ScheduleError(f"Keep between 1 and {MAX_KEEP} backups.")
        if not self.directory.startswith("/"):
            raise ScheduleError("Give the target directory as an absolute path, e.g. /srv/backups.")


def is_due(
    schedule: Schedule, changed_at: datetime, last_run: datetime | None, now: datetime
) -> bool:
    """A new or changed schedule runs at once, then every `interval_hours`."""
    if last_run is None or last_run < changed_at:
        return True
    return now - last_run >= timedelta(hours=schedule.interval_hours)


def to_delete(names_oldest_first: list[str], keep: int) -> list[str]:
    """The backups beyond the newest `keep`."""
    return names_oldest_first[: max(0, len(names_oldest_first) - keep)]
