"""The reportages already published, as a page (`GET /archive`) and an Atom feed
(`GET /feed.atom`).

Both come from the ledger, never from the campaign file: each dispatch stores the item
as it was sent, so an edit or removal in the file after the send changes nothing here.
A day counts once it went out on email (or, for a campaign without email, on any channel)
and appears once, however many channels carried it.

Entry ids are tag URIs built from what never changes for a sent day — host, campaign id,
day, item id — so feed readers never show an entry twice.
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

from dispatcher.campaign.model import Channel, Item, item_from_json
from dispatcher.ledger import stats
from dispatcher.ledger.engine import reader
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

    def tag(self, host: str) -> str:
        return (
            f"tag:{host},{self.day.year}:{self.campaign_id}/{self.day.isoformat()}/{self.item.id}"
        )


def published_entries(state: WebState) -> list[Entry]:
    """Newest first, one per day, from the ledger's content snapshots."""
    campaign = state.campaign()
    channels = [str(Channel.EMAIL)] if Channel.EMAIL in campaign.channels else None
    with reader(state.engine).connect() as connection:
        rows = stats.published(connection, campaign.id, channels=channels)
    return [Entry(r.campaign_id, r.day, r.send_at, item_from_json(r.content)) for r in rows]


def _public_url(state: WebState) -> str:
    return state.settings.public_url.rstrip("/")


def _host(state: WebState) -> str:
    return urlsplit(_public_url(state)).hostname or "localhost"


def render_page(state: WebState, entries: list[Entry]) -> str:
    campaign = state.campaign()
    context: dict[str, Any] = {
        "lang": campaign.language,
        "campaign_name": campaign.name,
        "public_url": _public_url(state),
        "imprint": state.settings.imprint.strip(),
        "feed_url": _public_url(state) + "/feed.atom",
        "entries": entries,
    }
    return state.templates.get_template("web/archive.html.j2").render(context)


def render_feed(state: WebState, entries: list[Entry]) -> bytes:
    campaign = state.campaign()
    base, host = _public_url(state), _host(state)
    feed = FeedGenerator()
    feed.id(f"tag:{host},{campaign.start.year}:{campaign.id}")
    feed.title(campaign.name)
    feed.subtitle(f"Die bereits erschienenen Reportagen der {campaign.name}")
    feed.author({"name": campaign.name})
    feed.language("de")
    feed.link(href=f"{base}/feed.atom", rel="self", type="application/atom+xml")
    feed.link(href=f"{base}/archive", rel="alternate", type="text/html")
    feed.updated(max((e.sent_at for e in entries), default=None) or state.clock())
    for entry in entries:  # newest first, as readers show them
        item = entry.item
        fe = feed.add_entry(order="append")
        fe.id(entry.tag(host))
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
    def archive(request: Request) -> Response:
        # Sync endpoints: Starlette runs them in a worker thread, the ledger read blocks there.
        return HTMLResponse(render_page(state, published_entries(state)), headers=_CACHE)

    def feed(request: Request) -> Response:
        return Response(
            render_feed(state, published_entries(state)), media_type=ATOM_TYPE, headers=_CACHE
        )

    return [
        Route("/archive", archive, methods=["GET"]),
        Route("/feed.atom", feed, methods=["GET"]),
    ]
