"""Binary messages on the shared WebSocket framing: the gateway refuses them (its protocol
is text only) whether whole or in fragments; a link that takes them gets them whole."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol

from bastion.agents.connection import ClientLink, Endpoint, connect
from bastion.agents.errors import TransportError
from bastion.agents.protocol import Challenge, Codec, Error
from bastion.agents.trust import anchors_context
from tests.support.jump_clients import SITE, Pki, run, serving


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_the_gateway_refuses_binary_frames_whole_or_fragmented(pki: Pki) -> None:
    async def scenario() -> None:
        async with serving(pki) as site:
            for fragmented in (False, True):
                link = await site.connect()
                assert isinstance(await link.receive(5), Challenge)
                if fragmented:
                    link.core.send_binary(b"ab", fin=False)
                    link.core.send_continuation(b"cd", fin=True)
                    link.flush()
                else:
                    assert link.send_binary(b"abcd")
                error = await link.receive(5)
                assert isinstance(error, Error) and error.code == "malformed"
                assert "text messages only" in error.detail
                with pytest.raises(TransportError):
                    await link.receive(5)
            assert site.gateway.counters["refused_malformed"] == 2

    run(scenario())


class Taker(ClientLink):
    binary = True

    def __init__(self, core: ClientProtocol, codec: Codec) -> None:
        super().__init__(core, codec)
        self.frames: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def received(self, frame: bytes) -> None:
        self.frames.put_nowait(("text", frame))

    def received_binary(self, data: bytes) -> None:
        self.frames.put_nowait(("binary", data))


def test_a_link_that_takes_binary_messages_gets_them_whole_and_text_apart(pki: Pki) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send([b"fragm", b"ented"])  # one message in two frames
        await ws.send('{"type": "resize"}')
        assert await ws.recv() == b"\x03"
        await ws.send(b"x" * 70_000)  # over the cap
        await ws.wait_closed()

    async def scenario() -> None:
        async with serve(handler, "127.0.0.1", 0, ssl=pki.server) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            endpoint = Endpoint(SITE, port, "127.0.0.1", timeout=5)
            codec = Codec()
            link = await connect(
                endpoint, anchors_context(pki.anchors), "/t", lambda c: Taker(c, codec), codec
            )
            assert await link.frames.get() == ("binary", b"fragmented")
            assert await link.frames.get() == ("text", b'{"type": "resize"}')
            assert link.send_binary(b"\x03")
            with pytest.raises(ValueError, match="cap"):
                link.send_binary(b"y" * 70_000)
            async with asyncio.timeout(5):
                while link.transport is not None:
                    await asyncio.sleep(0.02)
            assert link.frames.empty()
            assert "exceeds the 65536-byte cap" in link.end_reason

    run(scenario())
