"""Signing in at the desk, over real HTTP: emailed one-time links, the trusted proxy header,
the session cookie, CSRF, sign-out and the audit log (docs/desk.md).

The app runs on a free port (`tests.support.webapp`) over SQLite and PostgreSQL; sign-in
mail goes to the test SMTP server; the state's clock is moved by hand. The session cookie is
`Secure` (PUBLIC_URL is https), so requests send it back only when passed as `cookies=`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from dispatcher.cli import main as cli
from dispatcher.ledger import editors as ledger
from dispatcher.web.desk import session
from tests.support.database import Database
from tests.support.desk import EDITOR, add_editor, csrf, session_cookies, sign_in_links
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp

STRANGER = "fremd@example.org"
HEADER = "X-Forwarded-Email"


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def _ask(app: WebApp, address: str, next_path: str | None = None) -> requests.Response:
    data = {"email": address} | ({"next": next_path} if next_path else {})
    return requests.post(f"{app.url}/desk/anmelden", data=data, allow_redirects=False, timeout=10)


def _path(link: str) -> str:
    return urlsplit(link).path


def _cookie(response: requests.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar


def _get(app: WebApp, path: str, cookies: dict[str, str] | None = None) -> requests.Response:
    return requests.get(app.url + path, cookies=cookies, allow_redirects=False, timeout=10)


def _signed_in(app: WebApp, cookies: dict[str, str]) -> bool:
    """Whether the desk treats `cookies` as a session in force (its audit page opens)."""
    response = _get(app, "/desk/protokoll", cookies)
    if response.status_code == 200:
        assert "Abmelden" in response.text
        return True
    assert response.status_code == 303
    assert response.headers["location"] == "/desk/anmelden?next=/desk/protokoll"
    return False


def _audit(app: WebApp) -> list[tuple[str | None, str, str]]:
    with app.database.engine.connect() as connection:
        rows = ledger.audit_log(connection)
    return [(row.email, row.action, row.detail) for row in reversed(rows)]


# -- the emailed link ------------------------------------------------------------------------


def test_sign_in_through_the_emailed_link_once(app: WebApp, smtp_server: SmtpServer) -> None:
    add_editor(app)
    asked = _ask(app, EDITOR, next_path="/desk/protokoll")
    assert asked.status_code == 200
    assert "Anmeldelink" in asked.text and EDITOR in asked.text
    assert "set-cookie" not in asked.headers
    assert app.state.background.join()

    [mail] = [r.message for r in smtp_server.received if r.rcpt_tos == [EDITOR]]
    assert mail["Subject"] == f"Ihr Anmeldelink für die Redaktion: {app.campaign.name}"
    assert mail["To"] == f"Erika Muster <{EDITOR}>"
    [link] = sign_in_links(smtp_server)
    assert link.startswith("https://news.example.org/desk/anmelden/link/")
    html = mail.get_body(("html",))
    assert html is not None and link in html.get_content()

    # A mail scanner fetches the link: that shows a button and uses nothing up.
    for _ in range(2):
        shown = _get(app, _path(link))
        assert shown.status_code == 200
        assert "Jetzt anmelden" in shown.text
        assert f'<form method="post" action="{_path(link)}">' in shown.text
        assert "set-cookie" not in shown.headers
        assert shown.headers["cache-control"] == "no-store"
        assert shown.headers["referrer-policy"] == "same-origin"

    used = requests.post(app.url + _path(link), allow_redirects=False, timeout=10)
    assert used.status_code == 303
    assert used.headers["location"] == "/desk/protokoll"  # the page first asked for
    cookie = _cookie(used)[session.COOKIE]
    assert _signed_in(app, {session.COOKIE: cookie.value})

    again = requests.post(app.url + _path(link), allow_redirects=False, timeout=10)
    assert again.status_code == 410
    assert "gilt nicht mehr" in again.text
    assert "set-cookie" not in again.headers
    assert _get(app, _path(link)).status_code == 410

    assert _audit(app) == [
        (EDITOR, "sign_in_link", "requested"),
        (EDITOR, "sign_in", "emailed link"),
    ]


def test_session_cookie_flags(app: WebApp, smtp_server: SmtpServer) -> None:
    add_editor(app)
    _ask(app, EDITOR)
    assert app.state.background.join()
    [link] = sign_in_links(smtp_server)
    used = requests.post(app.url + _path(link), allow_redirects=False, timeout=10)
    header = used.headers["set-cookie"]
    cookie = _cookie(used)[session.COOKIE]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True  # PUBLIC_URL is https
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/desk"
    assert int(cookie["max-age"]) == 12 * 3600
    assert "Domain" not in header
    # The ledger has only the hash: the cookie's token is nowhere in the database.
    token = cookie.value.rpartition(".")[0]
    with app.database.engine.connect() as connection:
        hashes = connection.execute(ledger.editor_sessions.select()).all()
    assert [row.token_hash for row in hashes] == [ledger.token_hash(token)]


def test_no_secure_flag_on_a_plain_http_site(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    for app in serve_webapp(database, smtp_server, tmp_path, public_url="http://127.0.0.1:8080"):
        add_editor(app)
        _ask(app, EDITOR)
        assert app.state.background.join()
        [link] = sign_in_links(smtp_server)
        assert link.startswith("http://127.0.0.1:8080/desk/anmelden/link/")
        used = requests.post(app.url + _path(link), allow_redirects=False, timeout=10)
        cookie = _cookie(used)[session.COOKIE]
        assert cookie["httponly"] is True
        assert not cookie["secure"]


def test_the_link_expires_after_15_minutes(app: WebApp, smtp_server: SmtpServer) -> None:
    add_editor(app)
    _ask(app, EDITOR)
    assert app.state.background.join()
    [link] = sign_in_links(smtp_server)
    app.clock.advance(minutes=14, seconds=59)
    assert _get(app, _path(link)).status_code == 200
    app.clock.advance(seconds=1)
    assert _get(app, _path(link)).status_code == 410
    used = requests.post(app.url + _path(link), allow_redirects=False, timeout=10)
    assert used.status_code == 410
    assert "set-cookie" not in used.headers
    assert "Minuten" in used.text and "/desk/anmelden" in used.text


def test_a_second_link_leaves_the_first_valid_until_used(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    add_editor(app)
    _ask(app, EDITOR)
    _ask(app, EDITOR)
    assert app.state.background.join()
    first, second = sign_in_links(smtp_server)
    assert first != second
    assert (
        requests.post(app.url + _path(second), allow_redirects=False, timeout=10).status_code == 303
    )
    assert (
        requests.post(app.url + _path(first), allow_redirects=False, timeout=10).status_code == 303
    )


def test_unknown_address_gets_the_same_page_and_no_mail(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    add_editor(app)
    known = _ask(app, EDITOR)
    unknown = _ask(app, STRANGER)
    assert app.state.background.join()
    assert unknown.status_code == known.status_code == 200
    assert unknown.text.replace(STRANGER, "X") == known.text.replace(EDITOR, "X")
    ignored = {"date": "", "content-length": ""}  # the addresses differ in length
    assert dict(unknown.headers) | ignored == dict(known.headers) | ignored
    assert [r.rcpt_tos for r in smtp_server.received] == [[EDITOR]]
    assert (None, "sign_in_link", "requested") not in _audit(app)


def test_a_removed_editor_gets_no_link(app: WebApp, smtp_server: SmtpServer) -> None:
    add_editor(app)
    with app.database.engine.begin() as connection:
        ledger.remove(connection, EDITOR, now=app.clock())
    assert _ask(app, EDITOR).status_code == 200
    assert app.state.background.join()
    assert smtp_server.received == []


def test_an_invalid_address_is_asked_again(app: WebApp) -> None:
    answer = _ask(app, "kein-at-zeichen")
    assert answer.status_code == 400
    assert 'aria-invalid="true"' in answer.text
    assert "gültige E-Mail-Adresse" in answer.text


def test_links_are_rate_limited_per_address(app: WebApp, smtp_server: SmtpServer) -> None:
    add_editor(app)
    limit = app.settings.desk_sign_in_per_hour
    for address in (EDITOR, STRANGER):  # known and unknown alike: the limit tells nothing
        for _ in range(limit):
            assert _ask(app, address).status_code == 200
            app.clock.advance(seconds=10)  # stay within the per-client minute limit
        refused = _ask(app, address)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert "zu viele" in refused.text
    assert app.state.background.join()
    assert len(sign_in_links(smtp_server)) == limit
    app.clock.advance(hours=1)
    assert _ask(app, EDITOR).status_code == 200


def test_links_are_rate_limited_per_client(app: WebApp) -> None:
    limit = app.settings.subscribe_per_minute
    for number in range(limit):
        assert _ask(app, f"person{number}@example.org").status_code == 200
    refused = _ask(app, "noch-jemand@example.org")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    app.clock.advance(minutes=1)
    assert _ask(app, "noch-jemand@example.org").status_code == 200


# -- the session -----------------------------------------------------------------------------


def test_forged_or_foreign_cookies_lead_to_the_sign_in_page(app: WebApp) -> None:
    add_editor(app)
    genuine = session_cookies(app)
    token = genuine[session.COOKIE].rpartition(".")[0]
    foreign_signature = hmac.new(b"another-site-key", f"desk-session:{token}".encode(), "sha256")
    foreign = {
        session.COOKIE: f"{token}."
        + base64.urlsafe_b64encode(foreign_signature.digest()[:16]).rstrip(b"=").decode()
    }
    never_issued = {session.COOKIE: session.cookie_value(app.state, ledger.new_token())}
    for cookies in (
        {session.COOKIE: "abc"},
        {session.COOKIE: token},  # unsigned
        foreign,  # signed with another key
        never_issued,  # signed with ours, but no such session
    ):
        assert not _signed_in(app, cookies)
    followed = requests.get(app.url + "/desk/protokoll", cookies=foreign, timeout=10)
    assert followed.status_code == 200
    assert "<h1>Anmelden</h1>" in followed.text
    assert 'name="next" value="/desk/protokoll"' in followed.text
    assert _signed_in(app, genuine)


def test_sign_out_needs_the_csrf_token_and_ends_the_session(app: WebApp) -> None:
    add_editor(app)
    cookies = session_cookies(app)
    other = session_cookies(app)
    url = f"{app.url}/desk/abmelden"
    for data in ({}, {"csrf_token": "falsch"}, {"csrf_token": csrf(app, other)}):
        refused = requests.post(url, data=data, cookies=cookies, allow_redirects=False, timeout=10)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
        assert _signed_in(app, cookies)

    page = _get(app, "/desk/protokoll", cookies)
    assert f'name="csrf_token" value="{csrf(app, cookies)}"' in page.text

    out = requests.post(
        url,
        data={"csrf_token": csrf(app, cookies)},
        cookies=cookies,
        allow_redirects=False,
        timeout=10,
    )
    assert out.status_code == 303
    assert out.headers["location"] == "/desk/anmelden?abgemeldet=1"
    gone = _cookie(out)[session.COOKIE]
    assert gone.value == "" and gone["max-age"] == "0" and gone["path"] == "/desk"
    assert not _signed_in(app, cookies)  # ended in the ledger, not only in the browser
    assert _signed_in(app, other)  # the editor's other browser stays signed in
    assert "Sie sind abgemeldet" in _get(app, "/desk/anmelden?abgemeldet=1").text
    assert _audit(app)[-1] == (EDITOR, "sign_out", "")


def test_a_post_from_another_site_is_refused(app: WebApp) -> None:
    add_editor(app)
    cookies = session_cookies(app)
    refused = requests.post(
        f"{app.url}/desk/abmelden",
        data={"csrf_token": csrf(app, cookies)},
        cookies=cookies,
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert refused.status_code == 403
    assert _signed_in(app, cookies)


def test_a_removed_editors_session_stops_working(
    app: WebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.clock.now = dt.datetime.now(dt.UTC)  # the command line has the real clock
    add_editor(app)
    cookies = session_cookies(app)
    assert _signed_in(app, cookies)
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", app.database.url)
    assert cli.main(["editors", "remove", EDITOR]) == 0
    assert not _signed_in(app, cookies)
    assert cli.main(["editors", "add", EDITOR]) == 0  # back again, but not the old sessions
    assert not _signed_in(app, cookies)
    app.clock.now = dt.datetime.now(dt.UTC)
    assert _signed_in(app, session_cookies(app))


def test_a_session_ends_after_its_hours(app: WebApp) -> None:
    add_editor(app)
    cookies = session_cookies(app)
    app.clock.advance(hours=app.settings.desk_session_hours, seconds=-1)
    assert _signed_in(app, cookies)
    app.clock.advance(seconds=1)
    assert not _signed_in(app, cookies)


def test_signed_in_visitors_of_the_sign_in_page_go_on(app: WebApp) -> None:
    add_editor(app)
    cookies = session_cookies(app)
    answer = _get(app, "/desk/anmelden?next=/desk/protokoll", cookies)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/desk/protokoll"
    for foreign in ("https://evil.example/", "//evil.example/desk", "/archive"):
        answer = _get(app, f"/desk/anmelden?next={foreign}", cookies)
        assert answer.headers["location"] == "/desk/"


# -- the trusted header ----------------------------------------------------------------------


@pytest.fixture
def sso(
    database: Database, smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WebApp]:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # the proxy: this test's client
    yield from serve_webapp(database, smtp_server, tmp_path, desk_trusted_header=HEADER)


def test_trusted_header_from_the_proxy_signs_in(sso: WebApp) -> None:
    add_editor(sso)
    answer = requests.get(
        f"{sso.url}/desk/protokoll",
        headers={HEADER: EDITOR.upper(), "X-Forwarded-For": "203.0.113.7"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 200
    assert "Angemeldet als Erika Muster" in answer.text
    cookie = _cookie(answer)[session.COOKIE]
    assert _signed_in(sso, {session.COOKIE: cookie.value})
    assert _audit(sso) == [(EDITOR, "sign_in", "trusted header")]
    # The sign-in page goes straight on, too.
    page = _get(sso, "/desk/anmelden")
    assert page.status_code == 200  # without the header: the form
    on = requests.get(
        f"{sso.url}/desk/anmelden", headers={HEADER: EDITOR}, allow_redirects=False, timeout=10
    )
    assert on.status_code == 303 and on.headers["location"] == "/desk/"
    assert session.COOKIE in _cookie(on)


def test_trusted_header_for_an_unknown_address_signs_nobody_in(sso: WebApp) -> None:
    add_editor(sso)
    for value in (STRANGER, "", "kein-at-zeichen"):
        answer = requests.get(
            f"{sso.url}/desk/protokoll", headers={HEADER: value}, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 303
        assert "set-cookie" not in answer.headers
    assert _audit(sso) == []


def test_trusted_header_from_any_other_peer_is_ignored(
    database: Database, smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.10")  # the proxy is elsewhere
    for app in serve_webapp(database, smtp_server, tmp_path, desk_trusted_header=HEADER):
        add_editor(app)
        # Claiming to come through the proxy does not help: the TCP peer counts.
        answer = requests.get(
            f"{app.url}/desk/protokoll",
            headers={HEADER: EDITOR, "X-Forwarded-For": "192.0.2.10"},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 303
        assert "set-cookie" not in answer.headers


def test_the_header_means_nothing_unless_configured(app: WebApp) -> None:
    add_editor(app)
    answer = requests.get(
        f"{app.url}/desk/protokoll", headers={HEADER: EDITOR}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 303


# -- the command line -------------------------------------------------------------------------


def test_editors_add_list_remove(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", database.url)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["editors", *args])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("list")[1] == "no editors yet: dispatcher editors add EMAIL [--name NAME]\n"
    assert run("add", "Redaktion@Example.org", "--name", "Erika Muster") == (
        0,
        "added editor redaktion@example.org (Erika Muster)\n",
        "",
    )
    assert run("add", "redaktion@example.org")[1] == (
        "redaktion@example.org (Erika Muster) is already an editor\n"
    )
    assert run("add", "zweite@example.org")[0] == 0
    code, out, _ = run("list")
    assert code == 0
    lines = [line.split("  ") for line in out.splitlines()]
    assert [line[0] for line in lines] == ["redaktion@example.org", "zweite@example.org"]
    assert lines[0][1] == "Erika Muster" and lines[1][1].startswith("since ")
    assert run("remove", "zweite@example.org")[0] == 0
    code, _, err = run("remove", "zweite@example.org")
    assert code == 1 and "is no editor" in err
    listed = json.loads(run("list", "--json", "--removed")[1])
    assert [(e["email"], e["removed_at"] is not None) for e in listed] == [
        ("redaktion@example.org", False),
        ("zweite@example.org", True),
    ]
    assert [e["email"] for e in json.loads(run("list", "--json")[1])] == ["redaktion@example.org"]
    code, _, err = run("add", "kein-at-zeichen")
    assert code == 1 and "kein-at-zeichen" in err
    with database.engine.connect() as connection:
        actions = [(row.action, row.detail) for row in reversed(ledger.audit_log(connection))]
    assert actions == [
        ("editor_add", "redaktion@example.org (cli)"),
        ("editor_add", "zweite@example.org (cli)"),
        ("editor_remove", "zweite@example.org (cli)"),
    ]


def test_audit_rows_carry_the_states_clock(app: WebApp, smtp_server: SmtpServer) -> None:
    add_editor(app)
    app.clock.advance(hours=3)
    _ask(app, EDITOR)
    assert app.state.background.join()
    with app.database.engine.connect() as connection:
        [row] = ledger.audit_log(connection)
    assert row.at == START + dt.timedelta(hours=3)


# -- the client address behind a proxy (`dispatcher.web.proxy`) --------------------------------


@pytest.mark.parametrize("proxy", ["127.0.0.1", "192.0.2.10"])
def test_x_forwarded_for_counts_only_from_the_proxy(
    proxy: str,
    database: Database,
    smtp_server: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn no longer rewrites the client address; the app does, for trusted peers only:
    through the proxy each reader has their own rate limit, from elsewhere the header is
    the client's own claim and changes nothing."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", proxy)
    for app in serve_webapp(database, smtp_server, tmp_path, subscribe_per_minute=1):

        def ask(client: str, url: str = app.url) -> int:
            return requests.post(
                f"{url}/desk/anmelden",
                data={"email": f"{client}@example.org"},
                headers={"X-Forwarded-For": client},
                allow_redirects=False,
                timeout=10,
            ).status_code

        trusted = proxy == "127.0.0.1"
        assert ask("198.51.100.1") == 200
        assert ask("198.51.100.2") == (200 if trusted else 429)
        assert ask("198.51.100.2") == 429


def test_campaign_problems_come_first_for_editors_only(app: WebApp) -> None:
    problem = "config/campaign.yaml:41:5: items[3].url: not a URL"
    app.state.campaign_problems = lambda: [problem]
    add_editor(app)
    page = _get(app, "/desk/protokoll", session_cookies(app))
    assert page.text.index(problem) < page.text.index("<h1")
    assert "letzte fehlerfreie Fassung" in page.text
    anonymous = _get(app, "/desk/anmelden")
    assert anonymous.status_code == 200
    assert problem not in anonymous.text and "items[3]" not in anonymous.text


def test_expired_sessions_and_links_are_cleared_away(app: WebApp) -> None:
    add_editor(app)
    session_cookies(app)
    with app.database.engine.begin() as connection:
        editor = ledger.active(connection, EDITOR)
        assert editor is not None
        ledger.create_sign_in_link(connection, editor.id, next_path="/desk/", now=app.clock())
    app.clock.advance(days=31)
    session_cookies(app)  # a new sign-in clears what ended a month ago
    with app.database.engine.connect() as connection:
        sessions = connection.execute(ledger.editor_sessions.select()).all()
        links = connection.execute(ledger.editor_sign_in_links.select()).all()
    assert [row.created_at for row in sessions] == [app.clock()]
    assert links == []
