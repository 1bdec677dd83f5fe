"""Serve the app with uvicorn: in a thread beside the scheduler (`run`) or alone (`web`)."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette


class BackgroundServer:
    """uvicorn in a daemon thread; `stop()` ends it within a second or two."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
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
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
