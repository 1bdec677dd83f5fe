"""`POST /subscribe` tells nobody who is on the list, and changes nobody who is.

Over real HTTP against the app on a loopback port, the ledger on SQLite and PostgreSQL,
the confirmation mail through the aiosmtpd server:

* the answer takes the same time for a new, pending, active and suppressed address
  (the mail used to go out inside the request: ~50 ms more for the addresses that get one);
* an anonymous request leaves an existing subscriber's state, name and consent record
  alone; what it asked for is applied when — and only if — the link in the mail is used.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import re
import statistics
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.tables import SubscriberState
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp, subscriber_row

ACTIVE = "leser00000@example.org"
PENDING = "leser00001@example.org"
SUPPRESSED = "leser00002@example.org"
ROUNDS = 30


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def _make(app: WebApp, address: str, state: str) -> None:
    with app.database.engine.begin() as conn:
        if state == "unsubscribed":
            ledger.remove(conn, address, now=START)
        else:
            ledger.set_state(conn, _id(conn, address), SubscriberState(state), now=START)


def _id(conn: object, address: str) -> int:
    row = ledger.get(conn, address)  # type: ignore[arg-type]
    assert row is not None
    return row.id


def _post(
    app: WebApp, email: str, name: str = "", session: requests.Session | None = None
) -> float:
    """Seconds until the answer to one sign-up; it is always the same page."""
    form = {"email": email, "name": name, "consent": "ja"}
    started = time.perf_counter()
    response = (session or requests).post(f"{app.url}/subscribe", data=form, timeout=10)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and "Bitte bestätigen Sie" in response.text
    return elapsed


def _confirm_path(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    links: list[str] = re.findall(r"https?://\S+/confirm/\S+", text.get_content())
    assert len(links) == 1, links
    return urlsplit(links[0]).path


def test_the_answer_takes_as_long_for_new_pending_active_and_suppressed(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    add_subscribers(app.database, 3)
    _make(app, PENDING, "pending")
    _make(app, SUPPRESSED, "bounced")
    for address in (ACTIVE, PENDING, SUPPRESSED, "warmup@example.org"):
        _post(app, address)  # first requests pay for imports and connections
    assert app.state.background.join()
    times: dict[str, list[float]] = {"new": [], "pending": [], "active": [], "suppressed": []}
    order = random.Random(11)
    with requests.Session() as session:  # one connection: no TCP set-up in the figures
        for round_ in range(ROUNDS):
            app.clock.advance(hours=2)  # past the hourly limit: every case that mails, mails
            cases = [
                ("new", f"neu{round_}@example.org"),
                ("pending", PENDING),
                ("active", ACTIVE),
                ("suppressed", SUPPRESSED),
            ]
            order.shuffle(cases)
            for case, address in cases:
                times[case].append(_post(app, address, session=session))
                # The work after the answer must not be what the next one measures.
                assert app.state.background.join()
    medians = {case: statistics.median(values) for case, values in times.items()}
    mailed = {r.rcpt_tos[0] for r in smtp_server.received}
    assert {PENDING, SUPPRESSED, "neu0@example.org"} <= mailed and ACTIVE not in mailed
    spread = max(medians.values()) - min(medians.values())
    print("subscribe medians (ms):", {c: round(m * 1000, 2) for c, m in medians.items()})
    assert spread < 0.005, medians  # before: the mail put ~50 ms on the ones that get one


@pytest.mark.parametrize("state", ["unsubscribed", "bounced", "pending"])
def test_an_anonymous_request_changes_nobody_until_the_link_is_used(
    app: WebApp, smtp_server: SmtpServer, state: str
) -> None:
    add_subscribers(app.database, 1, named=True)
    _make(app, ACTIVE, state)
    before = subscriber_row(app, ACTIVE)
    assert before.name == "Leserin 0"

    app.clock.advance(hours=2)
    _post(app, ACTIVE, name="Jemand Anderes")
    assert app.state.background.join()
    after = subscriber_row(app, ACTIVE)
    assert (after.state, after.name) == (state, "Leserin 0")
    assert (after.consent_at, after.consent_source, after.consent_ip) == (
        before.consent_at,
        before.consent_source,
        before.consent_ip,
    )
    [mail] = [r.message for r in smtp_server.received if r.rcpt_tos == [ACTIVE]]
    assert "Jemand Anderes" in mail["To"]  # the mail shows what the link will store

    app.clock.advance(minutes=10)
    confirmed = requests.get(app.url + _confirm_path(mail), timeout=10)
    assert confirmed.status_code == 200
    now_active = subscriber_row(app, ACTIVE)
    assert (now_active.state, now_active.name) == ("active", "Jemand Anderes")
    assert now_active.consent_at == START + dt.timedelta(hours=2)
    assert now_active.consent_source == "web:/subscribe"
    assert now_active.consent_ip == "127.0.0.0"


def test_a_link_whose_request_was_altered_is_404(app: WebApp, smtp_server: SmtpServer) -> None:
    add_subscribers(app.database, 1)
    _make(app, ACTIVE, "unsubscribed")
    app.clock.advance(hours=2)
    _post(app, ACTIVE, name="Erika")
    assert app.state.background.join()
    [mail] = [r.message for r in smtp_server.received if r.rcpt_tos == [ACTIVE]]
    minutes, _request, rest = _confirm_path(mail).rpartition("/")[2].split(".", 2)
    forged = (
        "r"
        + base64.urlsafe_b64encode(b'{"n":"Mallory","s":"web:/subscribe","i":null,"t":"0"}')
        .rstrip(b"=")
        .decode()
    )
    response = requests.get(f"{app.url}/confirm/{minutes}.{forged}.{rest}", timeout=10)
    assert response.status_code == 404
    assert subscriber_row(app, ACTIVE).state == "unsubscribed"
