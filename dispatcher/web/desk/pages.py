"""What every desk page shares: rendering, the sign-in guard, the CSRF check, the audit log.

* `render(state, request, "calendar.html.j2", **context)` renders `templates/desk/…` with what
  `desk/_base.html.j2` needs: `editor`, `csrf_token`, `problems`, `last_good`, `campaign`,
  `campaign_name`, `public_url`, `now`, `imprint`, `lang`, `switch`, `when`. Desk pages are
  private: `no-store`, `noindex`.
* `language(state, request)`: the editor's language (see `language`); `text(request, "…")`
  a desk text in it.
* `@signed_in` on an endpoint: without a session in force the browser is sent (303) to
  `/desk/anmelden?next=<path>`; with one the endpoint finds the editor in
  `request.state.editor`. A trusted proxy header (single sign-on) opens a session here.
* `require_csrf(request, form)` on every POST: 403 unless the form's `csrf_token` is the
  session's.
* `record(state, editor, action, detail)`: one audit row — who, when, what. It writes the
  ledger: from an async endpoint call it with `run_in_threadpool`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from babel import Locale
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dispatcher import i18n
from dispatcher.delivery import controls
from dispatcher.ledger import editors as ledger
from dispatcher.ledger.engine import reader
from dispatcher.web.desk import session
from dispatcher.web.desk.session import Editor
from dispatcher.web.state import WebState

STATE = "dispatcher.desk"  #: scope key of the `WebState` under /desk (`WithState`)
SIGN_IN = "/desk/anmelden"
#: Desk pages show unpublished plans and names: never cached, never indexed.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
#: A page's language follows these request headers (`language`).
LANGUAGE_HEADERS = {"Vary": "Accept-Language, Cookie"}
#: `?lang=xx` on any desk page: the editor's choice from the language switch, remembered in
#: this cookie (a year, the desk's path only) for the pages that follow.
LANGUAGE_QUERY = "lang"
LANGUAGE_COOKIE = "dispatcher_desk_lang"
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600


def N_(message: str) -> str:  # noqa: N802 - gettext's usual name for "translated later"
    """Marks `message` for the `desk` catalogue; it is translated where it is shown."""
    return message


CSRF_REFUSED = N_(
    "Das Formular ist abgelaufen oder kommt nicht von dieser Seite (CSRF-Prüfung). "
    "Bitte laden Sie die Seite neu und senden Sie es noch einmal."
)
NOT_SIGNED_IN = N_("Sie sind nicht (mehr) angemeldet.")
#: How the audit log page names each action (`record(..., action, ...)`); others as given.
ACTION_LABELS = {
    "sign_in": N_("angemeldet"),
    "sign_in_link": N_("Anmeldelink angefordert"),
    "sign_out": N_("abgemeldet"),
    "editor_add": N_("Redaktionskonto angelegt"),
    "editor_remove": N_("Redaktionskonto entfernt"),
}

Endpoint = Callable[[Request], Awaitable[Response]]


class WithState:
    """Puts the `WebState` into the scope of every request under /desk (for `signed_in`)."""

    def __init__(self, app: ASGIApp, *, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[STATE] = self.state
        await self.app(scope, receive, send)


def state_of(request: Request) -> WebState:
    state = request.scope.get(STATE)
    assert isinstance(state, WebState), "desk routes are mounted by dispatcher.web.desk.routes"
    return state


@dataclass(frozen=True)
class Switch:
    """Another language of the desk, for the switch in every page's header."""

    lang: str
    name: str  #: the language's name in itself ("English"), so its speakers find it
    href: str  #: this page (a GET) in that language


def language(state: WebState, request: Request) -> str:
    """The editor's language: `?lang=` (the switch, just now), else the cookie of an earlier
    choice, else `Accept-Language` — each only among the campaign's `locales`, so the desk
    speaks the languages of its campaign; the default language when nothing fits."""
    cached = getattr(request.state, "desk_lang", None)
    if isinstance(cached, str):
        return cached
    offered = state.campaign().locales
    asked = request.query_params.get(LANGUAGE_QUERY)
    remembered = request.cookies.get(LANGUAGE_COOKIE)
    if asked in offered:
        lang = str(asked)
        request.state.desk_lang_chosen = True
    elif remembered in offered:
        lang = str(remembered)
    else:
        lang = i18n.negotiate(request.headers.get("accept-language"), offered)
    request.state.desk_lang = lang
    return lang


def language_name(code: str, lang: str) -> str:
    """The name of the language `code` as readers of `lang` write it ("Englisch", "German")."""
    return str(Locale.parse(code).get_language_name(lang) or code)


def text(request: Request, message: str, **values: Any) -> str:
    """A desk text (German, marked for the catalogue) in the language of `request`'s editor."""
    return i18n.gettext(language(state_of(request), request), message, **values)


def remember_language(response: Response, state: WebState, request: Request) -> None:
    """After a choice with the switch (`?lang=` of this request): keep it in the cookie."""
    if getattr(request.state, "desk_lang_chosen", False):
        response.set_cookie(
            LANGUAGE_COOKIE,
            language(state, request),
            max_age=LANGUAGE_COOKIE_MAX_AGE,
            path=session.COOKIE_PATH,
            secure=session.secure_cookies(state),
            httponly=True,
            samesite="lax",
        )


