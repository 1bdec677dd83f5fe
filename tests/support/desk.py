"""The editors' desk in tests: editors in the ledger, a signed-in browser's cookie, the link mail.

`add_editor(app, email)` registers an editor; `session_cookies(app, email)` gives the cookie
of a fresh session for them (as if they had signed in, without a mail) — what tests of desk
pages send with every request; `csrf(app, cookies)` is the token their forms carry.
`sign_in_link(smtp, address)` reads the link out of the sign-in mail the test SMTP server
caught. The desk's session cookie is `Secure` when PUBLIC_URL is https (as in
`tests.support.webapp`), so `requests` would not send it back over plain http: pass
`cookies=` explicitly.
"""

from __future__ import annotations

import re

from dispatcher.ledger import editors as ledger
from dispatcher.web.desk import session
from tests.support.smtpd import SmtpServer
from tests.support.webapp import WebApp

EDITOR = "redaktion@example.org"
LINK = re.compile(r"https?://[^\s\"<>]+/desk/anmelden/link/[A-Za-z0-9_-]+")


def add_editor(app: WebApp, email: str = EDITOR, name: str | None = "Erika Muster") -> int:
    """Register `email` as an editor; their id."""
    with app.database.engine.begin() as connection:
        row, _ = ledger.add(connection, email, name, now=app.clock())
    return row.id


def session_cookies(app: WebApp, email: str = EDITOR) -> dict[str, str]:
    """The desk cookie of a new session of the (already added) editor `email`."""
    with app.database.engine.begin() as connection:
        editor = ledger.active(connection, email)
        assert editor is not None, f"{email} is no editor; add_editor first"
        token = ledger.create_session(
            connection,
            editor.id,
            method="link",
            now=app.clock(),
            lifetime=session.lifetime(app.state),
        )
    return {session.COOKIE: session.cookie_value(app.state, token)}


def csrf(app: WebApp, cookies: dict[str, str]) -> str:
    """The CSRF token the desk's forms carry for the session in `cookies`."""
    value = cookies[session.COOKIE]
    return session.csrf_token(app.state, value.rpartition(".")[0])


def sign_in_links(smtp: SmtpServer, address: str = EDITOR) -> list[str]:
    """The sign-in links mailed to `address`, oldest first (from the plain-text part)."""
    links = []
    for received in smtp.received:
        if received.rcpt_tos != [address]:
            continue
        part = received.message.get_body(("plain",))
        assert part is not None
        links += LINK.findall(part.get_content())
    return links
