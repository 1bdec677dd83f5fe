"""Addresses of pages the web tier serves that commands print: `dispatcher editors
ical-url` shows an editor's calendar feed without loading the desk (Starlette, the pages)."""

from __future__ import annotations


def feed_url(public_url: str, token: str, lang: str | None = None) -> str:
    """The editor's personal feed address (what the calendar program subscribes to); with
    `lang`, the feed speaks that language instead of the campaign's default."""
    address = f"{public_url.rstrip('/')}/desk/plan.ics?token={token}"
    return address if lang is None else f"{address}&lang={lang}"
