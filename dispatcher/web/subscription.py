"""Unsubscribe (RFC 8058 one-click) and double opt-in sign-up (UWG §7) over HTTP.

Routes (docs/operations.md):

- `GET /u/{token}`: who is unsubscribed from what, and an "Abmelden" button; in a
  campaign of several languages also a form to change the newsletter's language. Never
  changes anything: mail scanners fetch links, and RFC 8058 was written because
  they unsubscribed people.
- `POST /u/{token}`: unsubscribes, at once and idempotently. This is both the
  button's form and the RFC 8058 one-click POST a mailbox provider sends
  (`List-Unsubscribe=One-Click`, urlencoded or multipart, no cookies). The token
  alone identifies subscriber and list, so the body is not read and needs no
  particular form; there is no login, no CSRF token and never a redirect (a
  redirected POST turns into a GET): the answer is 200 with a page.
- `POST /u/{token}/language`: changes the subscriber's language (field `lang`, one of
  the campaign's `locales`) and answers 200 with the unsubscribe page in that language.
  The same protections as the one-click POST: the token in the path is the proof (a
  forger cannot know it, so like that POST it is exempt from the Origin check, which
  would refuse the browser's `Origin: null` of a `no-referrer` page), never a redirect,
  nothing cached; a GET changes nothing.
- `GET /subscribe`, `POST /subscribe`: the sign-up form; a valid request always
  gets the same "please confirm" page, in the same time, whether the address is
  new, pending, active or unsubscribed, so the form cannot tell who is on the
  list: the ledger work and the mail happen after the answer (`state.background`).
  A new or returning address gets one confirmation mail, at most one per hour.
  Anyone can type any address, so a request changes nothing about an existing
  subscriber: the name, language and consent it asks for travel, signed, in the link.
  The form offers the campaign's languages, the page's own preselected; the
  confirmation mail is written in the one chosen.
- `GET /confirm/{token}`: activates the subscriber and applies the request the
  link carries (name, language, consent record).

Every page is in the reader's language (`dispatcher.web.languages`: `?lang=`, the token's
subscriber, the cookie, `Accept-Language`), with a switch to the campaign's other languages.

Tokens are `dispatcher.mail.tokens` HMACs. The unsubscribe token is the one in every
newsletter's `List-Unsubscribe`. A token signed for another campaign with our key
still unsubscribes: the subscriber list is one for all campaigns, and a
withdrawal from an old mail must always work. The confirmation token expires:
`tokens` has no expiry, so the issue time (whole minutes since the epoch) is
put in front of the token and into the signed purpose, `confirm:<minutes>`:

    <minutes>.r<request>.<subscriber id>.<campaign>.<signature>

`<request>` is the sign-up request (name, language, consent source and client address, a
hash of the consent text), base64url JSON, signed as part of the purpose too
(`confirm:<minutes>:r<request>`). Changing the time or the request breaks the
signature, so the age checked against `DISPATCHER_CONFIRM_TTL_HOURS` is the age we
signed and the request applied is the one made. Links from before the request was
carried (`<minutes>.<subscriber id>.<campaign>.<signature>`) still confirm a
pending subscriber.

Client addresses come from `request.client.host`, i.e. the TCP peer. Behind a
reverse proxy run uvicorn with `--proxy-headers --forwarded-allow-ips=<proxy>`
so that becomes the real client; this module never reads X-Forwarded-For
itself, because any client can send that header.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from dispatcher import i18n
from dispatcher.channels.base import ChannelError, Envelope
from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.tables import SubscriberState
from dispatcher.mail import compose as emails
from dispatcher.mail import mime, tokens
from dispatcher.mail.addresses import (
    MAX_NAME_LENGTH,
    InvalidAddress,
    InvalidName,
    clean_name,
    normalise,
)
from dispatcher.web import languages
from dispatcher.web.hardening import has_control_characters
from dispatcher.web.ratelimit import SlidingWindowLimiter, client_key
from dispatcher.web.state import WebState

logger = logging.getLogger("dispatcher.web")

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
CONSENT_SOURCE = "web:/subscribe"
#: Token pages must not be cached, indexed, or leak the token in a Referer.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


# -- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignUp:
    """What a sign-up request asked for; applied only when its link is used."""

    name: str | None
    source: str  #: consent source, `consent_source(...)`
    ip: str | None  #: consent client address, `consent_ip(...)`
    text_hash: str  #: `text_hash(consent text shown)`: the link is stale once the text changed
    lang: str | None = None  #: the language chosen in the form; None: keep the stored one


@dataclass(frozen=True)
class ConfirmToken:
    subject: tokens.TokenSubject
    issued_at: dt.datetime  #: aware UTC, whole minutes
    request: SignUp | None = None  #: None: a link from before requests were carried


def _minutes(at: dt.datetime) -> int:
    return int(at.timestamp() // 60)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _encode(request: SignUp) -> str:
    data = {"n": request.name, "s": request.source, "i": request.ip, "t": request.text_hash}
    if request.lang is not None:  # left out otherwise: a request without one, as before
        data["l"] = request.lang
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return "r" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(encoded: str) -> SignUp | None:
    text = encoded[1:]
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return SignUp(
            name=None if data["n"] is None else str(data["n"]),
            source=str(data["s"]),
            ip=None if data["i"] is None else str(data["i"]),
            text_hash=str(data["t"]),
            lang=None if data.get("l") is None else str(data["l"]),
        )
    except (ValueError, binascii.Error, KeyError, TypeError):
        return None


def confirm_token(
    subscriber_id: int,
    campaign_id: str,
    *,
    issued: dt.datetime,
    key: str,
    request: SignUp | None = None,
) -> str:
    """`<minutes>[.r<request>].<token>`: time and request are signed as part of the purpose."""
    minutes = _minutes(issued)
    carried = "" if request is None else _encode(request)
    purpose = f"{CONFIRM}:{minutes}" + (f":{carried}" if carried else "")
    token = tokens.sign(tokens.TokenSubject(purpose, subscriber_id, campaign_id), key=key)
    return f"{minutes}.{carried}.{token}" if carried else f"{minutes}.{token}"


def read_confirm_token(token: str, *, key: str) -> ConfirmToken | None:
    """The subject, issue time and request of a genuine confirmation token (expired or
    not), else None."""
    minutes_text, _, rest = token.partition(".")
    if not minutes_text.isdigit() or len(minutes_text) > 12:
        return None
    purpose = f"{CONFIRM}:{minutes_text}"
    request = None
    if rest.startswith("r"):
        carried, _, rest = rest.partition(".")
        purpose += f":{carried}"
        request = _decode(carried)
        if request is None:
            return None
    subject = tokens.verify(rest, purpose=purpose, key=key)
    if subject is None:
        return None
    issued = dt.datetime.fromtimestamp(int(minutes_text) * 60, dt.UTC)
    return ConfirmToken(subject, issued, request)


# -- consent -------------------------------------------------------------------------------


def consent_ip(host: str | None, mode: Literal["truncate", "full", "none"]) -> str | None:
    """The client address as the consent record keeps it: IPv4 /24, IPv6 /48, full or none."""
    if host is None or mode == "none":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None if mode == "truncate" else host[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if mode == "full":
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def consent_source(referer: str | None) -> str:
    """`web:/subscribe`, plus the host of the page the form was on when the browser said."""
    host = urlsplit(referer).hostname if referer else None
    return f"{CONSENT_SOURCE}; referer={host}" if host else CONSENT_SOURCE


# -- the routes ----------------------------------------------------------------------------


def routes(state: WebState) -> list[Route]:
    pages = _Pages(state)
    limiter = SlidingWindowLimiter(
        state.settings.subscribe_per_minute, 60.0, clock=lambda: state.clock().timestamp()
    )

    def secret() -> str:
        return state.settings.secret_key.get_secret_value()

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        subject = tokens.verify(token, purpose=UNSUBSCRIBE, key=secret())
        if subject is None:
            return pages.not_found(request)
        if request.method == "POST":
            row = await run_in_threadpool(_unsubscribe, state, subject.subscriber_id)
            if row is None:
                return pages.not_found(request)
            reader = state.campaign().reader_language(row.lang)
            return pages.render(request, "unsubscribed.html.j2", reader=reader, email=row.email)
        row = await run_in_threadpool(_subscriber, state, subject.subscriber_id)
        if row is None:
            return pages.not_found(request)
        return pages.unsubscribe(request, row)

    async def change_language(request: Request) -> Response:
        token = request.path_params["token"]
        subject = tokens.verify(token, purpose=UNSUBSCRIBE, key=secret())
        if subject is None:
            return pages.not_found(request, path=f"/u/{token}")
        async with request.form(max_files=0, max_fields=5) as form:
            wanted = form.get("lang")
        if not isinstance(wanted, str) or wanted not in state.campaign().locales:
            row = await run_in_threadpool(_subscriber, state, subject.subscriber_id)
            if row is None:
                return pages.not_found(request, path=f"/u/{token}")
            return pages.unsubscribe(request, row, status=400, language_error=True)
        row = await run_in_threadpool(_set_language, state, subject.subscriber_id, wanted)
        if row is None:
            return pages.not_found(request, path=f"/u/{token}")
        return pages.unsubscribe(request, row, changed=True)

    async def subscribe(request: Request) -> Response:
        page = languages.choose(request, state.campaign().locales)
        if request.method == "GET":
            return pages.form(request, page)
        host = request.client.host if request.client else None
        wait = limiter.hit(client_key(host))
        if wait is not None:
            return pages.render(
                request,
                "rate_limited.html.j2",
                page=page,
                status=429,
                headers={"Retry-After": limiter.retry_after_header(wait)},
            )
        async with request.form(max_files=0, max_fields=20) as form:
            values = _form_values(form)
        offered = state.campaign().locales
        # A form without the choice (embedded elsewhere, or an old copy): the page's language,
        # which is what the form would have preselected.
        values["lang"] = values["lang"] or page.lang
        errors = _check(values, page.lang, offered)
        if errors:
            return pages.form(request, page, values, errors, status=400)
        consent = ledger.Consent(
            source=consent_source(request.headers.get("referer")),
            ip=consent_ip(host, state.settings.consent_ip),
            # What the form showed beside the box: the page's language (`Pages.form`).
            text=state.settings.consent_text_for(page.lang),
        )
        # One language offered is no choice made: the reader gets the default, whatever it
        # will be (NULL in the ledger).
        lang = values["lang"] if len(offered) > 1 else None
        # After the answer: its time must not depend on the address (see the module doc).
        state.background.submit(lambda: sign_up(state, values, consent, lang=lang))
        return pages.render(
            request,
            "subscribe_sent.html.j2",
            page=page,
            email=normalise(values["email"]),
            ttl_hours=state.settings.confirm_ttl_hours,
        )

    async def confirm(request: Request) -> Response:
        parsed = read_confirm_token(request.path_params["token"], key=secret())
        if parsed is None:
            return pages.not_found(request)
        now = state.clock()
        if now - parsed.issued_at > dt.timedelta(hours=state.settings.confirm_ttl_hours):
            reader = await run_in_threadpool(_reader_language, state, parsed)
            return pages.expired(request, reader)
        outcome = await run_in_threadpool(_confirm, state, parsed, now)
        if outcome.result == "unknown":
            return pages.not_found(request)
        if outcome.result == "stale":
            return pages.expired(request, outcome.lang)
        return pages.render(request, "confirmed.html.j2", reader=outcome.lang, email=outcome.email)

    return [
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"], name="unsubscribe"),
        Route("/u/{token}/language", change_language, methods=["POST"], name="language"),
        Route("/subscribe", subscribe, methods=["GET", "POST"], name="subscribe"),
        Route("/confirm/{token}", confirm, methods=["GET"], name="confirm"),
    ]


class _Pages:
    """Renders `templates/web/…` with what `_base.html.j2` needs, in the page's language."""

    def __init__(self, state: WebState) -> None:
        self.state = state

    def render(
        self,
        request: Request,
        template: str,
        *,
        page: languages.PageLanguage | None = None,
        reader: str | None = None,
        path: str | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """`page`: the language already chosen, else chosen here (`reader`: the language of
        the token's subscriber, `Campaign.reader_language` of theirs); `path`: the page's own GET address, for the language switch, when
        the request's is a POST-only one."""
        settings, campaign = self.state.settings, self.state.campaign()
        if page is None:
            page = languages.choose(request, campaign.locales, reader=reader)
        lang = page.lang
        public_url = settings.public_url.rstrip("/")
        own = public_url + (path or request.url.path)
        html = self.state.templates.get_template(f"web/{template}").render(
            campaign_name=campaign.name_in(lang),
            lang=lang,
            public_url=public_url,
            imprint=settings.imprint,
            **languages.page_links(campaign, lang, lambda other: f"{own}?lang={other}"),
            **context,
        )
        response = HTMLResponse(
            html,
            status,
            headers={
                **PRIVATE,
                "Content-Language": lang,
                "Vary": languages.VARY,
                **(headers or {}),
            },
        )
        if request.method == "GET":  # a POST (the one-click) never sets a cookie
            languages.remember(response, page, secure=public_url.startswith("https:"))
        return response

    def not_found(self, request: Request, *, path: str | None = None) -> HTMLResponse:
        return self.render(request, "not_found.html.j2", path=path, status=404)

    def expired(self, request: Request, reader: str | None) -> HTMLResponse:
        return self.render(
            request,
            "confirm_expired.html.j2",
            reader=reader,
            status=410,
            ttl_hours=self.state.settings.confirm_ttl_hours,
        )

    def unsubscribe(
        self,
        request: Request,
        row: ledger.SubscriberRow,
        *,
        status: int = 200,
        changed: bool = False,
        language_error: bool = False,
    ) -> HTMLResponse:
        campaign = self.state.campaign()
        own = f"/u/{request.path_params['token']}"
        newsletter_lang = campaign.reader_language(row.lang)
        return self.render(
            request,
            "unsubscribe.html.j2",
            reader=newsletter_lang,
            path=own,
            status=status,
            email=row.email,
            already=row.state is SubscriberState.UNSUBSCRIBED,
            language_action=self.state.settings.public_url.rstrip("/") + own + "/language",
            newsletter_lang=newsletter_lang,
            newsletter_language=i18n.LANGUAGE_NAMES.get(newsletter_lang, newsletter_lang),
            changed=changed,
            language_error=language_error,
        )

    def form(
        self,
        request: Request,
        page: languages.PageLanguage,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        *,
        status: int = 200,
    ) -> HTMLResponse:
        return self.render(
            request,
            "subscribe.html.j2",
            page=page,
            status=status,
            # The form's own URL holds no token; with `no-referrer` a browser would post it
            # with `Origin: null`, which the Origin check must refuse (a sandboxed frame).
            headers={"Referrer-Policy": "same-origin"},
            values=values or {"email": "", "name": "", "consent": "", "lang": page.lang},
            errors=errors or {},
            consent_text=self.state.settings.consent_text_for(page.lang),
        )


def _form_values(form: FormData) -> dict[str, str]:
    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    return {
        "email": text("email"),
        "name": text("name"),
        "consent": text("consent"),
        "lang": text("lang"),
    }


def _check(values: dict[str, str], lang: str, offered: Sequence[str]) -> dict[str, str]:
    """Field errors in the page's language `lang`, keyed by field name; empty when the form
    is fine. `offered`: the campaign's languages, one of which the form must choose."""
    # Control characters first: a NUL would otherwise reach the ledger (PostgreSQL refuses
    # it with an error, i.e. a 500) or the validators, whose messages would not fit.
    errors = {
        field: i18n.gettext(
            lang,
            "Die Eingabe enthält unzulässige Steuerzeichen (z. B. ein Nullbyte); "
            "bitte tippen Sie sie neu ein.",
        )
        for field in ("email", "name")
        if has_control_characters(values[field])
    }
    if "email" in errors:
        pass
    elif not values["email"]:
        errors["email"] = i18n.gettext(lang, "Bitte geben Sie Ihre E-Mail-Adresse ein.")
    else:
        try:
            normalise(values["email"])
        except InvalidAddress:
            errors["email"] = i18n.gettext(
                lang,
                "Bitte geben Sie eine gültige E-Mail-Adresse ein, zum Beispiel name@example.org.",
            )
    if "name" not in errors:
        try:
            clean_name(values["name"])
        except InvalidName:
            errors["name"] = i18n.gettext(
                lang,
                "Der Name darf höchstens %(limit)s Zeichen lang sein.",
                limit=MAX_NAME_LENGTH,
            )
    if not values["consent"]:
        errors["consent"] = i18n.gettext(
            lang,
            "Bitte bestätigen Sie Ihre Einwilligung; ohne sie dürfen wir Ihnen keinen "
            "Newsletter schicken.",
        )
    if values["lang"] not in offered:
        errors["lang"] = i18n.gettext(
            lang, "Bitte wählen Sie eine der angebotenen Sprachen: %(languages)s.",
            languages=", ".join(i18n.LANGUAGE_NAMES.get(o, o) for o in offered),
        )  # fmt: skip
    return errors


# -- ledger and mail, run in the thread pool -----------------------------------------------


def _subscriber(state: WebState, subscriber_id: int) -> ledger.SubscriberRow | None:
    with state.engine.connect() as conn:
        row = ledger.get_by_id(conn, subscriber_id)
    return None if row is None or row.erased else row


def _unsubscribe(state: WebState, subscriber_id: int) -> ledger.SubscriberRow | None:
    with state.engine.begin() as conn:
        row = ledger.get_by_id(conn, subscriber_id)
        if row is None or row.erased:
            return None
        if ledger.unsubscribe(conn, subscriber_id, now=state.clock()):
            logger.info(
                f"subscriber {subscriber_id} unsubscribed over the web",
                extra={"event": "unsubscribed"},
            )
    return row


def _set_language(state: WebState, subscriber_id: int, lang: str) -> ledger.SubscriberRow | None:
    with state.engine.begin() as conn:
        before = ledger.get_by_id(conn, subscriber_id)
        row = ledger.set_language(conn, subscriber_id, lang, now=state.clock())
    if row is not None and before is not None and before.lang != row.lang:
        logger.info(
            f"subscriber {subscriber_id} changed their language to {lang} over the web",
            extra={"event": "language_changed", "lang": lang},
        )
    return row


def _reader_language(state: WebState, token: ConfirmToken) -> str | None:
    """The language a confirmation link's pages are in: the one chosen with the request,
    else the subscriber's; None when the link names no subscriber (negotiated then)."""
    row = _subscriber(state, token.subject.subscriber_id)
    if row is None:
        return None
    chosen = token.request.lang if token.request is not None else None
    return state.campaign().reader_language(chosen or row.lang)


@dataclass(frozen=True)
class Confirmation:
    result: Literal["confirmed", "unknown", "stale"]  #: 200, 404, 410
    email: str = ""
    lang: str | None = None  #: the answer page's (see `_reader_language`); None: negotiated


def _confirm(state: WebState, token: ConfirmToken, now: dt.datetime) -> Confirmation:
    subscriber_id = token.subject.subscriber_id
    chosen = token.request.lang if token.request is not None else None
    reader = state.campaign().reader_language
    with state.engine.begin() as conn:
        current = ledger.get_by_id(conn, subscriber_id)
        if current is None or current.erased:
            return Confirmation("unknown")
        requested = None
        if token.request is not None:
            settings = state.settings
            shown = [settings.consent_text, *settings.consent_texts.values()]
            text = next((t for t in shown if text_hash(t) == token.request.text_hash), "")
            if not text:
                # the consent text changed since: the person agreed to another
                return Confirmation("stale", lang=reader(chosen or current.lang))
            consent = ledger.Consent(token.request.source, token.request.ip, text)
            requested = ledger.Requested(
                token.request.name, consent, at=token.issued_at, lang=chosen
            )
        row = ledger.confirm(
            conn, subscriber_id, now=now, issued_at=token.issued_at, requested=requested
        )
    if row is None:
        return Confirmation("stale", lang=reader(chosen or current.lang))
    if current.state is not SubscriberState.ACTIVE:
        logger.info(
            f"subscriber {subscriber_id} confirmed (double opt-in)",
            extra={"event": "subscription_confirmed"},
        )
    # The language they have now: the one chosen, unless they were active already (a second
    # click, or a request of someone active, changes nothing).
    return Confirmation("confirmed", row.email, reader(row.lang))


def sign_up(
    state: WebState,
    values: dict[str, str],
    consent: ledger.Consent,
    *,
    lang: str | None = None,
    source: str = "web",
) -> None:
    """A sign-up after its answer (the form's, or the API's with `source="api"`); `lang`:
    the language chosen (None: the stored one, or the campaign's default), which the
    confirmation mail is written in."""
    now = state.clock()
    with state.engine.begin() as conn:
        row, send = ledger.request_subscription(
            conn, values["email"], values["name"] or None,
            consent=consent, now=now, lang=lang, source=source,
        )  # fmt: skip
    if not send:
        return
    request = SignUp(
        name=values["name"] or None,
        source=consent.source,
        ip=consent.ip,
        text_hash=text_hash(consent.text),
        lang=lang,
    )
    try:
        _send_confirmation(state, row, now, request)
    except ChannelError as error:
        logger.error(
            f"confirmation mail to subscriber {row.id} not sent: {error.message}",
            extra={"event": "confirmation_failed", "error": error.message},
        )
        if not error.ambiguous:
            with state.engine.begin() as conn:
                ledger.confirmation_not_sent(conn, row.id, sent_at=now)
        return
    logger.info(f"confirmation mail sent to subscriber {row.id}", extra={"event": "confirmation"})


def confirmation_subject(campaign_name: str, lang: str = i18n.SOURCE_LANGUAGE) -> str:
    return i18n.gettext(
        lang, "Bitte bestätigen Sie Ihr Abonnement: %(campaign)s", campaign=campaign_name
    )


def _send_confirmation(
    state: WebState, row: ledger.SubscriberRow, now: dt.datetime, request: SignUp
) -> None:
    """Transactional mail: no list headers, one per request (the ledger enforces the hour).
    In the language chosen with the request, else the subscriber's."""
    settings, campaign = state.settings, state.campaign()
    secret = settings.secret_key.get_secret_value()
    sender = emails.Sender(settings.mail_from, settings.public_url, secret)
    token = confirm_token(row.id, campaign.id, issued=now, key=secret, request=request)
    name = request.name or row.name  # the name the link will store
    lang = campaign.reader_language(request.lang or row.lang)
    public_url = settings.public_url.rstrip("/")
    lang_query = "" if lang == campaign.language else f"?{languages.QUERY}={lang}"
    context = {
        "lang": lang,
        "campaign_name": campaign.name_in(lang),
        "confirm_url": f"{public_url}/confirm/{token}",
        "subscribe_url": f"{public_url}/subscribe{lang_query}",
        "ttl_hours": settings.confirm_ttl_hours,
        "requested_at": i18n.format_instant(
            now.astimezone(campaign.zone),
            # Babel's pattern; English readers abroad get the zone, Germans the familiar form
            i18n.gettext(lang, "d. MMMM y 'um' HH:mm 'Uhr'"),
            lang=lang,
        ),
        "email": row.email,
        "name": name,
        "imprint": settings.imprint,
        "consent_text": row.consent_text or settings.consent_text_for(lang),
    }
    text = state.templates.get_template("email/confirm.txt.j2").render(context)
    html = state.templates.get_template("email/confirm.html.j2").render(context)
    key = f"confirm.{row.id}.{_minutes(now)}"
    message = mime.build_email(
        subject=confirmation_subject(campaign.name_in(lang), lang),
        text=text,
        html=html,
        mail_from=settings.mail_from,
        to=mime.recipient(name, row.email),  # formataddr refuses IDN addresses
        message_id=f"<{key}@{sender.domain}>",
        date=now.astimezone(campaign.zone),
        language=lang,
    )
    channel = state.email_channel()
    try:
        channel.send(Envelope(sender.address, row.email, message.as_bytes()), key=key)
    finally:
        channel.close()


def not_found_handler(state: WebState) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A path no route has: the public "page not found" in the reader's language (a browser
    that followed a stale link gets a page with the way back, not Starlette's bare text); the
    API keeps Starlette's own answer."""
    pages = _Pages(state)

    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return PlainTextResponse("Not Found", 404)
        # The same bytes for every stray path (the desk's feed answers a wrong token with
        # this page, and must not be told apart from a path that does not exist), so the
        # language switch leads to a page that exists in every language, not back here.
        return pages.not_found(request, path="/subscribe")

    return handle
