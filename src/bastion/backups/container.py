"""The encrypted backup container: streaming, chunked AES-256-GCM under a passphrase.

Byte layout (integers are big-endian)::

    magic            12 bytes  b"\\x89BASTION\\r\\n\\x1a\\n"
    header length     4 bytes  u32, at most MAX_HEADER_BYTES
    header                     JSON (bastion.backups.rules), readable without passphrase
    header digest    32 bytes  SHA-256 of magic + length + header
    body records:
      b"D" + sealed chunk of exactly chunk_size + 16 bytes         (any number)
      b"F" + u32 plaintext length L (<= chunk_size) + L + 16 bytes  (exactly one, last)

Each chunk i is sealed with AES-256-GCM; nonce = 4-byte per-file prefix + u64 i;
associated data = header digest + u64 i + record kind (+ L for the final record).
So a changed header, reordered, dropped, truncated or appended chunks all fail.
The key comes from the passphrase with scrypt (salt and cost in the header), then
HKDF splits it into the body key and a key-check key whose HMAC of a constant is
stored in the header: a wrong passphrase is told apart from a damaged file.

The decrypted body is an archive of named members
(:mod:`bastion.backups.archive`)::

    b"M" + u16 name length + UTF-8 name    a member starts
    b"B" + u32 length + bytes              member data (1 .. BLOCK_SIZE bytes)
    b"E"                                   the member ends
    b"Z"                                   the archive ends; nothing may follow
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import struct
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bastion.backups.archive import (
    BackupCorruptError,
    Member,
    MemberInfo,
    _archive_events,
    _Event,
    _fsync_directory,
    _PlainReader,
    _write_events,
    _write_members,
)
from bastion.backups.rules import (
    MAX_HEADER_BYTES,
    BackupError,
    BackupHeader,
    BackupMetadata,
    KdfLimits,
    NotABackupError,
    ScryptParameters,
    SealingParameters,
    check_compatibility,
    check_kdf_cost,
    check_sealing,
    header_from_json,
    header_to_json,
)

MAGIC = b"\x89BASTION\r\n\x1a\n"
DEFAULT_CHUNK_SIZE = 1024 * 1024
TAG_BYTES = 16
_DIGEST_BYTES = 32
_CHECK_CONSTANT = b"bastion-backup/1 passphrase check"


class WrongPassphraseError(BackupError):
    """The passphrase does not open this backup."""


class BackupTruncatedError(BackupError):
    """The file ends before the end of the backup."""


# -- helpers -------------------------------------------------------------------


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


@dataclass(frozen=True)
class _Keys:
    body: bytes
    check: bytes


def _derive_keys(passphrase: str, kdf: ScryptParameters) -> _Keys:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    master = Scrypt(salt=kdf.salt, length=32, n=kdf.n, r=kdf.r, p=kdf.p).derive(secret)

    def expand(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)

    return _Keys(body=expand(b"bastion-backup/1 body"), check=expand(b"bastion-backup/1 check"))


def _key_check(keys: _Keys) -> bytes:
    return hmac.new(keys.check, _CHECK_CONSTANT, hashlib.sha256).digest()


def _preamble(header_json: bytes) -> bytes:
    return MAGIC + struct.pack(">I", len(header_json)) + header_json


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">Q", index)


def _aad(digest: bytes, index: int, kind: bytes, length: int | None = None) -> bytes:
    tail = b"" if length is None else struct.pack(">I", length)
    return digest + struct.pack(">Q", index) + kind + tail


# -- writing -------------------------------------------------------------------


class _ChunkSealer:
    """Buffers plaintext and writes sealed chunks; the final one on ``close``."""

    def __init__(self, out: BinaryIO, key: bytes, digest: bytes, sealing: SealingParameters):
        self._out, self._aead, self._digest = out, AESGCM(key), digest
        self._sealing, self._buffer, self._index = sealing, bytearray(), 0

    def write(self, data: bytes | memoryview) -> None:
        self._buffer += data
        size = self._sealing.chunk_size
        while len(self._buffer) > size:
            with memoryview(self._buffer) as view:
                self._seal(b"D", view[:size], None)
            del self._buffer[:size]

    def close(self) -> None:
        self._seal(b"F", bytes(self._buffer), len(self._buffer))
        self._buffer.clear()

    def _seal(self, kind: bytes, plaintext: bytes | memoryview, length: int | None) -> None:
        nonce = _nonce(self._sealing.nonce_prefix, self._index)
        sealed = self._aead.encrypt(nonce, plaintext, _aad(self._digest, self._index, kind, length))
        self._out.write(kind if length is None else kind + struct.pack(">I", length))
        self._out.write(sealed)
        self._index += 1


def _new_header(
    metadata: BackupMetadata, keys_for: ScryptParameters, keys: _Keys, chunk_size: int
) -> BackupHeader:
    sealing = SealingParameters(
        chunk_size=chunk_size, nonce_prefix=secrets.token_bytes(4), key_check=_key_check(keys)
    )
    check_sealing(sealing)
    return BackupHeader(metadata=metadata, kdf=keys_for, sealing=sealing)


def write_backup(
    out: BinaryIO,
    metadata: BackupMetadata,
    members: Iterable[Member],
    passphrase: str,
    *,
    scrypt_n: int = 2**15,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: KdfLimits = KdfLimits(),
) -> BackupHeader:
    """Write an encrypted backup of ``members`` (name, bytes or binary stream) to ``out``."""
    if not passphrase:
        raise BackupError("Choose a passphrase to protect the backup; it holds secrets.")
    kdf = ScryptParameters(salt=secrets.token_bytes(16), n=scrypt_n)
    check_kdf_cost(kdf, limits)
    keys = _derive_keys(passphrase, kdf)
    header = _new_header(metadata, kdf, keys, chunk_size)
    preamble = _preamble(header_to_json(header))
    digest = hashlib.sha256(preamble).digest()
    out.write(preamble + digest)
    sealer = _ChunkSealer(out, keys.body, digest, header.sealing)
    _write_members(sealer, members)
    sealer.close()
    out.flush()
    return header


def write_backup_file(
    path: Path, metadata: BackupMetadata, members: Iterable[Member], passphrase: str
) -> BackupHeader:
    """Write a backup to ``path`` atomically: a temporary file, fsync, then rename."""
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            header = write_backup(out, metadata, members, passphrase)
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return header


# -- reading -------------------------------------------------------------------


@dataclass(frozen=True)
class _Preamble:
    header: BackupHeader
    digest: bytes
    body_offset: int


def _read_preamble(stream: BinaryIO) -> _Preamble:
    magic = _read_exact(stream, len(MAGIC))
    if magic != MAGIC:
        raise NotABackupError("This file is not a Bastion backup (its first bytes are wrong).")
    length_bytes = _read_exact(stream, 4)
    if len(length_bytes) < 4:
        raise BackupTruncatedError("The backup file is cut short inside its header.")
    (length,) = struct.unpack(">I", length_bytes)
    if length > MAX_HEADER_BYTES:
        raise BackupCorruptError("The backup header length is damaged (byte offset 12).")
    header_json = _read_exact(stream, length)
    stored_digest = _read_exact(stream, _DIGEST_BYTES)
    if len(header_json) < length or len(stored_digest) < _DIGEST_BYTES:
        raise BackupTruncatedError("The backup file is cut short inside its header.")
    digest = hashlib.sha256(MAGIC + length_bytes + header_json).digest()
    body_offset = len(MAGIC) + 4 + length + _DIGEST_BYTES
    if not hmac.compare_digest(digest, stored_digest):
        raise BackupCorruptError(f"The backup header is damaged (bytes 0 to {body_offset}).")
    return _Preamble(header_from_json(header_json), digest, body_offset)


def read_header(path: Path | str) -> BackupHeader:
    """Read a backup's header without the passphrase (what it is, from which site and version)."""
    with open(path, "rb") as stream:
        return read_header_from(stream)


