"""The desk in the editor's language, over real HTTP, a real ledger and a real SMTP server.

The bundled week is German and English (`locales: [de, en]`), so an editor whose browser asks
for English gets every desk page in English — calendar, item page, history, sign-in and its
mail — and one who chose a language with the switch keeps it (a cookie) whatever the browser
asks for. The item page shows the item once per language, as that language's readers get it,
or says that the item has no version in a language and what its readers get instead.
German stays the default: a browser that asks for nothing gets the German desk.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from dispatcher.ledger import changes
from dispatcher.settings import Settings
from dispatcher.web.desk import pages
from tests.support.database import Database
from tests.support.desk import sign_in_links
from tests.support.desk_editor import EDITOR
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.smtpd import SmtpServer

ENGLISH = {"Accept-Language": "en-GB,en;q=0.9,de;q=0.5"}
GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}
ENGLISH_TITLE = "Spotlight: Nordwind Maritim e. V."  #: the sample's English title of ITEM
GERMAN_TITLE = "Vorhang auf: Nordwind Maritim e. V."
NAME, ENGLISH_NAME = "2. Clusterwoche Deutschland", "2nd Cluster Week Germany"


@pytest.fixture
def settings(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Settings:
    return all_channels(database, smtp_server, tmp_path)


@pytest.fixture
def desk(settings: Settings, database: Database) -> Iterator[Desk]:
    """The bundled week in German and English, the day before the first send."""
    yield from serve(settings, database)


def get(desk: Desk, path: str, headers: dict[str, str] | None = None) -> requests.Response:
    answer = requests.get(
        desk.url + path, headers={**desk.headers, **(headers or {})}, timeout=10,
        allow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return answer


def text_of(answer: requests.Response) -> str:
    """The page's words as a reader sees them: tags out, entities resolved, spaces joined."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", answer.text)).split())


def page_language(answer: requests.Response) -> str:
    found = re.search(r'<html lang="([^"]+)">', answer.text)
    assert found, "no <html lang>"
    assert answer.headers["Content-Language"] == found[1]
    return found[1]


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found[1]


def without_translation(settings: Settings, item_id: str, *, fallback: str) -> None:
    """Take `item_id`'s English version out of the campaign file; set the `fallback`."""
    path = settings.campaign_file
    text = path.read_text(encoding="utf-8")
    start = text.index(f"  - id: {item_id}\n")
    end = text.find("\n  - id: ", start + 1)
    block = text[start:end]
    trimmed = re.sub(r"\n    translations:\n(?:(?:      .*)?\n)*?(?=    \S)", "\n", block)
    assert trimmed != block, "the sample's translations: block changed shape"
    text = text[:start] + trimmed + text[end:]
    text, count = re.subn(r"(?m)^  fallback: \w+$", f"  fallback: {fallback}", text)
    assert count == 1
    path.write_text(text, encoding="utf-8")


# -- the language: Accept-Language, the switch, the cookie --------------------------------------


def test_a_browser_asking_for_english_gets_the_calendar_in_english(desk: Desk) -> None:
    english = get(desk, "/desk/", ENGLISH)
    german = get(desk, "/desk/", GERMAN)
    plain = get(desk, "/desk/")  # a client that asks for no language: the campaign's default

    assert page_language(english) == "en"
    words = text_of(english)
    assert "Calendar" in words and "Next send: Tuesday, 2 April 2019, 08:00" in words
    assert f"Send plan of the {ENGLISH_NAME}, 2 April 2019 to 11 April 2019" in words
    assert "Email 08:00: planned" in words and "Signed in as Rita Redaktion" in words
    assert GERMAN_TITLE in words  # the items are named as the file has them
    assert "Kalender" not in words and "geplant" not in words
    assert page_language(german) == page_language(plain) == "de"
    assert "Nächster Versand: Dienstag, 2. April 2019, 08:00 Uhr" in text_of(german)
    assert english.headers["Vary"] == "Accept-Language, Cookie"
    assert "set-cookie" not in english.headers  # asking is no choice: nothing is remembered


