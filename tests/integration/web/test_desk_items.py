"""The desk's item page and test send over real HTTP, a real ledger and a real SMTP server.

The page shows the sample item's email and posts; the email's HTML comes from a route of its
own that only our pages may frame and that runs sandboxed; a test send arrives at aiosmtpd
with `[TEST]` and the signed-in editor as recipient and leaves no trace in the deliveries;
a sent day shows what the ledger stored even after the file was edited.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from dispatcher.campaign.source import CHECK_SECONDS
from dispatcher.ledger import editors
from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.web.desk import items
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.desk_editor import EDITOR, session_headers
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import web_settings

SENT_TITLE = "Vorhang auf: Nordwind Maritim e. V."
EDITED_TITLE = "Vorhang auf: Nordwind (überarbeitet)"


@pytest.fixture
def desk(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    """Every channel of the sample, mail through aiosmtpd, the day before the first send."""
    yield from serve(all_channels(database, smtp_server, tmp_path), database)


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def count(database: Database, table: sa.Table) -> int:
    with database.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_the_item_page_shows_email_and_posts(desk: Desk) -> None:
    page = requests.get(desk.url + ITEM, headers=desk.headers, timeout=10)

    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "Vorhang auf: Nordwind Maritim e. V. – 2. Clusterwoche Deutschland" in text
    assert "Erika Mustermann <erika.mustermann@example.org>" in text
    assert "Clusterplattform <newsletter@news.example.org>" in text
    assert "Guten Tag Erika Mustermann," in text  # the plain-text part
    frames = re.findall(
        r"<iframe [^>]*\bsandbox [^>]*\bsrc=\"([^\"]+)\" width=\"(\d+)\"", page.text
    )
    assert [(src, int(w)) for src, w in frames] == [
        (ITEM + "/email.html", 600),
        (ITEM + "/email.html", 375),
        (ITEM + "/email.html?ausgabe=en", 600),  # the sample's English edition
        (ITEM + "/email.html?ausgabe=en", 375),
    ]
    assert "allow-" not in page.text  # a bare sandbox: no scripts, forms, popups, same origin
    assert "bluesky 298/300" in text and "mastodon 258/500" in text
    assert "Alt-Text: Ein Containerschiff im Kieler Hafen bei Sonnenaufgang" in text
    assert '<span class="hashtag">#MaritimeWirtschaft</span>' in page.text
    assert "Posts werden nicht testweise veröffentlicht" in text
    # The page may frame our own routes, nothing else; nobody may frame the page.
    policy = page.headers["Content-Security-Policy"]
    assert "frame-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"


def test_the_email_frame_is_sandboxed_and_framed_only_by_our_pages(desk: Desk) -> None:
    frame = requests.get(desk.url + ITEM + "/email.html", headers=desk.headers, timeout=10)

    assert frame.status_code == 200
    assert frame.headers["Content-Type"].startswith("text/html")
    assert "Guten Tag Erika Mustermann," in html.unescape(frame.text)
    policy = frame.headers["Content-Security-Policy"]
    assert "," not in policy  # one policy: the house policy's frame-ancestors 'none' is not added
    directives = [d.strip() for d in policy.split(";")]
    assert directives[0] == "sandbox" and "frame-ancestors 'self'" in directives
    assert "default-src 'none'" in directives and "script-src" not in policy
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert frame.headers["X-Content-Type-Options"] == "nosniff"


def test_signed_out_visitors_are_sent_to_sign_in(desk: Desk) -> None:
    for path in (ITEM, ITEM + "/email.html"):
        answer = requests.get(desk.url + path, allow_redirects=False, timeout=10)
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith("/desk/anmelden?next=/desk/items/")


def test_an_unknown_item_is_a_404_page_that_lists_the_items(desk: Desk) -> None:
    page = requests.get(desk.url + "/desk/items/gibt-es-nicht", headers=desk.headers, timeout=10)

    assert page.status_code == 404
    text = html.unescape(page.text)
    assert "Beitrag nicht gefunden" in text and "„gibt-es-nicht“" in text
    assert 'href="/desk/items/berlin-digital"' in page.text
    wrong_day = requests.get(desk.url + ITEM + "?tag=2019-04-05", headers=desk.headers, timeout=10)
    assert wrong_day.status_code == 404 and "05.04.2019" in wrong_day.text


def test_a_test_send_reaches_the_editor_and_not_the_ledger(
    desk: Desk, smtp_server: SmtpServer
) -> None:
    page = requests.get(desk.url + ITEM, headers=desk.headers, timeout=10)
    form = {"csrf_token": csrf_token(page.text)}

    answer = requests.post(desk.url + ITEM + "/test-send", data=form, headers=desk.headers,
                           timeout=30)  # fmt: skip

    assert answer.status_code == 200, answer.text
    [received] = smtp_server.received
    assert received.rcpt_tos == [EDITOR]
    assert str(received.message["Subject"]) == (
        "[TEST] Vorhang auf: Nordwind Maritim e. V. – 2. Clusterwoche Deutschland"
    )
    assert str(received.message["To"]) == f"Rita Redaktion <{EDITOR}>"
    body = received.message.get_body(("plain",))
    assert body is not None and "Guten Tag Rita Redaktion," in body.get_content()
    text = html.unescape(answer.text)
    assert EDITOR in text and f"SMTP-Relay {smtp_server.host}:{smtp_server.port}" in text
    assert count(desk.database, dispatches) == 0 and count(desk.database, deliveries) == 0
    with desk.database.engine.connect() as connection:
        [row] = editors.audit_log(connection, limit=1)
    assert row.action == "test_send" and row.email == EDITOR
    assert "nordwind-maritim" in row.detail and "SMTP-Relay" in row.detail


def test_test_sends_are_rate_limited_per_editor(desk: Desk, smtp_server: SmtpServer) -> None:
    page = requests.get(desk.url + ITEM, headers=desk.headers, timeout=10)
    form = {"csrf_token": csrf_token(page.text)}
    for _ in range(items.TEST_SENDS):
        sent = requests.post(desk.url + ITEM + "/test-send", data=form, headers=desk.headers,
                             timeout=30)  # fmt: skip
        assert sent.status_code == 200

    refused = requests.post(desk.url + ITEM + "/test-send", data=form, headers=desk.headers,
                            timeout=30)  # fmt: skip

    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= items.TEST_WINDOW
    assert "Bitte etwas warten" in refused.text
    assert len(smtp_server.received) == items.TEST_SENDS
    # Another editor has a limit of their own.
    other = session_headers(desk.state, "zweite@example.org", None)
    token = csrf_token(requests.get(desk.url + ITEM, headers=other, timeout=10).text)
    again = requests.post(desk.url + ITEM + "/test-send", data={"csrf_token": token},
                          headers=other, timeout=30)  # fmt: skip
    assert again.status_code == 200
    assert smtp_server.received[-1].rcpt_tos == ["zweite@example.org"]


def test_a_test_send_needs_the_csrf_token(desk: Desk, smtp_server: SmtpServer) -> None:
    for form in ({}, {"csrf_token": "falsch"}):
        answer = requests.post(desk.url + ITEM + "/test-send", data=form, headers=desk.headers,
                               timeout=30)  # fmt: skip
        assert answer.status_code == 403
    assert smtp_server.received == []


def test_without_a_relay_the_test_goes_to_the_outbox(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = web_settings(database, smtp_server, tmp_path, smtp_url=None)
    for app in serve(settings, database):
        page = requests.get(app.url + ITEM, headers=app.headers, timeout=10)
        answer = requests.post(app.url + ITEM + "/test-send", headers=app.headers,
                               data={"csrf_token": csrf_token(page.text)}, timeout=30)  # fmt: skip
        assert answer.status_code == 200
        match = re.search(r"Outbox-Datei (\S+\.eml)", html.unescape(answer.text))
        assert match, answer.text
        written = Path(match.group(1)).read_bytes()
        assert b"Subject: [TEST] Vorhang auf" in written
        assert Path(match.group(1)).parent == settings.outbox_dir
    assert smtp_server.received == []


def test_a_sent_day_shows_the_snapshot_after_the_file_changed(
    database: Database, smtp_server: SmtpServer
) -> None:
    settings = settings_for(database, smtp_server, clock_jump_hours=72)
    add_subscribers(database, 2)
    tick_at(settings, database, email_time(dt.date(2019, 4, 2)))
    path = settings.campaign_file
    path.write_text(path.read_text("utf-8").replace(SENT_TITLE, EDITED_TITLE), "utf-8")
    smtp_server.clear()

    for app in serve(settings, database, now=email_time(dt.date(2019, 4, 2))):
        page = requests.get(app.url + ITEM + "?tag=2019-04-02", headers=app.headers, timeout=10)
        frame = requests.get(app.url + ITEM + "/email.html?tag=2019-04-02", headers=app.headers,
                             timeout=10)  # fmt: skip
        token = csrf_token(page.text)
        sent = requests.post(app.url + ITEM + "/test-send", headers=app.headers, timeout=30,
                             data={"csrf_token": token, "tag": "2019-04-02"})  # fmt: skip

    assert page.status_code == 200 and frame.status_code == 200 and sent.status_code == 200
    text = html.unescape(page.text)
    assert f"{SENT_TITLE} – 2. Clusterwoche Deutschland" in text
    assert "was versendet wurde" in text and EDITED_TITLE not in text
    assert SENT_TITLE in html.unescape(frame.text) and EDITED_TITLE not in frame.text
    [test] = smtp_server.received
    assert str(test.message["Subject"]) == f"[TEST] {SENT_TITLE} – 2. Clusterwoche Deutschland"


def test_a_shortened_post_is_warned_about_on_the_page(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = all_channels(database, smtp_server, tmp_path)
    path = settings.campaign_file
    teaser = "Werften, Zulieferer und Hochschulen an der Küste entwickeln gemeinsam emissionsarme"
    long = " ".join(["Ein sehr langer Teaser über Werften und Wasserstoff."] * 8)
    path.write_text(path.read_text("utf-8").replace(teaser, long), "utf-8")
    for app in serve(settings, database):
        page = requests.get(app.url + ITEM, headers=app.headers, timeout=10)

    text = html.unescape(page.text)
    bluesky = text[text.index('id="post-bluesky"') : text.index('id="post-linkedin"')]
    assert "Der Teaser wurde gekürzt" in bluesky and "Grenze von 300 Zeichen" in bluesky
    assert "Wasserstoff.…" not in bluesky and "…" in bluesky
    linkedin = text[text.index('id="post-linkedin"') :]
    assert "Der Teaser wurde gekürzt" not in linkedin[: linkedin.index("</article>")]


def test_a_broken_save_lists_the_items_own_problems(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = all_channels(database, smtp_server, tmp_path)
    path = settings.campaign_file
    for app in serve(settings, database):
        broken = path.read_text("utf-8").replace(
            "url: https://www.clusterplattform.de/reportage/2019/nordwind-maritim",
            "url: javascript:alert(1)",
        )
        path.write_text(broken, "utf-8")
        deadline = time.monotonic() + 2 * CHECK_SECONDS + 3
        while True:  # the desk looks at the file at most every CHECK_SECONDS
            page = requests.get(app.url + ITEM, headers=app.headers, timeout=10)
            if "Probleme dieses Beitrags" in page.text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        other = requests.get(app.url + "/desk/items/berlin-digital", headers=app.headers,
                             timeout=10)  # fmt: skip

    text = html.unescape(page.text)
    own = text[text.index('id="beitrag-probleme"') : text.index('id="email"')]
    assert re.search(r"campaign\.yaml:\d+:\d+: items\[0\]\.url: ", own), own
    # The last good version is still shown; another item has no problems of its own.
    assert "Vorhang auf: Nordwind Maritim e. V. – 2. Clusterwoche Deutschland" in text
    assert other.status_code == 200 and "Probleme dieses Beitrags" not in other.text
    assert "items[0].url" in html.unescape(other.text)  # problems first, on every desk page


def test_a_refused_test_send_says_why(desk: Desk, smtp_server: SmtpServer) -> None:
    smtp_server.script(EDITOR, "550 5.1.1 No such mailbox")
    page = requests.get(desk.url + ITEM, headers=desk.headers, timeout=10)

    answer = requests.post(desk.url + ITEM + "/test-send", headers=desk.headers, timeout=30,
                           data={"csrf_token": csrf_token(page.text)})  # fmt: skip

    assert answer.status_code == 502
    assert "Testversand fehlgeschlagen" in answer.text and "550" in answer.text
    assert smtp_server.received == []
    with desk.database.engine.connect() as connection:
        [row] = editors.audit_log(connection, limit=1)
    assert row.action == "test_send_failed" and "550" in row.detail
