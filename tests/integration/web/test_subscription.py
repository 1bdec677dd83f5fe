"""Unsubscribe and double opt-in over real HTTP: the app on a free port, `requests` as client.

Every ledger test runs on SQLite and PostgreSQL (`database`); confirmation mail
goes through a real SMTP server (aiosmtpd, `smtp_server`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from dispatcher.cli import main as cli
from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.tables import deliveries, subscribers
from dispatcher.mail import compose as emails
from dispatcher.mail import tokens
from dispatcher.web.ratelimit import SlidingWindowLimiter
from dispatcher.web.subscription import confirm_token, consent_ip, consent_source
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import PUBLIC_URL, SECRET, START, WebApp, serve_webapp, subscriber_row

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
READER = "leser00000@example.org"
NEW = "neu@example.org"
DAY_1, DAY_2 = dt.date(2019, 4, 2), dt.date(2019, 4, 3)


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def _unsubscribe_path(app: WebApp, address: str = READER) -> str:
    sender = emails.Sender(app.settings.mail_from, app.settings.public_url, SECRET)
    url = emails.unsubscribe_url(
        sender, subscriber_id=subscriber_row(app, address).id, campaign_id=app.campaign.id
    )
    return urlsplit(url).path


def _one_click(url: str) -> requests.Response:
    """Exactly Gmail's request (RFC 8058 §3.2): no cookies, no auth, 26 bytes urlencoded."""
    return requests.post(
        url, data=ONE_CLICK, headers={"Content-Type": FORM}, allow_redirects=False, timeout=10
    )


def _is_html_page(response: requests.Response, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("text/html")
        and '<html lang="de">' in response.text
        and "<h1>" in response.text
        and "Traceback" not in response.text
    )


# -- unsubscribe -----------------------------------------------------------------------------


def test_one_click_post_as_gmail_sends_it(app: WebApp) -> None:
    add_subscribers(app.database, 2)
    url = app.url + _unsubscribe_path(app)
    first = _one_click(url)
    assert first.request.headers["Content-Length"] == "26"
    assert "Cookie" not in first.request.headers
    assert _is_html_page(first, 200), first.text
    assert "set-cookie" not in first.headers and "location" not in first.headers
    assert "abgemeldet" in first.text and READER in first.text
    row = subscriber_row(app, READER)
    assert row.state == "unsubscribed" and row.unsubscribed_at == START
    assert subscriber_row(app, "leser00001@example.org").state == "active"  # only this one

    app.clock.advance(hours=1)
    again = _one_click(url)  # idempotent: 200 again, the first time stays recorded
    assert _is_html_page(again, 200)
    assert subscriber_row(app, READER).unsubscribed_at == START


def test_one_click_post_as_multipart(app: WebApp) -> None:
    add_subscribers(app.database, 1)
    url = app.url + _unsubscribe_path(app)
    for _ in range(2):
        response = requests.post(
            url, files={"List-Unsubscribe": (None, "One-Click")}, allow_redirects=False, timeout=10
        )
        assert response.request.headers["Content-Type"].startswith("multipart/form-data")
        assert _is_html_page(response, 200)
    assert subscriber_row(app, READER).state == "unsubscribed"


def test_get_shows_who_and_what_and_changes_nothing(app: WebApp) -> None:
    add_subscribers(app.database, 1)
    url = app.url + _unsubscribe_path(app)
    page = requests.get(url, timeout=10)
    assert _is_html_page(page, 200)
    assert READER in page.text and app.campaign.name in page.text
    assert re.search(
        r'<form method="post">.*<button type="submit">Abmelden</button>', page.text, re.S
    )
    assert "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert requests.head(url, timeout=10).status_code == 200
    assert subscriber_row(app, READER).state == "active"  # link scanners unsubscribe nobody

    requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)  # the page's form
    assert subscriber_row(app, READER).state == "unsubscribed"
    after = requests.get(url, timeout=10)
    assert "bereits" in after.text and "Abmelden</button>" not in after.text


