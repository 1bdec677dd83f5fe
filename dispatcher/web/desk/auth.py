"""Sign-in and sign-out at the desk (docs/desk.md).

Routes (under /desk):

- `GET /anmelden[?next=…]`: the sign-in form (an address). A browser with a session in force
  goes on to `next`; one sent by the trusted proxy (`DISPATCHER_DESK_TRUSTED_HEADER`) gets its
  session here without a link.
- `POST /anmelden`: always the same "a link is on its way, if …" page, in the same time,
  whether the address is an editor's or not: the ledger work and the mail happen after the
  answer (`state.background`, as for the sign-up form). Limited per client address
  (`DISPATCHER_SUBSCRIBE_PER_MINUTE` a minute) and per address
  (`DISPATCHER_DESK_SIGN_IN_PER_HOUR` an hour, known and unknown addresses alike); beyond
  either: 429 with `Retry-After`.
- `GET /anmelden/link/{token}`: the emailed link. It only shows a "Jetzt anmelden" button:
  mail scanners fetch links, and must not use the link up (as with `GET /u/{token}`).
- `POST /anmelden/link/{token}`: uses the link — once, within 15 minutes — opens a session
  and goes on to the page the editor first asked for. The form carries no CSRF token (there is
  no session yet): its secret is the link itself, and the Origin check (`web.hardening`)
  refuses it from other sites.
- `GET /protokoll`: the audit log, newest first.
- `POST /abmelden`: ends the session in the ledger and deletes the cookie.
"""

from __future__ import annotations

import logging
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dispatcher import i18n
from dispatcher.channels.base import ChannelError, Envelope
from dispatcher.ledger import editors as ledger
from dispatcher.mail import compose as emails
from dispatcher.mail import mime
from dispatcher.mail.addresses import InvalidAddress, normalise
from dispatcher.web.desk import session
from dispatcher.web.desk.pages import (
    ACTION_LABELS,
    N_,
    PRIVATE,
    SIGN_IN,
    language,
    record,
    render,
    require_csrf,
    safe_next,
    signed_in,
    text,
)
from dispatcher.web.desk.session import Editor
from dispatcher.web.hardening import has_control_characters
from dispatcher.web.ratelimit import SlidingWindowLimiter, client_key
from dispatcher.web.state import WebState

logger = logging.getLogger("dispatcher.web")

