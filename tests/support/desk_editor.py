"""A signed-in editor for tests of desk pages that are not about signing in: the editor and
a session go straight into the ledger, and the request carries the signed session cookie."""

from __future__ import annotations

from dispatcher.ledger import editors
from dispatcher.web.desk import session
from dispatcher.web.state import WebState

EDITOR = "rita.redaktion@example.org"


def session_headers(
    state: WebState, email: str = EDITOR, name: str | None = "Rita Redaktion"
) -> dict[str, str]:
    """The Cookie header of a fresh session of `email` (added as an editor if needed).

    Sent as a header, since the cookie is `Secure` under an https `PUBLIC_URL` and tests
    talk plain HTTP to the loopback server."""
    with state.engine.begin() as connection:
        row, _ = editors.add(connection, email, name, now=state.clock())
    token = session.start_session(state, row.id, method="link")
    return {"Cookie": f"{session.COOKIE}={session.cookie_value(state, token)}"}
