"""Serve the app with uvicorn: in a thread beside the scheduler (`run`) or alone (`web`).

In `run` the HTTP server shares the process — and its file-descriptor limit — with
the sender's SMTP and database sockets, so slow or idle HTTP clients must never be
able to take every descriptor. uvicorn has no header timeout and no cap on open
connections (`limit_concurrency` still accepts the socket, then answers 503 — even
to /healthz), so `GuardedH11Protocol` adds both around uvicorn's own h11 protocol:

* at most `max_connections` open connections (by default a quarter of the
  descriptor limit, so the rest always stays for the sender);
* a connection that has not sent complete request headers within
  `header_timeout` seconds is closed;
* when the cap is reached, the connection that has waited longest for its
  headers is dropped to make room — a quick request such as /healthz, whose
  headers arrive at once, therefore still gets through while slow clients
  take turns at being evicted;
* the listen backlog is small, because asyncio accepts up to `backlog` sockets
  in one go before any protocol can evict: that bounds the peak of descriptors.

Start-up also raises the soft RLIMIT_NOFILE to the hard limit (`raise_nofile_limit`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from dispatcher.delivery import wiring
from dispatcher.delivery.service import Service
from dispatcher.web.app import create_app
from dispatcher.web.state import WebState

log = logging.getLogger("dispatcher.web")

HEADER_TIMEOUT = 10.0  #: seconds a client has to send its request headers
BACKLOG = 64  #: sockets asyncio accepts per loop pass (and the kernel queues) before eviction
_FD_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
SWITCH_INTERVAL = 0.001  #: seconds a thread may hold the GIL while another waits for it
_PEEK_BYTES = 8192  #: as far as request headers are looked for on a new connection
_REPORT_EVERY = 60.0  #: seconds between two "dropped slow clients" log lines


def raise_nofile_limit() -> int:
    """Raise the soft descriptor limit to the hard one (as far as allowed); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. a sandbox that forbids it: keep what we have
            pass
    return soft


