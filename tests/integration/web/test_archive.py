"""`/archive` and `/feed.atom` over real HTTP: what went out, from the ledger, newest first.

The app runs in uvicorn on a free loopback port; the days are sent by real ticks
against an aiosmtpd server, so the archive reads exactly what the pipeline recorded.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import feedparser  # type: ignore[import-untyped]
import requests
from markupsafe import escape

from dispatcher.campaign import planning
from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import item_to_json
from dispatcher.channels.base import EmailChannel
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState
from dispatcher.settings import Settings
from dispatcher.web.state import WebState
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import running_app

UTC = dt.UTC
FIRST_TITLE = "Vorhang auf: Nordwind Maritim e. V."
TRICKY_TITLE = 'Vorhang auf: Nordwind & <Maritim> "e. V."'


def _no_email() -> EmailChannel:
    raise AssertionError("the archive sends no email")


def web_state(settings: Settings, database: Database) -> WebState:
    """The campaign is read from its file on every request, as after a reload."""
    return WebState(
        settings=settings,
        engine=database.engine,
        campaign=lambda: load_campaign(settings.campaign_file),
        email_channel=_no_email,
        clock=lambda: dt.datetime(2019, 4, 3, 12, 0, tzinfo=UTC),
    )


def test_archive_and_feed_show_what_went_out_newest_first(
    database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(database, 3)
    settings = settings_for(database, smtp_server)
    path = Path(settings.campaign_file)
    path.write_text(
        path.read_text(encoding="utf-8").replace(f'"{FIRST_TITLE}"', repr(TRICKY_TITLE)),
        encoding="utf-8",
    )
    campaign = load_campaign(path)
    days = [dt.date(2019, 4, 2), dt.date(2019, 4, 3)]
    schedule = planning.plan(campaign, now=dt.datetime(2019, 4, 1, tzinfo=UTC))
    items = [campaign.item(schedule.item_for(day) or "") for day in days]
    assert items[0].title == TRICKY_TITLE

    with running_app(web_state(settings, database)) as base:
        empty = requests.get(f"{base}/archive", timeout=10)
        assert empty.status_code == 200
        assert "Noch ist keine Reportage erschienen" in empty.text
        assert feedparser.parse(requests.get(f"{base}/feed.atom", timeout=10).content).entries == []

        for day in days:
            tick_at(settings, database, email_time(day))
        page = requests.get(f"{base}/archive", timeout=10)
        feed_response = requests.get(f"{base}/feed.atom", timeout=10)

        # Editing the file afterwards (new titles, an item dropped) changes nothing shown.
        text = path.read_text(encoding="utf-8")
        for item in items:
            text = text.replace(item.teaser.split()[0], "Geändert", 1)
        text = text.replace(repr(TRICKY_TITLE), '"Ganz anderer Titel"')
        text = text.replace(f'"{items[1].title}"', '"Auch anders"')
        path.write_text(text, encoding="utf-8")
        assert load_campaign(path).items[0].title == "Ganz anderer Titel"
        page_after = requests.get(f"{base}/archive", timeout=10)
        feed_after = requests.get(f"{base}/feed.atom", timeout=10)

    assert page.headers["content-type"] == "text/html; charset=utf-8"
    body = page.text
    assert '<html lang="de">' in body
    assert body.count("Zur Reportage") == 2
    assert "Dienstag, 2. April 2019" in body and "Mittwoch, 3. April 2019" in body
    assert body.index("Mittwoch, 3. April 2019") < body.index("Dienstag, 2. April 2019")
    assert body.index(items[1].title) < body.index(str(escape(TRICKY_TITLE)))
    assert "<Maritim>" not in body  # escaped, not markup
    for item in items:
        assert f'<a href="{item.url}"' in body
        assert str(escape(item.initiative)) in body and item.region in body
        assert str(escape(item.teaser)) in body
    assert page_after.text == body
    assert "Ganz anderer Titel" not in page_after.text

    assert feed_response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(feed_response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == campaign.name
    assert feed.feed.link == "https://news.example.org/archive"
    assert [e.title for e in feed.entries] == [items[1].title, TRICKY_TITLE]
    assert [e.link for e in feed.entries] == [items[1].url, items[0].url]
    assert [e.summary for e in feed.entries] == [items[1].teaser, items[0].teaser]
    assert [e.published_parsed[:5] for e in feed.entries] == [
        (2019, 4, 3, 6, 0),  # 08:00 in Berlin (CEST): the dispatch's send time
        (2019, 4, 2, 6, 0),
    ]
    assert feed.entries[1].id == f"tag:news.example.org,2019:{campaign.id}/2019-04-02/{items[0].id}"
    again = feedparser.parse(feed_after.content)
    assert [e.id for e in again.entries] == [e.id for e in feed.entries]
    assert [e.title for e in again.entries] == [e.title for e in feed.entries]
    assert len({e.id for e in feed.entries}) == 2


def test_only_sent_days_count_and_each_day_once(database: Database, tmp_path: Path) -> None:
    """Without email the social dispatches are the record; planned or failed ones are not."""
    path = campaign_copy(tmp_path, channels=("mastodon", "bluesky"))
    campaign = load_campaign(path)
    first, second, third = campaign.items[:3]
    rows = [
        (dt.date(2019, 4, 2), "mastodon", first, DispatchState.DONE),
        (dt.date(2019, 4, 2), "bluesky", first, DispatchState.PARTIAL),
        (dt.date(2019, 4, 3), "mastodon", second, DispatchState.RUNNING),
        (dt.date(2019, 4, 4), "mastodon", third, DispatchState.FAILED),
        (dt.date(2019, 4, 5), "bluesky", third, DispatchState.PLANNED),
    ]
    with database.engine.begin() as connection:
        for day, channel, item, state in rows:
            store.ensure_dispatch(
                connection,
                campaign_id=campaign.id,
                day=day,
                channel=channel,
                item_id=item.id,
                content_hash="x",
                content=item_to_json(item),
                send_at=dt.datetime.combine(day, dt.time(6, 5), tzinfo=UTC),
                state=state,
                now=dt.datetime(2019, 4, 1, tzinfo=UTC),
            )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database.url,
        campaign_file=path,
        templates_dir=Path(__file__).parents[3] / "templates",
        public_url="https://news.example.org/",
    )
    with running_app(web_state(settings, database)) as base:
        page = requests.get(f"{base}/archive", timeout=10).text
        feed = feedparser.parse(requests.get(f"{base}/feed.atom", timeout=10).content)
    assert page.count("Zur Reportage") == 2
    assert not feed.bozo
    assert [e.link for e in feed.entries] == [second.url, first.url]
    assert third.url not in page