def switch(state: WebState, request: Request, lang: str) -> list[Switch]:
    """The campaign's other languages, each a link to this page in it; none for a campaign
    of one language. The answer to a form (a POST) links to the calendar instead: a GET of
    the form's address would be no page."""
    offered = state.campaign().locales
    if len(offered) < 2:
        return []
    path = request.url.path if request.method == "GET" else "/desk/"
    kept = (
        [(k, v) for k, v in request.query_params.multi_items() if k != LANGUAGE_QUERY]
        if request.method == "GET"
        else []
    )
    return [
        Switch(other, i18n.LANGUAGE_NAMES.get(other, other),
               f"{path}?{urlencode([*kept, (LANGUAGE_QUERY, other)])}")
        for other in offered
        if other != lang
    ]  # fmt: skip


def problems(state: WebState) -> tuple[list[str], bool]:
    """The campaign file's current problems (`file:line:col: …`) and whether the desk shows
    the last good version because of them. Wired to the service's reload (docs/desk.md)."""
    found = [str(problem) for problem in state.campaign_problems()]
    return found, bool(found)


def paused(state: WebState) -> list[controls.Pause]:
    """Sending held by `dispatcher pause` (all, or a channel): every desk page says so."""
    with reader(state.engine).connect() as connection:
        return controls.pauses(connection)


def render(
    state: WebState,
    request: Request,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """`templates/desk/<template>` (a leading `desk/` may be given) as an HTML response."""
    name = template if template.startswith("desk/") else f"desk/{template}"
    editor = getattr(request.state, "editor", None)
    token = getattr(request.state, "session_token", None)
    # The file's problems quote unpublished items and paths: only for editors.
    found, last_good = problems(state) if editor is not None else ([], False)
    held = paused(state) if editor is not None else []
    campaign = state.campaign()
    lang = language(state, request)

    def when(moment: dt.datetime, pattern: str) -> str:
        """An instant in the campaign's zone, as `pattern` (CLDR, itself a desk text) has it."""
        return i18n.format_instant(moment.astimezone(campaign.zone), pattern, lang=lang)

    values: dict[str, Any] = {
        "editor": editor,
        "csrf_token": session.csrf_token(state, token) if token else "",
        "problems": found,
        "last_good": last_good,
        "campaign": campaign,
        "lang": lang,
        "switch": switch(state, request, lang),
        "when": when,
        "campaign_name": campaign.name_in(lang),
        "public_url": state.settings.public_url.rstrip("/"),
        "now": state.clock(),
        "imprint": state.settings.imprint,
        "path": request.url.path,
        "paused": held,
    }
    values.update(context)
    html = state.templates.get_template(name).render(values)
    response = HTMLResponse(
        html,
        status,
        headers={**PRIVATE, **LANGUAGE_HEADERS, "Content-Language": lang, **(headers or {})},
    )
    remember_language(response, state, request)
    return response


def safe_next(path: str | None) -> str:
    """Where to go after sign-in: a path under /desk on this site, else the calendar."""
    if not path or not (path == "/desk" or path.startswith("/desk/")) or "\\" in path:
        return "/desk/"
    if any(ord(c) < 0x21 for c in path):
        return "/desk/"
    return path


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{SIGN_IN}?next={quote(safe_next(target), safe='/')}"


def signed_in(endpoint: Endpoint) -> Endpoint:
    """The endpoint runs only for a signed-in editor (`request.state.editor`); others are
    sent to the sign-in page, or signed in by the trusted proxy header."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        state = state_of(request)
        editor = await run_in_threadpool(session.editor_of, state, request)
        if editor is not None:
            request.state.editor = editor
            request.state.session_token = session.session_token(state, request)
            return await endpoint(request)
        editor = await run_in_threadpool(session.header_editor, state, request)
        if editor is None:
            if request.method != "GET":
                # A POST from an ended session: a sign-in redirect would turn it into a GET
                # of the form's URL; say what happened instead.
                raise HTTPException(403, text(request, NOT_SIGNED_IN))
            return RedirectResponse(sign_in_url(request), 303, headers=PRIVATE)
        token = await run_in_threadpool(session.start_session, state, editor.id, method="header")
        await run_in_threadpool(record, state, editor, "sign_in", "trusted header")
        request.state.editor = editor
        request.state.session_token = token
        response = await endpoint(request)
        session.set_session_cookie(response, state, token)
        return response

    return guarded


def require_csrf(request: Request, form: FormData) -> None:
    """403 unless the form carries the CSRF token of the request's session."""
    state = state_of(request)
    token = getattr(request.state, "session_token", None)
    given = form.get("csrf_token")
    if (
        not token
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), session.csrf_token(state, token).encode())
    ):
        raise HTTPException(403, text(request, CSRF_REFUSED))


def record(state: WebState, editor: Editor | None, action: str, detail: str = "") -> None:
    """The audit row for a desk action: who, when (the state's clock), what."""
    with state.engine.begin() as connection:
        ledger.record(
            connection, None if editor is None else editor.id, action, detail, now=state.clock()
        )