def default_max_connections() -> int:
    """A quarter of the descriptor limit: the sender's SMTP and database sockets keep the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, soft // 4)


class ConnectionGuard:
    """The open connections of one server and which of them still wait for their headers.

    Used from the server's event loop only (no locking needed)."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        if max_connections < 1 or header_timeout <= 0:
            raise ValueError("max_connections must be at least 1 and header_timeout positive")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open: set[GuardedH11Protocol] = set()
        #: connections waiting for request headers, oldest first, with their timeout handle:
        #: `partial` sent some bytes of them (a slow client shows itself there), `silent` none
        self.partial: OrderedDict[GuardedH11Protocol, asyncio.TimerHandle] = OrderedDict()
        self.silent: OrderedDict[GuardedH11Protocol, asyncio.TimerHandle] = OrderedDict()
        self.evicted = 0  #: dropped to make room (since the last report)
        self.timed_out = 0  #: closed for slow headers (since the last report)
        self.refused = 0  #: closed at once: the cap was reached by requests in progress
        self._reported = time.monotonic()

    def admit(self, connection: GuardedH11Protocol, *, received: bytes) -> bool:
        """A new connection: True if it may stay (an older one may have been evicted for it).

        `received` is what already waits in its socket. Under attack, slow clients reconnect
        so fast that the oldest waiting connection is only a few loop passes old, so the
        victim is chosen among those that have shown themselves slow — sent part of their
        headers — before those that sent nothing yet; one whose complete headers came with
        it is never chosen: an honest request must not lose that race."""
        if len(self.open) >= self.max_connections:
            victims = self.partial or self.silent
            if not victims:
                self.refused += 1
                self._report()
                return False
            self.evicted += 1
            self.drop(next(iter(victims)))
        self.open.add(connection)
        if not _complete(received):
            self.wait_for_headers(connection, partial=bool(received))
        self._report()
        return True

    def wait_for_headers(self, connection: GuardedH11Protocol, *, partial: bool = False) -> None:
        self.headers_received(connection)
        handle = connection.loop.call_later(self.header_timeout, self._too_slow, connection)
        (self.partial if partial else self.silent)[connection] = handle

    def some_received(self, connection: GuardedH11Protocol) -> None:
        """Bytes came, but not all the headers: the connection moves to the slow ones."""
        handle = self.silent.pop(connection, None)
        if handle is not None:
            self.partial[connection] = handle

    def headers_received(self, connection: GuardedH11Protocol) -> None:
        handle = self.partial.pop(connection, None) or self.silent.pop(connection, None)
        if handle is not None:
            handle.cancel()

    def waiting(self, connection: GuardedH11Protocol) -> bool:
        return connection in self.partial or connection in self.silent

    def forget(self, connection: GuardedH11Protocol) -> None:
        self.headers_received(connection)
        self.open.discard(connection)

    def drop(self, connection: GuardedH11Protocol) -> None:
        """Close at once (RST: no TIME_WAIT, the descriptor is free on the next loop pass)."""
        self.forget(connection)
        connection.transport.abort()

    def _too_slow(self, connection: GuardedH11Protocol) -> None:
        if self.waiting(connection):
            self.timed_out += 1
            self.drop(connection)

    def _report(self) -> None:
        """One log line a minute at most, however many clients misbehave."""
        now = time.monotonic()
        if now - self._reported < _REPORT_EVERY:
            return
        self._reported = now
        if self.evicted or self.timed_out or self.refused:
            log.warning(
                "HTTP: closed slow or surplus connections: %d evicted at the cap of %d, "
                "%d too slow with their headers, %d refused",
                self.evicted,
                self.max_connections,
                self.timed_out,
                self.refused,
                extra={
                    "event": "http_connections_dropped",
                    "evicted": self.evicted,
                    "timed_out": self.timed_out,
                    "refused": self.refused,
                },
            )
        self.evicted = self.timed_out = self.refused = 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, admitted and timed by the server's `ConnectionGuard`."""

    guard: ConnectionGuard  #: set on the per-server subclass made by `guarded_protocol`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.guard.admit(self, received=_peek(transport)):
            transport.abort()
            return
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self.guard.headers_received(self)
        else:
            self.guard.some_received(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Keep-alive: the next request's headers are on the same clock as the first.
            self.guard.wait_for_headers(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.transport is not None:  # None: refused in connection_made
            super().connection_lost(exc)


def _complete(head: bytes) -> bool:
    return b"\r\n\r\n" in head


def _peek(transport: asyncio.Transport) -> bytes:
    """What already waits in the socket of a new connection (peeked: left for uvicorn)."""
    wrapped = transport.get_extra_info("socket")
    if wrapped is None:
        return b""
    # asyncio's socket wrapper offers no recv(); a second socket object on the same
    # descriptor does, and `detach()` keeps it from closing the descriptor.
    peek = socket.socket(wrapped.family, wrapped.type, wrapped.proto, fileno=wrapped.fileno())
    try:
        return peek.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing there yet (EAGAIN) or already reset
        return b""
    finally:
        peek.detach()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


def _quiet_fd_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Descriptor exhaustion is one warning line, not a traceback per failed accept."""
    error = context.get("exception")
    if isinstance(error, OSError) and error.errno in _FD_ERRNOS:
        log.warning(
            "HTTP: cannot accept connections: %s; retrying in a second",
            error.strerror or error,
            extra={"event": "http_accept_failed", "error": errno.errorcode.get(error.errno or 0)},
        )
        return
    loop.default_exception_handler(context)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(_quiet_fd_errors)
        await super().startup(sockets)


def _server(
    app: Starlette,
    host: str,
    port: int,
    *,
    log_level: str,
    max_connections: int | None,
    header_timeout: float | None,
) -> tuple[_Server, ConnectionGuard]:
    settings = getattr(app.state, "settings", None)
    if max_connections is None:
        max_connections = getattr(settings, "http_max_connections", 0) or default_max_connections()
    if header_timeout is None:
        header_timeout = getattr(settings, "http_header_timeout", HEADER_TIMEOUT)
    guard = ConnectionGuard(max_connections, float(header_timeout))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=None,  # uvicorn's default config adds plain-text handlers; `logs` has JSON
        http=guarded_protocol(guard),
        backlog=min(BACKLOG, max_connections),
        timeout_keep_alive=5,
        proxy_headers=False,  # the app applies them itself, keeping the peer (`web.proxy`)
    )
    return _Server(config), guard


class BackgroundServer:
    """uvicorn in a daemon thread; `stop()` ends it within a second or two."""

    def __init__(
        self,
        app: Starlette,
        host: str,
        port: int,
        *,
        max_connections: int | None = None,
        header_timeout: float | None = None,
    ) -> None:
        self._server, self.guard = _server(
            app,
            host,
            port,
            log_level="warning",
            max_connections=max_connections,
            header_timeout=header_timeout,
        )
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        # Under a flood the HTTP thread is busy accepting and dropping connections, and the
        # sender's threads, waiting on SMTP and the database, would wait up to the default
        # 5 ms for the GIL after every reply; 1 ms keeps the sending near its normal pace.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start (is the port in use?)")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for a free one)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("not started")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


def serve_forever(app: Starlette, host: str, port: int) -> None:
    """`dispatcher web`: uvicorn in the foreground; it handles SIGTERM/SIGINT itself."""
    raise_nofile_limit()
    server, _ = _server(
        app, host, port, log_level="info", max_connections=None, header_timeout=None
    )
    server.run()


def serve_beside(service: Service) -> BackgroundServer:
    """`dispatcher run`: the endpoints in a thread beside the scheduler, sharing its ledger,
    campaign, clock and liveness. The server caps its own connections; the raised
    descriptor limit leaves the sender's sockets room beside them."""
    raise_nofile_limit()
    settings = service.settings
    state = WebState(
        settings=settings,
        engine=service.engine,
        campaign=lambda: service.campaign,
        email_channel=lambda: wiring.email_channel(settings),
        scheduler_alive=service.scheduler_alive,
        reload_errors=lambda: service.reload_errors,
        campaign_problems=lambda: service.source.problems,
        campaign_changed=service.reload,
        clock=service.clock,
        liveness=service.liveness,
    )
    server = BackgroundServer(create_app(state), settings.http_host, settings.http_port)
    server.start()
    log.info(
        "HTTP endpoints on http://%s:%s",
        settings.http_host,
        server.port,
        extra={"event": "http_started"},
    )
    return server
