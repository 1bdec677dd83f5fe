"""`http.fetch_image`, the one image download of every network, against real slow hosts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dispatcher.channels import http
from dispatcher.channels.base import ErrorKind

SIZE = 400  #: bytes the trickling host promises
GAP = 0.05  #: seconds between its bytes: each read gets an answer well within the read timeout


class Trickle(BaseHTTPRequestHandler):
    """Sends a PNG one byte at a time: never silent long enough for a read timeout."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        try:
            for _ in range(SIZE):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(GAP)
        except OSError:
            pass  # the client gave up: that is the point

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/werft.png"
    finally:
        server.shutdown()
        server.server_close()


def test_a_trickling_host_is_given_up_at_the_deadline(trickle: str) -> None:
    session = http.new_session()
    started = time.monotonic()
    with pytest.raises(http.ImageError) as caught:
        http.fetch_image(session, trickle, network="linkedin", max_bytes=10_000, deadline=0.5)
    elapsed = time.monotonic() - started
    session.close()

    assert elapsed < 2.0  # not the 20 s the host would take
    assert caught.value.kind is ErrorKind.TEMPORARY
    assert "not downloaded within 0.5 s" in caught.value.message


def test_a_too_big_image_is_refused_while_it_arrives(trickle: str) -> None:
    session = http.new_session()
    started = time.monotonic()
    with pytest.raises(http.ImageError) as caught:
        http.fetch_image(session, trickle, network="mastodon", max_bytes=10)
    elapsed = time.monotonic() - started
    session.close()

    assert elapsed < 2.0  # at byte 11, not after all of them
    assert caught.value.kind is ErrorKind.PERMANENT
    assert "larger than 10 bytes" in caught.value.message
