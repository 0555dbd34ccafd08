"""The agent protocol: every message survives a round trip, versions n and n-1 are read,
others are refused, and no input makes the parser raise anything but `ProtocolError`."""

from __future__ import annotations

import contextlib
import json
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Bye,
    Challenge,
    CheckIn,
    Codec,
    Command,
    CommandResult,
    Cpu,
    Disk,
    Error,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    Resize,
    RetryAfter,
    SessionEnd,
    SessionExit,
    SessionHello,
    StartSession,
    Statistics,
    Upgrade,
    WakeCall,
    Welcome,
    encode_bytes,
)

NONCE = encode_bytes(bytes(range(32)))
HELLO = Hello(
    client_id="jc_abc123",
    signature=encode_bytes(bytes(64)),
    agent_version="1.0.0",
    mode="passive",
    anchors=("ab" * 32,),
    wake_port=40000,
)
STATISTICS = Statistics(
    hostname="pc-17",
    fqdn="pc-17.example.org",
    os="Debian GNU/Linux 12",
    console_user="alice",
    uptime_seconds=3600.5,
    cpu=Cpu(count=8, model="x86", load=(0.5, 0.25, 0.1)),
    memory_total=8 << 30,
    memory_available=4 << 30,
    disks=(Disk(path="/", total=100, free=40),),
)
SERVER_MESSAGES: list[Message] = [
    Challenge(nonce=NONCE),
    Welcome(
        mode="active",
        heartbeat_interval=30,
        heartbeat_timeout=95,
        statistics_interval=600,
        reconnect_after=12.5,
        wake_key=NONCE,
    ),
    RetryAfter(seconds=3.25, reason="rate_limited", detail="busy"),
    HeartbeatAck(seq=7, sent_at=123.5, reconnect_after=10),
    Command(command_id="c-1", body=CheckIn()),
    Command(command_id="c-2", body=Upgrade(version="1.1.0", sha256="cd" * 32)),
    Command(
        command_id="c-3", body=StartSession(session_id="s1", rendezvous="site:443", token="A" * 43)
    ),
    Error(code="malformed", detail="bad"),
    Bye(reason="restarting"),
]
CLIENT_MESSAGES: list[Message] = [
    HELLO,
    Heartbeat(seq=1, sent_at=5.0),
    STATISTICS,
    CommandResult(command_id="c-1", outcome="unsupported", detail="no"),
    Bye(reason="checked in"),
]


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: m.__class__.__name__)
def test_server_messages_round_trip(message: Message) -> None:
    codec = Codec()
    assert codec.read_server(codec.write(message)) == message


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda m: m.__class__.__name__)
def test_client_messages_round_trip(message: Message) -> None:
    codec = Codec()
    assert codec.read_client(codec.write(message)) == message


def test_each_end_refuses_the_other_ends_messages() -> None:
    codec = Codec()
    with pytest.raises(ProtocolError) as refused:
        codec.read_client(codec.write(Challenge(nonce=NONCE)))
    assert refused.value.code == "malformed"
    with pytest.raises(ProtocolError):
        codec.read_server(codec.write(HELLO))


def test_wake_call_round_trips() -> None:
    call = WakeCall(client_id="jc_abc123", issued_at=1_700_000_000, nonce=NONCE, mac=NONCE)
    assert Codec().read_wake(Codec().write(call)) == call


def test_version_n_minus_1_is_read() -> None:
    newer = Codec(version=PROTOCOL_VERSION + 1)
    frame = Codec().write(Heartbeat(seq=3, sent_at=1.0))
    message = newer.read_client(frame)
    assert message.v == PROTOCOL_VERSION
    assert list(newer.accepted) == [PROTOCOL_VERSION, PROTOCOL_VERSION + 1]


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, 99, 5000])
def test_unknown_versions_are_refused(version: int) -> None:
    frame = json.dumps({"v": version, "type": "heartbeat", "seq": 1, "sent_at": 1.0})
    with pytest.raises(ProtocolError) as refused:
        Codec().read_client(frame)
    assert refused.value.code == "unsupported_version"
    assert "upgrade" in refused.value.detail


