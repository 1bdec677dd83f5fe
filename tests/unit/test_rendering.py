"""What subscribers and followers get: the newsletter and the posts (dispatcher.content.rendering).

The email is checked by parsing it (stdlib html.parser), the posts with each network's own
counter, so these tests state the promise rather than the template's exact wording.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.content import post_length, rendering

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
DAY = dt.date(2019, 4, 2)
URL = "https://www.clusterplattform.de/reportage/2019/ki-sued?utm_source=nl&x=1"
LONG_TEASER = " ".join(
    ["Große Straßenbahn-Überführung für „Künstliche Intelligenz“ in Süddeutschland 🚀."] * 26
)
BODY = """\
# Überschrift

**Stuttgart, im März.** Die Geschäftsführerin sagt: „Wir sind größer geworden.“

<script>alert(1)</script>
<img src=x onerror="alert(2)">
<div style="position:fixed">roh</div>

[böser Link](javascript:alert(3)) und [guter Link](https://example.org/gut)

- eins
- zwei
"""
POSTS = ("mastodon", "bluesky", "linkedin", "x")


BASE_ITEM = Item(
    id="ki-sued",
    title="Vorhang auf: <b>KI-Netz</b> Süd (Teil 1) @stuttgart",
    teaser="Start-ups, Hochschulen und Mittelstand – gemeinsam für KI aus Baden-Württemberg. 🚀",
    url=URL,
    initiative="KI-Netz Süd e. V.",
    region="Baden-Württemberg",
    image="https://www.clusterplattform.de/bilder/ki.jpg",
    image_alt='Ein Roboterarm "greift" <zu>',
    tags=("Clusterwoche", "Künstliche Intelligenz", "Start-ups"),
    body=BODY,
)


def make_item(**changes: Any) -> Item:
    return dataclasses.replace(BASE_ITEM, **changes)


EARLIER = make_item(
    id="nordwind", title="Vorhang auf: Nordwind Maritim", url="https://example.org/nordwind",
    body=None, image=None, image_alt=None,
)  # fmt: skip


def make_campaign(*items: Item) -> Campaign:
    return Campaign(
        id="clusterwoche-2019", name="2. Clusterwoche Deutschland", timezone="Europe/Berlin",
        start=DAY, end=dt.date(2019, 4, 11), weekdays=frozenset(range(5)), holidays="DE",
        send={Channel.EMAIL: dt.time(8)}, items=items,
    )  # fmt: skip


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return rendering.create_environment(TEMPLATES)


class Parsed(HTMLParser):
    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.styles: list[str] = []
        self.h1: list[str] = []
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.stack and self.stack[-1] == "style":
            self.styles.append(data)
        if "h1" in self.stack:
            self.h1.append(data)

    def hrefs(self) -> list[str]:
        return [a.get("href") or "" for t, a in self.tags if t == "a"]


def render(env: jinja2.Environment, item: Item, published: list[tuple[dt.date, Item]]) -> object:
    return rendering.render_email(
        env, make_campaign(item, EARLIER), item, day=DAY, published=published,
        imprint="Clusterplattform Deutschland\nMusterstraße 1 <Haus B>, 10115 Berlin",
        public_url="https://news.example.de/",
    )  # fmt: skip


def test_email_html_is_safe_and_complete(env: jinja2.Environment) -> None:
    email = render(env, make_item(), [(dt.date(2019, 4, 1), EARLIER)])
    assert isinstance(email, rendering.RenderedEmail)
    doc = Parsed(email.html)
    tags = [t for t, _ in doc.tags]
    assert "script" not in tags
    assert "div" not in [t for t, a in doc.tags if "position" in (a.get("style") or "")]
    for _, attrs in doc.tags:
        assert not any(name.startswith("on") for name in attrs)
        assert not any("javascript:" in (value or "").lower() for value in attrs.values())
    assert "<script" not in email.html.lower()
    assert not re.search(r"<[^>]*\sonerror\s*=", email.html, re.IGNORECASE)
    assert "".join(doc.h1).strip() == "Vorhang auf: <b>KI-Netz</b> Süd (Teil 1) @stuttgart"
    assert "b" not in tags
    assert URL in doc.hrefs()
    assert "https://example.org/gut" in doc.hrefs()
    assert "https://news.example.de/archive" in doc.hrefs()
    assert rendering.UNSUBSCRIBE_PLACEHOLDER in doc.hrefs()
    text = "".join(doc.text)
    for phrase in ("Dienstag, 2. April 2019", "2. Clusterwoche Deutschland", "KI-Netz Süd e. V.",
                   "Baden-Württemberg", "„Wir sind größer geworden.“", "Zur Reportage",
                   "Newsletter abbestellen", "Impressum", "Musterstraße 1 <Haus B>",
                   rendering.GREETING_PLACEHOLDER):  # fmt: skip
        assert phrase in text, phrase
    img = next(a for t, a in doc.tags if t == "img")
    assert img["alt"] == 'Ein Roboterarm "greift" <zu>'
    assert "max-width" in (
        next(a for t, a in doc.tags if t == "table" and "600" in str(a))["style"] or ""
    )


def test_email_keeps_long_teaser_and_emoji(env: jinja2.Environment) -> None:
    email = render(env, make_item(teaser=LONG_TEASER), [])
    assert isinstance(email, rendering.RenderedEmail)
    assert LONG_TEASER in "".join(Parsed(email.html).text)
    assert LONG_TEASER in " ".join(email.text.split())
    assert "🚀" in email.html and "🚀" in email.text


def test_email_refuses_non_http_links(env: jinja2.Environment) -> None:
    with pytest.raises(ValueError, match=r"ki-sued.*url"):
        render(env, make_item(url="javascript:alert(1)"), [])
    with pytest.raises(ValueError, match=r"nordwind.*image"):
        render(env, make_item(), [(DAY, dataclasses.replace(EARLIER, image="data:x"))])


def test_email_css_is_inlined_and_media_query_kept(env: jinja2.Environment) -> None:
    email = render(env, make_item(), [])
    assert isinstance(email, rendering.RenderedEmail)
    doc = Parsed(email.html)
    assert any("@media (max-width: 620px)" in style for style in doc.styles)
    styled = [t for t, a in doc.tags if a.get("style")]
    assert {"body", "h1", "p", "a", "td"} <= set(styled)


def test_email_published_section_only_when_something_was_published(
    env: jinja2.Environment,
) -> None:
    with_earlier = render(env, make_item(), [(dt.date(2019, 4, 1), EARLIER)])
    alone = render(env, make_item(), [])
    assert isinstance(with_earlier, rendering.RenderedEmail)
    assert isinstance(alone, rendering.RenderedEmail)
    assert "https://example.org/nordwind" in Parsed(with_earlier.html).hrefs()
    assert "Vorhang auf: Nordwind Maritim" in with_earlier.text
    assert "https://example.org/nordwind" in with_earlier.text
    assert "Bisher" in with_earlier.text and "Bisher" in "".join(Parsed(with_earlier.html).text)
    assert "https://example.org/nordwind" not in alone.html + alone.text
    assert "Bisher" not in alone.text and "Bisher" not in alone.html


def test_email_text_version(env: jinja2.Environment) -> None:
    email = render(env, make_item(), [(dt.date(2019, 4, 1), EARLIER)])
    assert isinstance(email, rendering.RenderedEmail)
    text = email.text
    assert "Dienstag, 2. April 2019" in text
    assert URL in text
    assert "guter Link (https://example.org/gut)" in " ".join(text.split())
    assert "- eins\n- zwei" in text
    assert "**" not in text
    assert "Musterstraße 1 <Haus B>" in text
    assert "https://news.example.de/archive" in text
    assert rendering.UNSUBSCRIBE_PLACEHOLDER in text and rendering.GREETING_PLACEHOLDER in text
    assert "Überschrift" in text and "größer" in text


@pytest.mark.parametrize("image", ["with image", "without image"])
def test_email_text_carries_every_url_of_the_html_as_often(
    env: jinja2.Environment, image: str
) -> None:
    """Links, the image and the footer's links: each URL as often in the text part as in
    the HTML (rspamd's URI_COUNT_ODD scores a multipart/alternative with an odd URL count).
    A link whose text is its address appears once in the text, as it shows once in HTML."""
    body = BODY + "\nMehr: <https://example.org/mehr>, Fragen an <info@example.org>\n"
    item = make_item(body=body)
    if image == "without image":
        item = dataclasses.replace(item, image=None, image_alt=None)
    email = render(env, item, [(dt.date(2019, 4, 1), EARLIER)])
    assert isinstance(email, rendering.RenderedEmail)
    html, text = email.personalise(name="Erika", unsubscribe_url="https://news.example.de/u/7.x")
    in_html = Counter(
        value
        for _, attrs in Parsed(html).tags
        for value in (attrs.get("href"), attrs.get("src"))
        if value and value.startswith(("http://", "https://"))
    )
    assert in_html["https://example.org/mehr"] == 1
    assert ("https://www.clusterplattform.de/bilder/ki.jpg" in in_html) is (image == "with image")
    urls_in_text = re.findall(r"https?://[^\s()<>]*[^\s()<>.,;:!?]", text)  # not "," or "."
    assert Counter(urls_in_text) == in_html
    assert "Mehr: https://example.org/mehr, Fragen an info@example.org" in " ".join(text.split())


def test_email_preheader_is_the_teaser_and_nothing_is_hidden(env: jinja2.Environment) -> None:
    """Inbox lists show the first text of a message: the teaser. It is visible text, as is
    everything else: spam filters count hidden blocks against a message."""
    email = render(env, make_item(), [])
    assert isinstance(email, rendering.RenderedEmail)
    body = Parsed("<body" + email.html.split("<body", 1)[1])
    assert " ".join("".join(body.text).split()).startswith(BASE_ITEM.teaser)
    hiding = re.compile(
        r"display:none|visibility:hidden|opacity:0(\.0*)?(;|$)|max-(height|width):0|"
        r"font-size:0|mso-hide:all|overflow:hidden"
    )
    for tag, attrs in body.tags:
        style = re.sub(r"\s+", "", (attrs.get("style") or "").lower())
        assert not hiding.search(style), f"<{tag} style={attrs.get('style')!r}>"


def test_email_subject_is_one_line_with_title(env: jinja2.Environment) -> None:
    email = render(env, make_item(title="Vorhang\nauf: Süd"), [])
    assert isinstance(email, rendering.RenderedEmail)
    assert email.subject == "Vorhang auf: Süd – 2. Clusterwoche Deutschland"


def test_email_without_image_and_body(env: jinja2.Environment) -> None:
    email = render(env, make_item(image=None, image_alt=None, body=None), [])
    assert isinstance(email, rendering.RenderedEmail)
    assert "img" not in [t for t, _ in Parsed(email.html).tags]
    assert URL in email.text


def test_personalise(env: jinja2.Environment) -> None:
    email = render(env, make_item(), [])
    assert isinstance(email, rendering.RenderedEmail)
    unsubscribe = "https://news.example.de/u/abc?x=1&y=2"
    html_out, text_out = email.personalise(name="Erika <Müller> & Co", unsubscribe_url=unsubscribe)
    for part in (html_out, text_out):
        assert rendering.UNSUBSCRIBE_PLACEHOLDER not in part
        assert rendering.GREETING_PLACEHOLDER not in part
    doc = Parsed(html_out)
    assert unsubscribe in doc.hrefs()
    assert "Guten Tag Erika <Müller> & Co," in "".join(doc.text)
    assert "<Müller>" not in html_out
    assert "Guten Tag Erika <Müller> & Co," in text_out and unsubscribe in text_out
    anonymous_html, anonymous_text = email.personalise(name=None, unsubscribe_url=unsubscribe)
    assert "Guten Tag," in anonymous_text and "Guten Tag," in anonymous_html
    assert email.personalise(name="  ", unsubscribe_url=unsubscribe)[1] == anonymous_text


# --- posts -----------------------------------------------------------------------------------

COUNTERS = {
    "mastodon": post_length.mastodon_length,
    "bluesky": post_length.bluesky_length,
    "linkedin": post_length.linkedin_length,
    "x": post_length.x_length,
}
TAGS = ("#Clusterwoche", "#KünstlicheIntelligenz", "#Startups")


def post(env: jinja2.Environment, channel: str, item: Item) -> rendering.RenderedPost:
    return rendering.render_post(env, channel, make_campaign(item), item, day=DAY)


@pytest.mark.parametrize("channel", POSTS)
def test_long_teaser_is_shortened_to_fit(env: jinja2.Environment, channel: str) -> None:
    item = make_item(teaser=LONG_TEASER * 3)
    rendered = post(env, channel, item)
    assert rendered.length == COUNTERS[channel](rendered.text)
    assert rendered.limit is not None and rendered.length <= rendered.limit
    assert rendered.link == URL
    assert rendered.hashtags == TAGS
    if channel == "linkedin":
        assert URL not in rendered.text
        for tag in TAGS:
            assert "{hashtag|\\#|" + tag[1:] + "}" in rendered.text
        return
    assert URL in rendered.text.split()
    for tag in TAGS:
        assert re.search(re.escape(tag) + r"(?!\w)", rendered.text)
    shortened = next(line for line in rendered.text.splitlines() if line.endswith("…"))
    assert LONG_TEASER.startswith(shortened[:-1])
    assert LONG_TEASER[len(shortened) - 1] == " "  # the cut is at a word boundary


def test_linkedin_fits_long_teaser_and_escapes(env: jinja2.Environment) -> None:
    rendered = post(env, "linkedin", make_item(teaser=LONG_TEASER * 3))
    assert rendered.limit == 3000 and len(LONG_TEASER * 3) > 3000
    assert "…" in rendered.text
    assert r"\(Teil 1\)" in rendered.text and r"\@stuttgart" in rendered.text
    assert r"\<b\>" in rendered.text
    unescaped = re.sub(r"\\.|\{hashtag\|\\#\|\w+\}", "", rendered.text)
    assert not set("()@<>[]{}#*_~|") & set(unescaped)


@pytest.mark.parametrize("channel", [*POSTS, "webhook"])
def test_short_item_is_not_shortened(env: jinja2.Environment, channel: str) -> None:
    item = make_item(title="Vorhang auf: Süd", teaser="Kurz und gut: Straßen in Köln.")
    rendered = post(env, channel, item)
    assert "…" not in rendered.text
    assert "Kurz und gut: Straßen in Köln." in rendered.text
    assert "Vorhang auf: Süd" in rendered.text


def test_webhook_post(env: jinja2.Environment) -> None:
    rendered = post(env, "webhook", make_item(teaser=LONG_TEASER * 3))
    assert rendered.limit is None and rendered.channel == "webhook"
    assert len(rendered.text) <= 1900
    assert URL in rendered.text and "Vorhang auf" in rendered.text


def test_render_post_accepts_channel_enum(env: jinja2.Environment) -> None:
    assert post(env, Channel.MASTODON, make_item()).channel == "mastodon"
    with pytest.raises(ValueError, match="email"):
        post(env, "email", make_item())


def test_teaser_dropped_then_error_when_nothing_fits(env: jinja2.Environment) -> None:
    one_word = "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen"
    rendered = post(env, "bluesky", make_item(title="Titel " * 25, teaser=one_word))
    assert "Donau" not in rendered.text and rendered.length <= 300
    assert URL in rendered.text and "#KünstlicheIntelligenz" in rendered.text
    with pytest.raises(ValueError, match=r"ki-sued.*bluesky"):
        post(env, "bluesky", make_item(title="Titel " * 60))


# --- templates -------------------------------------------------------------------------------


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


def test_shipped_templates_are_fine(env: jinja2.Environment) -> None:
    assert rendering.check_templates(env, [*Channel, "x"]) == []


def test_check_templates_reports_every_problem_with_file_and_line(templates_copy: Path) -> None:
    (templates_copy / "social" / "bluesky.txt.j2").unlink()
    (templates_copy / "social" / "mastodon.txt.j2").write_text("{{ title }}\n\n{{ url }\n")
    (templates_copy / "email" / "newsletter.txt.j2").write_text("Hallo\n{{ item.titel }}\n")
    env = rendering.create_environment(templates_copy)
    problems = [str(p) for p in rendering.check_templates(env, list(Channel))]
    assert len(problems) == 3, problems
    assert any(p.endswith("social/bluesky.txt.j2: template not found") for p in problems)
    assert any(re.search(r"social/mastodon\.txt\.j2:3: .*'}'", p) for p in problems)
    assert any(re.search(r"email/newsletter\.txt\.j2:2: .*titel", p) for p in problems)


def test_unknown_variable_is_an_error(templates_copy: Path) -> None:
    (templates_copy / "social" / "x.txt.j2").write_text("{{ title }}\n{{ tittle }}\n")
    env = rendering.create_environment(templates_copy)
    with pytest.raises(rendering.TemplateProblem, match=r"x\.txt\.j2:2: 'tittle' is undefined"):
        post(env, "x", make_item())


def test_local_date_filter_follows_the_language(env: jinja2.Environment) -> None:
    template = env.from_string("{{ d | local_date }}")
    assert template.render(d=DAY, lang="de") == "Dienstag, 2. April 2019"
    assert template.render(d=DAY, lang="en") == "Tuesday, 2 April 2019"
    assert env.from_string("{{ 'Start-ups' | hashtag }}").render() == "#Startups"


def test_required_templates() -> None:
    assert rendering.required_templates(Channel.MASTODON) == ("social/mastodon.txt.j2",)
    assert len(rendering.required_templates(Channel.EMAIL)) == 3


# --- property --------------------------------------------------------------------------------

GERMANISH = st.text(alphabet="aeinrstuäöüßÄÖÜ AEZ .,–„“!?😀🚀👍🏽", max_size=1500)
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüßÄÖÜ", min_size=1, max_size=15)
TAG_LISTS = st.lists(st.lists(WORDS, min_size=1, max_size=2).map(" ".join), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(teaser=GERMANISH, tags=TAG_LISTS)
def test_posts_always_fit_and_keep_link_and_hashtags(teaser: str, tags: list[str]) -> None:
    env = rendering.create_environment(TEMPLATES)
    item = make_item(teaser=teaser, tags=tuple(tags))
    expected = tuple(dict.fromkeys(post_length.hashtag(t) for t in tags))
    for channel in ("mastodon", "bluesky"):
        rendered = post(env, channel, item)
        assert rendered.limit is not None
        assert rendered.length == COUNTERS[channel](rendered.text) <= rendered.limit
        assert URL in rendered.text
        assert rendered.hashtags == expected
        for tag in expected:
            assert re.search(re.escape(tag) + r"(?!\w)", rendered.text)
    assert post_length.bluesky_fits(post(env, "bluesky", item).text)


def test_rendering_is_pure() -> None:
    """The rendering layer must not pull in I/O libraries (the pure/I-O boundary)."""
    code = (
        "import sys, dispatcher.content.rendering, dispatcher.content.post_length\n"
        "bad = {'sqlalchemy', 'requests', 'smtplib', 'apscheduler'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
