"""The SNTP client against real UDP sockets on loopback: each way of failing is named."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from bastion.network.ntp import NTP_EPOCH_OFFSET, NtpError, query_offset
from bastion.network.rules import NtpProblem, assess_offset

HOST = "127.0.0.52"
TIMEOUT = 0.3


def ntp_time(at: float) -> bytes:
    return struct.pack("!II", int(at) + NTP_EPOCH_OFFSET, int((at % 1) * 2**32))


def server_ahead_by(seconds: float) -> Callable[[bytes], bytes]:
    def answer(request: bytes) -> bytes:
        now = ntp_time(time.time() + seconds)
        # LI=0, VN=4, mode=4 (server), stratum 2; the receive and transmit times last
        return b"\x24\x02" + b"\x00" * 30 + now + now

    return answer


@contextmanager
def udp_server(answer: Callable[[bytes], bytes] | None) -> Iterator[str]:
    """A UDP socket on loopback that answers each datagram with `answer` (or never)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                request, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            if answer is not None:
                sock.sendto(answer(request), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        sock.close()


def closed_port() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return f"{HOST}:{sock.getsockname()[1]}"


def failure_message(server: str) -> tuple[NtpProblem, str]:
    with pytest.raises(NtpError) as raised:
        query_offset(server, TIMEOUT)
    failure = raised.value.failure
    return failure.problem, assess_offset(server, None, failure).message


def test_a_server_ahead_of_the_clock_gives_its_offset() -> None:
    with udp_server(server_ahead_by(7.0)) as server:
        assert query_offset(server, 2.0) == pytest.approx(7.0, abs=0.5)


def test_a_closed_port_is_named_as_refused_not_as_silence() -> None:
    server = closed_port()
    problem, message = failure_message(server)
    assert problem is NtpProblem.PORT_CLOSED
    assert f"The NTP server {server} cannot be reached: the server refused" in message


def test_a_silent_server_is_no_answer_within_the_timeout() -> None:
    with udp_server(None) as server:
        problem, message = failure_message(server)
    assert problem is NtpProblem.NO_ANSWER
    assert f"cannot be reached: no answer within {TIMEOUT:g} s." in message


def test_an_answer_that_is_not_ntp_is_named() -> None:
    with udp_server(lambda request: b"hello") as server:
        problem, message = failure_message(server)
    assert problem is NtpProblem.NOT_NTP
    assert "its answer is not an NTP server's" in message


def test_a_name_that_does_not_resolve_says_so_not_errno() -> None:
    problem, message = failure_message("ntp.invalid")  # RFC 2606: never resolves
    assert problem in (NtpProblem.NAME_UNKNOWN, NtpProblem.NO_DNS)
    assert "the NTP server name" in message and "Errno" not in message
