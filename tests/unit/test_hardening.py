"""Hardening promises that need no server: each test is one thing an attacker or a careless
edit can never do (issue 8, item 4). The end-to-end ones are in
tests/integration/test_hardening.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import hmac
import inspect
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from dispatcher.campaign.loading import CampaignError, load_campaign_text
from dispatcher.campaign.model import Campaign, Item
from dispatcher.content import rendering
from dispatcher.mail import compose as emails
from dispatcher.mail import tokens
from dispatcher.settings import DEV_SECRET_KEY, Settings
from dispatcher.web import subscription
from tests.support.headers import HEADERS

ROOT = Path(__file__).parents[2]
SAMPLE = (ROOT / "config" / "campaign.yaml").read_text(encoding="utf-8")
FIRST_URL = "url: https://www.clusterplattform.de/reportage/2019/nordwind-maritim"
FIRST_IMAGE = "image: https://www.clusterplattform.de/bilder/reportage/nordwind-maritim.jpg"
SECRET = "test-secret-key-0123456789-abcdefghijkl"
SENDER = emails.Sender("Clusterplattform <newsletter@news.example.org>", "https://x.org", SECRET)
DAY = dt.date(2019, 4, 2)
INJECTIONS = [
    "Erika\r\nBcc: x@evil.example",
    "Erika\nBcc: x@evil.example",
    "Erika\rBcc: x@evil.example",
    "Erika\r\n\r\n<html>body</html>",
    "Erika\u2028Bcc: x@evil.example",
    "Erika\x85Bcc: x@evil.example",
    "Erika\r\n Bcc: x@evil.example",  # a folded continuation
    "=?utf-8?q?Erika=0D=0ABcc:_x@evil.example?=",  # an encoded word that decodes to CRLF
]


def _sample() -> Campaign:
    return load_campaign_text(SAMPLE, "campaign.yaml")


def _message(campaign: Campaign, item: Item, name: str) -> bytes:
    env = rendering.create_environment(ROOT / "templates")
    shared = rendering.render_email(
        env, campaign, item, day=DAY, published=[], imprint="Impressum", public_url="https://x.org"
    )
    message = emails.compose(
        shared,
        campaign,
        SENDER,
        to_address="erika@example.org",
        to_name=name,
        unsubscribe=emails.unsubscribe_url(SENDER, subscriber_id=7, campaign_id=campaign.id),
        message_id="<clusterwoche-2019.20190402.email.7@news.example.org>",
        date=dt.datetime(2019, 4, 2, 8, 0, tzinfo=campaign.zone),
    )
    return message.as_bytes()


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def assert_one_clean_header_set(data: bytes) -> EmailMessage:
    """Exactly the headers the dispatcher writes, each once, nothing like Bcc anywhere."""
    message = _parse(data)
    assert sorted(message.keys()) == sorted(HEADERS)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\nbcc:" not in head.lower() and not head.lower().startswith(b"bcc:")
    for line in head.split(b"\r\n"):
        assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].decode() in HEADERS, line
    for part in message.iter_parts():
        assert set(part.keys()) <= {"Content-Type", "Content-Transfer-Encoding", "MIME-Version"}
    assert message["To"].addresses[0].addr_spec == "erika@example.org"
    assert len(message["To"].addresses) == 1
    return message


@pytest.mark.parametrize("text", INJECTIONS)
def test_no_header_injection_from_names_titles_or_the_campaign_name(text: str) -> None:
    campaign = _sample()
    campaign = dataclasses.replace(campaign, name=text.replace("Erika", "Clusterwoche"))
    item = dataclasses.replace(campaign.items[0], title=text.replace("Erika", "Titel"))
    message = assert_one_clean_header_set(_message(campaign, item, text))
    for header in ("To", "Subject", "List-Id"):
        assert "\r" not in str(message[header]) and "\n" not in str(message[header])


def test_header_like_text_loaded_from_the_campaign_file_stays_text() -> None:
    """A folded block scalar ends in a newline: it used to crash every send."""
    text = SAMPLE.replace(
        'name: "2. Clusterwoche Deutschland"',
        "name: >\n    Clusterwoche\n    Bcc: x@evil.example\n",
    ).replace(
        'title: "Vorhang auf: Nordwind Maritim e. V."',
        'title: "Titel\\r\\nBcc: y@evil.example"',
    )
    with pytest.raises(CampaignError, match=r"items\[0\]\.title: control character U\+000D"):
        load_campaign_text(text, "campaign.yaml")
    # validate refuses the CRLF title; an item that skipped it must still not add headers.
    title = "Titel\r\nBcc: y@evil.example"
    campaign = load_campaign_text(text.replace('"Titel\\r\\nBcc: y@evil.example"', "T"), "c.yaml")
    assert "\n" in campaign.name
    item = dataclasses.replace(campaign.items[0], title=title)
    message = assert_one_clean_header_set(_message(campaign, item, "Erika\r\nBcc: z@evil.example"))
    assert message["List-Id"].startswith("Clusterwoche Bcc: x@evil.example <")


# -- sanitising the editor's Markdown/HTML ------------------------------------------------------

EVIL_BODY = """\
Absatz mit **fett**.

