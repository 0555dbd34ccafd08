"""The message port between the site's worker and its gateway processes.

Each gateway process listens on an abstract Unix socket of its own (named after the data
directory and its index) and hands what it receives to its in-process port, where its
gateway takes the messages for the clients it holds. The worker publishes a message by
sending it to every gateway process: one JSON line each way, `{"taken": true}` from the
one that holds the client. Many messages go over one connection, a line each, answered in
order. Peers must run as the same user (checked by the kernel's
SO_PEERCRED on the gateway's side).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any

from bastion.agents.protocol import Command
from bastion.jump_clients.routing import Deliver, Disconnect, GatewayMessage, InProcessMessagePort
from bastion.supervisor.control_socket import abstract, socket_name

MAX_LINE = 256 * 1024
TIMEOUT = 5.0
PER_MESSAGE = 0.01


def gateway_socket(data_dir: os.PathLike[str] | str, index: int) -> str:
    from pathlib import Path

    return socket_name(Path(data_dir), f"gateway-{index}")


def to_wire(message: GatewayMessage) -> dict[str, Any]:
    if isinstance(message, Deliver):
        return {
            "kind": "deliver",
            "client_id": message.client_id,
            "command": message.command.model_dump(mode="json"),
        }
    return {
        "kind": "disconnect",
        "client_id": message.client_id,
        "reason": message.reason,
        "retry_after": message.retry_after,
        "detail": message.detail,
    }


def from_wire(body: dict[str, Any]) -> GatewayMessage:
    if body.get("kind") == "deliver":
        return Deliver(str(body["client_id"]), Command.model_validate(body["command"]))
    return Disconnect(
        str(body["client_id"]),
        body["reason"],
        float(body["retry_after"]),
        str(body.get("detail", "")),
    )


async def serve_port(name: str, local: InProcessMessagePort) -> asyncio.Server:
    """In a gateway process: take messages published to `name` into `local`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _same_user(writer):
                return
            while line := await asyncio.wait_for(reader.readline(), TIMEOUT):
                taken = await local.publish(from_wire(json.loads(line[:MAX_LINE])))
                writer.write(json.dumps({"taken": taken}).encode() + b"\n")
                await writer.drain()
        except (OSError, ValueError, KeyError, TimeoutError):
            return
        finally:
            writer.close()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(abstract(name))
    return await asyncio.start_unix_server(answer, sock=sock)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return bool(uid == os.getuid())


class SocketMessagePort:
    """The worker's side: publishes to every gateway process of this appliance."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    async def publish(self, message: GatewayMessage) -> bool:
        return (await self.publish_many([message]))[0]

    async def publish_many(self, messages: list[GatewayMessage]) -> list[bool]:
        """Whether each message was taken by the gateway process holding its client."""
        if not messages:
            return []
        lines = [json.dumps(to_wire(m)).encode() + b"\n" for m in messages]
        answers = await asyncio.gather(*(_send(name, lines) for name in self.names))
        return [any(taken) for taken in zip(*answers, strict=True)]


async def _send(name: str, lines: list[bytes]) -> list[bool]:
    taken = [False] * len(lines)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(TIMEOUT + len(lines) * PER_MESSAGE):
            await asyncio.get_running_loop().sock_connect(sock, abstract(name))
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            writer.writelines(lines)
            writer.write_eof()
            await writer.drain()
            for index in range(len(lines)):
                taken[index] = bool(json.loads(await reader.readline()).get("taken"))
            writer.close()
    except (OSError, TimeoutError, ValueError, AttributeError):
        sock.close()
    return taken
