"""Web hardening over real HTTP: security headers, the Origin check, control characters.

The app runs on a free loopback port over the test's ledger (SQLite and PostgreSQL);
confirmation mail goes to the aiosmtpd server, so "nothing was sent" is observed there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from dispatcher.ledger import subscribers as ledger
from dispatcher.mail import compose as emails
from dispatcher.web.hardening import has_control_characters, origin_of
from dispatcher.web.ratelimit import SlidingWindowLimiter, client_key
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import PUBLIC_URL, SECRET, WebApp, serve_webapp

READER = "leser00000@example.org"
NEW = "neu@example.org"
FORM = {"email": NEW, "name": "Erika Neu", "consent": "ja"}


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def _row(app: WebApp, address: str) -> ledger.SubscriberRow | None:
    with app.database.engine.connect() as conn:
        return ledger.get(conn, address)


def _subscribe(app: WebApp, form: dict[str, str], **headers: str) -> requests.Response:
    return requests.post(f"{app.url}/subscribe", data=form, headers=headers, timeout=10)


# -- headers on every response ----------------------------------------------------------------


def test_every_response_forbids_framing_sniffing_and_scripts(app: WebApp) -> None:
    responses = [
        requests.get(f"{app.url}/healthz", timeout=10),
        requests.get(f"{app.url}/subscribe", timeout=10),
        requests.get(f"{app.url}/metrics", timeout=10),
        requests.get(f"{app.url}/no-such-page", timeout=10),
        requests.get(f"{app.url}/u/forged-token", timeout=10),
        _subscribe(app, FORM, Origin="https://evil.example"),  # a 403 too
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 404, 403]
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src" not in csp  # default-src 'none' covers scripts: none run
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"]
    # Token pages keep their stricter Referrer-Policy (the token must not leak).
    assert responses[4].headers["Referrer-Policy"] == "no-referrer"


def test_the_form_page_can_still_post_under_its_csp(app: WebApp) -> None:
    page = requests.get(f"{app.url}/subscribe", timeout=10)
    csp = page.headers["Content-Security-Policy"]
    assert f"form-action 'self' {PUBLIC_URL}" in csp
    assert f'action="{PUBLIC_URL}/subscribe"' in page.text


# -- the Origin check on form POSTs ---------------------------------------------------------


def test_a_foreign_origin_or_referer_gets_403_and_nothing_happens(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    foreign = [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Referer": "https://evil.example/page.html"},
        {"Origin": "https://news.example.org.evil.example"},
    ]
    for headers in foreign:
        response = _subscribe(app, FORM, **headers)
        assert response.status_code == 403, headers
        assert "must be sent from our own page" in response.text
    assert app.state.background.join()
    assert _row(app, NEW) is None
    assert smtp_server.received == []


def test_our_origin_our_referer_or_none_at_all_may_post(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    own_host = urlsplit(app.url).netloc
    allowed = [
        {"Origin": PUBLIC_URL},
        {"Referer": f"{PUBLIC_URL}/subscribe"},
        {"Origin": f"http://{own_host}"},  # the host the request was sent to
        {},  # no Origin, no Referer: no browser forging a cross-site request
    ]
    for index, headers in enumerate(allowed):
        form = {**FORM, "email": f"neu{index}@example.org"}
        response = _subscribe(app, form, **headers)
        assert response.status_code == 200, (headers, response.text)
    assert app.state.background.join()  # the mail follows the answer
    assert len(smtp_server.received) == len(allowed)


def test_one_click_unsubscribe_is_exempt_from_the_origin_check(app: WebApp) -> None:
    add_subscribers(app.database, 1)
    row = _row(app, READER)
    assert row is not None
    sender = emails.Sender(app.settings.mail_from, app.settings.public_url, SECRET)
    url = emails.unsubscribe_url(sender, subscriber_id=row.id, campaign_id=app.campaign.id)
    response = requests.post(
        app.url + urlsplit(url).path,
        data="List-Unsubscribe=One-Click",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://mail.provider.example",
        },
        timeout=10,
    )
    assert response.status_code == 200
    after = _row(app, READER)
    assert after is not None and after.state == "unsubscribed"


# -- control characters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        {**FORM, "name": "Erika\x00Neu"},
        {**FORM, "email": "neu\x00@example.org"},
        {**FORM, "name": "Erika\x1bNeu"},
        {**FORM, "name": "Erika\nBcc: x@example.org"},
    ],
)
def test_control_characters_in_the_form_are_a_400_with_a_message(
    app: WebApp, smtp_server: SmtpServer, form: dict[str, str]
) -> None:
    response = _subscribe(app, form)
    assert response.status_code == 400
    assert "unzulässige Steuerzeichen" in response.text
    assert app.state.background.join()
    assert _row(app, NEW) is None and smtp_server.received == []


def test_control_character_rules() -> None:
    assert has_control_characters("a\x00b") and has_control_characters("a\x85b")
    assert has_control_characters("line\nbreak")
    assert not has_control_characters("line\nbreak\ttab", allow="\t\n\r")
    assert not has_control_characters("Jürgen Müller-Lüdenscheidt")


# -- rate limit per IPv6 /64 --------------------------------------------------------------


def test_the_rate_limit_counts_an_ipv6_64_as_one_client() -> None:
    limiter = SlidingWindowLimiter(3, 60.0, clock=lambda: 0.0)
    hosts = [f"2001:db8:1:2::{n:x}" for n in range(1, 5)]
    assert [limiter.hit(client_key(h)) is None for h in hosts] == [True, True, True, False]
    assert limiter.hit(client_key("2001:db8:1:3::1")) is None  # the next /64 is someone else
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.8") != client_key("192.0.2.7")
    assert client_key(None) == "unknown"


def test_origin_of() -> None:
    assert origin_of("https://News.Example.org:443/subscribe?x") == "https://news.example.org"
    assert origin_of("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert origin_of("null") is None and origin_of("") is None
    assert origin_of("http://[::1]:8080/") == "http://[::1]:8080"
