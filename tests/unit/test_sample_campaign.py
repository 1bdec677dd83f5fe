"""The bundled Cluster Week (config/campaign.yaml) in German and English, as readers get it.

The sample is what `scripts/demo` sends and what an editor copies, so it must stay a complete
two-language campaign: every item in English, and an English reader's email English from the
subject to the footer, while a German reader's stays German.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.campaign.loading import CampaignError, load_campaign, load_campaign_text
from dispatcher.campaign.model import Campaign, Channel, Fallback, Item
from dispatcher.content import rendering

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "config" / "campaign.yaml"
PUBLIC = "https://news.example.org"
DAY_ONE = dt.date(2019, 4, 2)
DAY_TWO = dt.date(2019, 4, 3)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(SAMPLE)


def render(campaign: Campaign, lang: str) -> rendering.RenderedEmail:
    """The second day's email (with the first day's item under "earlier") in `lang`."""
    env = rendering.create_environment(ROOT / "templates")
    first, second = campaign.item("nordwind-maritim"), campaign.item("saxony-mikroelektronik")
    return rendering.render_email(
        env, campaign, second, day=DAY_TWO, published=[(DAY_ONE, first)],
        imprint="Clusterplattform Deutschland", public_url=PUBLIC, lang=lang,
    )  # fmt: skip


def test_the_sample_is_german_first_then_english(campaign: Campaign) -> None:
    assert campaign.locales == ("de", "en")
    assert campaign.language == "de"  # the items' own texts, and readers without a language
    assert campaign.fallback is Fallback.DEFAULT
    assert campaign.reader_language(None) == "de"


@pytest.mark.parametrize("item_id", [item.id for item in load_campaign(SAMPLE).items])
def test_every_item_has_an_english_version_of_every_text_it_shows(
    campaign: Campaign, item_id: str
) -> None:
    item = campaign.item(item_id)
    assert campaign.languages_of(item) == ("de", "en") and campaign.missing_languages(item) == ()
    english = campaign.edition(item, "en")
    assert english is not None
    # English, not the German text copied: the series' title and German words are gone.
    assert english.title.startswith("Spotlight: ") and item.title.startswith("Vorhang auf: ")
    assert english.teaser != item.teaser
    assert not re.search(r"\b(und|der|die|das|mit|für)\b", f"{english.teaser} {english.body}")
    # Body and image text where the item has them, each its own English text.
    assert (english.body is None) == (item.body is None)
    assert english.body is None or english.body != item.body
    assert (english.image_alt is None) == (item.image_alt is None)
    assert english.image_alt is None or english.image_alt != item.image_alt
    # The initiative keeps its name; the hashtags are the English series' own.
    assert english.initiative == item.initiative and english.image == item.image
    assert english.tags[0] == "ClusterWeek" and item.tags[0] == "Clusterwoche"


def test_english_links_go_to_an_english_page_where_there_is_one(campaign: Campaign) -> None:
    links = {item.id: campaign.edition(item, "en") for item in campaign.items}
    own = [i for i, e in links.items() if e is not None and "/en/" in e.url]
    assert "nordwind-maritim" in own and "saxony-mikroelektronik" not in own
    # Without an English page the German article is linked, not a made-up English one.
    saxony = links["saxony-mikroelektronik"]
    assert saxony is not None
    assert saxony.url == campaign.item("saxony-mikroelektronik").url


def test_an_english_reader_gets_an_english_email(campaign: Campaign) -> None:
    shown = render(campaign, "en")
    assert shown.lang == "en"
    assert shown.subject == "Spotlight: Mikroelektronik-Netzwerk Elbtal – 2nd Cluster Week Germany"
    text = shown.text
    assert "Wednesday, 3 April 2019" in text
    assert "From chip design to manufacturing: in the Elbtal" in " ".join(text.split())
    assert "The clean room is bathed in yellow light." in text
    # The earlier item in the list is the English one, with its English page.
    assert "Spotlight: Nordwind Maritim e. V. (Tuesday, 2 April)" in text
    assert "https://www.clusterplattform.de/en/reportage/2019/nordwind-maritim" in text
    assert f"{PUBLIC}/en/archive" in text
    assert "Mikroelektronik-Netzwerk Elbtal · Saxony" in text  # the region in English too
    for german in ("Vorhang auf", "Mittwoch", "Reinraum", "Abmelden", "Archiv", "Sachsen"):
        assert german not in text, german
    assert '<html lang="en"' in shown.html and "Spotlight: Mikroelektronik" in shown.html


def test_a_german_reader_gets_the_german_email_as_before(campaign: Campaign) -> None:
    shown = render(campaign, "de")
    assert shown.lang == "de"
    assert shown.subject == (
        "Vorhang auf: Mikroelektronik-Netzwerk Elbtal – 2. Clusterwoche Deutschland"
    )
    text = shown.text
    assert "Mittwoch, 3. April 2019" in text and "Der Reinraum ist gelb beleuchtet." in text
    assert "Vorhang auf: Nordwind Maritim e. V." in text
    assert f"{PUBLIC}/archive" in text and "/en/" not in text
    for english in ("Spotlight", "Wednesday", "clean room"):
        assert english not in text, english
    assert '<html lang="de"' in shown.html


def test_mastodon_posts_in_both_languages_the_other_networks_in_german(
    campaign: Campaign,
) -> None:
    assert campaign.post_languages_of(Channel.MASTODON) == ("de", "en")
    for channel in (Channel.BLUESKY, Channel.LINKEDIN, Channel.WEBHOOK):
        assert campaign.post_languages_of(channel) == ("de",)
    env = rendering.create_environment(ROOT / "templates")
    item = campaign.item("berlin-digital")
    posts = {
        lang: rendering.render_post(env, Channel.MASTODON, campaign, item, day=DAY_TWO, lang=lang)
        for lang in ("de", "en")
    }
    assert posts["de"].text.startswith("Vorhang auf: Digitalwirtschaft Spree")
    assert "#KünstlicheIntelligenz" in posts["de"].hashtags
    assert posts["en"].text.startswith("Spotlight: Digitalwirtschaft Spree")
    assert posts["en"].hashtags == ("#ClusterWeek", "#ArtificialIntelligence", "#Startups")
    assert (
        posts["en"].link
        == "https://www.clusterplattform.de/en/reportage/2019/digitalwirtschaft-spree"
    )
    assert posts["en"].length <= 500


def test_validate_accepts_the_sample_and_lists_no_item_without_english() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "validate"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK — campaign clusterwoche-2019, 8 items (8 ready)" in result.stdout
    assert "without a version" not in result.stdout


def test_a_translations_texts_keep_the_items_rules_for_line_breaks(campaign: Campaign) -> None:
    """A translation's body spans lines like the item's (the sample's English bodies do); a
    line break in its title is refused, as in the item's own title."""
    text = SAMPLE.read_text(encoding="utf-8")
    english_title = 'title: "Spotlight: Nordwind Maritim e. V."'
    assert english_title in text
    with pytest.raises(CampaignError) as caught:
        load_campaign_text(
            text.replace(english_title, 'title: "Spotlight:\\nNordwind Maritim e. V."'), "c.yaml"
        )
    [problem] = caught.value.problems
    assert problem.path == "items[0].translations.en.title"
    assert "line break" in problem.message
    english: Item | None = campaign.edition(campaign.item("nordwind-maritim"), "en")
    assert english is not None and english.body is not None and english.body.count("\n") > 3
