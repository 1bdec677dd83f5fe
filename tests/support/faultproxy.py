"""An HTTP reverse proxy on a loopback port that loses answers AFTER the upstream acted.

What a failing load balancer or reverse proxy in front of a real server does: the request
reaches the server, the server stores the post and answers, and the client gets a
`502 Bad Gateway` page instead (`fail_next("502")`) or a connection closed without any
answer (`fail_next("drop")`). Unlike the fakes' `fail_next(..., after_handling=True)`
(tests/support/httpserver.py) the upstream here is a real server, e.g. Synapse.
"""

from __future__ import annotations

import http.client
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

Fault = Literal["502", "drop"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}
BAD_GATEWAY = (
    b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
)


@dataclass(frozen=True)
class Forwarded:
    method: str
    path: str  #: with the query string
    status: int  #: the upstream's answer
    fault: Fault | None  #: what the client got instead, if anything


class FaultProxy:
    """`with FaultProxy("http://127.0.0.1:8008") as proxy: proxy.url …`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.forwarded: list[Forwarded] = []
        self._faults: deque[tuple[str, str, Fault]] = deque()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, answer_headers, answer = owner._forward(
                    self.command, self.path, headers, body
                )
                fault = owner._take_fault(self.command, self.path)
                with owner._lock:
                    owner.forwarded.append(Forwarded(self.command, self.path, status, fault))
                if fault == "drop":
                    self.close_connection = True  # closed without a status line
                    return
                if fault == "502":
                    status, answer = 502, BAD_GATEWAY
                    answer_headers = [("Content-Type", "text/html")]
                self.send_response(status)
                for name, value in answer_headers:
                    if name.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def fail_next(self, method: str, path_contains: str, fault: Fault) -> None:
        """The next `method` request whose path contains `path_contains` is forwarded, and
        its answer replaced by `fault`."""
        with self._lock:
            self._faults.append((method, path_contains, fault))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, (wanted, part, fault) in enumerate(self._faults):
                if wanted == method and part in path:
                    del self._faults[index]
                    return fault
        return None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
