"""A small SNTP client (RFC 4330) and the monitor that keeps the last reading."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bastion.network.rules import ClockReading, NtpFailure, NtpProblem

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
NTP_PORT = 123


class NtpError(Exception):
    """The NTP server could not be asked or gave an answer we cannot use."""

    def __init__(self, failure: NtpFailure) -> None:
        super().__init__(failure.problem.value)
        self.failure = failure


def _to_ntp(t: float) -> bytes:
    seconds = int(t) + NTP_EPOCH_OFFSET
    return struct.pack("!II", seconds, int((t % 1) * 2**32))


def _from_ntp(data: bytes) -> float:
    seconds, fraction = struct.unpack("!II", data)
    return float(seconds - NTP_EPOCH_OFFSET + fraction / 2**32)


def query_offset(server: str, timeout: float, port: int = NTP_PORT) -> float:
    """Offset of the local clock from `server` in seconds (positive: the server is ahead)."""
    host, _, port_text = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
    host, port = (host, int(port_text)) if port_text.isdigit() else (server, port)
    request = b"\x23" + b"\x00" * 39 + _to_ntp(time.time())  # LI=0, VN=4, mode=3 (client)
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)  # connected: a closed port is reported, not waited out
            t1 = time.time()
            sock.send(request)
            data = sock.recv(512)
            t4 = time.time()
    except OSError as error:
        raise NtpError(failure_of(error, timeout)) from None
    except IndexError:  # the name resolved to no address at all
        raise NtpError(NtpFailure(NtpProblem.NAME_UNKNOWN)) from None
    return _offset_from_reply(data, t1, t4)


def failure_of(error: OSError, timeout: float) -> NtpFailure:
    """The socket error as an NTP failure an administrator can act on."""
    if isinstance(error, socket.gaierror):
        no_dns = error.errno in (socket.EAI_AGAIN, socket.EAI_FAIL)  # the lookup itself failed
        return NtpFailure(NtpProblem.NO_DNS if no_dns else NtpProblem.NAME_UNKNOWN)
    if isinstance(error, TimeoutError):
        return NtpFailure(NtpProblem.NO_ANSWER, timeout)
    if isinstance(error, ConnectionRefusedError):
        return NtpFailure(NtpProblem.PORT_CLOSED)
    if error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return NtpFailure(NtpProblem.NO_ROUTE)
    return NtpFailure(NtpProblem.OTHER, detail=error.strerror or type(error).__name__)


def _offset_from_reply(data: bytes, t1: float, t4: float) -> float:
    if len(data) < 48 or data[0] & 0x07 not in (4, 5):
        raise NtpError(NtpFailure(NtpProblem.NOT_NTP))
    if data[1] == 0:
        raise NtpError(NtpFailure(NtpProblem.UNSYNCHRONISED))  # stratum 0: kiss-of-death
    t2, t3 = _from_ntp(data[32:40]), _from_ntp(data[40:48])
    return ((t2 - t1) + (t3 - t4)) / 2


class ClockMonitor:
    """Measures the clock offset now and then; the Status page reads the last result."""

    def __init__(self, server: Callable[[], str], poll_seconds: float, timeout: float) -> None:
        self._server = server
        self._poll = poll_seconds
        self._timeout = timeout
        self.reading = ClockReading(server="", offset=None, failure=None, measured_at=None)

    async def measure(self) -> ClockReading:
        server = await asyncio.to_thread(self._server)  # a database read
        if not server:
            self.reading = ClockReading("", None, None, datetime.now(UTC))
            return self.reading
        try:
            offset = await asyncio.to_thread(query_offset, server, self._timeout)
            self.reading = ClockReading(server, offset, None, datetime.now(UTC))
        except NtpError as error:
            self.reading = ClockReading(server, None, error.failure, datetime.now(UTC))
        return self.reading

    async def run(self) -> None:
        while True:
            await self.measure()
            await asyncio.sleep(self._poll)
