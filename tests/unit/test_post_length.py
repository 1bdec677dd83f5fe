"""Length rules per network, hashtags and word-boundary shortening (dispatcher.content.post_length)."""

from __future__ import annotations

import unicodedata

import pytest

from dispatcher.content import post_length as pl

URL_60 = "https://www.clusterplattform.de/reportage/2019/nordwind-abcd"


def test_url_fixture_is_60_chars() -> None:
    assert len(URL_60) == 60


def test_mastodon_counts_any_url_as_23() -> None:
    assert pl.mastodon_length(URL_60) == 23
    assert pl.mastodon_length(f"Neu: {URL_60} #Kiel") == 5 + 23 + 6
    assert pl.mastodon_length(URL_60, url_length=30) == 30


def test_mastodon_url_trailing_punctuation_is_not_part_of_the_url() -> None:
    assert pl.mastodon_length(f"({URL_60}).") == 1 + 23 + 2


def test_mastodon_url_without_scheme_gets_no_discount() -> None:
    text = "www.clusterplattform.de/reportage/2019/nordwind-maritim"
    assert pl.mastodon_length(text) == len(text)


def test_mastodon_remote_mention_counts_as_local() -> None:
    assert pl.mastodon_length("Hallo @erika@social.example.de!") == len("Hallo @erika!")


def test_mastodon_and_bluesky_count_graphemes() -> None:
    nfd = unicodedata.normalize("NFD", "ä")
    assert len(nfd) == 2
    assert pl.mastodon_length(nfd) == 1
    assert pl.bluesky_length(nfd) == 1
    assert pl.bluesky_length("ä") == 1
    assert pl.bluesky_length("👨‍👩‍👧") == 1
    assert pl.bluesky_length("🇩🇪") == 1


def test_bluesky_counts_urls_in_full() -> None:
    assert pl.bluesky_length(URL_60) == 60


def test_bluesky_fits_checks_bytes_too() -> None:
    assert pl.bluesky_fits("a" * 300)
    assert not pl.bluesky_fits("a" * 301)
    # 290 family emoji: 290 graphemes but 18 bytes each
    assert not pl.bluesky_fits("👨‍👩‍👧" * 290)


def test_x_weights() -> None:
    assert pl.x_length("…") == 2
    assert pl.x_length("€") == 2
    assert pl.x_length("äöüß„“–") == 7
    assert pl.x_length("😀") == 2
    assert pl.x_length("👨‍👩‍👧") == 2
    assert pl.x_length("漢字") == 4
    assert pl.x_length(URL_60) == 23
    assert pl.x_length(f"Neu: {URL_60}") == 5 + 23


def test_x_normalises_to_nfc() -> None:
    assert pl.x_length(unicodedata.normalize("NFD", "ä")) == 1


def test_linkedin_escape() -> None:
    assert pl.linkedin_escape("Teil (3) @Kiel") == r"Teil \(3\) \@Kiel"
    assert pl.linkedin_escape(r"\|{}@[]()<>#*_~") == "".join("\\" + c for c in r"\|{}@[]()<>#*_~")
    assert pl.linkedin_escape("Grüße, „Köln“; ok.") == "Grüße, „Köln“; ok."
    assert pl.linkedin_length(pl.linkedin_escape("(a)")) == 5


def test_linkedin_hashtag_template() -> None:
    assert pl.linkedin_hashtag("#Zukunft") == "{hashtag|\\#|Zukunft}"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("Maritime Wirtschaft", "#MaritimeWirtschaft"),
        ("Künstliche Intelligenz", "#KünstlicheIntelligenz"),
        ("Start-ups", "#Startups"),
        ("KMU", "#KMU"),
        ("#Clusterwoche", "#Clusterwoche"),
        ("ärzte netz", "#ÄrzteNetz"),
        ("  Industrie 4.0 ", "#Industrie40"),
        (unicodedata.normalize("NFD", "Fachkräfte"), "#Fachkräfte"),
        ("Straße", "#Straße"),
    ],
)
def test_hashtag(tag: str, expected: str) -> None:
    assert pl.hashtag(tag) == expected


@pytest.mark.parametrize("tag", ["", "   ", "#", "--- !"])
def test_hashtag_rejects_empty(tag: str) -> None:
    with pytest.raises(ValueError, match="hashtag"):
        pl.hashtag(tag)


def test_shorten_returns_text_that_fits_unchanged() -> None:
    assert pl.shorten_at_word("kurz genug", lambda t: True) == "kurz genug"


def test_shorten_cuts_at_a_word_boundary_with_ellipsis() -> None:
    text = "Werften, Zulieferer und Hochschulen an der Küste"
    short = pl.shorten_at_word(text, lambda t: len(t) <= 25)
    assert short == "Werften, Zulieferer und…"
    assert text.startswith(short.removesuffix("…"))


def test_shorten_drops_trailing_punctuation_before_ellipsis() -> None:
    short = pl.shorten_at_word("Werften, Zulieferer und Hochschulen", lambda t: len(t) <= 12)
    assert short == "Werften…"


def test_shorten_returns_empty_when_nothing_fits() -> None:
    assert pl.shorten_at_word("Donaudampfschifffahrt ist lang", lambda t: len(t) <= 3) == ""
    assert pl.shorten_at_word("Einwortteaser", lambda t: len(t) <= 5) == ""


def test_rules_cover_every_network() -> None:
    assert set(pl.RULES) == {"mastodon", "bluesky", "linkedin", "x", "webhook"}
    assert pl.RULES["webhook"].limit is None
    assert not pl.RULES["webhook"].fits("a" * 1901)
    assert pl.RULES["mastodon"].limit == pl.MASTODON_LIMIT == 500
