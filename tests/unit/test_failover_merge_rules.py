"""What a session record merged from a backup keeps, and which records are refused,
without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bastion.failover.merge import MergeOutcome, merged_record, record_problem

ENDED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def record(**fields: Any) -> dict[str, Any]:
    base = {
        "id": "6f1c2a9e-0000-4000-8000-000000000001",
        "account_id": 2,
        "username": "Rep-Backup",
        "jump_client_id": 1,
        "jump_client_name": "web-01",
        "ended_at": ENDED,
        "recording_sha256": SHA,
    }
    return {**base, **fields}


def test_ids_that_name_the_same_account_and_client_here_are_kept() -> None:
    kept = merged_record(record(), {2: "rep-backup"}, {1: "WEB-01"})
    assert kept == record()


def test_ids_that_name_another_or_no_one_here_become_null_and_the_names_stay() -> None:
    kept = merged_record(record(), {2: "rep-primary"}, {})
    assert kept["account_id"] is None and kept["jump_client_id"] is None
    assert kept["username"] == "Rep-Backup" and kept["jump_client_name"] == "web-01"


def test_a_record_without_ids_stays_without() -> None:
    bare = record(account_id=None, jump_client_id=None)
    assert merged_record(bare, {1: "x"}, {1: "y"}) == bare


@given(st.integers(min_value=1, max_value=5), st.dictionaries(st.integers(1, 5), st.text()))
def test_merging_never_changes_anything_but_the_two_ids(
    account: int, names: dict[int, str]
) -> None:
    original = record(account_id=account)
    kept = merged_record(original, names, names)
    assert {k: v for k, v in kept.items() if not k.endswith("_id")} == {
        k: v for k, v in original.items() if not k.endswith("_id")
    }
    assert kept["account_id"] in (None, account)


def test_records_that_cannot_be_merged_say_why() -> None:
    assert record_problem(record()) == ""
    assert record_problem(record(recording_sha256=None)) == ""
    assert "has not ended" in record_problem(record(ended_at=None))
    assert "not a SHA-256" in record_problem(record(recording_sha256="../../etc/passwd"))
    assert "valid id" in record_problem(record(id=""))
    assert "valid id" in record_problem(record(id=7))
    assert "valid id" in record_problem(record(id="x" * 37))


def test_the_outcome_says_what_was_merged() -> None:
    said = MergeOutcome(merged=2, already_present=5, blobs_fetched=1).summary()
    assert said.startswith("2 session(s) from the backup merged, 5 already here")
