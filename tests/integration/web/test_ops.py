"""`/healthz`, `/readyz` and `/metrics` over real HTTP, against a real ledger.

"The database goes away" is real in each case: a SQLite file whose directory is removed,
a PostgreSQL server reached through a TCP proxy that is then shut, and a PostgreSQL URL
(with a password that must never be echoed) to a port where nothing listens.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import threading
from contextlib import suppress
from pathlib import Path

import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dispatcher.campaign import planning
from dispatcher.campaign.loading import load_campaign
from dispatcher.channels.base import EmailChannel
from dispatcher.delivery import metrics
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.settings import Settings
from dispatcher.web.state import WebState
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.ports import free_port
from tests.support.smtpd import SmtpServer
from tests.support.webapp import running_app

UTC = dt.UTC
BEFORE_THE_WEEK = dt.datetime(2019, 4, 1, 12, 0, tzinfo=UTC)
PASSWORD = "Geheim-Passwort-4711"


def _no_email() -> EmailChannel:
    raise AssertionError("ops endpoints send no email")


def web_state(settings: Settings, engine: sa.Engine, at: dt.datetime) -> WebState:
    return WebState(
        settings=settings,
        engine=engine,
        campaign=lambda: load_campaign(settings.campaign_file),
        email_channel=_no_email,
        clock=lambda: at,
        scheduler_alive=lambda: True,  # as `dispatcher run` serves it
    )


class TcpProxy:
    """Forwards a loopback port to PostgreSQL; `close()` is the server going away."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self._open:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._open = False
        self._listener.close()
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_healthz_and_readyz_with_the_next_send(database: Database, smtp_server: SmtpServer) -> None:
    settings = settings_for(database, smtp_server)
    with running_app(web_state(settings, database.engine, BEFORE_THE_WEEK)) as base:
        health = requests.get(f"{base}/healthz", timeout=10)
        ready = requests.get(f"{base}/readyz", timeout=10)
    assert (health.status_code, health.text) == (200, "ok")
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    assert ready.json() == {
        "status": "ok",
        "database": "ok",
        "scheduler": "running",
        "next_send": {"email": "2019-04-02T06:00:00+00:00"},  # 08:00 CEST
    }


def test_readyz_without_a_scheduler_says_absent_and_is_ready(
    database: Database, smtp_server: SmtpServer
) -> None:
    """`dispatcher web` has no scheduler: readiness is the database alone."""
    state = web_state(settings_for(database, smtp_server), database.engine, BEFORE_THE_WEEK)
    state.scheduler_alive = None
    with running_app(state) as base:
        ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200
    assert (ready.json()["status"], ready.json()["scheduler"]) == ("ok", "absent")


def test_readyz_503_when_the_scheduler_stopped(database: Database, smtp_server: SmtpServer) -> None:
    state = web_state(settings_for(database, smtp_server), database.engine, BEFORE_THE_WEEK)
    state.scheduler_alive = lambda: False
    with running_app(state) as base:
        ready = requests.get(f"{base}/readyz", timeout=10)
        health = requests.get(f"{base}/healthz", timeout=10)
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["database"], body["scheduler"]) == ("unavailable", "ok", "stopped")
    assert health.status_code == 200  # liveness is not readiness