def test_tampered_unknown_and_erased_tokens_get_a_404_page(app: WebApp) -> None:
    add_subscribers(app.database, 2)
    path = _unsubscribe_path(app)
    token = path.rpartition("/")[2]
    subscriber, campaign, signature = token.split(".")
    flipped = signature[:-3] + ("A" if signature[-3] != "A" else "B") + signature[-2:]
    other_campaign = tokens._b64(b"clusterwoche-2020")
    reader_id = int(subscriber)
    bad = [
        f"{subscriber}.{campaign}.{flipped}",  # one character changed
        f"{reader_id + 1}.{campaign}.{signature}",  # someone else
        f"{subscriber}.{other_campaign}.{signature}",  # another campaign
        tokens.sign(tokens.TokenSubject("confirm", reader_id, app.campaign.id), key=SECRET),
        tokens.sign(
            tokens.TokenSubject("unsubscribe", reader_id, app.campaign.id), key="another-key"
        ),
        tokens.sign(tokens.TokenSubject("unsubscribe", 999, app.campaign.id), key=SECRET),
        "garbage",
        token[:-1],
    ]
    for candidate in bad:
        for method in ("GET", "POST"):
            response = requests.request(
                method, f"{app.url}/u/{candidate}", data=ONE_CLICK, headers={"Content-Type": FORM}
            )
            assert _is_html_page(response, 404), (candidate, method, response.text)
            assert "ungültig" in response.text
    assert {
        subscriber_row(app, READER).state,
        subscriber_row(app, "leser00001@example.org").state,
    } == {"active"}

    with app.database.engine.begin() as conn:
        assert ledger.erase(conn, READER, now=START)
    assert _is_html_page(requests.get(app.url + path, timeout=10), 404)
    assert _is_html_page(_one_click(app.url + path), 404)


