"""One WebSocket connection driven by asyncio callbacks, for both ends.

The framing is the `websockets` library's sans-I/O core; this module feeds it what the
transport reads and writes what it produces. No task and no queue per connection: the
gateway holds tens of thousands of these, and its memory per client is what the TLS
transport needs plus this object.

Subclasses react to `opened`, `received` (one whole text message) and `ended`; one that
sets `binary = True` also gets `received_binary` (one whole binary message; the others
refuse binary frames). Limits: a message larger than `max_message` is answered with a
`too_large` error and close code 1009; a peer that stops reading while more than
`max_buffer` bytes wait to be written to it is dropped, so a slow reader cannot make
memory grow. A sender of bulk data awaits `writable()` between messages instead: it
waits while more than half of `max_buffer` is queued.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, State

from bastion.agents.errors import ProtocolError, ProtocolErrorCode
from bastion.agents.protocol import MAX_FRAME_BYTES, Codec, Error, Message

CLOSE_GRACE = 2.0
"""Seconds to wait for the peer's closing handshake before cutting the connection."""

SLOW_READER = "the peer stopped reading"
CLOSE_CODES: dict[ProtocolErrorCode, int] = {
    "malformed": CloseCode.PROTOCOL_ERROR,
    "too_large": CloseCode.MESSAGE_TOO_BIG,
    "unsupported_version": CloseCode.PROTOCOL_ERROR,
    "unexpected": CloseCode.PROTOCOL_ERROR,
    "authentication_failed": CloseCode.POLICY_VIOLATION,
}


class Link(asyncio.Protocol):
    """A WebSocket connection over an asyncio transport (TLS is the transport's job)."""

    __slots__ = (
        "_binary",
        "_drained",
        "_parts",
        "_size",
        "codec",
        "core",
        "end_reason",
        "max_buffer",
        "transport",
    )
    binary = False
    """Whether this end takes binary messages (a session's terminal bytes)."""

    def __init__(self, core: Protocol, codec: Codec, max_buffer: int = 256 * 1024) -> None:
        self.core = core
        self.codec = codec
        self.max_buffer = max_buffer
        self.transport: asyncio.Transport | None = None
        self.end_reason = ""
        self._parts: list[bytes] | None = None
        self._size = 0
        self._binary = False
        self._drained: asyncio.Future[None] | None = None

    # -- hooks ---------------------------------------------------------------------

    def opened(self) -> None:
        """The WebSocket handshake completed."""

    def received(self, frame: bytes) -> None:
        """One whole text message arrived."""

    def received_binary(self, data: bytes) -> None:
        """One whole binary message arrived (only when `binary` is set)."""

    def ended(self, reason: str) -> None:
        """The connection is gone; `reason` says why in a few words."""

    def handshake(self, event: Any) -> None:
        """A handshake request (server side) or response (client side) arrived."""

    # -- sending -------------------------------------------------------------------

    def send_text(self, text: str) -> bool:
        """Queue one message; False if the connection is closing or the peer reads too slowly."""
        if not self._writable():
            return False
        self.core.send_text(text.encode())
        self.flush()
        return True

    def send_binary(self, data: bytes) -> bool:
        """Queue one binary message (at most the codec's cap); False as for `send_text`."""
        if len(data) > self.codec.max_frame:
            raise ValueError(f"{len(data)} bytes exceed the {self.codec.max_frame}-byte cap")
        if not self._writable():
            return False
        self.core.send_binary(data)
        self.flush()
        return True

    async def writable(self) -> bool:
        """Wait until the queue for the peer is below half of `max_buffer` (at once if it
        is); False if the connection is gone or closing meanwhile."""
        while self._open() and self._drained is not None:
            await asyncio.shield(self._drained)
        return self._open()

    def _open(self) -> bool:
        transport = self.transport
        closing = transport is None or transport.is_closing()
        return not closing and self.core.state is State.OPEN

    def _writable(self) -> bool:
        transport = self.transport
        if transport is None or not self._open():
            return False
        if transport.get_write_buffer_size() > self.max_buffer:
            self.drop(f"{SLOW_READER} (more than {self.max_buffer} bytes waiting)")
            return False
        return True

    def written(self, message: Message) -> str:
        """`message` as this end writes it to its peer (a site: in the peer's version)."""
        return self.codec.write(message)

    def refuse(self, error: ProtocolError) -> None:
        """Tell the peer what was wrong with what it sent, then close."""
        if self.core.state is State.OPEN:
            self.send_text(self.written(Error(code=error.code, detail=error.detail)))
        self.close(CLOSE_CODES[error.code], error.detail)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake; the transport is cut if the peer does not answer."""
        self.end_reason = self.end_reason or reason or "closed"
        if self.core.state is State.OPEN:
            self.core.send_close(code, reason[:120])
            self.flush()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)

    def drop(self, reason: str) -> None:
        """Cut the connection now, without a closing handshake."""
        self.end_reason = self.end_reason or reason
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.core.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # end of stream: TLS has no half-close, so close
                transport.close()

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.max_buffer // 2)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.core.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.core.receive_eof()
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()  # a sender waiting for room learns the connection is gone
        self.ended(self.end_reason or self._lost_reason(exc))

    def _lost_reason(self, exc: Exception | None) -> str:
        close = self.core.close_rcvd
        if close is not None:
            return f"the peer closed ({close.code}: {close.reason})" if close.reason else "closed"
        return f"connection lost ({exc})" if exc else "connection lost"

    def _pump(self) -> None:
        for event in self.core.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            else:
                self.handshake(event)
            if self.transport is None or self.transport.is_closing():
                break
        self.flush()
        if self.core.state is State.CLOSED and self.transport is not None:
            self.transport.close()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            close = self.core.close_rcvd
            self.end_reason = self.end_reason or (close.reason if close else "") or "closed"
            return
        if frame.opcode in (Opcode.PING, Opcode.PONG) or self.end_reason:
            return  # data after this end closed (the rest of a refused message) is dropped
        if frame.opcode is Opcode.BINARY and not self.binary:
            self.refuse(ProtocolError("malformed", "this protocol sends text messages only"))
            return
        if frame.opcode is not Opcode.CONT:
            self._binary = frame.opcode is Opcode.BINARY
        self._assemble(frame)

    def _assemble(self, frame: Frame) -> None:
        self._size += len(frame.data)
        if self._size > self.codec.max_frame:
            limit = self.codec.max_frame
            self.refuse(ProtocolError("too_large", f"a message exceeds the {limit}-byte cap"))
            return
        if frame.fin and self._parts is None:
            self._size = 0
            self._deliver(bytes(frame.data))
            return
        self._parts = [*(self._parts or []), bytes(frame.data)]
        if frame.fin:
            data, self._parts, self._size = b"".join(self._parts), None, 0
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        if self._binary:
            self.received_binary(data)
        else:
            self.received(data)


def core_limit(codec: Codec) -> int:
    """What the framing core refuses outright: twice our cap, so that a message between
    the two still gets our `too_large` error message before the close."""
    return 2 * max(codec.max_frame, MAX_FRAME_BYTES)