def read_header_from(stream: BinaryIO) -> BackupHeader:
    return _read_preamble(stream).header


class _ChunkOpener:
    """Reads, authenticates and yields the plaintext chunks of the body, in order."""

    def __init__(self, stream: BinaryIO, key: bytes, preamble: _Preamble):
        self._stream, self._aead, self._preamble = stream, AESGCM(key), preamble
        self._sealing = preamble.header.sealing
        self._offset = preamble.body_offset

    def chunks(self) -> Iterator[bytes]:
        index = 0
        while True:
            kind = self._take(1, index)
            if kind == b"D":
                sealed = self._take(self._sealing.chunk_size + TAG_BYTES, index)
                yield self._open(index, kind, None, sealed)
            elif kind == b"F":
                yield self._open_final(index)
                return
            else:
                raise self._corrupt(index, self._offset - 1)
            index += 1

    def _open_final(self, index: int) -> bytes:
        record_offset = self._offset - 1
        (length,) = struct.unpack(">I", self._take(4, index))
        if length > self._sealing.chunk_size:
            raise self._corrupt(index, record_offset)
        plaintext = self._open(index, b"F", length, self._take(length + TAG_BYTES, index))
        if self._stream.read(1):
            raise BackupCorruptError(
                f"The backup has extra data after its end (byte offset {self._offset})."
            )
        return plaintext

    def _take(self, size: int, index: int) -> bytes:
        data = _read_exact(self._stream, size)
        self._offset += len(data)
        if len(data) < size:
            raise BackupTruncatedError(
                f"The backup file is cut short: it ends at byte {self._offset}, inside or"
                f" before chunk {index}. Copy or download it again."
            )
        return data

    def _open(self, index: int, kind: bytes, length: int | None, sealed: bytes) -> bytes:
        nonce = _nonce(self._sealing.nonce_prefix, index)
        aad = _aad(self._preamble.digest, index, kind, length)
        try:
            return self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            start = self._offset - len(sealed) - (1 if length is None else 5)
            raise self._corrupt(index, start) from None

    def _corrupt(self, index: int, offset: int) -> BackupCorruptError:
        return BackupCorruptError(
            f"The backup file is damaged in chunk {index} (byte offset {offset});"
            " use another copy of the backup."
        )


