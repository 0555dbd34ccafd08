"""The site's build arriving over the Jump Client's own connection (protocol 2).

Told to upgrade, the client asks for the build with `build_request`; the site sends its
bytes as binary messages, paced by the site's bandwidth cap, or `build_refused`. Each
message is written out and hashed as it arrives, on the connection's callbacks, so the
download goes on while the client's loop waits for the command to finish. It ends with
exactly the order's size and SHA-256, or with an `UpgradeError` that says why not.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import BinaryIO

from bastion.agents.errors import UpgradeError
from bastion.agents.protocol import BuildRefused, Upgrade

QUIET_LIMIT = 600.0
"""Seconds the site may send nothing before the download is given up. Downloads wait
for their turn under the site's cap (the oldest goes first), and the site counts an
upgrade not back within ten minutes as failed: waiting longer serves no one."""


class BuildDownload:
    """One build on its way in: written to `sink` and hashed as it comes."""

    def __init__(self, command_id: str, order: Upgrade, sink: BinaryIO) -> None:
        if order.size <= 0:
            raise UpgradeError("the upgrade order names no size for the build")
        self.command_id, self.order, self.sink = command_id, order, sink
        self.left = order.size
        self.heard_at = time.monotonic()
        self._digest = hashlib.sha256()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def received(self, data: bytes) -> None:
        """One binary message of the build."""
        if self._done.done():
            return
        self.heard_at = time.monotonic()
        if len(data) > self.left:
            self.failed(f"the site sent more than the {self.order.size} bytes ordered")
            return
        self._digest.update(data)
        try:
            self.sink.write(data)
        except OSError as error:
            self.failed(f"the build cannot be written: {error}")
            return
        self.left -= len(data)
        if self.left == 0:
            self._check()

    def _check(self) -> None:
        digest = self._digest.hexdigest()
        if digest != self.order.sha256:
            self.failed(f"the build's SHA-256 is {digest}, not {self.order.sha256} as ordered")
        else:
            self._done.set_result(None)

    def refused(self, message: BuildRefused) -> None:
        if message.command_id == self.command_id:
            self.failed(f"the site would not send the build: {message.detail}")

    def failed(self, reason: str) -> None:
        if not self._done.done():
            self._done.set_exception(UpgradeError(reason))
            self._done.exception()  # retrieved: nobody may be waiting any more

    async def finished(self, quiet_limit: float = QUIET_LIMIT) -> None:
        """Wait for the whole build; an `UpgradeError` if it does not come whole."""
        while not self._done.done():
            wait = self.heard_at + quiet_limit - time.monotonic()
            if wait <= 0:
                self.failed(f"the site sent nothing of the build for {quiet_limit:g} s")
                break
            await asyncio.wait([self._done], timeout=wait)
        self._done.result()