<script>alert("EVIL1")</script>
<img src="https://evil.example/x.png" onerror="alert('EVIL2')">
<a href="javascript:alert('EVIL3')" onclick="EVIL4()">klick</a>
<iframe src="https://evil.example/EVIL5"></iframe>
<style>@import url(https://evil.example/EVIL6.css); body { background: url(EVIL7) }</style>
<link rel="stylesheet" href="https://evil.example/EVIL8.css">
<div style="background:url(https://evil.example/EVIL9)">roh</div>
<svg onload="EVIL10()"><script>EVIL11</script></svg>
<form action="https://evil.example/EVIL12"><input name=x></form>
<object data="https://evil.example/EVIL13"></object><embed src="https://evil.example/EVIL14">
<meta http-equiv="refresh" content="0;url=https://evil.example/EVIL15">
<base href="https://evil.example/EVIL16">

[md-js](javascript:alert('EVIL17')) [md-data](data:text/html;base64,RVZJTDE4) \
[md-vb](vbscript:EVIL19) [Mixed](JaVaScRiPt:EVIL20) [tab](java\tscript:EVIL21)
![bild](javascript:EVIL22) <a href="&#106;avascript:EVIL23">enc</a>
[gut](https://example.org/gut)
"""


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def test_editor_html_is_sanitised_in_the_mail_subscribers_get() -> None:
    campaign = _sample()
    item = dataclasses.replace(campaign.items[0], body=EVIL_BODY)
    message = _parse(_message(campaign, item, "Erika"))
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    parser, baseline = _Tags(), _Tags()
    parser.feed(html)
    plain = dataclasses.replace(campaign.items[0], body="Absatz.")
    baseline.feed(_parse(_message(campaign, plain, "Erika")).get_body(("html",)).get_content())  # type: ignore[union-attr]
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "iframe", "object", "embed", "form", "base", "svg", "input"}
    # <meta>, <link> and <style> only as the template has them (charset, viewport, @media).
    for kind in ("meta", "link", "style"):
        assert [t for t in parser.tags if t[0] == kind] == [
            t for t in baseline.tags if t[0] == kind
        ]
    assert parser.styles == baseline.styles
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action", "background", "poster"):
                assert urlsplit(value or "").scheme in ("http", "https", "mailto"), (tag, value)
    # What the editor wrote may survive only as visible, escaped text: never as markup, an
    # attribute, a link or CSS.
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert "evil" not in (value or "").lower(), (tag, name, value)
            assert "javascript" not in (value or "").lower(), (tag, name, value)
    assert "<script" not in html.lower() and "<style>@import" not in html
    assert "&lt;script&gt;" in html  # shown as text
    assert "https://example.org/gut" in html and "https://example.org/gut" in text


# -- links: http(s) only ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "replacement"),
    [
        (FIRST_URL, "url: javascript:alert(1)"),
        (FIRST_URL, "url: 'JavaScript:alert(1)//https://x.org'"),
        (FIRST_URL, "url: data:text/html;base64,PHNjcmlwdD4="),
        (FIRST_URL, "url: file:///etc/passwd"),
        (FIRST_URL, "url: //evil.example/x"),
        (FIRST_URL, "url: ftp://evil.example/x"),
        (FIRST_URL, 'url: "https://www.example.org/\\r\\nBcc: x"'),
        (FIRST_IMAGE, "image: data:image/png;base64,iVBORw0KGgo="),
        (FIRST_IMAGE, "image: javascript:alert(1)"),
    ],
)
def test_validate_refuses_links_that_are_not_http(line: str, replacement: str) -> None:
    assert line in SAMPLE
    with pytest.raises(CampaignError) as caught:
        load_campaign_text(SAMPLE.replace(line, replacement, 1), "campaign.yaml")
    problems = caught.value.problems
    assert len(problems) == 1 and problems[0].path in ("items[0].url", "items[0].image")
    assert problems[0].position.line == SAMPLE.split(line)[0].count("\n") + 1


def test_rendering_refuses_a_non_http_item_link_that_skipped_the_loader() -> None:
    campaign = _sample()
    env = rendering.create_environment(ROOT / "templates")
    first = campaign.items[0]
    for item in (
        dataclasses.replace(first, url="javascript:alert(1)"),
        dataclasses.replace(first, image="javascript:alert(1)"),
    ):
        with pytest.raises(ValueError, match="not an http"):
            rendering.render_email(
                env, campaign, item, day=DAY, published=[], imprint="I", public_url="https://x.org"
            )


# -- tokens ----------------------------------------------------------------------------------
# Tampered, foreign and expired tokens are refused over HTTP in
# tests/integration/web/test_subscription.py (test_tampered_unknown_and_erased_tokens_get_a_404_page,
# test_confirm_links_expire_and_tampered_ones_are_404); the bounce webhook's bearer token in
# tests/integration/web/test_bounce.py. Here: the comparison is the constant-time one.


def test_unsubscribe_and_confirm_tokens_are_compared_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    # `tokens` calls it through the hmac module, so patching the module is seen there.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    subject = tokens.TokenSubject("unsubscribe", 42, "clusterwoche-2019")
    good = tokens.sign(subject, key=SECRET)
    assert tokens.verify(good, purpose="unsubscribe", key=SECRET) == subject
    assert len(calls) == 1
    assert tokens.verify(good[:-2] + "AA", purpose="unsubscribe", key=SECRET) is None
    assert len(calls) == 2

    issued = dt.datetime(2019, 4, 1, 10, 0, tzinfo=dt.UTC)
    confirm = subscription.confirm_token(42, "clusterwoche-2019", issued=issued, key=SECRET)
    assert subscription.read_confirm_token(confirm, key=SECRET) is not None
    assert len(calls) == 3
    # The issue time is signed: moving it forward (to dodge the expiry) breaks the token.
    minutes, _, rest = confirm.partition(".")
    assert subscription.read_confirm_token(f"{int(minutes) + 60}.{rest}", key=SECRET) is None
    assert len(calls) == 4
    # And nowhere in the token code is a signature compared with ==.
    source = inspect.getsource(tokens.verify)
    assert "compare_digest(" in source and "== _signature" not in source


# -- the signing key --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "refused"),
    [(DEV_SECRET_KEY, True), ("x" * 31, True), ("sh0rt-k3y", True), ("x" * 32, False)],
)
def test_production_refuses_a_short_or_development_secret_key(key: str, refused: bool) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="production",
        secret_key=SecretStr(key),
        smtp_url=SecretStr("smtp://h:25"),
    )
    problems = settings.production_problems()
    assert bool(problems) is refused
    assert all(key not in problem for problem in problems)  # named, never echoed
    development = Settings(_env_file=None, secret_key=SecretStr("sh0rt-k3y"))  # type: ignore[call-arg]
    assert development.production_problems() == []
