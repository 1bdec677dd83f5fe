"""Who is signed in at the desk: the session cookie, the CSRF token, the trusted header.

The cookie (`dispatcher_desk`, path `/desk`, HttpOnly, SameSite=Lax, Secure when
`DISPATCHER_PUBLIC_URL` is https, `Max-Age` = `DISPATCHER_DESK_SESSION_HOURS`) holds a random
session token and an HMAC of it with `DISPATCHER_SECRET_KEY`: a forged or foreign cookie is
refused before the ledger is asked. The ledger keeps only the token's hash and says whether
the session is still in force (not expired, not signed out, editor not removed) — so a
removed editor's cookie stops working at the next request (docs/desk.md).

The CSRF token of every desk form is another HMAC of the session token: one per session,
nothing stored, and useless without the cookie.

Single sign-on: with `DISPATCHER_DESK_TRUSTED_HEADER` set, a request whose TCP peer is in
`FORWARDED_ALLOW_IPS` (the reverse proxy; see `dispatcher.web.proxy`) and whose header names
a registered editor gets a session without a link. From any other peer the header is
ignored: a client could send it itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response

from dispatcher.ledger import editors as ledger
from dispatcher.mail.addresses import InvalidAddress, normalise
from dispatcher.web.proxy import forwarded_allow_ips, is_trusted, peer_host
from dispatcher.web.state import WebState

COOKIE = "dispatcher_desk"
COOKIE_PATH = "/desk"
SIGNATURE_BYTES = 16


@dataclass(frozen=True)
class Editor:
    """The signed-in editor, as desk pages see them."""

    id: int
    email: str
    name: str | None

    @property
    def label(self) -> str:
        """How the desk names the editor: the name, else the address."""
        return self.name or self.email

    @classmethod
    def of(cls, row: ledger.EditorRow) -> Editor:
        return cls(row.id, row.email, row.name)


def _secret(state: WebState) -> bytes:
    return state.settings.secret_key.get_secret_value().encode("utf-8")


def _mac(state: WebState, purpose: str, token: str) -> str:
    digest = hmac.new(_secret(state), f"{purpose}:{token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).rstrip(b"=").decode("ascii")


def cookie_value(state: WebState, token: str) -> str:
    """`<token>.<signature>`: what the browser keeps."""
    return f"{token}.{_mac(state, 'desk-session', token)}"


def session_token(state: WebState, connection: HTTPConnection) -> str | None:
    """The session token of a genuinely signed cookie (in force or not), else None."""
    value = connection.cookies.get(COOKIE)
    if not value or len(value) > 200:
        return None
    token, _, signature = value.rpartition(".")
    if not token or not hmac.compare_digest(signature, _mac(state, "desk-session", token)):
        return None
    return token


def csrf_token(state: WebState, token: str) -> str:
    """The CSRF token of the session `token` (the hidden `csrf_token` field of every form)."""
    return _mac(state, "desk-csrf", token)


def lifetime(state: WebState) -> dt.timedelta:
    return dt.timedelta(hours=state.settings.desk_session_hours)


def secure_cookies(state: WebState) -> bool:
    return urlsplit(state.settings.public_url).scheme == "https"


def set_session_cookie(response: Response, state: WebState, token: str) -> None:
    response.set_cookie(
        COOKIE,
        cookie_value(state, token),
        max_age=int(lifetime(state).total_seconds()),
        path=COOKIE_PATH,
        secure=secure_cookies(state),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, state: WebState) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=secure_cookies(state), httponly=True, samesite="lax"
    )


def start_session(state: WebState, editor_id: int, *, method: str) -> str:
    """A new session in the ledger (runs in the thread pool); its token."""
    with state.engine.begin() as connection:
        return ledger.create_session(
            connection, editor_id, method=method, now=state.clock(), lifetime=lifetime(state)
        )


def editor_of(state: WebState, connection: HTTPConnection) -> Editor | None:
    """The editor whose session cookie came with the request, if the session is in force.

    Reads the ledger: call it in the thread pool (`signed_in` does)."""
    token = session_token(state, connection)
    if token is None:
        return None
    with state.engine.connect() as db:
        row = ledger.session_editor(db, token, now=state.clock())
    return None if row is None else Editor.of(row)


def header_editor(state: WebState, connection: HTTPConnection) -> Editor | None:
    """The editor named by the trusted header, when set, sent by a trusted proxy and
    naming a registered editor; else None. Reads the ledger (thread pool)."""
    header = state.settings.desk_trusted_header
    if not header:
        return None
    value = connection.headers.get(header)
    if not value or not is_trusted(peer_host(connection), forwarded_allow_ips()):
        return None
    try:
        email = normalise(value.strip())
    except InvalidAddress:
        return None
    with state.engine.connect() as db:
        row = ledger.active(db, email)
    return None if row is None else Editor.of(row)
