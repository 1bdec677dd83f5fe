"""A campaign in two languages: what the file says, what validate reports, what readers get."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from dispatcher.campaign import planning
from dispatcher.campaign.loading import CampaignError, load_campaign_text
from dispatcher.campaign.model import Channel, EditionKind, Fallback, item_from_json, item_to_json
from dispatcher.cli.common import format_plan
from dispatcher.cli.main import untranslated_lines
from dispatcher.content import rendering
from dispatcher.mail import compose as emails

ROOT = Path(__file__).parents[2]

TWO_LANGUAGES = textwrap.dedent(
    """\
    campaign:
      id: test-week
      name: "Testwoche"
      timezone: Europe/Berlin
      start: 2019-04-02
      end: 2019-04-05
      weekdays: [mon, tue, wed, thu, fri]
      locales: [de, en]
      fallback: FALLBACK
    send:
      email: "08:00"
      mastodon: {time: "08:05", lang: [de, en]}
      bluesky: "08:10"
    items:
      - id: erstes
        title: "Erstes"
        teaser: "Kurz."
        url: https://example.org/erstes
        initiative: "Cluster A"
        region: Bayern
        image: https://example.org/a.jpg
        image_alt: "Ein Bild"
        tags: [Netzwerk]
        body: |
          Ein **Text**.
        translations:
          en:
            title: "First"
            teaser: "Short."
            body: |
              A **text**.
            image_alt: "A picture"
            url: https://example.org/en/first
      - id: zweites
        title: "Zweites"
        teaser: "Auch kurz."
        url: https://example.org/zweites
        initiative: "Cluster B"
        region: Sachsen
    """
)


def campaign_text(fallback: str = "default") -> str:
    return TWO_LANGUAGES.replace("FALLBACK", fallback)


def problems_of(text: str) -> list[str]:
    with pytest.raises(CampaignError) as caught:
        load_campaign_text(text, "campaign.yaml")
    return [str(p) for p in caught.value.problems]


def test_locales_translations_and_post_languages_are_read() -> None:
    campaign = load_campaign_text(campaign_text(), "campaign.yaml")
    assert campaign.locales == ("de", "en") and campaign.language == "de"
    assert campaign.fallback is Fallback.DEFAULT
    assert campaign.post_languages_of(Channel.MASTODON) == ("de", "en")
    assert campaign.post_languages_of(Channel.BLUESKY) == ("de",)
    first, second = campaign.items
    english = campaign.edition(first, "en")
    assert english is not None
    assert (english.title, english.teaser, english.url) == (
        "First", "Short.", "https://example.org/en/first",
    )  # fmt: skip
    assert english.body == "A **text**.\n" and english.image_alt == "A picture"
    # What is not translated is shared: the initiative, the image, the tags.
    assert (english.initiative, english.image, english.tags) == (
        "Cluster A", "https://example.org/a.jpg", ("Netzwerk",),
    )  # fmt: skip
    assert campaign.edition(second, "en") == second  # fallback default: the German one
    assert campaign.edition(first, "fr") == first  # a language not offered: the default


def test_under_fallback_skip_an_untranslated_item_reaches_no_english_reader() -> None:
    campaign = load_campaign_text(campaign_text("skip"), "campaign.yaml")
    first, second = campaign.items
    assert campaign.edition(second, "en") is None
    assert campaign.edition(second, "de") == second
    assert campaign.edition_kind(second, "en") is EditionKind.NONE
    assert campaign.edition_kind(first, "en") is EditionKind.OWN


def test_the_plan_shows_per_day_what_each_language_gets() -> None:
    campaign = load_campaign_text(campaign_text("skip"), "campaign.yaml")
    plan = planning.plan(campaign, now=dt.datetime(2019, 4, 1, tzinfo=dt.UTC))
    rows = {(r.day, r.channel): r for r in plan.rows}
    tuesday, wednesday = dt.date(2019, 4, 2), dt.date(2019, 4, 3)
    assert rows[(tuesday, Channel.EMAIL)].to_json()["languages"] == {"de": "own", "en": "own"}
    assert rows[(wednesday, Channel.EMAIL)].to_json()["languages"] == {
        "de": "own", "en": "none",
    }  # fmt: skip
    assert rows[(wednesday, Channel.BLUESKY)].to_json()["languages"] == {"de": "own"}
    table = format_plan(campaign, plan)
    [line] = [x for x in table.splitlines() if x.startswith("2019-04-03") and "email" in x]
    assert line.endswith("de en: none")
    assert "fallback: skip" in table
    default = load_campaign_text(campaign_text(), "campaign.yaml")
    table = format_plan(default, planning.plan(default, now=dt.datetime(2019, 4, 1, tzinfo=dt.UTC)))
    [line] = [x for x in table.splitlines() if x.startswith("2019-04-03") and "email" in x]
    assert line.endswith("de en→de")
    # A network posting in both languages does not post the German text twice: the plan
    # says what the fan-out will do.
    [line] = [x for x in table.splitlines() if x.startswith("2019-04-03") and "mastodon" in x]
    assert line.endswith("de en: none")


def test_validate_lists_the_items_without_an_english_version() -> None:
    assert untranslated_lines(load_campaign_text(campaign_text(), "c")) == [
        "items without a version in English (its readers get the German one (fallback: "
        "default)): zweites"
    ]
    skip = untranslated_lines(load_campaign_text(campaign_text("skip"), "c"))
    assert skip == [
        "items without a version in English (its readers get nothing on their days "
        "(fallback: skip)): zweites"
    ]


def test_a_translation_without_a_required_text_is_a_problem_at_its_place() -> None:
    text = campaign_text().replace('        title: "First"\n', "")
    text = text.replace('        image_alt: "A picture"\n', "")
    assert problems_of(text) == [
        "campaign.yaml:27:7: items[0].translations.en: the English version lacks title; "
        "add translations.en.title",
        "campaign.yaml:27:7: items[0].translations.en: the English version lacks image_alt; "
        "add translations.en.image_alt",
    ]


def test_a_translation_into_a_language_the_campaign_does_not_offer_is_a_problem() -> None:
    text = campaign_text().replace("      en:\n        title:", "      fr:\n        title:")
    [problem] = problems_of(text)
    assert problem.startswith("campaign.yaml:27:7: items[0].translations.fr: ")
    assert "add it to campaign.locales" in problem
    [problem] = problems_of(campaign_text().replace("locales: [de, en]", "locales: [de, fr]"))
    assert problem.startswith("campaign.yaml:8:")
    assert 'language "fr" has no catalogues; use one of: de, en' in problem


def test_post_languages_must_be_offered_and_the_email_has_none() -> None:
    text = campaign_text().replace('mastodon: {time: "08:05", lang: [de, en]}',
                                   'mastodon: {time: "08:05", lang: [de, es]}')  # fmt: skip
    [problem] = problems_of(text)
    assert "send.mastodon.lang" in problem and '"es" is not in campaign.locales' in problem
    text = campaign_text().replace('email: "08:00"', 'email: {time: "08:00", lang: en}')
    [problem] = problems_of(text)
    assert "each reader's language; remove lang" in problem


def test_the_stored_snapshot_keeps_the_translations() -> None:
    campaign = load_campaign_text(campaign_text(), "campaign.yaml")
    first = campaign.items[0]
    assert item_from_json(item_to_json(first)) == first
    # Snapshots written before translations existed read as items without any.
    assert "translations" not in item_to_json(campaign.items[1])


def test_a_translated_region_names_it_in_the_readers_language() -> None:
    text = campaign_text().replace(
        '        title: "First"\n', '        title: "First"\n        region: Bavaria\n'
    )
    campaign = load_campaign_text(text, "campaign.yaml")
    first, second = campaign.items
    english = campaign.edition(first, "en")
    assert english is not None and english.region == "Bavaria"
    assert campaign.edition(first, "de") == first and first.region == "Bayern"
    env = rendering.create_environment(ROOT / "templates")
    email = rendering.render_email(
        env, campaign, english, day=dt.date(2019, 4, 2), published=[], imprint="I",
        public_url="https://news.example.org", lang="en",
    )  # fmt: skip
    assert "Cluster A · Bavaria" in email.text and "Bayern" not in email.text
    # The snapshot keeps it; one without a translated region stays as it was written.
    assert item_from_json(item_to_json(first)) == first
    assert '"region": "Bavaria"' in item_to_json(first)
    plain = load_campaign_text(campaign_text(), "campaign.yaml").items[0]
    assert item_to_json(plain).count('"region"') == 1
    assert campaign.edition(second, "en") == second  # no English version: all German
    [problem] = problems_of(text.replace("region: Bavaria", 'region: " "'))
    assert problem.startswith("campaign.yaml:29:17: items[0].translations.en.region: ")
    assert "must not be empty" in problem


def test_the_campaign_name_has_its_translation_but_the_list_keeps_its_identity() -> None:
    text = campaign_text().replace(
        "  fallback: default\n",
        '  fallback: default\n  translations: {en: {name: "Test Week"}}\n',
    )
    campaign = load_campaign_text(text, "campaign.yaml")
    assert campaign.name_in("en") == "Test Week" and campaign.name_in("de") == "Testwoche"
    env = rendering.create_environment(ROOT / "templates")
    first = campaign.items[0]
    english = rendering.render_email(
        env, campaign, first, day=dt.date(2019, 4, 2), published=[], imprint="I",
        public_url="https://news.example.org", lang="en",
    )  # fmt: skip
    assert english.subject == "First – Test Week"
    sender = emails.Sender("News <news@news.example.org>", "https://news.example.org", "k" * 32)
    message = emails.compose(
        english, campaign, sender, to_address="a@example.org", to_name=None,
        unsubscribe="https://news.example.org/u/x", message_id="<m@news.example.org>",
        date=dt.datetime(2019, 4, 2, 6, tzinfo=dt.UTC),
    )  # fmt: skip
    assert message["List-Id"] == "Testwoche <test-week.news.example.org>"  # one list, two names
    [problem] = problems_of(text.replace("{en: {name:", "{fr: {name:"))
    assert "campaign.translations.fr" in problem and "add it to locales" in problem
