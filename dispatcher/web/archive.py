"""The reportages already published, as a page (`GET /archive`) and an Atom feed
(`GET /feed.atom`), in each of the campaign's languages.

The default language's are `/archive` and `/feed.atom`; every other language has its own
under `Campaign.path_prefix` (`/en/archive`, `/en/feed.atom`), listing only the items that
have a version in that language, in that language; other prefixes are 404. A page's language
is its address, never a header or cookie, so a shared cache may keep each (`public,
max-age=300`, no `Vary`). The versions link each other (`hreflang`), page and feed alike.

Both come from the ledger, never from the campaign file: each dispatch stores the item
as it was sent, so an edit or removal in the file after the send changes nothing here.
A day counts once it went out on email (or, for a campaign without email, on any channel)
and appears once, however many channels carried it.

Entry ids are tag URIs built from what never changes for a sent day — host, campaign id,
day, item id, and for a language other than the default its code — so feed readers never
show an entry twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from feedgen.feed import FeedGenerator  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from dispatcher import i18n
from dispatcher.campaign.model import Campaign, Channel, Item, item_from_json
from dispatcher.ledger import stats
from dispatcher.ledger.engine import reader
from dispatcher.web import languages
from dispatcher.web.state import WebState

ATOM_TYPE = "application/atom+xml; charset=utf-8"
_CACHE = {"Cache-Control": "public, max-age=300"}


@dataclass(frozen=True)
class Entry:
    """One published day: the item's snapshot and when it was sent."""

    campaign_id: str
    day: dt.date
    sent_at: dt.datetime  #: the dispatch's send time (UTC)
    item: Item

    def tag(self, host: str, lang: str | None = None) -> str:
        """`lang`: a language other than the default (its entry is another text)."""
        suffix = "" if lang is None else f"/{lang}"
        return (
            f"tag:{host},{self.day.year}:{self.campaign_id}/{self.day.isoformat()}/{self.item.id}"
            + suffix
        )


def published_entries(state: WebState, lang: str | None = None) -> list[Entry]:
    """Newest first, one per day, from the ledger's content snapshots; with `lang`, only
    the items that have a version in `lang`, in that version (the default: all, as sent)."""
    campaign = state.campaign()
    channels = [str(Channel.EMAIL)] if Channel.EMAIL in campaign.channels else None
    with reader(state.engine).connect() as connection:
        rows = stats.published(connection, campaign.id, channels=channels)
    entries = [Entry(r.campaign_id, r.day, r.send_at, item_from_json(r.content)) for r in rows]
    if lang is None or lang == campaign.language:
        return entries
    return [
        Entry(e.campaign_id, e.day, e.sent_at, e.item.translated(translation))
        for e in entries
        if (translation := e.item.translation(lang)) is not None
    ]


def _public_url(state: WebState) -> str:
    return state.settings.public_url.rstrip("/")


def _host(state: WebState) -> str:
    return urlsplit(_public_url(state)).hostname or "localhost"


def _versions(campaign: Campaign, base: str, page: str) -> list[languages.Alternative]:
    """`page` ("archive", "feed.atom") in each of the campaign's languages; none when the
    campaign has only one."""
    if len(campaign.locales) < 2:
        return []
    return [
        languages.Alternative(
            lang, i18n.LANGUAGE_NAMES.get(lang, lang), f"{base}{campaign.path_prefix(lang)}/{page}"
        )
        for lang in campaign.locales
    ]


def render_page(state: WebState, entries: list[Entry], lang: str | None = None) -> str:
    """The archive page in `lang` (the default: the campaign's default language)."""
    campaign = state.campaign()
    lang = lang or campaign.language
    base = _public_url(state)
    versions = _versions(campaign, base, "archive")
    context: dict[str, Any] = {
        "lang": lang,
        "campaign_name": campaign.name_in(lang),
        "public_url": base,
        "imprint": state.settings.imprint.strip(),
        "feed_url": f"{base}{campaign.path_prefix(lang)}/feed.atom",
        "entries": entries,
        "versions": versions,
        **languages.page_links(
            campaign, lang, lambda other: next(v.href for v in versions if v.lang == other)
        ),
    }
    return state.templates.get_template("web/archive.html.j2").render(context)