def test_older_than_n_minus_1_is_refused() -> None:
    frame = json.dumps({"v": 1, "type": "heartbeat", "seq": 1, "sent_at": 1.0})
    with pytest.raises(ProtocolError) as refused:
        Codec(version=3).read_client(frame)
    assert refused.value.code == "unsupported_version"


class _HeartbeatV2(Heartbeat):
    since: ClassVar[dict[str, int]] = {"note": 2}
    note: str = "added in version 2"


def test_writing_to_an_older_peer_leaves_out_newer_fields() -> None:
    codec = Codec(version=2)
    old = json.loads(codec.write(_HeartbeatV2(seq=1, sent_at=1.0), peer_version=1))
    new = json.loads(codec.write(_HeartbeatV2(seq=1, sent_at=1.0)))
    assert old["v"] == 1 and "note" not in old
    assert new["v"] == 2 and new["note"] == "added in version 2"
    assert codec.read_client(json.dumps(old)) == Heartbeat(v=1, seq=1, sent_at=1.0)


def test_oversized_frames_are_refused_before_parsing() -> None:
    frame = json.dumps({"v": 1, "type": "bye", "reason": "x" * MAX_FRAME_BYTES})
    with pytest.raises(ProtocolError) as refused:
        Codec().read_client(frame)
    assert refused.value.code == "too_large"


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "{",
        "null",
        "[]",
        '{"v": 1}',
        '{"v": 1, "type": "heartbeat", "seq": -1, "sent_at": 1}',
        '{"v": 1, "type": "heartbeat", "seq": 1, "sent_at": NaN}',
        '{"v": 1, "type": "heartbeat", "seq": "1", "sent_at": 1}',
        '{"v": 1, "type": "heartbeat", "seq": 1, "sent_at": 1, "extra": 1}',
        '{"v": 1, "type": "hello", "client_id": "../etc", "signature": "x", "mode": "active"}',
        "[" * 10_000,
        b"\xff\xfe\x00",
    ],
)
def test_malformed_frames_name_the_problem(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        Codec().read_client(frame)
    assert refused.value.code == "malformed"
    assert refused.value.detail.startswith("not a valid message")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"v": st.integers(-2, 4), "type": st.sampled_from(["hello", "heartbeat", "statistics", "x"])},
    optional={"seq": json_values, "sent_at": json_values, "client_id": json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_garbage_only_ever_raises_protocol_error(frame: bytes | str) -> None:
    for read in (Codec().read_client, Codec().read_server, Codec().read_wake):
        with contextlib.suppress(ProtocolError):
            read(frame)


@settings(max_examples=300, deadline=None)
@given(message_like)
def test_near_messages_only_ever_raise_protocol_error(data: dict[str, object]) -> None:
    with contextlib.suppress(ProtocolError):
        Codec().read_client(json.dumps(data))


def test_session_messages_round_trip_and_each_end_refuses_the_others() -> None:
    codec = Codec()
    from_site = [Resize(cols=132, rows=43), SessionEnd(reason="ended by the representative")]
    from_agent = [
        SessionHello(session_id="s-1", client_id="jc_abc123", token=NONCE),
        SessionExit(code=130),
    ]
    for message in from_site:
        assert codec.read_session_site(codec.write(message)) == message
        with pytest.raises(ProtocolError):
            codec.read_session_agent(codec.write(message))
    for message in from_agent:
        assert codec.read_session_agent(codec.write(message)) == message
        with pytest.raises(ProtocolError):
            codec.read_session_site(codec.write(message))
    with pytest.raises(ProtocolError):
        codec.read_session_site('{"type":"resize","v":1,"cols":0,"rows":24}')
