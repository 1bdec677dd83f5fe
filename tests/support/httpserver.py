"""A real HTTP server on a free loopback port, for fakes of provider APIs.

A fake subclasses `FakeHTTPServer` and implements `handle(request) -> Response`
with the provider's behaviour (status codes, headers, error bodies, idempotency).
Every request is recorded. `fail_next(path_prefix, *responses)` scripts faults:
the next matching requests get those responses instead of the normal handling
(`Response(..., delay=2)` answers late — e.g. to kill a client between the
provider acting and the client recording it; `after_handling=True` runs the normal
handler first, so the provider HAS acted, and then answers with the scripted one).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str  #: without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  #: names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  #: seconds to wait before answering
    after_handling: bool = False  #: scripted: let the provider act first, then answer this


class FakeHTTPServer:
    """Subclass and implement `handle`; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._faults: deque[tuple[str, Response]] = deque()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                response = owner._dispatch(request)
                if response.delay:
                    time.sleep(response.delay)
                body = response.body
                if response.json is not None:
                    body = json.dumps(response.json).encode()
                self.send_response(response.status)
                if response.json is not None:
                    self.send_header("Content-Type", "application/json")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, and tests tear down many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: never a socket path's bytes
        return f"http://{host}:{port}"

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def fail_next(self, path_prefix: str, *responses: Response) -> None:
        with self._lock:
            self._faults.extend((path_prefix, r) for r in responses)

    def requests_to(self, path_prefix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            scripted = None
            for index, (prefix, response) in enumerate(self._faults):
                if request.path.startswith(prefix):
                    scripted = response
                    del self._faults[index]
                    break
        if scripted is None:
            return self.handle(request)
        if scripted.after_handling:
            self.handle(request)
        return scripted

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