def test_unsubscribed_reader_gets_nothing_on_the_next_tick(
    database: Database, smtp_server: SmtpServer, app: WebApp
) -> None:
    addresses = add_subscribers(database, 3)
    settings = settings_for(database, smtp_server)
    tick_at(settings, database, email_time(DAY_1))
    assert len(smtp_server.received) == 3
    leaving = next(r for r in smtp_server.received if r.rcpt_tos == [addresses[1]])
    https = leaving.message["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert https.startswith(settings.public_url + "/u/")
    assert _is_html_page(_one_click(app.url + urlsplit(https).path), 200)

    tick_at(settings, database, email_time(DAY_2))
    got: dict[str, int] = {}
    for received in smtp_server.received:
        got[received.rcpt_tos[0]] = got.get(received.rcpt_tos[0], 0) + 1
    assert got == {addresses[0]: 2, addresses[1]: 1, addresses[2]: 2}
    assert delivery_states(database) == {"sent": 5}


# -- double opt-in ---------------------------------------------------------------------------


def _subscribe(app: WebApp, **form: str) -> requests.Response:
    """POST the form, then wait for the work the app does after answering."""
    response = requests.post(
        f"{app.url}/subscribe",
        data=form,
        headers={"Referer": f"{PUBLIC_URL}/newsletter?x=1"},
        allow_redirects=False,
        timeout=10,
    )
    assert app.state.background.join()
    return response


def _confirmations(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return [r.message for r in smtp.received if r.rcpt_tos == [address]]


def _confirm_path(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    links: list[str] = re.findall(r"https?://\S+/confirm/\S+", text.get_content())
    assert len(links) == 1, text.get_content()
    html = message.get_body(("html",))
    assert html is not None and links[0] in html.get_content()
    return urlsplit(links[0]).path


def test_double_opt_in_round_trip(app: WebApp, smtp_server: SmtpServer) -> None:
    sent = _subscribe(app, email=" Neu@Example.org ", name="Erika Neu", consent="ja")
    assert _is_html_page(sent, 200)
    assert "Bitte bestätigen Sie" in sent.text
    pending = subscriber_row(app, NEW)
    assert (pending.state, pending.name, pending.source) == ("pending", "Erika Neu", "web")
    assert pending.consent_at == START and pending.confirmation_sent_at == START
    assert pending.consent_ip == "127.0.0.0"  # truncated to /24 by default
    assert pending.consent_source == "web:/subscribe; referer=news.example.org"
    assert pending.consent_text == app.settings.consent_text
    assert app.settings.consent_text in requests.get(f"{app.url}/subscribe", timeout=10).text

    [mail] = _confirmations(smtp_server, NEW)
    assert str(mail["Subject"]) == f"Bitte bestätigen Sie Ihr Abonnement: {app.campaign.name}"
    assert mail["To"] == "Erika Neu <neu@example.org>"
    assert mail["List-Unsubscribe"] is None and mail["List-Id"] is None  # transactional
    path = _confirm_path(mail)

    app.clock.advance(minutes=30)
    again = _subscribe(app, email=NEW, consent="ja")  # within the hour: same page, no mail
    assert _is_html_page(again, 200) and again.text == sent.text
    assert len(_confirmations(smtp_server, NEW)) == 1

    confirmed = requests.get(app.url + path, timeout=10)
    assert _is_html_page(confirmed, 200) and "Anmeldung bestätigt" in confirmed.text
    active = subscriber_row(app, NEW)
    assert active.state == "active" and active.confirmed_at == START + dt.timedelta(minutes=30)
    assert active.consent_at == START  # the consent record is the request's
    assert _is_html_page(requests.get(app.url + path, timeout=10), 200)  # second click

    app.clock.advance(hours=3)
    known = _subscribe(app, email=NEW, consent="ja")  # active: same page, no mail
    assert _is_html_page(known, 200) and "Bitte bestätigen Sie" in known.text
    assert len(_confirmations(smtp_server, NEW)) == 1
    assert subscriber_row(app, NEW).state == "active"


def test_the_answer_does_not_tell_addresses_apart(app: WebApp, smtp_server: SmtpServer) -> None:
    add_subscribers(app.database, 2)
    with app.database.engine.begin() as conn:
        ledger.remove(conn, "leser00001@example.org", now=START)
    pages = {
        address: _subscribe(app, email=address, consent="ja")
        for address in (READER, "leser00001@example.org", NEW)
    }
    bodies = {a: r.text.replace(a, "ADDRESS") for a, r in pages.items()}
    assert {r.status_code for r in pages.values()} == {200}
    assert len(set(bodies.values())) == 1
    assert {r.rcpt_tos[0] for r in smtp_server.received} == {"leser00001@example.org", NEW}
    assert subscriber_row(app, READER).state == "active"
    # Back only by confirming: until then the request changed nothing about the subscriber.
    assert subscriber_row(app, "leser00001@example.org").state == "unsubscribed"
    [mail] = _confirmations(smtp_server, "leser00001@example.org")
    assert requests.get(app.url + _confirm_path(mail), timeout=10).status_code == 200
    assert subscriber_row(app, "leser00001@example.org").state == "active"


def test_confirm_links_expire_and_tampered_ones_are_404(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    _subscribe(app, email=NEW, consent="ja")
    [mail] = _confirmations(smtp_server, NEW)
    path = _confirm_path(mail)
    token = path.rpartition("/")[2]
    minutes, _, rest = token.partition(".")
    for bad in (
        f"{int(minutes) + 60}.{rest}",  # a later issue time: the signature no longer fits
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        rest,
        _unsubscribe_token(app, subscriber_row(app, NEW).id),
        "1.2.3",
    ):
        assert _is_html_page(requests.get(f"{app.url}/confirm/{bad}", timeout=10), 404), bad

    app.clock.advance(hours=app.settings.confirm_ttl_hours, minutes=1)
    expired = requests.get(app.url + path, timeout=10)
    assert _is_html_page(expired, 410)
    assert "/subscribe" in expired.text and "erneut" in expired.text
    assert subscriber_row(app, NEW).state == "pending"

    _subscribe(app, email=NEW, consent="ja")  # a new request after the hour: a new mail
    fresh = _confirmations(smtp_server, NEW)
    assert len(fresh) == 2
    assert requests.get(app.url + _confirm_path(fresh[1]), timeout=10).status_code == 200
    assert subscriber_row(app, NEW).state == "active"


def test_an_old_confirm_link_cannot_undo_an_unsubscribe(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    _subscribe(app, email=NEW, consent="ja")
    path = _confirm_path(_confirmations(smtp_server, NEW)[0])
    assert requests.get(app.url + path, timeout=10).status_code == 200
    app.clock.advance(minutes=5)
    assert _one_click(app.url + _unsubscribe_path(app, NEW)).status_code == 200
    app.clock.advance(minutes=5)
    assert _is_html_page(requests.get(app.url + path, timeout=10), 410)
    assert subscriber_row(app, NEW).state == "unsubscribed"


def _unsubscribe_token(app: WebApp, subscriber_id: int) -> str:
    subject = tokens.TokenSubject("unsubscribe", subscriber_id, app.campaign.id)
    return tokens.sign(subject, key=SECRET)


def test_invalid_form_is_400_with_the_field_error_and_values_kept(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    no_consent = _subscribe(app, email=NEW, name="Erika <Neu>")
    assert _is_html_page(no_consent, 400)
    assert "Einwilligung" in no_consent.text and 'aria-invalid="true"' in no_consent.text
    assert f'value="{NEW}"' in no_consent.text and 'value="Erika &lt;Neu&gt;"' in no_consent.text
    bad_address = _subscribe(app, email="neu@", consent="ja")
    assert _is_html_page(bad_address, 400)
    assert "gültige E-Mail-Adresse" in bad_address.text and 'value="neu@"' in bad_address.text
    assert " checked" in bad_address.text
    assert _is_html_page(_subscribe(app, consent="ja"), 400)
    assert smtp_server.received == []
    with app.database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar() == 0


def test_subscribe_rate_limit_per_client(app: WebApp) -> None:
    limit = app.settings.subscribe_per_minute
    answers = [_subscribe(app, email=f"x{i}@", consent="ja").status_code for i in range(limit)]
    assert answers == [400] * limit  # refused forms count too
    refused = _subscribe(app, email=NEW, consent="ja")
    assert _is_html_page(refused, 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    app.clock.advance(seconds=61)
    assert _subscribe(app, email=NEW, consent="ja").status_code == 200
    # The one-click unsubscribe is never limited: providers send many from few addresses.
    add_subscribers(app.database, 1)
    assert _one_click(app.url + _unsubscribe_path(app)).status_code == 200


# -- export and erase (the CLI) ----------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def _cli(
    database: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
) -> CliResult:
    """`dispatcher subscribers …` in process (a subprocess costs seconds of imports)."""
    for name in [k for k in os.environ if k.startswith("DISPATCHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", database.url)
    capsys.readouterr()
    code = cli.main(["subscribers", *args])
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def test_export_has_the_consent_record_and_erase_keeps_the_counts(
    database: Database,
    smtp_server: SmtpServer,
    app: WebApp,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_subscribers(database, 2)
    _subscribe(app, email=NEW, name="Erika Neu", consent="ja")
    requests.get(app.url + _confirm_path(_confirmations(smtp_server, NEW)[0]), timeout=10)
    tick_at(settings_for(database, smtp_server), database, email_time(DAY_1))
    assert delivery_states(database) == {"sent": 3}

    exported = _cli(database, capsys, monkeypatch, "export")
    assert exported.returncode == 0, exported.stderr
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    record = rows[NEW]
    assert record["consent_at"] == "2019-04-01T10:00:00Z"
    assert record["confirmed_at"] == "2019-04-01T10:00:00Z"
    assert record["consent_ip"] == "127.0.0.0"
    assert record["consent_source"] == "web:/subscribe; referer=news.example.org"
    assert record["consent_text"] == app.settings.consent_text
    assert record["unsubscribed_at"] == ""
    assert rows[READER]["consent_at"] == ""  # imported rows have no web consent record

    new_id = subscriber_row(app, NEW).id
    erased = _cli(database, capsys, monkeypatch, "remove", "NEU@example.org", "--erase")
    assert erased.returncode == 0, erased.stderr
    assert f"erased-{new_id}@invalid" in erased.stdout
    with database.engine.connect() as conn:
        row = ledger.get_by_id(conn, new_id)
        kept = conn.execute(
            sa.select(deliveries.c.state).where(deliveries.c.subscriber_id == new_id)
        ).all()
        assert ledger.get(conn, NEW) is None
    assert row is not None and row.erased_at is not None
    assert (row.email, row.name, row.state) == (f"erased-{new_id}@invalid", None, "unsubscribed")
    assert (row.consent_at, row.consent_ip, row.consent_source, row.consent_text) == (None,) * 4
    assert [state for (state,) in kept] == ["sent"]
    assert delivery_states(database) == {"sent": 3}  # the counts stay
    assert NEW not in _cli(database, capsys, monkeypatch, "export").stdout
    unknown = _cli(database, capsys, monkeypatch, "remove", NEW, "--erase")
    assert unknown.returncode == 1 and "nothing to erase" in unknown.stderr


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "mode", "stored"),
    [
        ("203.0.113.77", "truncate", "203.0.113.0"),
        ("2001:db8:abcd:12:34::1", "truncate", "2001:db8:abcd::"),
        ("::ffff:203.0.113.77", "truncate", "203.0.113.0"),
        ("203.0.113.77", "full", "203.0.113.77"),
        ("203.0.113.77", "none", None),
        (None, "truncate", None),
        ("testclient", "truncate", None),
    ],
)
def test_consent_ip(host: str | None, mode: str, stored: str | None) -> None:
    assert consent_ip(host, mode) == stored  # type: ignore[arg-type]


def test_consent_source() -> None:
    assert consent_source(None) == "web:/subscribe"
    assert consent_source("https://Example.ORG:8443/a?b") == "web:/subscribe; referer=example.org"


def test_sliding_window() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(2, 60, clock=lambda: now[0], sweep_every=7)
    assert limiter.hit("a") is None
    now[0] += 30
    assert limiter.hit("a") is None and limiter.hit("b") is None
    assert limiter.hit("a") == 30.0  # the first hit leaves the window in 30 s
    now[0] += 30
    assert limiter.hit("a") is None  # the window slid past the first hit
    assert limiter.hit("a") is not None
    now[0] += 120
    limiter.hit("c")  # the 7th call sweeps: a and b, long quiet, are forgotten
    assert len(limiter) == 1
    assert limiter.retry_after_header(0.2) == "1" and limiter.retry_after_header(30.0) == "30"


def test_confirm_token_format() -> None:
    issued = dt.datetime(2019, 4, 1, 10, 0, 42, tzinfo=dt.UTC)
    token = confirm_token(7, "clusterwoche-2019", issued=issued, key=SECRET)
    minutes, subscriber, _campaign, _signature = token.split(".")
    assert (int(minutes), subscriber) == (int(issued.timestamp() // 60), "7")