class _Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


class VerifiedBackup:
    """A backup whose passphrase and whole content have been checked.

    Created by :func:`open_backup`; :meth:`extract_to` decrypts it a second time
    (checking again) into a temporary directory that is renamed into place only
    when everything has been written.
    """

    def __init__(self, stream: BinaryIO, preamble: _Preamble, keys: _Keys):
        self._stream, self._preamble, self._keys = stream, preamble, keys
        self.header = preamble.header
        self.members: tuple[MemberInfo, ...] = ()

    def _events(self) -> Iterator[_Event]:
        self._stream.seek(self._preamble.body_offset)
        opener = _ChunkOpener(self._stream, self._keys.body, self._preamble)
        return _archive_events(_PlainReader(opener.chunks()))

    def verify(self) -> tuple[MemberInfo, ...]:
        """Read and authenticate the whole file; list its members."""
        sizes: dict[str, int] = {}
        for event in self._events():
            sizes[event.name] = sizes.get(event.name, 0) + len(event.data)
        self.members = tuple(MemberInfo(name, size) for name, size in sizes.items())
        return self.members

    def copy_member(self, name: str, out: _Writer) -> int:
        """Decrypt the file again (checking again) and write one member's bytes to ``out``.

        One pass, nothing else written: what a restore needs from its one database member.
        Raises ``BackupCorruptError`` if the member is missing or the file changed since
        :meth:`verify`; the caller discards what was written.
        """
        size, found = 0, False
        for event in self._events():
            if event.name == name:
                found = True
                if event.data:
                    out.write(event.data)
                    size += len(event.data)
        if not found:
            raise BackupCorruptError(f"The backup holds no member {name!r}.")
        return size

    def extract_to(self, directory: Path | str) -> tuple[MemberInfo, ...]:
        """Write every member under ``directory`` (which must not exist yet), atomically."""
        target = Path(directory)
        if target.exists():
            raise FileExistsError(f"{target} already exists; extract into a new directory.")
        temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))
        try:
            members = _write_events(self._events(), temp)
            _fsync_directory(temp)
            os.replace(temp, target)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        _fsync_directory(target.parent)
        return members


def open_backup(
    stream: BinaryIO,
    passphrase: str,
    *,
    running_version: str | None = None,
    limits: KdfLimits = KdfLimits(),
) -> VerifiedBackup:
    """Check the passphrase and the integrity of the whole backup before returning it.

    With ``running_version``, a backup from newer software is refused first, before
    any key derivation. ``stream`` must be seekable (spool uploads with
    :func:`~bastion.backups.upload.copy_capped`).
    """
    if not stream.seekable():
        raise ValueError("open_backup needs a seekable stream")
    stream.seek(0)
    preamble = _read_preamble(stream)
    if running_version is not None:
        check_compatibility(preamble.header, running_version)
    check_kdf_cost(preamble.header.kdf, limits)
    keys = _derive_keys(passphrase, preamble.header.kdf)
    if not hmac.compare_digest(_key_check(keys), preamble.header.sealing.key_check):
        raise WrongPassphraseError(
            "The passphrase is wrong for this backup. Enter the passphrase that was"
            " chosen when the backup was taken."
        )
    backup = VerifiedBackup(stream, preamble, keys)
    backup.verify()
    return backup