def render_feed(state: WebState, entries: list[Entry], lang: str | None = None) -> bytes:
    """The Atom feed in `lang` (the default: the campaign's default language)."""
    campaign = state.campaign()
    lang = lang or campaign.language
    other = None if lang == campaign.language else lang  # the default's ids stay as they were
    base, host, prefix = _public_url(state), _host(state), campaign.path_prefix(lang)
    feed = FeedGenerator()
    feed.id(f"tag:{host},{campaign.start.year}:{campaign.id}" + (f"/{other}" if other else ""))
    name = campaign.name_in(lang)
    feed.title(name)
    feed.subtitle(
        i18n.gettext(lang, "Die bereits erschienenen Reportagen der %(campaign)s", campaign=name)
    )
    feed.author({"name": name})
    feed.language(lang)  # xml:lang on <feed>
    feed.link(href=f"{base}{prefix}/feed.atom", rel="self", type="application/atom+xml")
    feed.link(href=f"{base}{prefix}/archive", rel="alternate", type="text/html", hreflang=lang)
    for version in _versions(campaign, base, "feed.atom"):
        if version.lang != lang:
            feed.link(
                href=version.href,
                rel="alternate",
                type="application/atom+xml",
                hreflang=version.lang,
                title=version.name,
            )
    feed.updated(max((e.sent_at for e in entries), default=None) or state.clock())
    for entry in entries:  # newest first, as readers show them
        item = entry.item
        fe = feed.add_entry(order="append")
        fe.id(entry.tag(host, other))
        fe.title(item.title)
        fe.link(href=item.url, rel="alternate", type="text/html")
        fe.summary(item.teaser)
        fe.published(entry.sent_at)
        fe.updated(entry.sent_at)
        if item.tags:
            fe.category([{"term": tag} for tag in item.tags])
    result: bytes = feed.atom_str(pretty=True, encoding="UTF-8")
    return result


def routes(state: WebState) -> list[Route]:
    def language_of(request: Request) -> str | None:
        """The page's language from its path; None: no such page (404)."""
        campaign = state.campaign()
        prefixed = request.path_params.get("lang")
        if prefixed is None:
            return campaign.language
        if prefixed in campaign.locales and campaign.path_prefix(prefixed) == f"/{prefixed}":
            return str(prefixed)
        return None

    def headers(lang: str) -> dict[str, str]:
        return {**_CACHE, "Content-Language": lang}

    # Sync endpoints: Starlette runs them in a worker thread, the ledger read blocks there.
    def archive(request: Request) -> Response:
        lang = language_of(request)
        if lang is None:
            return no_such_page(state, request)
        page = render_page(state, published_entries(state, lang), lang)
        return HTMLResponse(page, headers=headers(lang))

    def feed(request: Request) -> Response:
        lang = language_of(request)
        if lang is None:
            return no_such_page(state, request)
        body = render_feed(state, published_entries(state, lang), lang)
        return Response(body, media_type=ATOM_TYPE, headers=headers(lang))

    return [
        Route("/archive", archive, methods=["GET"]),
        Route("/feed.atom", feed, methods=["GET"]),
        Route("/{lang}/archive", archive, methods=["GET"]),
        Route("/{lang}/feed.atom", feed, methods=["GET"]),
    ]


def no_such_page(state: WebState, request: Request) -> HTMLResponse:
    """404 for an archive or feed in a language the campaign does not offer (or the default
    language's under a prefix: its home is without one), with the archives there are; in
    the reader's language, as every page that is not one language's own."""
    campaign = state.campaign()
    page = languages.choose(request, campaign.locales)
    base = _public_url(state)
    html = state.templates.get_template("web/no_such_page.html.j2").render(
        lang=page.lang,
        campaign_name=campaign.name_in(page.lang),
        public_url=base,
        imprint=state.settings.imprint,
        archives=_versions(campaign, base, "archive")
        or [languages.Alternative(campaign.language, "", f"{base}/archive")],
        **languages.page_links(
            campaign, page.lang, lambda other: f"{base}{request.url.path}?lang={other}"
        ),
    )
    return HTMLResponse(
        html,
        404,
        headers={
            "Content-Language": page.lang,
            "Vary": languages.VARY,
            "Cache-Control": "no-store",
        },
    )
