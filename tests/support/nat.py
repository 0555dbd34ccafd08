"""A NAT rule in front of a site, as a TCP forwarder on a loopback address: each new
connection goes to the target of the moment, and a connection keeps the target it was
opened to (as a NAT's established flows do) when the rule is changed."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

Address = tuple[str, int]


class Forwarder:
    def __init__(self, listen: Address, target: Address) -> None:
        self.target = target
        self.opened: Counter[Address] = Counter()
        """Connections forwarded to each target so far."""
        self.open: Counter[Address] = Counter()
        """Connections to each target open now."""
        self._lock = threading.Lock()
        self._server = socket.create_server(listen)
        self.address: Address = self._server.getsockname()[:2]

    def point_at(self, target: Address) -> None:
        """Change the rule: new connections go to `target`, open ones stay where they are."""
        self.target = target

    def serve(self) -> None:
        while True:
            try:
                accepted, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(accepted,), daemon=True).start()

    def _forward(self, accepted: socket.socket) -> None:
        target = self.target
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            accepted.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self.opened[target] += 1
            self.open[target] += 1
        pump = threading.Thread(target=_pump, args=(upstream, accepted), daemon=True)
        pump.start()
        _pump(accepted, upstream)
        pump.join()
        accepted.close()
        upstream.close()
        with self._lock:
            self.open[target] -= 1

    def close(self) -> None:
        self._server.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Bytes from `source` to `sink` until either end closes; then both are closed."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@contextmanager
def forwarding(listen: Address, target: Address) -> Iterator[Forwarder]:
    forwarder = Forwarder(listen, target)
    thread = threading.Thread(target=forwarder.serve, daemon=True)
    thread.start()
    try:
        yield forwarder
    finally:
        forwarder.close()
        thread.join(5)
