"""Snapshots stored before `validate` refused control characters still render.

A dispatch keeps the item exactly as it was sent; one written by an older version
may hold a control character, which XML 1.0 cannot carry. The feed and the
archive must keep answering for it, without the character.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import feedparser  # type: ignore[import-untyped]
import pytest
import requests

from dispatcher.campaign.model import item_from_json, item_to_json
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState
from tests.support.database import Database
from tests.support.smtpd import SmtpServer
from tests.support.webapp import WebApp, serve_webapp

UTC = dt.UTC
DAY = dt.date(2019, 4, 2)


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def test_feed_and_archive_answer_for_a_snapshot_with_control_characters(app: WebApp) -> None:
    item = dataclasses.replace(
        app.campaign.items[0],
        title="Nordwind\x1b[31m Maritim\x00",
        teaser="Erste Zeile.\nZweite\x07 Zeile.",
    )
    with app.database.engine.begin() as connection:
        store.ensure_dispatch(
            connection,
            campaign_id=app.campaign.id,
            day=DAY,
            channel="email",
            item_id=item.id,
            content_hash="x",
            content=item_to_json(item),
            send_at=dt.datetime(2019, 4, 2, 6, 0, tzinfo=UTC),
            state=DispatchState.DONE,
            now=dt.datetime(2019, 4, 2, 6, 0, tzinfo=UTC),
        )
    app.clock.now = dt.datetime(2019, 4, 3, 12, 0, tzinfo=UTC)

    feed_response = requests.get(f"{app.url}/feed.atom", timeout=10)
    page = requests.get(f"{app.url}/archive", timeout=10)

    assert feed_response.status_code == 200
    feed = feedparser.parse(feed_response.content)
    assert not feed.bozo, feed.bozo_exception
    assert [entry.title for entry in feed.entries] == ["Nordwind[31m Maritim"]
    assert page.status_code == 200
    assert "Nordwind[31m Maritim" in page.text
    assert "\x1b" not in page.text and "\x00" not in page.text


def test_a_snapshot_keeps_tabs_and_line_breaks_where_text_has_them() -> None:
    stored = item_to_json(
        dataclasses.replace(
            item_from_json(
                '{"id": "a", "title": "T", "teaser": "t", "url": "https://example.org/a", '
                '"initiative": "i", "region": "r", "image": null, "image_alt": null, '
                '"tags": [], "body": null, "date": null, "channels": null, "status": "ready"}'
            ),
            title="Ti\ttel\n",
            teaser="Zeile\n\tzwei\r",
            body="Absatz\n\n\tEingerückt\x0c",
            tags=("a\x1bb",),
        )
    )
    item = item_from_json(stored)
    assert (item.title, item.teaser, item.body, item.tags) == (
        "Titel",
        "Zeile\n\tzwei",
        "Absatz\n\n\tEingerückt",
        ("ab",),
    )
