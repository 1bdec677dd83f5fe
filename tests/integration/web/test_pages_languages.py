"""The public pages in the reader's language, over real HTTP (issue 18, item 4).

A campaign in German and English (`tests.support.bilingual`: only the first sending day's
item has an English version); the app on a free port over the test's ledger (SQLite and
PostgreSQL), confirmation mail through a real SMTP server, the archive's days sent by real
ticks. Asserted is what a reader notices: the page's words, `<html lang>`,
`Content-Language`, the links to the other language, what the ledger keeps.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import feedparser  # type: ignore[import-untyped]
import pytest
import requests

from dispatcher.campaign import planning
from dispatcher.campaign.loading import load_campaign
from dispatcher.ledger import subscribers as ledger
from dispatcher.mail import compose as emails
from dispatcher.mail import tokens
from tests.support.bilingual import bilingual_copy, english_title, english_url
from tests.support.database import Database
from tests.support.delivery import email_time
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import PUBLIC_URL, SECRET, START, WebApp, serve_webapp, subscriber_row

READER = "leser00000@example.org"
NEW = "neu@example.org"
ENGLISH = {"Accept-Language": "en-GB,en;q=0.9,de;q=0.3"}
FIRST_ITEM = "nordwind-maritim"  #: pinned to the first sending day; the one English item
FIRST_DAY, SECOND_DAY = dt.date(2019, 4, 2), dt.date(2019, 4, 3)
NAME = "2. Clusterwoche Deutschland"
ENGLISH_NAME = "2nd Cluster Week Germany"  #: the campaign's name in English


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    path = bilingual_copy(tmp_path, english=(FIRST_ITEM,), english_name=ENGLISH_NAME)
    yield from serve_webapp(database, smtp_server, tmp_path, campaign_file=path)


def _get(app: WebApp, path: str, **headers: str) -> requests.Response:
    return requests.get(app.url + path, headers=headers, allow_redirects=False, timeout=10)


def _h1(response: requests.Response) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", response.text, re.S)
    assert found is not None, response.text
    return found[1]


def _page_language(response: requests.Response) -> str:
    """The language a page says it is in; `<html lang>` and `Content-Language` must agree."""
    found = re.search(r'<html lang="([a-z]+)">', response.text)
    assert found is not None, response.text[:200]
    assert response.headers["content-language"] == found[1]
    return found[1]


def _switch(response: requests.Response) -> dict[str, str]:
    """The language switch: hreflang -> href (each link also names its language in `lang`)."""
    nav = re.search(r'<nav class="sprachen"[^>]*>(.*?)</nav>', response.text, re.S)
    assert nav is not None, "no language switch on the page"
    links = re.findall(r'<a href="([^"]+)" hreflang="([a-z]+)" lang="\2">', nav[1])
    return {lang: href.replace("&amp;", "&") for href, lang in links}


def _unsubscribe_path(app: WebApp, address: str = READER) -> str:
    sender = emails.Sender(app.settings.mail_from, app.settings.public_url, SECRET)
    url = emails.unsubscribe_url(
        sender, subscriber_id=subscriber_row(app, address).id, campaign_id=app.campaign.id
    )
    return urlsplit(url).path


def _set_language(app: WebApp, address: str, lang: str | None) -> None:
    subscriber_id = subscriber_row(app, address).id
    with app.database.engine.begin() as conn:
        ledger.set_language(conn, subscriber_id, lang, now=START, by="test")


def _subscribe(app: WebApp, form: dict[str, str], **headers: str) -> requests.Response:
    """POST the form as a browser on our page would, then wait for the mail after it."""
    response = requests.post(
        f"{app.url}/subscribe",
        data=form,
        headers={"Referer": f"{PUBLIC_URL}/subscribe", **headers},
        allow_redirects=False,
        timeout=10,
    )
    assert app.state.background.join()
    return response


def _mails_to(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return [r.message for r in smtp.received if r.rcpt_tos == [address]]


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    content: str = part.get_content()
    return content.replace("\r\n", "\n")


def _confirm_path(message: EmailMessage) -> str:
    links: list[str] = re.findall(r"https?://\S+/confirm/\S+", _body(message, "plain"))
    assert len(links) == 1, links
    return urlsplit(links[0]).path


# -- the sign-up form ------------------------------------------------------------------------


def test_the_form_follows_accept_language_and_the_switch_and_remembers_a_choice(
    app: WebApp,
) -> None:
    german = _get(app, "/subscribe")  # no Accept-Language at all: the default
    assert _page_language(german) == "de"
    assert _h1(german) == f"Newsletter der {NAME} abonnieren"
    assert "Accept-Language" in german.headers["vary"]
    assert _switch(german) == {"en": f"{PUBLIC_URL}/subscribe?lang=en"}
    assert re.search(r'id="lang-de" name="lang" value="de" checked>', german.text)
    assert "set-cookie" not in german.headers  # nothing chosen, nothing remembered

    english = _get(app, "/subscribe", **ENGLISH)
    assert _page_language(english) == "en"
    assert _h1(english) == f"Subscribe to the {ENGLISH_NAME} newsletter"
    assert "Email address (required)" in english.text and ">Subscribe</button>" in english.text
    assert "<legend>Language of the newsletter</legend>" in english.text
    assert re.search(r'id="lang-en" name="lang" value="en" checked>', english.text)
    assert not re.search(r'value="de" checked', english.text)
    assert _switch(english) == {"de": f"{PUBLIC_URL}/subscribe?lang=de"}
    assert 'action="https://news.example.org/subscribe?lang=en"' in english.text
    # The reader agrees to a sentence they can read.
    assert "Yes, I would like to receive the Cluster Week newsletter by email." in english.text
    assert "Ja, ich möchte den Newsletter" in german.text
    assert 'href="https://news.example.org/en/archive">Archive</a>' in english.text
    # A language the campaign lacks is passed over for the next one the browser accepts.
    assert _page_language(_get(app, "/subscribe", **{"Accept-Language": "fr, en;q=0.5"})) == "en"

    chosen = _get(app, "/subscribe?lang=de", **ENGLISH)  # the switch
    assert _page_language(chosen) == "de"
    cookie = chosen.headers["set-cookie"]
    assert cookie.startswith("lang=de;") and "HttpOnly" in cookie
    assert "Secure" in cookie  # the public address is https
    # Remembered: the next page is German although the browser still prefers English.
    assert _page_language(_get(app, "/subscribe", Cookie="lang=de", **ENGLISH)) == "de"
    unknown = _get(app, "/subscribe?lang=xx", Cookie="lang=de", **ENGLISH)
    assert _page_language(unknown) == "de" and "set-cookie" not in unknown.headers


def test_an_english_sign_up_is_stored_in_english_and_confirmed_in_english(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    form = {"email": NEW, "name": "Ada Lovelace", "consent": "ja", "lang": "en"}
    sent = _subscribe(app, form, **ENGLISH)
    assert sent.status_code == 200 and _page_language(sent) == "en"
    assert _h1(sent) == "Please confirm your subscription"
    assert "The link is valid for 48 hours." in sent.text
    pending = subscriber_row(app, NEW)
    assert (pending.state, pending.lang) == ("pending", "en")

    [mail] = _mails_to(smtp_server, NEW)
    assert str(mail["Subject"]) == f"Please confirm your subscription: {ENGLISH_NAME}"
    assert mail["Content-Language"] == "en"
    text = _body(mail, "plain")
    assert text.startswith("Hello Ada Lovelace,\n")
    # 10:00 UTC is 12:00 in Berlin (CEST), written as English readers write dates.
    assert f"On 1 April 2019 at 12:00 CEST, the {ENGLISH_NAME} newsletter" in text
    assert "Please confirm your subscription by clicking this link:" in text
    html = _body(mail, "html")
    assert '<html lang="en">' in html and ">Confirm subscription</a>" in html
    assert "Guten Tag" not in text + html and "Abonnement" not in text + html

    # The confirmation page follows the token's subscriber, not the browser.
    confirmed = _get(app, _confirm_path(mail), **{"Accept-Language": "de"})
    assert confirmed.status_code == 200 and _page_language(confirmed) == "en"
    assert _h1(confirmed) == "Subscription confirmed"
    assert _switch(confirmed) == {"de": f"{PUBLIC_URL}{_confirm_path(mail)}?lang=de"}
    active = subscriber_row(app, NEW)
    assert (active.state, active.lang) == ("active", "en")
    # The consent record holds the English sentence the reader agreed to beside the box.
    assert active.consent_text == app.state.settings.consent_texts["en"]
    assert active.consent_text in " ".join(text.split())


def test_a_german_choice_on_the_english_page_gets_german_mail(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    sent = _subscribe(app, {"email": NEW, "consent": "ja", "lang": "de"}, **ENGLISH)
    assert _page_language(sent) == "en"  # the page stays in the page's language
    assert subscriber_row(app, NEW).lang == "de"
    [mail] = _mails_to(smtp_server, NEW)
    assert str(mail["Subject"]) == f"Bitte bestätigen Sie Ihr Abonnement: {NAME}"
    assert mail["Content-Language"] == "de"
    assert "am 1. April 2019 um 12:00 Uhr wurde" in _body(mail, "plain")


def test_a_form_without_the_choice_takes_the_page_language_and_a_bad_one_is_refused(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    # A copy of the form embedded elsewhere, without the language choice.
    _subscribe(app, {"email": NEW, "consent": "ja"}, **ENGLISH)
    assert subscriber_row(app, NEW).lang == "en"
    assert _mails_to(smtp_server, NEW)[0]["Content-Language"] == "en"

    refused = _subscribe(app, {"email": "x@example.org", "consent": "ja", "lang": "fr"}, **ENGLISH)
    assert refused.status_code == 400 and _page_language(refused) == "en"
    assert "Please choose one of the languages offered: Deutsch, English." in refused.text
    assert 'href="#lang"' in refused.text and 'id="lang"' in refused.text
    empty = _subscribe(app, {"lang": "en"}, **ENGLISH)  # every field error in English
    assert empty.status_code == 400
    assert "Please enter your email address." in empty.text
    assert "Please confirm your consent; without it we may not send you the newsletter." in (
        empty.text
    )
    assert _mails_to(smtp_server, "x@example.org") == []


# -- the unsubscribe page --------------------------------------------------------------------


def test_the_unsubscribe_page_is_in_the_subscribers_language(app: WebApp) -> None:
    add_subscribers(app.database, 2)
    _set_language(app, READER, "en")
    path = _unsubscribe_path(app)

    page = _get(app, path, **{"Accept-Language": "de"})  # the reader's language wins
    assert page.status_code == 200 and _page_language(page) == "en"
    assert _h1(page) == "Unsubscribe from the newsletter"
    assert re.search(
        r'<form method="post">.*<button type="submit">Unsubscribe</button>', page.text, re.S
    )
    assert _switch(page) == {"de": f"{PUBLIC_URL}{path}?lang=de"}
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"

    switched = _get(app, path + "?lang=de")  # the switch shows this page in German ...
    assert _page_language(switched) == "de" and _h1(switched) == "Newsletter abbestellen"
    assert subscriber_row(app, READER).lang == "en"  # ... and changes nothing stored

    german_reader = _get(app, _unsubscribe_path(app, "leser00001@example.org"), **ENGLISH)
    assert _page_language(german_reader) == "de"  # no language of their own: the default's

    # The one-click POST (as a mailbox provider sends it) answers in the reader's language.
    done = requests.post(
        app.url + path,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert done.status_code == 200 and _page_language(done) == "en"
    assert _h1(done) == "You are unsubscribed" and READER in done.text
    assert "set-cookie" not in done.headers
    after = _get(app, path)
    assert "is already unsubscribed" in after.text
    assert 'name="lang"' not in after.text  # no language to choose for a newsletter not sent


def test_the_reader_changes_the_newsletter_language_on_the_unsubscribe_page(
    app: WebApp,
) -> None:
    add_subscribers(app.database, 1)
    path = _unsubscribe_path(app)
    page = _get(app, path)
    assert _page_language(page) == "de"
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page.text, re.S)
    assert form is not None, "no language form"
    assert form[1] == f"{PUBLIC_URL}{path}/language"
    assert "<legend>Sprache des Newsletters</legend>" in form[2]
    assert re.search(r'value="de" checked>', form[2])  # the language it comes in now

    def post(lang: str, **headers: str) -> requests.Response:
        return requests.post(
            app.url + path + "/language", data={"lang": lang}, headers=headers, timeout=10
        )

    # From a mail client's page or with a foreign Origin: the token in the path is the proof.
    changed = post("en", Origin="null")
    assert changed.status_code == 200 and _page_language(changed) == "en"
    assert "Saved: from the next email on, you will receive the newsletter in English." in (
        changed.text
    )
    assert re.search(r'value="en" checked>', changed.text)
    assert changed.headers["cache-control"] == "no-store" and "location" not in changed.headers
    row = subscriber_row(app, READER)
    assert (row.state, row.lang, row.lang_changed_at, row.lang_changed_by) == (
        "active", "en", START, "reader",
    )  # fmt: skip
    assert _page_language(_get(app, path)) == "en"  # the page follows from now on

    refused = post("fr")
    assert refused.status_code == 400 and "Please choose one of the languages offered." in (
        refused.text
    )
    assert subscriber_row(app, READER).lang == "en"
    # A GET never changes anything (link scanners), and a forged token changes nobody.
    assert _get(app, path + "/language").status_code == 405
    forged = requests.post(
        f"{app.url}/u/{tokens.sign(tokens.TokenSubject('unsubscribe', row.id, 'x'), key='k')}"
        "/language",
        data={"lang": "de"},
        timeout=10,
    )
    assert forged.status_code == 404
    assert subscriber_row(app, READER).lang == "en"
    assert post("de").status_code == 200 and subscriber_row(app, READER).lang == "de"


# -- error pages -----------------------------------------------------------------------------


def test_error_pages_speak_the_readers_language(app: WebApp, smtp_server: SmtpServer) -> None:
    invalid = _get(app, "/u/garbage", **ENGLISH)
    assert invalid.status_code == 404 and _page_language(invalid) == "en"
    assert _h1(invalid) == "This link is invalid"
    assert _page_language(_get(app, "/u/garbage")) == "de"
    # A path no route has: the same page (with its way back), not Starlette's bare text.
    stray = _get(app, "/no-such-page", **ENGLISH)
    assert stray.status_code == 404 and _page_language(stray) == "en"
    assert stray.headers["content-type"].startswith("text/html")
    assert _page_language(_get(app, "/no-such-page")) == "de"
    api = _get(app, "/api/v1/no-such-endpoint", **ENGLISH)
    assert api.status_code == 404  # the API answers for itself, as RFC 9457 problems
    assert api.headers["content-type"] == "application/problem+json"

    _subscribe(app, {"email": NEW, "consent": "ja", "lang": "en"})  # a German browser
    path = _confirm_path(_mails_to(smtp_server, NEW)[0])
    app.clock.advance(hours=app.settings.confirm_ttl_hours, minutes=1)
    expired = _get(app, path, **{"Accept-Language": "de"})
    assert expired.status_code == 410 and _page_language(expired) == "en"
    assert _h1(expired) == "This confirmation link has expired"
    assert 'href="https://news.example.org/subscribe?lang=en">sign up again</a>' in expired.text

    limit = app.settings.subscribe_per_minute
    for _ in range(limit):
        _subscribe(app, {"email": "bad@"}, **ENGLISH)
    limited = _subscribe(app, {"email": NEW, "consent": "ja"}, **ENGLISH)
    assert limited.status_code == 429 and _page_language(limited) == "en"
    assert _h1(limited) == "Too many requests" and "Retry-After" in limited.headers


# -- archive and feed per language -----------------------------------------------------------


def test_the_english_archive_and_feed_list_only_the_english_items(
    app: WebApp, smtp_server: SmtpServer
) -> None:
    schedule = planning.plan(app.campaign, now=dt.datetime(2019, 4, 1, tzinfo=dt.UTC))
    first, second = (
        app.campaign.item(schedule.item_for(day) or "") for day in (FIRST_DAY, SECOND_DAY)
    )
    assert first.id == FIRST_ITEM and second.translation("en") is None
    add_subscribers(app.database, 1)
    for day in (FIRST_DAY, SECOND_DAY):
        tick_at(app.settings, app.database, email_time(day))

    german = _get(app, "/archive", **ENGLISH)  # the address decides, not the browser
    english = _get(app, "/en/archive")
    for page, lang in ((german, "de"), (english, "en")):
        assert page.status_code == 200 and _page_language(page) == lang
        assert page.headers["cache-control"] == "public, max-age=300"
        assert "vary" not in page.headers  # one language per address: a cache may keep it
        alternates = dict(
            re.findall(r'<link rel="alternate" hreflang="([a-z-]+)" href="([^"]+)">', page.text)
        )
        assert alternates == {
            "de": f"{PUBLIC_URL}/archive",
            "en": f"{PUBLIC_URL}/en/archive",
            "x-default": f"{PUBLIC_URL}/archive",
        }
    assert first.title in german.text and second.title in german.text
    assert german.text.count("Zur Reportage") == 2
    assert _switch(german) == {"en": f"{PUBLIC_URL}/en/archive"}

    assert _h1(english) == f"Published so far: {ENGLISH_NAME}"
    assert _h1(german) == f"Bereits erschienen: {NAME}"
    assert english.text.count("Read the report") == 1
    assert english_title(FIRST_ITEM) in english.text
    assert f'<a href="{english_url(FIRST_ITEM)}"' in english.text
    assert "Tuesday, 2 April 2019" in english.text
    assert first.title not in english.text and second.title not in english.text
    assert _switch(english) == {"de": f"{PUBLIC_URL}/archive"}
    assert f'href="{PUBLIC_URL}/en/feed.atom"' in english.text

    response = _get(app, "/en/feed.atom")
    assert response.headers["content-language"] == "en"
    assert response.headers["cache-control"] == "public, max-age=300"
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.language == "en"  # xml:lang of <feed>
    assert feed.feed.title == ENGLISH_NAME
    assert feed.feed.subtitle == f"The reports of the {ENGLISH_NAME} published so far"
    assert [e.title for e in feed.entries] == [english_title(FIRST_ITEM)]
    assert [e.link for e in feed.entries] == [english_url(FIRST_ITEM)]
    links = {(link.get("hreflang"), link.type, link.href) for link in feed.feed.links}
    assert ("en", "text/html", f"{PUBLIC_URL}/en/archive") in links
    assert ("de", "application/atom+xml", f"{PUBLIC_URL}/feed.atom") in links
    german_feed = feedparser.parse(_get(app, "/feed.atom").content)
    assert (german_feed.feed.language, german_feed.feed.title) == ("de", NAME)
    assert [e.title for e in german_feed.entries] == [second.title, first.title]
    assert ("en", "application/atom+xml", f"{PUBLIC_URL}/en/feed.atom") in {
        (link.get("hreflang"), link.type, link.href) for link in german_feed.feed.links
    }
    # The English entry is another text than the German one: another id.
    assert feed.entries[0].id != german_feed.entries[1].id
    assert feed.entries[0].id.endswith(f"/{FIRST_ITEM}/en")

    for missing in ("/fr/archive", "/fr/feed.atom", "/de/archive", "/xx-yy/feed.atom"):
        response = _get(app, missing, **ENGLISH)
        assert response.status_code == 404, missing
        assert _page_language(response) == "en" and _h1(response) == "This page does not exist"
        assert f'href="{PUBLIC_URL}/en/archive"' in response.text


def test_a_german_only_campaign_shows_no_switch_and_no_choice(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    path = bilingual_copy(tmp_path, locales=("de",))
    assert load_campaign(path).locales == ("de",)
    for app in serve_webapp(database, smtp_server, tmp_path, campaign_file=path):
        for address in ("/subscribe", "/archive", "/u/garbage"):
            page = _get(app, address, **ENGLISH)  # English is not offered: German
            assert _page_language(page) == "de", address
            assert "hreflang" not in page.text and 'class="sprachen"' not in page.text
        assert 'name="lang"' not in _get(app, "/subscribe").text
        assert _get(app, "/en/archive").status_code == 404
        _subscribe(app, {"email": NEW, "consent": "ja"}, **ENGLISH)
        assert subscriber_row(app, NEW).lang is None  # no choice made: the default, whatever
        assert _mails_to(smtp_server, NEW)[0]["Content-Language"] == "de"
