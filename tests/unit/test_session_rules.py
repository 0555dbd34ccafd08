"""Sessions' pure rules, and the recording's asciicast as bytes pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.sessions import rules
from bastion.sessions.recording import Recording
from bastion.sessions.rules import SessionRuleError


def test_jump_groups_are_trimmed_unique_and_sorted() -> None:
    assert rules.clean_groups(["  ops ", "Ünïcødé  team", "ops"]) == ["ops", "Ünïcødé team"]
    for bad in ([" "], ["x" * 101], ["tab\x07"], [f"g{i}" for i in range(201)]):
        with pytest.raises(SessionRuleError):
            rules.clean_groups(bad)


def test_administrators_use_everything_representatives_their_groups() -> None:
    assert rules.may_use(True, [], "")
    assert rules.may_use(False, ["ops"], "ops")
    assert not rules.may_use(False, ["ops"], "databases")
    assert not rules.may_use(False, [""], ""), "a client in no group is for administrators"


@pytest.mark.parametrize(
    ("status", "mode", "version", "words"),
    [
        ("online", "active", "1.0.0", None),
        ("online", "passive", "1.2.3+local", None),
        ("revoked", "active", "1.0.0", "revoked"),
        ("uninstalling", "active", "1.0.0", "uninstalled"),
        ("upgrade pending", "active", "0.9", "upgrade"),
        ("failed", "active", "0.9", "upgrade"),
        ("online", "active", "0.9.1", "has no sessions"),
        ("online", "active", "dev", "has no sessions"),
        ("offline", "active", "1.0.0", "offline"),
        ("lost", "active", "1.0.0", "lost"),
        ("offline", "passive", "1.0.0", "passive"),
    ],
)
def test_why_a_jump_cannot_start(status: str, mode: str, version: str, words: str | None) -> None:
    refusal = rules.jump_refusal(status, mode, version, "web-01")
    assert refusal is None if words is None else (refusal is not None and words in refusal)


def test_statuses_are_named_as_the_console_names_them() -> None:
    assert rules.jump_status("upgrade pending") == "upgrade_pending"


def _events(path: Path) -> tuple[dict[str, object], list[list[object]]]:
    header, *events = [json.loads(line) for line in path.read_text().splitlines()]
    return header, events


def test_a_recording_keeps_split_characters_whole(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "work", 80, 24, "rep on web-01", record_input=False)
    text = "ü → 🙂 ok".encode()
    for index in range(len(text)):  # one byte a frame: every character is split
        recording.output(text[index : index + 1])
    recording.input(b"secret\r")
    recording.resize(100, 30)
    stored = recording.store(tmp_path / "blobs")
    path = tmp_path / "blobs" / stored.sha256
    assert path.stat().st_size == stored.size
    header, events = _events(path)
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    assert "".join(str(e[2]) for e in events if e[1] == "o") == "ü → 🙂 ok"
    assert ["r", "100x30"] in [e[1:] for e in events]
    assert not [e for e in events if e[1] == "i"], "input is recorded only when asked"
    assert list((tmp_path / "work").iterdir()) == []


def test_bytes_that_are_not_utf8_become_replacement_characters(tmp_path: Path) -> None:
    recording = Recording(tmp_path, 80, 24, "t", record_input=True)
    recording.output(b"\xff\xfeok\xc3")  # and a character cut off by the end
    recording.input(b"\xe2\x86")
    stored = recording.store(tmp_path / "blobs")
    _, events = _events(tmp_path / "blobs" / stored.sha256)
    assert [e[1:] for e in events] == [["o", "\ufffd\ufffdok"], ["o", "\ufffd"], ["i", "\ufffd"]]


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_any_output_makes_a_valid_recording(frames: list[bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        recording = Recording(Path(folder), 80, 24, "t", record_input=False)
        for frame in frames:
            recording.output(frame)
        stored = recording.store(Path(folder) / "blobs")
        _, events = _events(Path(folder) / "blobs" / stored.sha256)
        shown = "".join(str(e[2]) for e in events)
        assert shown == b"".join(frames).decode("utf-8", errors="replace")


def test_a_start_session_order_crosses_the_port_to_the_gateway_whole() -> None:
    from bastion.agents.protocol import Command, StartSession
    from bastion.jump_clients.port import from_wire, to_wire
    from bastion.jump_clients.routing import Deliver

    body = StartSession(
        session_id="0b6f7e9e-2c47-4f7e-9a55-7f3d2b6f1c11",
        rendezvous="site.example:443",
        token="A" * 43,
        cols=132,
        rows=43,
    )
    sent = Deliver("jc_abc", Command(command_id="session-0123456789abcdef", body=body))
    assert from_wire(json.loads(json.dumps(to_wire(sent)))) == sent


# -- the licence: representatives and endpoints in sessions at once ----------------------------


def seat(who: str, where: str, account_id: int | None = None) -> rules.Seat:
    """Without an account id the representative is counted by name."""
    return rules.Seat(account_id, who, f"jc_{where}", where)


ALICE_WEB, BOB_DB = seat("alice", "web-01"), seat("bob", "db-02")


def test_without_a_licence_add_on_there_is_no_limit() -> None:
    many = [seat(f"r{i}", f"e{i}", i) for i in range(1000)]
    assert rules.licence_refusal(None, many, seat("new", "new", 5000)) is None


def test_the_one_beyond_the_representatives_is_refused_with_the_count_and_who_holds_it() -> None:
    licensed = rules.LicensedCounts(representatives=2, endpoints=10)
    refusal = rules.licence_refusal(licensed, [BOB_DB, ALICE_WEB], seat("carol", "app-03"))
    assert refusal == (
        "The licence allows 2 representatives in sessions at once; in sessions now: alice, bob. "
        "Wait for one to end, or install a licence add-on with more."
    )
    assert rules.licence_refusal(licensed, [ALICE_WEB], seat("carol", "app-03")) is None


def test_the_one_beyond_the_endpoints_is_refused_with_who_is_on_each() -> None:
    licensed = rules.LicensedCounts(representatives=10, endpoints=2)
    held = [ALICE_WEB, BOB_DB, seat("carol", "web-01")]
    refusal = rules.licence_refusal(licensed, held, seat("alice", "app-03"))
    assert refusal == (
        "The licence allows 2 endpoints in sessions at once; in sessions now: "
        "db-02 (bob), web-01 (alice, carol). "
        "Wait for one to end, or install a licence add-on with more."
    )
    one = rules.LicensedCounts(representatives=1, endpoints=1)
    assert "allows 1 endpoint in" in (
        rules.licence_refusal(one, [ALICE_WEB], seat("alice", "x")) or ""
    )


def test_someone_already_counted_is_not_counted_twice() -> None:
    full = rules.LicensedCounts(representatives=2, endpoints=2)
    held = [ALICE_WEB, BOB_DB]
    assert rules.licence_refusal(full, held, ALICE_WEB) is None, "another session, same place"
    assert rules.licence_refusal(full, held, seat("alice", "db-02")) is None
    assert rules.licence_refusal(full, held, seat("bob", "web-01")) is None
    assert rules.licence_refusal(full, held, seat("alice", "app-03")) is not None
    assert rules.licence_refusal(full, held, seat("carol", "web-01")) is not None


def test_a_smaller_licence_ends_nobody_and_refuses_new_ones_until_under_the_count() -> None:
    smaller = rules.LicensedCounts(representatives=1, endpoints=1)
    held = [ALICE_WEB, BOB_DB, seat("carol", "app-03")]
    assert rules.licence_refusal(smaller, held, seat("dave", "web-01")) is not None
    assert rules.licence_refusal(smaller, held, BOB_DB) is None, "already counted"
    assert rules.licence_refusal(smaller, held[:1], seat("dave", "web-01")) is not None
    assert rules.licence_refusal(smaller, [], seat("dave", "web-01")) is None
    nothing = rules.LicensedCounts(representatives=0, endpoints=0)
    assert "in sessions now: none." in (rules.licence_refusal(nothing, [], ALICE_WEB) or "")


def test_accounts_count_by_id_and_a_long_list_is_cut_short() -> None:
    renamed = [seat("alice", "web-01", 7), seat("alice-2", "web-01", 7)]
    assert len(rules.in_sessions(renamed).representatives) == 1
    many = [seat(f"rep{i:02d}", f"e{i}", i) for i in range(25)]
    refusal = rules.licence_refusal(rules.LicensedCounts(25, 100), many, seat("x", "y", 99))
    assert refusal is not None and "rep09 and 15 more." in refusal and "rep10" not in refusal
    crowded = [seat(f"rep{i:02d}", "web-01", i) for i in range(12)]
    refusal = rules.licence_refusal(rules.LicensedCounts(99, 1), crowded, seat("x", "y", 99))
    assert refusal is not None and "web-01 (rep00, " in refusal and "rep09 and 2 more)." in refusal


def test_who_is_in_sessions_is_sorted_by_name() -> None:
    now = rules.in_sessions([seat("Zed", "b", 1), seat("amy", "B-2", 2), seat("bo", "b", 3)])
    assert now.representatives == ("amy", "bo", "Zed")
    assert now.endpoints == (("b", ("bo", "Zed")), ("B-2", ("amy",)))


@given(
    st.integers(0, 4),
    st.integers(0, 4),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.booleans()), max_size=40),
)
def test_opening_and_ending_in_any_order_never_passes_the_counts(
    representatives: int, endpoints: int, steps: list[tuple[int, int, bool]]
) -> None:
    licensed = rules.LicensedCounts(representatives, endpoints)
    held: list[rules.Seat] = []
    for who, where, opening in steps:
        wanted = seat(f"r{who}", f"e{where}", who)
        if not opening:
            if wanted in held:
                held.remove(wanted)
            continue
        known = any(s.account_id == who for s in held) and any(
            s.client_name == wanted.client_name for s in held
        )
        refusal = rules.licence_refusal(licensed, held, wanted)
        if refusal is None:
            held.append(wanted)
        else:
            assert not known, "someone counted already is never refused"
        now = rules.in_sessions(held)
        assert len(now.representatives) <= representatives
        assert len(now.endpoints) <= endpoints


def test_characters_that_line_readers_break_on_stay_inside_their_event(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "work", 80, 24, "t", record_input=False)
    shown = "a\u0085b\u2028c\u2029d\x1ce"
    recording.output(shown.encode())
    stored = recording.store(tmp_path / "blobs")
    _, events = _events(tmp_path / "blobs" / stored.sha256)
    assert [e[2] for e in events if e[1] == "o"] == [shown]


@given(st.uuids())
def test_a_sessions_order_leads_back_to_its_session(session_id: object) -> None:
    order = rules.order_id(str(session_id))
    assert len(order) <= 64 and rules.session_of(order) == str(session_id)
    assert rules.session_of("upgrade-1234") is None and rules.session_of("session-") is None


def test_a_jump_client_refusing_a_session_says_what_to_do() -> None:
    off = rules.client_refusal("kiosk-1", "unsupported", "sessions are turned off for this one")
    assert off.startswith("kiosk-1 has sessions turned off") and "--no-sessions" in off
    failed = rules.client_refusal("jp-1", "failed", "the SSH server refused the key")
    assert failed == "jp-1 would not start the session (failed: the SSH server refused the key)"
