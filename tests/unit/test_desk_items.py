"""The desk's item page as a view-model: campaign + ledger + day -> the email's parts and one
card per network post. A fresh SQLite ledger per test (the plan and the snapshots come from
it); the HTTP side is in tests/integration/web/test_desk_items.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dispatcher.campaign import calendar
from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign, Channel, Item, item_to_json
from dispatcher.content import post_length
from dispatcher.content.rendering import create_environment
from dispatcher.delivery import preview
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState
from dispatcher.settings import Settings
from dispatcher.web.desk import items
from tests.support import database as databases
from tests.support.campaigns import campaign_copy

ROOT = Path(__file__).parents[2]
ALL = ("email", "mastodon", "bluesky", "linkedin", "webhook")
BEFORE = dt.datetime(2019, 4, 1, 10, 0, tzinfo=dt.UTC)  # the day before the first send
LONG_TEASER = " ".join(["Ein sehr langer Teaser über Werften und Wasserstoff."] * 8)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    for database in databases.sqlite_database(tmp_path):
        yield database.engine


def settings(tmp_path: Path, campaign_file: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        campaign_file=campaign_file,
        templates_dir=ROOT / "templates",
        public_url="https://news.example.org",
        mail_from="Clusterplattform <newsletter@news.example.org>",
        secret_key=SecretStr("test-secret-key-0123456789-abcdefghijkl"),
    )


def view(
    tmp_path: Path,
    engine: sa.Engine,
    item_id: str,
    *,
    text: str | None = None,
    tag: dt.date | None = None,
    now: dt.datetime = BEFORE,
    problems: tuple[str, ...] = (),
) -> items.ItemView:
    path = campaign_copy(tmp_path, channels=ALL)
    if text is not None:
        path.write_text(text, encoding="utf-8")
    campaign = load_campaign(path)
    with engine.connect() as connection:
        return items.item_view(
            settings(tmp_path, path),
            create_environment(ROOT / "templates"),
            campaign,
            connection,
            item_id,
            now=now,
            tag=tag,
            problems=problems,
            file_text=path.read_text(encoding="utf-8"),
        )


def card(result: items.ItemView, channel: Channel) -> items.PostCard:
    return next(c for c in result.posts if c.channel is channel)


def test_the_email_as_the_sample_reader_gets_it(tmp_path: Path, engine: sa.Engine) -> None:
    result = view(tmp_path, engine, "nordwind-maritim")

    assert result.day == dt.date(2019, 4, 2) and result.scheduled and not result.as_sent
    email = result.email
    assert email is not None
    assert email.subject == "Vorhang auf: Nordwind Maritim e. V. – 2. Clusterwoche Deutschland"
    assert email.preheader.startswith("Werften, Zulieferer und Hochschulen an der Küste")
    assert email.sender == "Clusterplattform <newsletter@news.example.org>"
    assert email.to == "Erika Mustermann <erika.mustermann@example.org>"
    assert "Guten Tag Erika Mustermann," in email.text
    # The unsubscribe link is a sample: no token that the unsubscribe route would accept.
    sample = "https://news.example.org" + preview.SAMPLE_UNSUBSCRIBE_PATH
    assert sample in email.text and sample in email.html
    assert "Nordwind Maritim" in email.html and "<img" in email.html
    assert [(c.channel, c.state) for c in result.channels] == [
        (channel, "geplant") for channel in Channel
    ]
    assert result.channels[0].send_at == dt.datetime(
        2019, 4, 2, 8, 0, tzinfo=ZoneInfo("Europe/Berlin")
    )


def test_each_post_as_its_network_lays_it_out(tmp_path: Path, engine: sa.Engine) -> None:
    result = view(tmp_path, engine, "nordwind-maritim")

    mastodon = card(result, Channel.MASTODON)
    assert mastodon.layout == "media"  # Mastodon: the image with its alt text, no link card
    assert mastodon.post.image_alt == "Ein Containerschiff im Kieler Hafen bei Sonnenaufgang"
    link = next(s for s in mastodon.segments if s.kind == "link")
    assert link.href == "https://www.clusterplattform.de/reportage/2019/nordwind-maritim"
    assert link.text == "clusterplattform.de/reportage/…"  # Mastodon's 30-character label
    hashtags = [s.text for s in mastodon.segments if s.kind == "hashtag"]
    assert hashtags == ["#Clusterwoche", "#MaritimeWirtschaft", "#Innovation"]

    bluesky = card(result, Channel.BLUESKY)
    text = "".join(s.href or s.text for s in bluesky.segments)
    assert bluesky.layout == "link-card" and bluesky.host == "www.clusterplattform.de"
    assert bluesky.length == post_length.bluesky_length(text) == 298
    assert bluesky.counter == "bluesky 298/300" and not bluesky.shortened
    assert bluesky.post.image_url and bluesky.post.description.startswith("Werften")

    linkedin = card(result, Channel.LINKEDIN)
    shown = "".join(s.text for s in linkedin.segments)
    assert linkedin.layout == "article" and "\\" not in shown and "{hashtag" not in shown
    assert "Nordwind Maritim e. V." in shown and "#MaritimeWirtschaft" in shown
    assert linkedin.counter.startswith("linkedin ") and linkedin.counter.endswith("/3000")

    webhook = card(result, Channel.WEBHOOK)
    assert webhook.layout == "plain" and webhook.limit is None
    assert webhook.counter == f"webhook {webhook.length} Zeichen"


def test_an_item_without_image_gets_mastodons_link_card(tmp_path: Path, engine: sa.Engine) -> None:
    result = view(tmp_path, engine, "saxony-mikroelektronik")

    mastodon = card(result, Channel.MASTODON)
    assert mastodon.layout == "link-card" and mastodon.post.image_url is None


def test_a_shortened_teaser_is_warned_about(tmp_path: Path, engine: sa.Engine) -> None:
    sample = (ROOT / "config" / "campaign.yaml").read_text(encoding="utf-8")
    teaser = (
        "Werften, Zulieferer und Hochschulen an der Küste entwickeln gemeinsam emissionsarme\n"
        "      Schiffsantriebe. Wir haben das Clustermanagement in Kiel besucht."
    )
    assert teaser in sample
    result = view(tmp_path, engine, "nordwind-maritim", text=sample.replace(teaser, LONG_TEASER))

    bluesky = card(result, Channel.BLUESKY)
    text = "".join(s.href or s.text for s in bluesky.segments)
    assert bluesky.shortened and "…" in text
    assert bluesky.length <= 300 and bluesky.counter == f"bluesky {bluesky.length}/300"
    assert not card(result, Channel.LINKEDIN).shortened  # 3000 characters: the whole teaser
    assert bluesky.post.description == LONG_TEASER  # the link card keeps the whole teaser


def test_a_sent_day_shows_the_ledgers_snapshot_not_the_file(
    tmp_path: Path, engine: sa.Engine
) -> None:
    campaign = load_campaign(campaign_copy(tmp_path, channels=ALL))
    sent = campaign.item("nordwind-maritim")
    as_sent = Item(**{**sent.__dict__, "title": "Vorhang auf: So hieß es am Sendetag"})
    day = dt.date(2019, 4, 2)
    dispatch(engine, campaign, day, Channel.EMAIL, as_sent)
    later = dt.datetime(2019, 4, 2, 6, 2, tzinfo=dt.UTC)  # 08:02 in Berlin

    result = view(tmp_path, engine, "nordwind-maritim", tag=day, now=later)

    assert result.as_sent and result.days == (day,)
    assert result.email is not None and result.email.subject.startswith("Vorhang auf: So hieß")
    states = {c.channel: (c.state, c.as_sent) for c in result.channels}
    assert states[Channel.EMAIL] == ("gesendet", True)
    assert states[Channel.MASTODON] == ("geplant", False)  # not dispatched yet: the file
    mastodon = card(result, Channel.MASTODON)
    assert "Nordwind Maritim e. V." in "".join(s.text for s in mastodon.segments)
    # Without ?tag the item's day is its ledger day: the same snapshot.
    plain = view(tmp_path, engine, "nordwind-maritim", now=later)
    assert plain.email is not None and plain.email.subject == result.email.subject


def test_the_next_days_email_lists_what_went_out_as_it_went_out(
    tmp_path: Path, engine: sa.Engine
) -> None:
    campaign = load_campaign(campaign_copy(tmp_path, channels=ALL))
    sent = campaign.item("nordwind-maritim")
    dispatch(
        engine,
        campaign,
        dt.date(2019, 4, 2),
        Channel.EMAIL,
        Item(**{**sent.__dict__, "title": "Titel am Sendetag"}),
    )

    result = view(tmp_path, engine, "saxony-mikroelektronik")

    assert result.day == dt.date(2019, 4, 3) and result.email is not None
    assert "Titel am Sendetag" in result.email.text
    assert "Vorhang auf: Nordwind Maritim e. V." not in result.email.text


def test_unknown_items_and_days_without_the_item(tmp_path: Path, engine: sa.Engine) -> None:
    with pytest.raises(items.ItemNotFoundError, match="no-such-item"):
        view(tmp_path, engine, "no-such-item")
    with pytest.raises(items.ItemNotFoundError, match=r"05\.04\.2019"):
        view(tmp_path, engine, "nordwind-maritim", tag=dt.date(2019, 4, 5))


def test_only_the_items_own_problems_are_listed(tmp_path: Path, engine: sa.Engine) -> None:
    problems = (
        "campaign.yaml:30:10: items[0].url: not an http(s) URL",
        "campaign.yaml:48:5: items[1].title: must not be empty",
        "campaign.yaml:3:1: campaign.end: before start",
    )
    result = view(tmp_path, engine, "nordwind-maritim", problems=problems)
    assert result.problems == (problems[0],)
    assert items.item_problems(problems, "items: [", "nordwind-maritim") == []  # not YAML


def test_an_unscheduled_item_is_shown_on_the_first_send_day(
    tmp_path: Path, engine: sa.Engine
) -> None:
    sample = (ROOT / "config" / "campaign.yaml").read_text(encoding="utf-8")
    extra = (
        '  - id: ohne-tag\n    title: "Ohne Tag"\n    teaser: "Kurz."\n'
        "    url: https://example.org/ohne\n    initiative: X\n    region: Bayern\n"
    )
    result = view(tmp_path, engine, "ohne-tag", text=sample + extra)
    assert not result.scheduled and result.day == dt.date(2019, 4, 2)
    assert {c.state for c in result.channels} == {"ohne Sendetag"}
    draft = view(tmp_path, engine, "ohne-tag", text=sample + extra + "    status: draft\n")
    assert {c.state for c in draft.channels} == {"Entwurf (nicht freigegeben)"}
    assert draft.email is not None  # a draft is shown all the same: that is what it is for


def dispatch(
    engine: sa.Engine, campaign: Campaign, day: dt.date, channel: Channel, item: Item
) -> None:
    """A finished dispatch of `item` on `day`, as the pipeline records it."""
    send_at = calendar.local_send_time(day, campaign.send[channel], campaign.zone)
    content = item_to_json(item)
    with engine.begin() as connection:
        row = store.ensure_dispatch(
            connection,
            campaign_id=campaign.id,
            day=day,
            channel=channel.value,
            item_id=item.id,
            content_hash=str(hash(content)),
            content=content,
            send_at=send_at.astimezone(dt.UTC),
            state=DispatchState.RUNNING,
            now=send_at,
        )
        store.mark_dispatch(connection, row.id, DispatchState.DONE, now=send_at)