def test_readyz_503_when_the_database_goes_away(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(database, smtp_server)
    if database.backend == "sqlite":
        folder = tmp_path / "ledger-dir"
        engine = ledger_engine.open_ledger(f"sqlite:///{folder / 'ledger.sqlite3'}")

        def go_away() -> None:
            shutil.rmtree(folder)
            engine.dispose()  # pooled connections keep the unlinked file open

    else:
        url = sa.make_url(database.url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        engine = ledger_engine.create_engine(
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        )
        go_away = proxy.close
    try:
        with running_app(web_state(settings, engine, BEFORE_THE_WEEK)) as base:
            before = requests.get(f"{base}/readyz", timeout=10)
            go_away()
            after = requests.get(f"{base}/readyz", timeout=10)
            health = requests.get(f"{base}/healthz", timeout=10)
    finally:
        engine.dispose()
    assert before.status_code == 200
    assert after.status_code == 503
    body = after.json()
    assert body["status"] == "unavailable" and body["scheduler"] == "running"
    assert body["database"].startswith("unavailable: OperationalError: ")
    assert "next_send" not in body
    assert health.status_code == 200


def test_readyz_never_shows_the_database_password(
    sqlite_database: Database, smtp_server: SmtpServer
) -> None:
    port = free_port()  # a port where nothing listens
    dead = f"postgresql+psycopg://dispatcher:{PASSWORD}@127.0.0.1:{port}/ledger"
    engine = ledger_engine.create_engine(dead)
    settings = settings_for(sqlite_database, smtp_server, database_url=dead)
    try:
        with running_app(web_state(settings, engine, BEFORE_THE_WEEK)) as base:
            ready = requests.get(f"{base}/readyz", timeout=10)
            scraped = requests.get(f"{base}/metrics", timeout=10)
    finally:
        engine.dispose()
    assert ready.status_code == 503
    assert "refused" in ready.json()["database"].lower()
    assert PASSWORD not in ready.text
    assert scraped.status_code == 200  # metrics still answer: ledger_up says the rest
    assert "dispatcher_ledger_up 0.0" in scraped.text
    assert PASSWORD not in scraped.text


def samples(text: str) -> dict[str, list[Sample]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, name: str, **labels: str) -> float:
    matches = [s.value for s in found[family] if s.name == name and s.labels == labels]
    assert len(matches) == 1, (family, name, labels, found[family])
    return matches[0]


def test_metrics_match_the_ledger_after_a_send(database: Database, smtp_server: SmtpServer) -> None:
    addresses = add_subscribers(database, 4)
    with database.engine.begin() as connection:
        subscriber_store.remove(connection, addresses[0], now=BEFORE_THE_WEEK)
    settings = settings_for(database, smtp_server)
    tick_at(settings, database, email_time(dt.date(2019, 4, 2)))
    after_send = dt.datetime(2019, 4, 2, 9, 0, tzinfo=UTC)
    uncached = settings.model_copy(update={"metrics_cache_seconds": 0})  # see each change
    with running_app(web_state(uncached, database.engine, after_send)) as base:
        first = requests.get(f"{base}/metrics", timeout=10)
        metrics.observe_send("email", 0.042)
        metrics.count_reload_error()
        second = requests.get(f"{base}/metrics", timeout=10)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/plain; version=")
    found = samples(first.text)
    sent = delivery_states(database)["sent"]
    assert sent == 3
    deliveries = "dispatcher_deliveries"
    assert value(found, deliveries, deliveries, channel="email", state="sent") == sent
    assert value(found, deliveries, deliveries, channel="email", state="failed") == 0
    dispatches = "dispatcher_dispatches"
    assert value(found, dispatches, dispatches, channel="email", state="done") == 1
    subs = "dispatcher_subscribers"
    assert value(found, subs, subs, state="active") == 3
    assert value(found, subs, subs, state="unsubscribed") == 1
    assert value(found, "dispatcher_ledger_up", "dispatcher_ledger_up") == 1

    campaign = load_campaign(settings.campaign_file)
    upcoming = min(
        row.send_at_utc
        for row in planning.plan(campaign, now=after_send).rows
        if row.state is planning.PlanState.PLANNED and row.send_at_utc is not None
    )
    assert upcoming == dt.datetime(2019, 4, 3, 6, 0, tzinfo=UTC)
    stamp = "dispatcher_next_dispatch_timestamp_seconds"
    assert value(found, stamp, stamp, channel="email") == upcoming.timestamp()

    again = samples(second.text)
    histogram = "dispatcher_send_duration_seconds"
    count = value(again, histogram, f"{histogram}_count", channel="email")
    assert count > 0
    assert value(again, histogram, f"{histogram}_bucket", channel="email", le="0.05") > 0
    reloads = "dispatcher_config_reload_errors"
    before = value(found, reloads, f"{reloads}_total")
    assert value(again, reloads, f"{reloads}_total") == before + 1