def test_the_switch_changes_the_language_and_the_desk_remembers_it(desk: Desk) -> None:
    german = get(desk, ITEM + "?tag=2019-04-02", GERMAN)
    switch = re.search(r'<nav class="sprachen" aria-label="Sprache">(.*?)</nav>', german.text, re.S)
    assert switch, "no language switch on the German page"
    [(href, hreflang, name)] = re.findall(
        r'<a href="([^"]+)" hreflang="(\w+)" lang="\w+">([^<]+)</a>', switch[1]
    )
    assert (html.unescape(href), hreflang, name) == (
        ITEM + "?tag=2019-04-02&lang=en", "en", "English",
    )  # fmt: skip

    chosen = get(desk, html.unescape(href), GERMAN)
    assert page_language(chosen) == "en" and "German edition" in text_of(chosen)
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(chosen.headers["set-cookie"])
    remembered = cookie[pages.LANGUAGE_COOKIE]
    assert remembered.value == "en" and remembered["path"] == "/desk"
    assert remembered["httponly"] and remembered["samesite"].lower() == "lax"

    # The browser still asks for German; the choice wins on every desk page that follows.
    with_choice = {"Cookie": f"{desk.headers['Cookie']}; {pages.LANGUAGE_COOKIE}=en"}
    history = get(desk, "/desk/history", {**GERMAN, **with_choice})
    assert page_language(history) == "en" and "No changes from the desk yet." in text_of(history)
    back = re.search(r'<a href="([^"]+)" hreflang="de" lang="de">Deutsch</a>', history.text)
    assert back and html.unescape(back[1]) == "/desk/history?lang=de"
    again = get(desk, "/desk/history?lang=de", with_choice)
    assert page_language(again) == "de" and "Verlauf" in text_of(again)
    assert "dispatcher_desk_lang=de" in again.headers["set-cookie"]


def test_a_language_the_campaign_does_not_offer_is_not_taken(desk: Desk) -> None:
    answer = get(desk, "/desk/?lang=fr", {"Accept-Language": "fr-FR"})

    assert page_language(answer) == "de"  # the campaign's default, not a page without texts
    assert "set-cookie" not in answer.headers


# -- the item page: one edition per language ------------------------------------------------


def test_the_item_page_shows_every_language_as_its_readers_get_it(desk: Desk) -> None:
    page = get(desk, ITEM, ENGLISH)
    words = text_of(page)

    assert page_language(page) == "en"
    assert "German edition" in words and "English edition" in words
    assert words.index("German edition") < words.index("English edition")
    # Each edition's email as its readers get it: subject, greeting, Content-Language.
    subjects = re.findall(r"<dt>Subject</dt><dd>([^<]+)</dd>", page.text)
    assert [html.unescape(s) for s in subjects] == [
        f"{GERMAN_TITLE} – {NAME}",
        f"{ENGLISH_TITLE} – {ENGLISH_NAME}",
    ]
    assert "Guten Tag Erika Mustermann," in words and "Hello Erika Mustermann," in words
    assert "Send a test to me" in words and "Send the English test to me" in words
    assert "This item has no" not in words  # it has both versions
    # The English edition's frames show the English email.
    frame = get(desk, ITEM + "/email.html?ausgabe=en", ENGLISH)
    assert '<html lang="en"' in frame.text and "Hello Erika Mustermann," in frame.text
    assert ENGLISH_TITLE in html.unescape(frame.text)
    german_frame = get(desk, ITEM + "/email.html", ENGLISH)
    assert "Guten Tag Erika Mustermann," in german_frame.text
    # The networks post in German only in this copy of the sample: the English edition says so.
    assert (
        "Mastodon, Bluesky, LinkedIn, Webhook (Slack, Discord, Teams, Matrix): no post in English"
        in words
    )


