"""Backup header (de)serialisation, version comparison and the compatibility rule."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.backups.rules import (
    FORMAT_VERSION,
    MAX_HEADER_BYTES,
    BackupError,
    BackupFormatTooNewError,
    BackupHeader,
    BackupHeaderError,
    BackupMetadata,
    BackupVersionTooNewError,
    Compatibility,
    KdfLimits,
    NotABackupError,
    ScryptParameters,
    SealingParameters,
    check_compatibility,
    check_kdf_cost,
    compare_versions,
    header_from_json,
    header_to_json,
    parse_version,
)

HEADER = BackupHeader(
    metadata=BackupMetadata(
        software_version="1.9.3",
        schema_revision="0007_jump_clients",
        site_name="support.example.com",
        created_at=datetime(2026, 11, 23, 12, 30, tzinfo=UTC),
        contents=("settings", "users", "certificates"),
    ),
    kdf=ScryptParameters(salt=bytes(range(16))),
    sealing=SealingParameters(chunk_size=1 << 20, nonce_prefix=b"abcd", key_check=bytes(32)),
)


def document(**changes: object) -> bytes:
    parsed = json.loads(header_to_json(HEADER))
    parsed.update(changes)
    return json.dumps(parsed).encode()


def with_version(version: str) -> BackupHeader:
    return replace(HEADER, metadata=replace(HEADER.metadata, software_version=version))


# -- versions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [
        ("1.10.0", "1.9.3", 1),
        ("1.9.3", "1.10.0", -1),
        ("2.0", "2.0.0", 0),
        ("1.0.0.1", "1.0.0", 1),
        ("10.0.0", "9.99.99", 1),
        ("1.02.0", "1.2.0", 0),
    ],
)
def test_numeric_dotted_comparison(left: str, right: str, order: int) -> None:
    assert compare_versions(left, right) == order


@pytest.mark.parametrize("text", ["", "1..2", "1.2.x", "v1.2", "1.2-rc1", "-1.0", "\u0661.\u0662"])
def test_non_numeric_versions_are_refused(text: str) -> None:
    with pytest.raises(BackupHeaderError, match="not a version number"):
        parse_version(text)


VERSION = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5)


def _text(parts: list[int]) -> str:
    return ".".join(map(str, parts))


@given(a=VERSION, b=VERSION)
def test_comparison_is_antisymmetric_and_matches_padded_tuples(a: list[int], b: list[int]) -> None:
    width = max(len(a), len(b))
    padded_a, padded_b = a + [0] * (width - len(a)), b + [0] * (width - len(b))
    expected = (padded_a > padded_b) - (padded_a < padded_b)
    assert compare_versions(_text(a), _text(b)) == expected
    assert compare_versions(_text(b), _text(a)) == -expected


@given(a=VERSION, b=VERSION, c=VERSION)
def test_comparison_is_transitive(a: list[int], b: list[int], c: list[int]) -> None:
    ordered = sorted([_text(a), _text(b), _text(c)], key=lambda v: tuple(parse_version(v)))
    assert compare_versions(ordered[0], ordered[1]) <= 0
    assert compare_versions(ordered[1], ordered[2]) <= 0
    assert compare_versions(ordered[0], ordered[2]) <= 0


# -- compatibility -------------------------------------------------------------


def test_same_version_is_accepted() -> None:
    assert check_compatibility(HEADER, "1.9.3") is Compatibility.SAME_VERSION


def test_older_backup_is_migrated_forward() -> None:
    assert check_compatibility(HEADER, "1.10.0") is Compatibility.MIGRATE_FORWARD


def test_newer_backup_is_refused_naming_both_versions() -> None:
    with pytest.raises(BackupVersionTooNewError) as caught:
        check_compatibility(with_version("1.10.0"), "1.9.3")
    message = str(caught.value)
    assert "1.10.0" in message and "1.9.3" in message and "Install" in message


def test_future_format_is_refused() -> None:
    with pytest.raises(BackupFormatTooNewError, match=f"format {FORMAT_VERSION + 1}"):
        check_compatibility(replace(HEADER, format_version=FORMAT_VERSION + 1), "9.9.9")


@given(backup=VERSION, running=VERSION)
def test_restore_allowed_iff_backup_not_newer(backup: list[int], running: list[int]) -> None:
    header = with_version(_text(backup))
    if compare_versions(_text(backup), _text(running)) > 0:
        with pytest.raises(BackupVersionTooNewError):
            check_compatibility(header, _text(running))
    else:
        assert check_compatibility(header, _text(running)) in set(Compatibility)


# -- serialisation -------------------------------------------------------------


def test_header_round_trips() -> None:
    assert header_from_json(header_to_json(HEADER)) == HEADER


def test_serialisation_is_deterministic_json() -> None:
    data = header_to_json(HEADER)
    assert data == header_to_json(HEADER)
    assert json.loads(data)["format"] == "bastion-backup"


@given(
    site=st.text(max_size=60),
    schema=st.text(max_size=40),
    contents=st.lists(st.text(max_size=20), max_size=6),
    created=st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))),
    salt=st.binary(min_size=16, max_size=32),
    version=VERSION,
)
def test_any_header_round_trips(
    site: str,
    schema: str,
    contents: list[str],
    created: datetime,
    salt: bytes,
    version: list[int],
) -> None:
    metadata = BackupMetadata(_text(version), schema, site, created, tuple(contents))
    header = replace(HEADER, metadata=metadata, kdf=ScryptParameters(salt=salt, n=2**16))
    assert header_from_json(header_to_json(header)) == header


def test_future_format_is_refused_before_reading_other_fields() -> None:
    data = json.dumps({"format": "bastion-backup", "format_version": 7, "x": 1}).encode()
    with pytest.raises(BackupFormatTooNewError):
        header_from_json(data)


@pytest.mark.parametrize(
    "data", [b"\xff\xfe", b"not json", b"[1, 2]", json.dumps({"format": "zip"}).encode()]
)
def test_foreign_data_is_not_a_backup_or_not_a_header(data: bytes) -> None:
    with pytest.raises((NotABackupError, BackupHeaderError)):
        header_from_json(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"format_version": "1"},
        {"format_version": True},
        {"format_version": 0},
        {"software_version": "latest"},
        {"created_at": "yesterday"},
        {"contents": [1, 2]},
        {"site_name": None},
        {"kdf": {"name": "pbkdf2"}},
        {"kdf": {"name": "scrypt", "salt": "!!", "n": 1, "r": 8, "p": 1}},
        {"sealing": {"cipher": "AES-128-CBC"}},
        {
            "sealing": {
                "cipher": "AES-256-GCM",
                "chunk_size": 0,
                "nonce_prefix": "YWJjZA==",
                "key_check": "AA==",
            }
        },
    ],
)
def test_invalid_fields_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(BackupHeaderError):
        header_from_json(document(**changes))


def test_oversized_header_is_refused() -> None:
    with pytest.raises(BackupHeaderError, match="too large"):
        header_from_json(b" " * (MAX_HEADER_BYTES + 1))


def test_every_error_is_a_backup_error() -> None:
    for error in (NotABackupError, BackupHeaderError, BackupFormatTooNewError):
        assert issubclass(error, BackupError)


# -- key-derivation cost from an untrusted header ---------------------------------


@pytest.mark.parametrize(
    "kdf",
    [
        ScryptParameters(salt=bytes(16), n=2**14),
        ScryptParameters(salt=bytes(16), n=2**19),
        ScryptParameters(salt=bytes(16), n=2**18, r=16),
        ScryptParameters(salt=bytes(16), n=3 * 2**15),
        ScryptParameters(salt=bytes(16), r=1),
        ScryptParameters(salt=bytes(16), p=64),
        ScryptParameters(salt=bytes(8)),
    ],
)
def test_kdf_cost_outside_limits_is_refused(kdf: ScryptParameters) -> None:
    with pytest.raises(BackupHeaderError, match="key-derivation settings"):
        check_kdf_cost(kdf, KdfLimits())


def test_default_kdf_cost_is_accepted() -> None:
    check_kdf_cost(ScryptParameters(salt=bytes(16)), KdfLimits())
    check_kdf_cost(ScryptParameters(salt=bytes(16), n=2**18), KdfLimits())
    check_kdf_cost(ScryptParameters(salt=bytes(16), n=2**10), KdfLimits(min_n=2**10))