TTL_MINUTES = int(ledger.SIGN_IN_LINK_TTL.total_seconds() // 60)
LINK_PATH = "/desk/anmelden/link/"
#: The link page's URL holds the token: never cached, never indexed, and its Referer goes to
#: our own origin only (`no-referrer` would make the browser post the button with
#: `Origin: null`, which the Origin check refuses).
LINK_HEADERS = {**PRIVATE, "Referrer-Policy": "same-origin"}
INVALID_ADDRESS = N_(
    "Bitte geben Sie eine gültige E-Mail-Adresse ein, zum Beispiel name@example.org."
)
TOO_MANY = N_(
    "Es wurden gerade zu viele Anmeldelinks angefordert. Bitte warten Sie etwas und "
    "versuchen Sie es dann noch einmal."
)


def routes(state: WebState) -> list[BaseRoute]:
    def clock() -> float:
        return state.clock().timestamp()

    per_client = SlidingWindowLimiter(state.settings.subscribe_per_minute, 60.0, clock=clock)
    per_address = SlidingWindowLimiter(state.settings.desk_sign_in_per_hour, 3600.0, clock=clock)

    def form(
        request: Request,
        *,
        status: int = 200,
        next_path: str = "/desk/",
        email: str = "",
        error: str | None = None,
        sent: bool = False,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        return render(
            state,
            request,
            "sign_in.html.j2",
            status=status,
            headers={"Referrer-Policy": "same-origin", **(headers or {})},
            next_path=next_path,
            email=email,
            error=error,
            sent=sent,
            signed_out=request.query_params.get("abgemeldet") == "1",
            ttl_minutes=TTL_MINUTES,
        )

    async def sign_in(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if await run_in_threadpool(session.editor_of, state, request) is not None:
            return RedirectResponse(next_path, 303, headers=PRIVATE)
        editor = await run_in_threadpool(session.header_editor, state, request)
        if editor is not None:
            return await _signed_in_now(state, editor, "header", "trusted header", next_path)
        return form(request, next_path=next_path)

    async def ask_for_link(request: Request) -> Response:
        async with request.form(max_files=0, max_fields=10) as data:
            raw = data.get("email")
            raw_next = data.get("next")
        typed = raw.strip() if isinstance(raw, str) else ""
        next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
        email = _valid_address(typed)
        if email is None:
            return form(
                request,
                status=400,
                next_path=next_path,
                email=typed[:320],
                error=text(request, INVALID_ADDRESS),
            )
        host = request.client.host if request.client else None
        wait = per_client.hit(client_key(host))
        if wait is None:
            wait = per_address.hit(email)
        if wait is not None:
            return form(
                request,
                status=429,
                next_path=next_path,
                email=email,
                error=text(request, TOO_MANY),
                headers={"Retry-After": SlidingWindowLimiter.retry_after_header(wait)},
            )
        # After the answer: its time must not tell whether the address is an editor's.
        # The mail speaks the language the form was shown in.
        lang = language(state, request)
        state.background.submit(lambda: _send_quietly(state, email, next_path, lang))
        return form(request, next_path=next_path, email=email, sent=True)

    async def link(request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "GET":
            found = await run_in_threadpool(_peek, state, token)
            if found is None:
                return _link_gone(state, request)
            return render(
                state,
                request,
                "sign_in_link.html.j2",
                headers=LINK_HEADERS,
                link_editor=Editor.of(found.editor),
                action=f"{LINK_PATH}{token}",
                expires_at=found.expires_at,
            )
        used = await run_in_threadpool(_use, state, token)
        if used is None:
            return _link_gone(state, request)
        return await _signed_in_now(
            state, Editor.of(used.editor), "link", "emailed link", used.next_path
        )

    @signed_in
    async def audit(request: Request) -> Response:
        rows = await run_in_threadpool(_audit_rows, state)
        lang = language(state, request)
        labels = {action: i18n.gettext(lang, label) for action, label in ACTION_LABELS.items()}
        return render(state, request, "audit.html.j2", rows=rows, actions=labels)

    @signed_in
    async def sign_out(request: Request) -> Response:
        async with request.form(max_files=0, max_fields=10) as data:
            require_csrf(request, data)
        await run_in_threadpool(_end, state, request.state.session_token)
        await run_in_threadpool(record, state, request.state.editor, "sign_out", "")
        response = RedirectResponse(f"{SIGN_IN}?abgemeldet=1", 303, headers=PRIVATE)
        session.clear_session_cookie(response, state)
        return response

    return [
        Route("/anmelden", sign_in, methods=["GET"], name="desk_sign_in"),
        Route("/anmelden", ask_for_link, methods=["POST"], name="desk_sign_in_link_request"),
        Route("/anmelden/link/{token}", link, methods=["GET", "POST"], name="desk_sign_in_link"),
        Route("/protokoll", audit, methods=["GET"], name="desk_audit"),
        Route("/abmelden", sign_out, methods=["POST"], name="desk_sign_out"),
    ]


def _valid_address(text: str) -> str | None:
    if not text or len(text) > 320 or has_control_characters(text):
        return None
    try:
        return normalise(text)
    except InvalidAddress:
        return None


async def _signed_in_now(
    state: WebState, editor: Editor, method: str, how: str, next_path: str
) -> Response:
    token = await run_in_threadpool(session.start_session, state, editor.id, method=method)
    await run_in_threadpool(record, state, editor, "sign_in", how)
    response = RedirectResponse(safe_next(next_path), 303, headers=PRIVATE)
    session.set_session_cookie(response, state, token)
    return response


def _link_gone(state: WebState, request: Request) -> HTMLResponse:
    return render(
        state,
        request,
        "sign_in_link_gone.html.j2",
        status=410,
        headers=LINK_HEADERS,
        ttl_minutes=TTL_MINUTES,
    )


# -- ledger and mail, run in the thread pool -----------------------------------------------


def _peek(state: WebState, token: str) -> ledger.SignInLink | None:
    if len(token) > 100:
        return None
    with state.engine.connect() as connection:
        return ledger.peek_sign_in_link(connection, token, now=state.clock())


def _use(state: WebState, token: str) -> ledger.SignInLink | None:
    if len(token) > 100:
        return None
    with state.engine.begin() as connection:
        return ledger.use_sign_in_link(connection, token, now=state.clock())


def _end(state: WebState, token: str) -> None:
    with state.engine.begin() as connection:
        ledger.end_session(connection, token, now=state.clock())


def _audit_rows(state: WebState) -> list[ledger.AuditRow]:
    with state.engine.connect() as connection:
        return ledger.audit_log(connection, limit=200)


def _send_quietly(state: WebState, email: str, next_path: str, lang: str) -> None:
    send_sign_in_link(state, email, next_path, lang=lang)


def sign_in_subject(campaign_name: str, lang: str) -> str:
    return i18n.gettext(lang, "Ihr Anmeldelink für die Redaktion: %(campaign)s",
                        campaign=campaign_name)  # fmt: skip


def send_sign_in_link(
    state: WebState, email: str, next_path: str, *, lang: str | None = None
) -> bool:
    """Mail a sign-in link to `email` if it is an active editor's; whether one was sent.
    The mail is in `lang` (the desk's language when the link was asked for; default: the
    campaign's).

    Runs after the answer (`state.background`): nothing of it reaches the client."""
    now = state.clock()
    with state.engine.begin() as connection:
        editor = ledger.active(connection, email)
        if editor is None:
            return False
        token = ledger.create_sign_in_link(connection, editor.id, next_path=next_path, now=now)
        ledger.record(connection, editor.id, "sign_in_link", "requested", now=now)
    settings, campaign = state.settings, state.campaign()
    lang = campaign.reader_language(lang)
    sender = emails.Sender(
        settings.mail_from, settings.public_url, settings.secret_key.get_secret_value()
    )
    context = {
        "lang": lang,
        "campaign_name": campaign.name_in(lang),
        "name": editor.name,
        "email": editor.email,
        "link_url": f"{settings.public_url.rstrip('/')}{LINK_PATH}{token}",
        "sign_in_url": f"{settings.public_url.rstrip('/')}{SIGN_IN}",
        "ttl_minutes": TTL_MINUTES,
        "valid_until": (now + ledger.SIGN_IN_LINK_TTL).astimezone(campaign.zone).strftime("%H:%M"),
        "imprint": settings.imprint,
    }
    text = state.templates.get_template("email/desk_sign_in.txt.j2").render(context)
    html = state.templates.get_template("email/desk_sign_in.html.j2").render(context)
    key = f"desk-sign-in.{editor.id}.{secrets.token_hex(6)}"
    message = mime.build_email(
        subject=sign_in_subject(campaign.name_in(lang), lang),
        text=text,
        html=html,
        mail_from=settings.mail_from,
        to=mime.recipient(editor.name, editor.email),
        message_id=f"<{key}@{sender.domain}>",
        date=now.astimezone(campaign.zone),
        language=lang,
    )
    channel = state.email_channel()
    try:
        channel.send(Envelope(sender.address, editor.email, message.as_bytes()), key=key)
    except ChannelError as error:
        logger.error(
            f"desk sign-in link for editor {editor.id} not sent: {error.message}",
            extra={"event": "desk_sign_in_failed", "error": error.message},
        )
        return False
    finally:
        channel.close()
    logger.info(
        f"desk sign-in link sent to editor {editor.id}", extra={"event": "desk_sign_in_link"}
    )
    return True
