"""The language a public page is shown in, and the links to its other languages.

A page's language is, first to last:

1. `?lang=xx` in the URL: the reader just chose it with the page's language switch (or a link
   carried it), so it wins even over a stored choice — for this page, not for the newsletter;
   a GET with it also remembers it in a cookie for the pages that follow;
2. the language of the subscriber a token names (unsubscribe, confirm): the one their
   newsletter comes in (`Campaign.reader_language`: theirs, else the campaign's default);
3. the cookie of an earlier `?lang=`;
4. `Accept-Language` (`i18n.negotiate`), among the campaign's `locales`, else the default.

The archive and the feed are not negotiated: their language is their path
(`Campaign.path_prefix`), so a shared cache may keep them (`archive.py`).

Every page names its language in `<html lang>` and `Content-Language`; a negotiated page
says `Vary: Accept-Language, Cookie`, although these pages are `no-store` anyway, so that no
cache between ever hands one reader's language to another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dispatcher import i18n
from dispatcher.campaign.model import Campaign

QUERY = "lang"
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600  #: a year: the choice is a preference, not a session
VARY = "Accept-Language, Cookie"


@dataclass(frozen=True)
class PageLanguage:
    lang: str
    chosen: bool  #: from `?lang=` of this request: remember it in the cookie


@dataclass(frozen=True)
class Offered:
    """A language a form offers (the subscribe page, the unsubscribe page)."""

    lang: str
    name: str  #: the language's name in itself


@dataclass(frozen=True)
class Alternative:
    """Another language of the same page, for the switch and `<link rel="alternate">`."""

    lang: str
    name: str  #: the language's name in itself ("English"), so its readers find it
    href: str


def offered_choice(value: str | None, offered: Sequence[str]) -> str | None:
    return value if value is not None and value in offered else None


def choose(request: Request, offered: Sequence[str], *, reader: str | None = None) -> PageLanguage:
    """The page's language for `request` (see the module doc); `reader`: the stored language
    of the subscriber the request's token names (None: none, or the campaign default)."""
    asked = offered_choice(request.query_params.get(QUERY), offered)
    if asked is not None:
        return PageLanguage(asked, chosen=True)
    stored = offered_choice(reader, offered)
    if stored is not None:
        return PageLanguage(stored, chosen=False)
    remembered = offered_choice(request.cookies.get(COOKIE), offered)
    if remembered is not None:
        return PageLanguage(remembered, chosen=False)
    return PageLanguage(i18n.negotiate(request.headers.get("accept-language"), offered), False)


def alternatives(
    offered: Sequence[str], current: str, href: Callable[[str], str]
) -> list[Alternative]:
    """The languages other than `current`, in the campaign's order, each at `href(lang)`."""
    return [
        Alternative(lang, i18n.LANGUAGE_NAMES.get(lang, lang), href(lang))
        for lang in offered
        if lang != current
    ]


def remember(response: Response, page: PageLanguage, *, secure: bool) -> None:
    """Set the cookie after an explicit choice; never otherwise (a one-click POST sets none)."""
    if page.chosen:
        response.set_cookie(
            COOKIE,
            page.lang,
            max_age=COOKIE_MAX_AGE,
            path="/",
            secure=secure,
            httponly=True,
            samesite="lax",
        )


def page_links(campaign: Campaign, lang: str, switch_href: Callable[[str], str]) -> dict[str, Any]:
    """What `_base.html.j2` links with: the switch to the other languages (each at
    `switch_href(lang)`), the archive of the page's language, and `lang_query`, which keeps
    a language other than the default on links to the other pages (the default's links
    stay as they were: a reader who chose it has the cookie)."""
    return {
        "languages": [Offered(o, i18n.LANGUAGE_NAMES.get(o, o)) for o in campaign.locales],
        "switch": alternatives(campaign.locales, lang, switch_href),
        "archive_path": campaign.path_prefix(lang) + "/archive",
        "lang_query": "" if lang == campaign.language else f"?{QUERY}={lang}",
    }