def test_an_item_without_english_says_what_english_readers_get(
    settings: Settings, database: Database
) -> None:
    without_translation(settings, "nordwind-maritim", fallback="default")
    for desk in serve(settings, database):
        english = text_of(get(desk, ITEM, ENGLISH))
        german = text_of(get(desk, ITEM, GERMAN))
        calendar = text_of(get(desk, "/desk/", ENGLISH))

    assert (
        "This item has no English version: readers of English get the German version "
        "(fallback: default)." in english
    )
    assert (
        "Dieser Beitrag hat keine Fassung auf Englisch: Wer auf Englisch liest, bekommt die "
        "Fassung auf Deutsch (fallback: default)." in german
    )
    # What they get, shown in the English edition: the German email, as the German readers'.
    assert english.count(f"Subject {GERMAN_TITLE}") == 2
    assert english.count("Guten Tag Erika Mustermann,") == 2 and "Hello Erika" not in english
    assert "No English version" in calendar


def test_under_skip_an_item_without_english_has_no_english_email(
    settings: Settings, database: Database
) -> None:
    without_translation(settings, "nordwind-maritim", fallback="skip")
    for desk in serve(settings, database):
        page = get(desk, ITEM, ENGLISH)
        frame = requests.get(
            desk.url + ITEM + "/email.html?ausgabe=en", headers={**desk.headers, **ENGLISH},
            timeout=10,
        )  # fmt: skip

    words = text_of(page)
    assert (
        "This item has no English version: readers of English get nothing that day "
        "(fallback: skip)." in words
    )
    assert words.count("Subject") == 1  # the German edition's email only
    assert 'ausgabe=en"' not in page.text  # no English frames, no English test send
    assert frame.status_code == 404
    assert frame.text == "This item does not go out by email in this language."


def test_the_english_test_send_arrives_in_english(desk: Desk, smtp_server: SmtpServer) -> None:
    page = get(desk, ITEM, ENGLISH)
    sent = requests.post(
        desk.url + ITEM + "/test-send",
        data={"csrf_token": csrf_token(page.text), "ausgabe": "en"},
        headers={**desk.headers, **ENGLISH},
        timeout=10,
    )

    assert sent.status_code == 200, sent.text
    assert "Test sent" in text_of(sent)
    [received] = smtp_server.received
    assert received.rcpt_tos == [EDITOR]
    message = received.message
    assert message["Subject"] == f"[TEST] {ENGLISH_TITLE} – {ENGLISH_NAME}"
    assert message["Content-Language"] == "en"
    body = message.get_body(("plain",))
    assert body is not None and "Hello Rita Redaktion," in body.get_content()


# -- messages from deep down: refusals, the history, the feed -------------------------------


def test_refusals_and_the_history_speak_the_editors_language(desk: Desk) -> None:
    english = {**desk.headers, **ENGLISH, "Origin": "https://news.example.org"}
    page = get(desk, "/desk/items/berlin-digital", ENGLISH)
    form = {"csrf_token": csrf_token(page.text)}
    version = re.search(r'name="version" value="([^"]+)"', page.text)
    assert version
    form["version"] = version[1]

    def queue(item: str, **fields: str) -> requests.Response:
        return requests.post(
            f"{desk.url}/desk/items/{item}/queue", data={**form, **fields}, headers=english,
            timeout=10, allow_redirects=False,
        )  # fmt: skip

    not_a_day = queue("berlin-digital", action="pin", day="morgen")
    assert not_a_day.status_code == 400
    assert "“morgen” is no day (YYYY-MM-DD)." in text_of(not_a_day)
    # A refusal from the file handling (campaign.editing), far below the request: the form
    # of the first item without a fixed day has "Move up" disabled, a replayed POST is told.
    assert 'value="move-up" disabled' in get(desk, "/desk/items/saxony-mikroelektronik").text
    too_far = queue("saxony-mikroelektronik", action="move-up")
    assert too_far.status_code == 409
    assert "The item is already the first of the items without a fixed day." in text_of(too_far)

    held = queue("berlin-digital", action="hold")
    assert held.status_code == 303
    change = get(desk, held.headers["location"], ENGLISH)
    assert "Change 1: „Vorhang auf: Digitalwirtschaft Spree“ held" in text_of(change)
    assert "Saved. The service takes the change at once" in text_of(change)
    history = text_of(get(desk, "/desk/history", ENGLISH))
    assert "Rita Redaktion: „Vorhang auf: Digitalwirtschaft Spree“ held" in history
    # The record itself is the campaign's language, as `dispatcher history` prints it.
    with desk.database.engine.connect() as connection:
        [row] = changes.recent_changes(connection, limit=5)
    assert row.summary == "„Vorhang auf: Digitalwirtschaft Spree“ zurückgehalten"
    assert "zurückgehalten" in text_of(get(desk, "/desk/history", GERMAN))


