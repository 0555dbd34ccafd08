"""The encrypted backup container against real files: round trips and every kind of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.backups import container
from bastion.backups.archive import BackupCorruptError
from bastion.backups.container import (
    MAGIC,
    BackupTruncatedError,
    VerifiedBackup,
    WrongPassphraseError,
    open_backup,
    read_header,
    write_backup,
    write_backup_file,
)
from bastion.backups.rules import (
    BackupError,
    BackupFormatTooNewError,
    BackupMetadata,
    BackupVersionTooNewError,
    Compatibility,
    KdfLimits,
    NotABackupError,
    ScryptParameters,
    check_compatibility,
    header_to_json,
)
from bastion.backups.upload import BackupTooLargeError, SizeCappedReader, copy_capped

FAST = KdfLimits(min_n=2**10)
PASSPHRASE = "correct horse battery staple"


def metadata(version: str = "1.4.0") -> BackupMetadata:
    return BackupMetadata(
        software_version=version,
        schema_revision="a1b2c3",
        site_name="support.example.com",
        created_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        contents=("settings", "users", "certificates"),
    )


def make_backup(members: list[tuple[str, bytes]], chunk_size: int = 64, **kw: str) -> bytes:
    out = io.BytesIO()
    meta = metadata(kw.get("version", "1.4.0"))
    write_backup(out, meta, members, PASSPHRASE, scrypt_n=2**10, chunk_size=chunk_size, limits=FAST)
    return out.getvalue()


SMALL_MEMBERS = [("settings.json", b'{"a": 1}'), ("db/site.sqlite", bytes(range(150)))]


def open_bytes(data: bytes, passphrase: str = PASSPHRASE) -> VerifiedBackup:
    return open_backup(io.BytesIO(data), passphrase, limits=FAST)


def test_round_trip_extracts_every_member(tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    members = [("settings.json", b"{}"), ("blobs/big.bin", io.BytesIO(big)), ("empty", b"")]
    path = tmp_path / "site.bbk"
    with open(path, "wb") as out:
        write_backup(out, metadata(), members, PASSPHRASE, scrypt_n=2**10, limits=FAST)
    with open(path, "rb") as stream:
        backup = open_backup(stream, PASSPHRASE, limits=FAST)
        assert [(m.name, m.size) for m in backup.members] == [
            ("settings.json", 2),
            ("blobs/big.bin", len(big)),
            ("empty", 0),
        ]
        backup.extract_to(tmp_path / "restored")
    assert (tmp_path / "restored" / "blobs" / "big.bin").read_bytes() == big
    assert (tmp_path / "restored" / "settings.json").read_bytes() == b"{}"
    assert (tmp_path / "restored" / "empty").read_bytes() == b""
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_default_cost_file_round_trip_and_header_without_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "site.bbk"
    header = write_backup_file(path, metadata(), SMALL_MEMBERS, PASSPHRASE)
    assert header.kdf.n >= 2**15 and header.kdf.r == 8 and len(header.kdf.salt) == 16
    assert read_header(path) == header
    assert read_header(path).metadata.site_name == "support.example.com"
    with open(path, "rb") as stream:
        assert len(open_backup(stream, PASSPHRASE).members) == 2


def test_empty_archive_round_trips(tmp_path: Path) -> None:
    backup = open_bytes(make_backup([]))
    assert backup.members == ()
    backup.extract_to(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_wrong_passphrase_is_told_apart_from_damage() -> None:
    with pytest.raises(WrongPassphraseError, match="passphrase is wrong"):
        open_bytes(make_backup(SMALL_MEMBERS), "not the passphrase")


def test_same_plaintext_gives_different_files() -> None:
    assert make_backup(SMALL_MEMBERS) != make_backup(SMALL_MEMBERS)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(BackupError, match="Choose a passphrase"):
        write_backup(io.BytesIO(), metadata(), [], "", scrypt_n=2**10, limits=FAST)


def test_weak_kdf_in_header_is_refused_by_default_limits() -> None:
    with pytest.raises(BackupError, match="key-derivation settings"):
        open_backup(io.BytesIO(make_backup(SMALL_MEMBERS)), PASSPHRASE)


def test_truncated_at_every_offset_is_refused() -> None:
    data = make_backup(SMALL_MEMBERS)
    for cut in range(len(data)):
        with pytest.raises(BackupError) as caught:
            open_bytes(data[:cut])
        assert not isinstance(caught.value, WrongPassphraseError), cut
        if cut > len(data) - 300:
            assert isinstance(caught.value, BackupTruncatedError), cut


def test_every_flipped_byte_is_detected_and_never_blamed_on_the_passphrase() -> None:
    data = make_backup(SMALL_MEMBERS)
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        expected = NotABackupError if offset < len(MAGIC) else BackupCorruptError
        with pytest.raises((expected, BackupTruncatedError)):
            open_bytes(bytes(damaged))


def test_damage_in_the_body_names_where() -> None:
    data = bytearray(make_backup(SMALL_MEMBERS))
    data[-40] ^= 0xFF
    with pytest.raises(BackupCorruptError, match=r"damaged in chunk \d+ \(byte offset \d+\)"):
        open_bytes(bytes(data))


def test_reordered_chunks_are_detected() -> None:
    data = make_backup([("m", bytes(1000))], chunk_size=64)
    record = 1 + 64 + 16
    first = _body_offset(data)
    second = first + record
    swapped = data[:first] + data[second : second + record] + data[first:second]
    swapped += data[second + record :]
    with pytest.raises(BackupCorruptError):
        open_bytes(swapped)


def test_dropped_chunk_is_detected() -> None:
    data = make_backup([("m", bytes(1000))], chunk_size=64)
    start = _body_offset(data)
    with pytest.raises(BackupCorruptError):
        open_bytes(data[:start] + data[start + 81 :])


def test_appended_data_is_detected() -> None:
    data = make_backup(SMALL_MEMBERS)
    with pytest.raises(BackupCorruptError, match="extra data"):
        open_bytes(data + b"\0")
    with pytest.raises(BackupCorruptError):
        open_bytes(data + data[_body_offset(data) :])


def test_not_a_backup() -> None:
    for data in (b"", b"PK\x03\x04 a zip file", b"hello world" * 100):
        with pytest.raises(NotABackupError, match="not a Bastion backup"):
            open_bytes(data)


def test_header_with_another_format_name_is_not_a_backup() -> None:
    data = _rewrite_header(make_backup([]), format="something-else")
    with pytest.raises(NotABackupError):
        open_bytes(data)


def test_future_container_format_is_refused_before_the_passphrase() -> None:
    data = _rewrite_header(make_backup([]), format_version=2)
    with pytest.raises(BackupFormatTooNewError, match="container format 2"):
        open_bytes(data, "any passphrase")


def test_backup_from_newer_software_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "new.bbk"
    path.write_bytes(make_backup(SMALL_MEMBERS, version="2.1.0"))
    header = read_header(path)
    with pytest.raises(BackupVersionTooNewError, match=r"2\.1\.0.*1\.10\.0"):
        check_compatibility(header, "1.10.0")
    assert check_compatibility(header, "2.10.0") is Compatibility.MIGRATE_FORWARD
    with open(path, "rb") as stream, pytest.raises(BackupVersionTooNewError, match="Install"):
        open_backup(stream, "passphrase not even tried", running_version="1.10.0", limits=FAST)
    with open(path, "rb") as stream:
        open_backup(stream, PASSPHRASE, running_version="2.1.0", limits=FAST)


def test_extract_refuses_an_existing_directory(tmp_path: Path) -> None:
    backup = open_bytes(make_backup(SMALL_MEMBERS))
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        backup.extract_to(tmp_path / "out")


def test_extract_leaves_nothing_when_the_file_changes_after_verification(tmp_path: Path) -> None:
    data = make_backup([("a", bytes(500)), ("b", bytes(500))])
    stream = io.BytesIO(data)
    backup = open_backup(stream, PASSPHRASE, limits=FAST)
    stream.getbuffer()[-30] ^= 0x01
    with pytest.raises(BackupCorruptError):
        backup.extract_to(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


UNSAFE_NAMES = ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b", "a/"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_member_names_are_not_written(name: str) -> None:
    with pytest.raises(ValueError, match="not a safe relative path"):
        make_backup([(name, b"x")])


@pytest.mark.parametrize("names", [("a", "a"), ("a", "a/b"), ("a/b", "a")])
def test_clashing_member_names_are_not_written(names: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="clashes"):
        make_backup([(names[0], b"1"), (names[1], b"2")])


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d/x"])
def test_crafted_backup_with_unsafe_name_is_refused_before_writing(
    name: str, tmp_path: Path
) -> None:
    encoded = name.encode()
    archive = b"M" + struct.pack(">H", len(encoded)) + encoded + b"B\0\0\0\1xEZ"
    with pytest.raises(BackupCorruptError, match="not a safe relative path"):
        open_bytes(_craft_backup(archive)).extract_to(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "archive",
    [b"", b"B\0\0\0\1x", b"M\0\1aEZZ", b"M\0\1aB\0\0\0\0EZ", b"M\0\1aZ", b"X"],
)
def test_crafted_backup_with_bad_structure_is_refused(archive: bytes) -> None:
    with pytest.raises(BackupCorruptError):
        open_bytes(_craft_backup(archive))


def test_size_cap_refuses_without_reading_everything() -> None:
    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
            self.served += len(buffer)
            return len(buffer)

    source = Endless()
    sink = io.BytesIO()
    with pytest.raises(BackupTooLargeError, match="larger than the limit of 5000000 bytes"):
        copy_capped(source, sink, 5_000_000)  # type: ignore[arg-type]
    assert source.served <= 5_000_001
    assert len(sink.getvalue()) <= 5_000_000


def test_size_cap_accepts_exactly_the_limit() -> None:
    sink = io.BytesIO()
    assert copy_capped(io.BytesIO(b"x" * 1000), sink, 1000) == 1000
    reader = SizeCappedReader(io.BytesIO(b"x" * 1001), 1000)
    with pytest.raises(BackupTooLargeError):
        reader.read()


# -- helpers -------------------------------------------------------------------


def _body_offset(data: bytes) -> int:
    (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    return len(MAGIC) + 4 + length + 32


def _rewrite_header(data: bytes, **changes: object) -> bytes:
    """Rewrite the plaintext header consistently (as a newer writer would)."""
    (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    document = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    document.update(changes)
    header = json.dumps(document).encode()
    preamble = MAGIC + struct.pack(">I", len(header)) + header
    return preamble + hashlib.sha256(preamble).digest() + data[_body_offset(data) :]


def _craft_backup(archive: bytes) -> bytes:
    """A correctly sealed file around an arbitrary archive, as someone with the passphrase
    could write by hand."""
    kdf = ScryptParameters(salt=os.urandom(16), n=2**10)
    keys = container._derive_keys(PASSPHRASE, kdf)
    header = container._new_header(metadata(), kdf, keys, 64)
    preamble = container._preamble(header_to_json(header))
    digest = hashlib.sha256(preamble).digest()
    out = io.BytesIO()
    out.write(preamble + digest)
    sealer = container._ChunkSealer(out, keys.body, digest, header.sealing)
    sealer.write(archive)
    sealer.close()
    return out.getvalue()
