"""Slow HTTP clients cannot hold the server: a connection cap with eviction, a header timeout.

The app is served by the real `BackgroundServer` on a loopback port with a small cap,
so a few hundred slow connections are enough to fill it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import sqlalchemy as sa

from dispatcher.campaign.loading import load_campaign
from dispatcher.channels.base import EmailChannel
from dispatcher.settings import Settings
from dispatcher.web.app import create_app
from dispatcher.web.server import BackgroundServer
from dispatcher.web.state import WebState
from tests.support.campaigns import campaign_copy
from tests.support.slowloris import Slowloris
from tests.support.webapp import ROOT


def _no_email() -> EmailChannel:
    raise AssertionError("no email in these tests")


@contextmanager
def guarded_server(
    directory: Path, max_connections: int, header_timeout: float
) -> Iterator[BackgroundServer]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{directory / 'ledger.sqlite3'}",
        campaign_file=campaign_copy(directory),
        templates_dir=ROOT / "templates",
    )
    campaign = load_campaign(settings.campaign_file)
    state = WebState(
        settings=settings,
        engine=sa.create_engine(settings.database_url),
        campaign=lambda: campaign,
        email_channel=_no_email,
    )
    server = BackgroundServer(
        create_app(state),
        "127.0.0.1",
        0,
        max_connections=max_connections,
        header_timeout=header_timeout,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_healthz_answers_while_slow_clients_fill_the_cap(tmp_path: Path) -> None:
    with guarded_server(tmp_path, max_connections=20, header_timeout=30) as server:
        url = f"http://127.0.0.1:{server.port}/healthz"
        with Slowloris("127.0.0.1", server.port, 300, interval=1.0) as attack:
            time.sleep(3)
            latencies = []
            for _ in range(10):
                started = time.monotonic()
                response = requests.get(url, timeout=10)
                latencies.append(time.monotonic() - started)
                assert response.status_code == 200 and response.text == "ok"
            assert len(server.guard.open) <= 20
        assert attack.closed_by_server > 0, "slow clients beyond the cap are dropped"
        # Evictions of slow clients, not the header timeout (30 s), made the room.
        assert max(latencies) < 5, latencies


def test_headers_not_sent_in_time_close_the_connection(tmp_path: Path) -> None:
    with guarded_server(tmp_path, max_connections=100, header_timeout=1) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            try:
                data = slow.recv(1024)
            except ConnectionResetError:
                data = b""
            waited = time.monotonic() - started
        assert data == b"", "no answer: the connection is just closed"
        assert 0.5 < waited < 5
        # A complete request on a fresh connection is unaffected.
        response = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
        assert response.status_code == 200