def test_the_calendar_feed_made_on_the_english_desk_is_english(desk: Desk) -> None:
    page = get(desk, "/desk/kalender-abo", ENGLISH)
    made = requests.post(
        f"{desk.url}/desk/kalender-abo",
        data={"csrf_token": csrf_token(page.text), "aktion": "erzeugen"},
        headers={**desk.headers, **ENGLISH},
        timeout=10,
    )
    assert made.status_code == 200
    address = re.search(r'id="abo-adresse" readonly value="([^"]+)"', made.text)
    assert address and html.unescape(address[1]).endswith("&lang=en")
    assert "Copy the address now: it is shown this once only." in text_of(made)

    feed = requests.get(html.unescape(address[1]).replace("https://news.example.org", desk.url),
                        timeout=10)  # fmt: skip
    assert feed.status_code == 200
    unfolded = feed.text.replace("\r\n ", "")
    assert f"SUMMARY:Email · {GERMAN_TITLE} · planned" in unfolded
    assert f"X-WR-CALNAME:{ENGLISH_NAME} – send plan" in unfolded
    assert "Email at 08:00: planned" in unfolded


# -- signing in --------------------------------------------------------------------------------


def test_sign_in_and_its_mail_in_english(desk: Desk, smtp_server: SmtpServer) -> None:
    form = requests.get(desk.url + "/desk/anmelden", headers=ENGLISH, timeout=10)
    assert page_language(form) == "en"
    assert "Enter your email address. We will send you a link to sign in with." in text_of(form)

    bad = requests.post(desk.url + "/desk/anmelden", data={"email": "nobody"}, headers=ENGLISH,
                        timeout=10)  # fmt: skip
    assert bad.status_code == 400
    assert "Please enter a valid email address, for example name@example.org." in text_of(bad)

    asked = requests.post(desk.url + "/desk/anmelden", data={"email": EDITOR}, headers=ENGLISH,
                          timeout=10)  # fmt: skip
    assert asked.status_code == 200
    assert f"If {EDITOR} belongs to an editor, a sign-in link is now on its way" in text_of(asked)
    assert desk.state.background.join()
    [link] = sign_in_links(smtp_server, EDITOR)
    [received] = smtp_server.received
    message = received.message
    assert message["Subject"] == f"Your sign-in link for the editors’ desk: {ENGLISH_NAME}"
    assert message["Content-Language"] == "en"
    text = message.get_body(("plain",))
    assert text is not None and text.get_content().startswith("Hello Rita Redaktion,")
    assert "The link works for 15 minutes (until 12:15) and only once." in text.get_content()
    page = requests.get(desk.url + urlsplit(link).path, headers=ENGLISH, timeout=10)
    assert page_language(page) == "en" and "Sign in now" in text_of(page)


def test_a_german_browser_gets_the_german_mail(desk: Desk, smtp_server: SmtpServer) -> None:
    requests.post(desk.url + "/desk/anmelden", data={"email": EDITOR}, headers=GERMAN, timeout=10)
    assert desk.state.background.join()

    [received] = smtp_server.received
    assert received.message["Subject"] == (f"Ihr Anmeldelink für die Redaktion: {NAME}")
    assert received.message["Content-Language"] == "de"
