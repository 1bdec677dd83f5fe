"""The campaign file: what an editor sees when it is right, and when it is wrong."""

from __future__ import annotations

import datetime as dt
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from dispatcher.campaign.loading import CampaignError, load_campaign, load_campaign_text
from dispatcher.campaign.model import Channel, ItemStatus

SAMPLE = Path(__file__).parents[2] / "config" / "campaign.yaml"

VALID = textwrap.dedent(
    """\
    campaign:
      id: test-week
      name: "Testwoche"
      timezone: Europe/Berlin
      start: 2019-04-02
      end: 2019-04-11
      weekdays: [mon, tue, wed, thu, fri]
      holidays: DE
      catch_up: 2h
    send:
      email: "08:00"
      mastodon: "08:05"
    items:
      - id: erstes
        title: "Erstes"
        teaser: "Kurz."
        url: https://example.org/erstes
        initiative: "Cluster A"
        region: Bayern
      - id: zweites
        title: "Zweites"
        teaser: "Kurz."
        url: https://example.org/zweites
        initiative: "Cluster B"
        region: Sachsen
        date: 2019-04-03
        channels: [email]
        status: hold
    """
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(CampaignError) as caught:
        load_campaign_text(text, "campaign.yaml")
    return [str(p) for p in caught.value.problems]


def test_sample_week_loads() -> None:
    campaign = load_campaign(SAMPLE)
    assert campaign.id == "clusterwoche-2019"
    assert (campaign.start, campaign.end) == (dt.date(2019, 4, 2), dt.date(2019, 4, 11))
    assert len(campaign.items) == 8
    assert len({item.region for item in campaign.items}) == 8
    assert set(campaign.channels) == set(Channel)
    assert campaign.send[Channel.LINKEDIN] == dt.time(9, 0)
    assert campaign.catch_up == dt.timedelta(hours=6)


def test_valid_text_gives_typed_values() -> None:
    campaign = load_campaign_text(VALID, "campaign.yaml")
    assert campaign.weekdays == frozenset({0, 1, 2, 3, 4})
    assert campaign.catch_up == dt.timedelta(hours=2)
    second = campaign.item("zweites")
    assert second.date == dt.date(2019, 4, 3)
    assert second.channels == (Channel.EMAIL,)
    assert second.status is ItemStatus.HOLD


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = VALID.replace('  name: "Testwoche"', '  name: "Testwoche\n  bad: [')
    [error] = errors_of(text)
    assert error.startswith("campaign.yaml:")
    assert "YAML syntax error" in error


def test_every_error_at_once_with_line_and_column() -> None:
    text = textwrap.dedent(
        """\
        campaign:
          id: test-week
          name: "Testwoche"
          timezone: Europe/Atlantis
          start: 2019-04-11
          end: 2019-04-02
          weekdays: [mon, tue, wed, thu, fri]
          holidays: DE-XX
        send:
          email: "8 Uhr"
          fax: "08:00"
          mastodon: "08:05"
        items:
          - id: eins
            title: "Eins"
            teaser: "Kurz."
            url: htps://example.org/eins
            initiative: "Cluster A"
            region: Bayern
            image: https://example.org/bild.jpg
          - id: eins
            title: "Zwei"
            teaser: "Kurz."
            url: https://example.org/zwei
            initiative: "Cluster B"
            region: Sachsen
            channels: [email, myspace]
        """
    )
    errors = errors_of(text)
    assert 'campaign.yaml:4:13: campaign.timezone: unknown time zone "Europe/Atlantis"' in errors[0]
    expected = [
        "campaign.yaml:4:13: campaign.timezone:",
        "campaign.yaml:8:13: campaign.holidays: unknown holiday region",
        "campaign.yaml:10:10: send.email: malformed time '8 Uhr'",
        'campaign.yaml:11:3: send.fax: unknown channel "fax"',
        'campaign.yaml:17:10: items[0].url: not a valid URL ("htps://example.org/eins")',
        "campaign.yaml:27:23: items[1].channels[1]: 'myspace' is not one of",
        'campaign.yaml:21:9: items[1].id: duplicate item id "eins"',
        "campaign.yaml:20:12: items[0].image: image_alt is required",
    ]
    for prefix in expected:
        assert any(e.startswith(prefix) for e in errors), (prefix, errors)


def test_end_before_start() -> None:
    text = VALID.replace("start: 2019-04-02", "start: 2019-04-20")
    assert errors_of(text) == [
        "campaign.yaml:6:8: campaign.end: end 2019-04-11 is before start 2019-04-20"
    ]


def test_pinned_date_must_be_a_send_day() -> None:
    # 2019-04-06 is a Saturday; the item must be ready for its pin to matter.
    text = VALID.replace("date: 2019-04-03", "date: 2019-04-06").replace(
        "status: hold", "status: ready"
    )
    [error] = errors_of(text)
    assert error.startswith("campaign.yaml:26:11: items[1].date: 2019-04-06 is not a send day")


def test_pinned_date_on_a_public_holiday() -> None:
    text = (
        VALID.replace("end: 2019-04-11", "end: 2019-04-30")
        .replace("date: 2019-04-03", "date: 2019-04-19")  # Karfreitag
        .replace("status: hold", "status: ready")
    )
    [error] = errors_of(text)
    assert "items[1].date: 2019-04-19 is not a send day" in error


def test_two_items_pinned_to_one_day() -> None:
    text = VALID.replace("status: hold", "status: ready").replace(
        "    region: Bayern\n", "    region: Bayern\n    date: 2019-04-03\n"
    )
    [error] = errors_of(text)
    assert error.startswith(
        "campaign.yaml:27:11: items[1].date: 2019-04-03 is already pinned by items[0]"
    )


def test_unquoted_time_is_explained() -> None:
    # YAML 1.1 reads 8:05 as the sexagesimal number 485.
    [error] = errors_of(VALID.replace('mastodon: "08:05"', "mastodon: 8:05"))
    assert error.startswith("campaign.yaml:12:13: send.mastodon: malformed time 485")
    assert "quote it" in error


def test_unknown_and_missing_keys() -> None:
    text = VALID.replace("    region: Bayern\n", "    regoin: Bayern\n", 1)
    errors = errors_of(text)
    assert errors[0].startswith("campaign.yaml:14:5: items[0].region: required")
    assert errors[1].startswith(
        "campaign.yaml:19:5: items[0].regoin: unknown key; check the spelling"
    )


def test_duplicate_yaml_key_is_reported() -> None:
    text = VALID.replace('  name: "Testwoche"\n', '  name: "Testwoche"\n  name: "Nochmal"\n')
    [error] = errors_of(text)
    assert error.startswith(
        "campaign.yaml:4:3: campaign.name: duplicate key 'name' (first at line 3)"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignError) as caught:
        load_campaign(tmp_path / "missing.yaml")
    assert "cannot read the campaign file" in str(caught.value)


def alias_bomb(width: int = 142, depth: int = 10) -> str:
    """A "billion laughs" campaign: `width**depth` values from 5.8 KB of text."""
    lines = [f"a0: &a0 [{','.join(['lol'] * width)}]"]
    for level in range(1, depth):
        lines.append(f"a{level}: &a{level} [{','.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + f"\ncampaign: *a{depth - 1}\n"


def test_alias_bomb_is_refused_at_its_line_within_a_second_and_a_few_mb(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(alias_bomb(), encoding="utf-8")
    assert path.stat().st_size == 5_794
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(CampaignError) as caught:
            load_campaign(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [problem] = caught.value.problems
    # The third line is the first whose aliases cross the limit (142**3 values).
    assert str(problem).startswith(f"{path}:3:")
    assert "the alias *a1 makes the file expand to more than 100,000 values" in str(problem)
    assert elapsed < 1.0
    assert peak < 20_000_000


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(VALID + "# " + "x" * 3_000_000 + "\n", encoding="utf-8")
    tracemalloc.start()
    try:
        with pytest.raises(CampaignError) as caught:
            load_campaign(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{path}:29:")
    assert "the file is longer than 512,000 characters" in str(problem)
    assert peak < 10_000_000


def test_many_plain_values_are_bounded_too() -> None:
    text = VALID + "extra: [" + ",".join(["1"] * 100_001) + "]\n"
    [error] = errors_of(text)
    assert error.startswith("campaign.yaml:29:")
    assert "more than 100,000 values" in error


def test_control_characters_are_refused_at_their_value() -> None:
    text = (
        VALID.replace('name: "Testwoche"', 'name: "Test\\twoche"')
        .replace('title: "Erstes"', 'title: "Erstes \\e[2J"')
        .replace('initiative: "Cluster A"', 'initiative: "Cluster\\0A"')
        .replace("    region: Bayern\n", '    region: Bayern\n    tags: [ok, "x\\ty"]\n', 1)
    )
    assert errors_of(text) == [
        "campaign.yaml:3:9: campaign.name: control character U+0009 a tab at character 5 of "
        "the value; remove it (tabs and line breaks are allowed only in body and teaser)",
        "campaign.yaml:15:12: items[0].title: control character U+001B ESC (a terminal "
        "escape) at character 8 of the value; remove it",
        "campaign.yaml:18:17: items[0].initiative: control character U+0000 NUL at character "
        "8 of the value; remove it",
        "campaign.yaml:20:16: items[0].tags[1]: control character U+0009 a tab at character 2 "
        "of the value; remove it (tabs and line breaks are allowed only in body and teaser)",
    ]


def test_tabs_and_line_breaks_are_text_in_body_and_teaser_only() -> None:
    text = VALID.replace(
        '    teaser: "Kurz."\n    url: https://example.org/erstes\n',
        '    teaser: "Kurz.\\nZweite Zeile."\n    url: https://example.org/erstes\n'
        '    body: "Absatz\\n\\n\\tEingerückt"\n',
    )
    item = load_campaign_text(text, "campaign.yaml").item("erstes")
    assert item.teaser == "Kurz.\nZweite Zeile."
    assert item.body == "Absatz\n\n\tEingerückt"
    [error] = errors_of(text.replace("Eingerückt", "Eingerückt\\a"))
    assert error.startswith("campaign.yaml:18:11: items[0].body: control character U+0007")


def test_rules_across_fields_show_together_with_schema_errors() -> None:
    # The campaign section has an unknown key, the first item a malformed URL, a channel
    # that is not sent and a Saturday pin; the second a pin on a Sunday. Every one shows.
    text = (
        VALID.replace("  catch_up: 2h\n", "  catch_up: 2h\n  colour: blau\n")
        .replace("url: https://example.org/erstes", "url: htps://example.org/erstes")
        .replace("    region: Bayern\n", "    region: Bayern\n    date: 2019-04-06\n", 1)
        .replace("    region: Bayern\n", "    region: Bayern\n    channels: [webhook]\n", 1)
        .replace("date: 2019-04-03", "date: 2019-04-07")
        .replace("status: hold", "status: ready")
    )
    assert [e.split(": ", 2)[:2] for e in errors_of(text)] == [
        ["campaign.yaml:10:3", "campaign.colour"],
        ["campaign.yaml:18:10", "items[0].url"],
        ["campaign.yaml:21:16", "items[0].channels[0]"],
        ["campaign.yaml:22:11", "items[0].date"],
        ["campaign.yaml:29:11", "items[1].date"],
    ]
    errors = errors_of(text)
    assert 'not a valid URL ("htps://example.org/erstes")' in errors[1]
    assert 'channel "webhook" is not under send:' in errors[2]
    assert "2019-04-06 is not a send day" in errors[3]
    assert "2019-04-07 is not a send day" in errors[4]


def test_a_pin_is_checked_against_the_valid_calendar_fields() -> None:
    # A bad catch_up leaves the window known: the Saturday pin is still reported. A bad
    # end leaves it unknown: no guess about the pin, only the schema error.
    pinned = VALID.replace("date: 2019-04-03", "date: 2019-04-06").replace(
        "status: hold", "status: ready"
    )
    errors = errors_of(pinned.replace("catch_up: 2h", "catch_up: soon"))
    assert [e.split(": ", 2)[1] for e in errors] == ["campaign.catch_up", "items[1].date"]
    errors = errors_of(pinned.replace("end: 2019-04-11", "end: someday"))
    assert [e.split(": ", 2)[1] for e in errors] == ["campaign.end"]


def test_a_malformed_send_time_does_not_make_its_channel_unknown() -> None:
    text = VALID.replace('mastodon: "08:05"', 'mastodon: "8 Uhr"').replace(
        "channels: [email]", "channels: [mastodon]"
    )
    [error] = errors_of(text)
    assert error.startswith("campaign.yaml:12:13: send.mastodon: malformed time '8 Uhr'")


def test_the_single_locale_of_earlier_files_names_the_language() -> None:
    campaign = load_campaign_text(VALID.replace("  catch_up", "  locale: de_DE\n  catch_up"), "c")
    assert campaign.locales == ("de",)
    [error] = errors_of(VALID.replace("  catch_up", "  locale: fr_FR\n  catch_up"))
    assert error == (
        'campaign.yaml:9:11: campaign.locale: language "fr_FR" has no catalogues; '
        "use one of: de, en"
    )
