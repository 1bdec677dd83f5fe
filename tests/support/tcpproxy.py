"""A userspace TCP proxy on a loopback port that can silently swallow traffic.

What a broken load balancer, NAT or proxy does: its kernel still accepts and
acknowledges every byte (so TCP keepalive and `tcp_user_timeout` see a healthy peer),
but nothing is forwarded and nothing comes back. `swallow()` starts that; `forward()`
ends it for new traffic — bytes swallowed meanwhile are gone, so a connection that
sent a query during the outage never gets its answer, as in the real case.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class SwallowingProxy:
    """`with SwallowingProxy(upstream_host, upstream_port) as proxy: proxy.port …`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._swallowing = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.swallowed_bytes = 0

    def swallow(self) -> None:
        self._swallowing.set()

    def forward(self) -> None:
        self._swallowing.clear()

    def __enter__(self) -> SwallowingProxy:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            # shutdown, not only close: a close() does not wake the pump thread blocked in
            # recv() on it, and the peer (PostgreSQL) would keep the session — and the
            # scheduler's advisory lock — until that thread ends.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, target), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self._swallowing.is_set():
                    with self._lock:
                        self.swallowed_bytes += len(data)
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
